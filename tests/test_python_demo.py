"""The Python package's demonstration (`clients/python/examples/demo.py`) runs end to end
against the real binary: its own broker on a free port, three producer threads, a group of
three consumers, every message exactly once, then kill -9, restart, and everything (messages
and the group's offsets) still there. It exits non-zero if any of its checks fails."""

import os
import subprocess
import sys

from conftest import REPO_ROOT, strom_bin

DEMO = REPO_ROOT / "clients" / "python" / "examples" / "demo.py"


def test_the_python_demo_passes():
    out = subprocess.run(
        [sys.executable, str(DEMO), "--strom", str(strom_bin()), "--messages", "300"],
        capture_output=True, text=True, timeout=80, env=dict(os.environ),
    )
    assert out.returncode == 0, f"demo failed:\n{out.stdout}\n{out.stderr}"
    assert "All checks passed." in out.stdout
    assert "every one of the 900 messages was read" in out.stdout
    assert "a member of the group resumes where the group left off" in out.stdout
