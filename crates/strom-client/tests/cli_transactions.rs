//! `strom produce --transactional-id` and `strom consume --isolation-level` against a real
//! `strom serve`: what a transactional CLI produce commits is all a read_committed consumer
//! sees, and what it leaves aborted (a failure mid-input, a producer killed before its commit)
//! only a read_uncommitted one sees. Build the binary first: `cargo build -p strom`.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for records to reach the log.
const WAIT_FOR_LOG_MS: u64 = 15_000;

fn lines(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("line-{i}")).collect()
}

/// The values of `topic` from the beginning to the end, read at an isolation level.
fn read_all(broker: &support::Broker, topic: &str, isolation: &str) -> Vec<String> {
    let (code, out, err) = broker.cli(
        &[
            "consume",
            topic,
            "--from-beginning",
            "--exit-at-end",
            "--isolation-level",
            isolation,
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    out.lines().map(str::to_string).collect()
}

#[test]
fn a_transactional_produce_commits_every_n_lines_and_aborts_the_rest_on_failure() {
    let broker = broker!();
    let (code, _, err) = broker.cli(&["topic", "create", "loads", "--partitions", "1"], "");
    assert_eq!(code, 0, "{err}");

    // Seven lines in transactions of three: all three transactions commit (the last one,
    // of one line, at the end of the input).
    let first = lines(0..7);
    let input = first.join("\n") + "\n";
    let (code, _, err) = broker.cli(
        &[
            "produce",
            "loads",
            "--transactional-id",
            "loader",
            "--transaction-size",
            "3",
        ],
        &input,
    );
    assert_eq!(code, 0, "{err}");

    // Then, as one transaction, three lines and a line larger than a request may be: the
    // producer refuses it, the transaction is aborted and the command fails naming the line.
    let failed = lines(7..10);
    let too_large = "x".repeat(2 * 1024 * 1024);
    let input = format!("{}\n{too_large}\nnever-sent\n", failed.join("\n"));
    let (code, _, err) = broker.cli(
        &["produce", "loads", "-X", "transactional.id=loader"],
        &input,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("line 4") && err.contains("MessageTooLarge"),
        "{err}"
    );

    assert_eq!(read_all(&broker, "loads", "read_committed"), first);
    // The aborted lines were written only if the producer had sent them before the failure.
    let uncommitted = read_all(&broker, "loads", "read_uncommitted");
    assert_eq!(uncommitted[..first.len()], first[..], "{uncommitted:?}");
    let rest = &uncommitted[first.len()..];
    assert_eq!(rest, &failed[..rest.len()], "{uncommitted:?}");

    // The default level is Kafka's: read_uncommitted.
    let (_, out, _) = broker.cli(&["consume", "loads", "--from-beginning", "-e"], "");
    assert_eq!(out.lines().count(), uncommitted.len(), "{out}");
}

/// Story: a transactional load killed before its commit must not show up half-written; the
/// next producer with its transactional id aborts what it left open (as Kafka's would).
#[test]
fn a_killed_transactional_produce_is_aborted_by_the_next_one_with_its_id() {
    let broker = broker!();
    let (code, _, err) = broker.cli(&["topic", "create", "killed", "--partitions", "1"], "");
    assert_eq!(code, 0, "{err}");

    let mut producer = Command::new(&broker.binary)
        .args(["produce", "killed", "--transactional-id", "nightly"])
        .args(["--bootstrap", &broker.addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn strom produce");
    let open = lines(0..50);
    let mut stdin = producer.stdin.take().expect("stdin");
    stdin
        .write_all((open.join("\n") + "\n").as_bytes())
        .expect("write to strom produce");
    stdin.flush().expect("flush");
    // Wait until the open transaction's records are in the log, then kill the producer
    // with its input still open: no commit and no abort.
    let deadline = Instant::now() + Duration::from_millis(WAIT_FOR_LOG_MS);
    while read_all(&broker, "killed", "read_uncommitted").len() < open.len() {
        assert!(
            Instant::now() < deadline,
            "the records never reached the log"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    producer.kill().expect("kill strom produce");
    producer.wait().expect("reap strom produce");
    drop(stdin);

    // Open, not yet aborted: read_committed stops before it.
    assert_eq!(
        read_all(&broker, "killed", "read_committed"),
        Vec::<String>::new()
    );

    let after = lines(100..103);
    let (code, _, err) = broker.cli(
        &["produce", "killed", "--transactional-id", "nightly"],
        &(after.join("\n") + "\n"),
    );
    assert_eq!(code, 0, "{err}");

    assert_eq!(read_all(&broker, "killed", "read_committed"), after);
    let everything: Vec<String> = open.iter().chain(&after).cloned().collect();
    assert_eq!(read_all(&broker, "killed", "read_uncommitted"), everything);
}

#[test]
fn transaction_flags_and_properties_are_checked() {
    let broker = broker!();
    broker.cli(&["topic", "create", "flags", "--partitions", "1"], "");
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "consume",
                "flags",
                "--isolation-level",
                "read_committed",
                "-X",
                "isolation.level=read_uncommitted",
            ],
            "--isolation-level and -X isolation.level=read_uncommitted disagree",
        ),
        (
            &["consume", "flags", "-X", "isolation.level=serializable"],
            "unknown isolation level 'serializable'",
        ),
        (
            &["topic", "list", "-X", "isolation.level=read_committed"],
            "isolation.level applies to `strom consume` only",
        ),
        (
            &["consume", "flags", "-X", "transactional.id=t"],
            "transactional.id applies to `strom produce` only",
        ),
        (
            &["produce", "flags", "--transaction-size", "3"],
            "need --transactional-id",
        ),
        (
            &["produce", "flags", "--transactional-id", "t", "--acks", "1"],
            "--transactional-id needs --acks all",
        ),
    ];
    for (args, expected) in cases {
        let (code, _, err) = broker.cli(args, "x\n");
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let (code, _, err) = broker.cli(&["consume", "flags", "--isolation-level", "bogus"], "");
    assert_eq!(code, 2, "clap refuses a bad value: {err}");
    assert!(err.contains("read_committed"), "{err}");

    // Flag and property may both be given when they agree.
    let (code, _, err) = broker.cli(
        &[
            "produce",
            "flags",
            "--transactional-id",
            "t",
            "-X",
            "transactional.id=t",
            "-X",
            "transaction.timeout.ms=30000",
        ],
        "agreed\n",
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = broker.cli(
        &[
            "consume",
            "flags",
            "--from-beginning",
            "-e",
            "-X",
            "isolation.level=read_committed",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "agreed\n");
}
