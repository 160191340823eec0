"""KafkaJS (Node.js, its own protocol implementation): admin create, produce, group consume
with commits, and resume after the commit. Skipped when node or KafkaJS is not installed."""

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "kafkajs"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (HERE / "node_modules" / "kafkajs").is_dir(),
    reason="node or KafkaJS not installed (scripts/test installs it when npm is available)",
)


def test_kafkajs_round_trip_with_group_commit(broker, topic_name):
    group = f"js-{uuid.uuid4().hex[:8]}"
    r = subprocess.run(["node", str(HERE / "roundtrip.js"), broker.bootstrap, topic_name, group],
                       capture_output=True, timeout=80, cwd=str(HERE))
    assert r.returncode == 0, f"KafkaJS failed:\n{r.stderr.decode(errors='replace')[-4000:]}"
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    first = out["first"]
    assert sorted(m["value"] for m in first) == sorted(f"js-{i}" for i in range(30))
    for m in first:
        i = int(m["value"].split("-")[1])
        assert m["key"] == f"k{i}" and m["partition"] == i % 3 and m["offset"] == i // 3
    assert [m["value"] for m in out["second"]] == ["after-commit"], out["second"]
    assert out["second"][0]["offset"] == 10


def test_kafkajs_transactions_commit_abort_and_send_offsets(broker, topic_name):
    """KafkaJS's transactional producer: a commit, an abort, and a commit with sendOffsets.
    read_committed sees exactly the committed records in order (aborted ones and the markers
    skipped), read_uncommitted sees the aborted ones too, and the offsets sent in the
    transaction are the group's committed offsets."""
    group = f"js-txn-{uuid.uuid4().hex[:8]}"
    r = subprocess.run(["node", str(HERE / "transactions.js"), broker.bootstrap, topic_name, group],
                       capture_output=True, timeout=100, cwd=str(HERE))
    assert r.returncode == 0, f"KafkaJS failed:\n{r.stderr.decode(errors='replace')[-4000:]}"
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])

    def by_partition(seen):
        return {p: [(m["key"], m["value"]) for m in sorted(seen, key=lambda m: m["offset"]) if m["partition"] == p]
                for p in (0, 1)}

    def expected(tags):
        return {p: [(f"{t}-k{i}", f"{t}-{i}") for t in tags for i in range(4) if i % 2 == p] for p in (0, 1)}

    assert by_partition(out["committed"]) == expected(["one", "three"])
    assert by_partition(out["uncommitted"]) == expected(["one", "aborted", "three"])
    # Each transaction's 2 records per partition plus its marker: offsets 0-1, marker 2,
    # aborted 3-4, marker 5, 6-7, marker 8.
    for p in (0, 1):
        assert sorted(m["offset"] for m in out["committed"] if m["partition"] == p) == [0, 1, 6, 7]
    [entry] = out["offsets"]
    got = {p["partition"]: p["offset"] for p in entry["partitions"]}
    assert got[0] == "7", got
    assert got.get(1, "-1") == "-1", got
