"""kafka-python 2.x, the release most deployed code still pins, against the broker.

kafka-python 2.0.2 negotiates older API versions than 3.x (it predates flexible versions for
most APIs), so it checks that the advertised ranges are wide enough. It lives in its own
virtualenv (`.venv-kafka-python2`, created on first use) because the main one holds 3.x.
"""
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-kafka-python2"
VERSION = "2.0.2"


@pytest.fixture(scope="session")
def kp2_python():
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import kafka; print(kafka.__version__)"],
                           capture_output=True, text=True)
    if probe.stdout.strip() != VERSION:
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"kafka-python=={VERSION}"], check=True)
    return python


def test_kafka_python_2_produce_group_consume_commit(kp2_python, broker, topic_name):
    group = f"kp2-{uuid.uuid4().hex[:8]}"
    r = subprocess.run([str(kp2_python), str(ROOT / "tests" / "kafka_python2" / "flow.py"),
                        broker.bootstrap, topic_name, group],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    events = {e["event"]: e for e in map(json.loads, r.stdout.splitlines())}
    assert events["version"]["version"] == VERSION
    assert events["created"]["topics"] == [topic_name]
    offsets = sorted(map(tuple, events["produced"]["offsets"]))
    assert offsets == [(p, o) for p in (0, 1) for o in range(20)]
    records = events["consumed"]["records"]
    expected = sorted([i % 2, i // 2, f"k{i}", f"v{i}", [["h", str(i)]]] for i in range(40))
    assert records == expected
    assert events["consumed"]["committed"] == {"0": 20, "1": 20}
