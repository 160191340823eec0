//! The kcat-like commands of the `strom` binary against a real `strom serve`: exit codes,
//! stdout, and errors a person understands. Build the binary first: `cargo build -p strom`.

mod support;

use support::run_cli;

fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "a panic leaked to the user: {stderr}"
    );
}

#[test]
fn topic_create_list_describe_delete() {
    let broker = broker!();
    let (code, out, err) = broker.cli(
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=60000",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "created topic orders with 3 partitions\n");

    let (code, out, err) = broker.cli(&["topic", "list"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l == "orders"), "{out}");

    let (code, out, err) = broker.cli(&["topic", "describe", "orders"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Topic: orders"), "{out}");
    assert!(out.contains("Partitions: 3"), "{out}");
    assert_eq!(out.matches("\tPartition: ").count(), 3, "{out}");
    assert!(out.contains("retention.ms=60000"), "{out}");

    let (code, _, err) = broker.cli(&["topic", "create", "orders", "--partitions", "1"], "");
    assert_eq!(code, 1);
    assert!(err.contains("TopicAlreadyExists"), "{err}");
    assert_no_panic(&err);

    let (code, out, err) = broker.cli(&["topic", "delete", "orders"], "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "deleted topic orders\n");
    let (_, out, _) = broker.cli(&["topic", "list"], "");
    assert!(!out.lines().any(|l| l == "orders"), "{out}");

    let (code, _, err) = broker.cli(&["topic", "describe", "orders"], "");
    assert_eq!(code, 1);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("UnknownTopicOrPartition"), "{err}");
}

#[test]
fn produce_lines_then_consume_them_with_a_format() {
    let broker = broker!();
    let (code, _, err) = broker.cli(&["topic", "create", "lines", "--partitions", "1"], "");
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = broker.cli(
        &[
            "produce",
            "lines",
            "--key-separator",
            ":",
            "--compression",
            "lz4",
            "--acks",
            "1",
        ],
        "k1:first\nsecond\n\nk3:third:with:colons\r\n",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "");

    let (code, out, err) = broker.cli(
        &["consume", "lines", "--from-beginning", "--exit-at-end"],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "first\nsecond\nthird:with:colons\n");

    let (code, out, err) = broker.cli(
        &[
            "consume",
            "lines",
            "--from-beginning",
            "--count",
            "3",
            "--format",
            "%T/%p/%o\\t%k=%s",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "lines/0/0\tk1=first\nlines/0/1\t=second\nlines/0/2\tk3=third:with:colons\n"
    );

    let (code, out, err) = broker.cli(
        &[
            "consume",
            "lines",
            "--partition",
            "0",
            "--offset",
            "1",
            "--count",
            "1",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "second\n");

    let (code, out, err) = broker.cli(
        &[
            "consume", "lines", "--offset", "-1", "--count", "1", "--format", "%o %t",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields[0], "2", "{out}");
    assert!(
        fields[1].parse::<i64>().unwrap() > 1_600_000_000_000,
        "{out}"
    );
}

#[test]
fn produce_to_one_partition_and_by_key() {
    let broker = broker!();
    broker.cli(&["topic", "create", "parts", "--partitions", "4"], "");
    let (code, _, err) = broker.cli(&["produce", "parts", "--partition", "2"], "a\nb\n");
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = broker.cli(
        &[
            "consume",
            "parts",
            "--partition",
            "2",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "%p %s",
        ],
        "",
    );
    assert_eq!(out, "2 a\n2 b\n");

    let (code, _, err) = broker.cli(
        &["produce", "parts", "--key-separator", "="],
        "user-7=x\nuser-7=y\n",
    );
    assert_eq!(code, 0, "{err}");
    let expected = strom_client::partitioner::partition_for_key(b"user-7", 4);
    let (_, out, _) = broker.cli(
        &[
            "consume",
            "parts",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "%p %k %s",
        ],
        "",
    );
    let keyed: Vec<&str> = out.lines().filter(|l| l.contains("user-7")).collect();
    assert_eq!(
        keyed,
        vec![
            format!("{expected} user-7 x"),
            format!("{expected} user-7 y")
        ]
    );

    let (code, _, err) = broker.cli(&["produce", "parts", "--partition", "9"], "x\n");
    assert_eq!(code, 1);
    assert!(err.contains("UnknownTopicOrPartition"), "{err}");
    let (code, _, err) = broker.cli(&["produce", "parts", "--compression", "brotli"], "x\n");
    assert_eq!(code, 2, "clap refuses a bad value: {err}");
    assert!(err.contains("gzip"), "{err}");
}

#[test]
fn consume_with_a_group_commits_and_group_commands_show_it() {
    let broker = broker!();
    broker.cli(&["topic", "create", "events", "--partitions", "2"], "");
    let input: String = (0..6).map(|i| format!("e{i}\n")).collect();
    let (code, _, err) = broker.cli(&["produce", "events"], &input);
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = broker.cli(
        &[
            "consume",
            "events",
            "--group",
            "readers",
            "--from-beginning",
            "--exit-at-end",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    assert_eq!(got, vec!["e0", "e1", "e2", "e3", "e4", "e5"]);

    let (code, out, err) = broker.cli(&["group", "list"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l == "readers"), "{out}");

    let (code, out, err) = broker.cli(&["group", "describe", "readers"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Group: readers"), "{out}");
    assert!(out.contains("COMMITTED"), "{out}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.starts_with("events "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    for row in rows {
        // TOPIC PARTITION COMMITTED END-OFFSET LAG MEMBER-ID
        assert_eq!(row[2], row[3], "committed up to the end: {out}");
        assert_eq!(row[4], "0", "no lag: {out}");
    }

    // Nothing new: the group resumes at its commit and prints nothing.
    let (code, out, err) = broker.cli(
        &["consume", "events", "--group", "readers", "--exit-at-end"],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "");

    // A new group starting at the end commits where it started, so its lag is known (0).
    let (code, out, err) = broker.cli(
        &["consume", "events", "--group", "late", "--exit-at-end"],
        "",
    );
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let (_, out, _) = broker.cli(&["group", "describe", "late"], "");
    let lags: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("events "))
        .map(|l| l.split_whitespace().nth(4).unwrap())
        .collect();
    assert_eq!(lags, vec!["0", "0"], "{out}");

    let (code, _, err) = broker.cli(&["group", "describe", "nobody"], "");
    assert_eq!(code, 1);
    assert!(err.contains("nobody"), "{err}");
}

#[test]
fn unreachable_broker_is_a_one_line_error() {
    let Some(binary) = support::strom_binary() else {
        return;
    };
    let addr = format!("127.0.0.1:{}", support::free_port());
    for args in [
        vec!["topic", "list"],
        vec!["topic", "create", "x", "--partitions", "1"],
        vec!["produce", "x"],
        vec!["consume", "x"],
        vec!["group", "list"],
        vec!["group", "describe", "g"],
    ] {
        let mut full = args.clone();
        full.extend(["--bootstrap", addr.as_str()]);
        let (code, out, err) = run_cli(&binary, &full, "");
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_eq!(out, "");
        assert_eq!(
            err.trim_end(),
            format!("error: cannot reach broker at {addr}: connection refused"),
            "{args:?}"
        );
    }
}

#[test]
fn help_describes_every_client_command() {
    let Some(binary) = support::strom_binary() else {
        return;
    };
    for (args, needle) in [
        (vec!["topic", "--help"], "describe"),
        (vec!["topic", "create", "--help"], "--partitions"),
        (vec!["produce", "--help"], "--key-separator"),
        (vec!["consume", "--help"], "--from-beginning"),
        (vec!["group", "describe", "--help"], "lag"),
    ] {
        let (code, out, err) = run_cli(&binary, &args, "");
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains(needle), "{args:?}: {out}");
        assert!(
            out.contains("--bootstrap") || args.len() == 2,
            "{args:?}: {out}"
        );
    }
}

#[test]
fn bootstrap_comes_from_the_environment_too() {
    let broker = broker!();
    let output = std::process::Command::new(&broker.binary)
        .args(["topic", "create", "from-env", "--partitions", "2"])
        .env("STROM_BOOTSTRAP", &broker.addr)
        .output()
        .expect("run strom");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (_, out, _) = broker.cli(&["topic", "list"], "");
    assert!(out.lines().any(|l| l == "from-env"), "{out}");
}

/// Story: with `--linger-ms 0` the producer put every record queued while a request was in
/// flight into one batch, whatever `batch_size`: 60,000 lines of 500 bytes became batches of
/// many megabytes and the broker refused them with MESSAGE_TOO_LARGE. Batches now stop at
/// `batch_size` and requests at `max_request_size` whatever the linger.
#[test]
fn sixty_thousand_lines_of_500_bytes_with_no_linger() {
    let broker = broker!();
    let (code, _, err) = broker.cli(&["topic", "create", "big", "--partitions", "1"], "");
    assert_eq!(code, 0, "{err}");
    let mut input = String::with_capacity(60_000 * 501);
    for i in 0..60_000 {
        let line = format!("{i:08}");
        input.push_str(&line);
        input.push_str(&"x".repeat(500 - line.len()));
        input.push('\n');
    }
    let (code, out, err) = broker.cli(&["produce", "big", "--linger-ms", "0"], &input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "");

    let (code, out, err) = broker.cli(
        &[
            "consume",
            "big",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "%o %s",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 60_000);
    for (i, line) in lines.iter().enumerate().step_by(997) {
        assert!(
            line.starts_with(&format!("{i} {i:08}x")),
            "line {i}: {line:.40}"
        );
        assert_eq!(line.len(), format!("{i} ").len() + 500);
    }
}

/// Story: `--bootstrap` took one address; a list with a broker that is down failed.
#[test]
fn a_bootstrap_list_skips_a_dead_address() {
    let broker = broker!();
    let dead = format!("127.0.0.1:{}", support::free_port());
    let list = format!("{dead},{}", broker.addr);
    let binary = &broker.binary;
    let (code, out, err) = run_cli(
        binary,
        &[
            "topic",
            "create",
            "listed",
            "--partitions",
            "1",
            "--bootstrap",
            &list,
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "created topic listed with 1 partition\n");
    let (code, _, err) = run_cli(
        binary,
        &["produce", "listed", "--bootstrap", &list],
        "a\nb\n",
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_cli(
        binary,
        &[
            "consume",
            "listed",
            "--from-beginning",
            "--exit-at-end",
            "--bootstrap",
            &list,
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "a\nb\n");
}

/// Runs kcat (librdkafka) if it is installed; `None` skips the test.
fn kcat(args: &[&str], stdin: &str) -> Option<(i32, String, String)> {
    let found = std::process::Command::new("kcat")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: kcat is not installed");
        return None;
    }
    Some(run_cli(&std::path::PathBuf::from("kcat"), args, stdin))
}

#[test]
fn kcat_and_strom_read_each_others_batches_and_agree_on_key_partitions() {
    let broker = broker!();
    if kcat(&["-V"], "").is_none() {
        return;
    }
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("to-kcat-{codec}");
        broker.cli(&["topic", "create", &topic], "");
        let (code, _, err) = broker.cli(
            &[
                "produce",
                &topic,
                "--key-separator",
                ":",
                "--compression",
                codec,
            ],
            "k1:one\nk2:two\n",
        );
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = kcat(
            &[
                "-C",
                "-b",
                &broker.addr,
                "-t",
                &topic,
                "-e",
                "-q",
                "-f",
                "%k=%s@%o\n",
            ],
            "",
        )
        .unwrap();
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out, "k1=one@0\nk2=two@1\n",
            "kcat reading strom's {codec} batch"
        );

        if codec == "none" {
            continue;
        }
        let topic = format!("from-kcat-{codec}");
        broker.cli(&["topic", "create", &topic], "");
        let (code, _, err) = kcat(
            &[
                "-P",
                "-b",
                &broker.addr,
                "-t",
                &topic,
                "-z",
                codec,
                "-K",
                ":",
            ],
            "k1:one\nk2:two\n",
        )
        .unwrap();
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = broker.cli(
            &[
                "consume",
                &topic,
                "--from-beginning",
                "--exit-at-end",
                "--format",
                "%k=%s@%o",
            ],
            "",
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out, "k1=one@0\nk2=two@1\n",
            "strom reading kcat's {codec} batch"
        );
    }

    // librdkafka's murmur2 partitioner is the Java client's; keys must land alike.
    broker.cli(&["topic", "create", "keyed", "--partitions", "7"], "");
    let keys = ["user-1", "user-2", "hello", "a", "kafka", "order-77", "zz"];
    let kcat_input: String = keys.iter().map(|k| format!("{k}:kcat\n")).collect();
    let strom_input: String = keys.iter().map(|k| format!("{k}:strom\n")).collect();
    kcat(
        &[
            "-P",
            "-b",
            &broker.addr,
            "-t",
            "keyed",
            "-K",
            ":",
            "-X",
            "topic.partitioner=murmur2",
        ],
        &kcat_input,
    )
    .unwrap();
    broker.cli(&["produce", "keyed", "--key-separator", ":"], &strom_input);
    let (_, out, _) = broker.cli(
        &[
            "consume",
            "keyed",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "%k %s %p",
        ],
        "",
    );
    let mut by_key: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in out.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        by_key
            .entry(f[0].to_string())
            .or_default()
            .push(f[2].to_string());
    }
    assert_eq!(by_key.len(), keys.len(), "{out}");
    for (key, partitions) in by_key {
        assert_eq!(partitions.len(), 2, "{key}: {out}");
        assert_eq!(
            partitions[0], partitions[1],
            "{key} landed differently: {out}"
        );
    }
}
