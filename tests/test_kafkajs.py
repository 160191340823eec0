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
