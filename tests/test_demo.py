"""`strom demo` end to end: it starts its own broker, produces in parallel, consumes with a
group that splits the partitions, crashes and restarts the broker, checks that everything
survived, and exits 0; a failed check exits non-zero."""

import re
import subprocess

from conftest import REPO_ROOT, strom_bin

DEMO_TIMEOUT_S = 120


def run_demo(*args, tmp_path):
    env_tmp = tmp_path / "tmp"
    env_tmp.mkdir(exist_ok=True)
    return subprocess.run(
        [str(strom_bin()), "demo", *args],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        cwd=str(REPO_ROOT),
        # The demo's temporary directory goes under the test's own tmp dir.
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(env_tmp), "RUST_LOG": "warn"},
    )


def test_demo_runs_every_step_and_passes(tmp_path):
    r = run_demo(tmp_path=tmp_path)
    out = r.stdout
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{out}\nstderr:\n{r.stderr}"
    for step in range(1, 7):
        assert f"[{step}/6]" in out, f"step {step} missing:\n{out}"
    assert 'producer.send("demo-topic", "Hello, Kafka!", partition 0) -> offset 0' in out
    assert 'consumer.poll() -> offset 0: "Hello, Kafka!"' in out
    for p in range(3):
        assert re.search(rf"producer {p} -> partition {p}: 100 messages at offsets", out), out
    shares = re.findall(r"consumer (\d): (\d+) messages from partition (\d) offsets", out)
    assert len(shares) == 3, f"each of the 3 members reads one partition:\n{out}"
    assert sorted(int(s[2]) for s in shares) == [0, 1, 2]
    assert sum(int(s[1]) for s in shares) == 301
    assert "every message read exactly once" in out
    assert out.count("committed offsets of demo-group: partition 0 = 101, partition 1 = 100, partition 2 = 100") == 2
    for p, n in [(0, 101), (1, 100), (2, 100)]:
        assert f"partition {p}: {n} of {n} messages" in out
    assert "demo passed" in out
    assert list((tmp_path / "tmp").iterdir()) == [], "the demo removes its temporary directory"


def test_demo_options_change_the_run_and_keep_data_keeps_it(tmp_path):
    r = run_demo("--messages", "7", "--consumers", "2", "--keep-data", tmp_path=tmp_path)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "demo passed: 22 messages" in r.stdout
    assert "group demo-group with 2 members" in r.stdout
    kept = [p for p in (tmp_path / "tmp").iterdir()]
    assert len(kept) == 1 and (kept[0] / "broker.log").exists() and (kept[0] / "data" / "demo-topic").is_dir()


def test_demo_rejects_bad_arguments(tmp_path):
    r = run_demo("--consumers", "0", tmp_path=tmp_path)
    assert r.returncode != 0
    assert "--consumers" in r.stderr


def test_a_failing_step_exits_non_zero_and_says_why(tmp_path):
    # The demo's broker reads STROM_* settings from the environment: with one connection
    # allowed, the parallel producers cannot connect.
    env_tmp = tmp_path / "tmp"
    env_tmp.mkdir()
    r = subprocess.run(
        [str(strom_bin()), "demo"],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(env_tmp), "RUST_LOG": "off", "STROM_MAX_CONNECTIONS": "1"},
    )
    assert r.returncode == 1, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "demo passed" not in r.stdout
    assert r.stderr.startswith("error: "), r.stderr
    assert "panicked" not in r.stderr
    assert "Data directory and broker log kept in" in r.stdout


def test_cluster_demo_kills_a_leader_and_loses_nothing(tmp_path):
    """`strom demo --cluster`: three nodes, a replicated topic, a leader killed with SIGKILL
    under acks=all load; another node leads, the producer goes on, the group reads every
    acknowledged message, and the killed node rejoins every ISR."""
    r = run_demo("--cluster", tmp_path=tmp_path)
    out = r.stdout
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{out}\nstderr:\n{r.stderr}"
    for step in range(1, 7):
        assert f"[{step}/6]" in out, f"step {step} missing:\n{out}"
    assert len(re.findall(r"partition \d: leader node \d, replicas \[\d, \d, \d\], in sync \[\d, \d, \d\]", out)) == 6
    killed = re.search(r"Killing node (\d), the leader of partition 0", out)
    took_over = re.search(r"node (\d) leads partition 0 after (\d+) ms", out)
    assert killed and took_over and killed.group(1) != took_over.group(1), out
    acked = int(re.search(r"(\d+) messages acknowledged in all", out).group(1))
    assert f"the group read all {acked} acknowledged messages" in out
    assert re.search(r"its first acknowledgement came \d+ ms after the kill", out), out
    assert f"node {killed.group(1)} caught up and is in every partition's ISR again" in out
    assert "demo passed" in out
    assert list((tmp_path / "tmp").iterdir()) == [], "the demo removes its temporary directory"
