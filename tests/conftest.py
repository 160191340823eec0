"""Fixtures that run the real `strom` binary for the integration tests.

Every test that takes `broker` gets its own broker process on a free port with a fresh
temporary data directory, so tests never see each other's topics. `start_broker(...)`
starts one with extra `--set name=value` settings. The broker's stderr goes to a file
that is printed with the test's output when the test fails.

The binary is `$STROM_BIN`, or `target/release/strom` in the repository (built by
`scripts/test`).
"""

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import helpers

REPO_ROOT = Path(__file__).resolve().parent.parent

# Settings that keep tests fast: no join delay for the first group member, and a
# retention task that runs often enough for a test to watch it work.
TEST_SETTINGS = {
    "group.initial.rebalance.delay.ms": "0",
    "log.retention.check.interval.ms": "500",
}

# Bounds on waiting for the broker process; a broker that needs longer is broken.
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0


def strom_bin():
    path = Path(os.environ.get("STROM_BIN", REPO_ROOT / "target" / "release" / "strom"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One `strom serve` process; its port and data directory stay fixed across restarts."""

    def __init__(self, data_dir, log_path, settings=None, extra_args=None, env=None):
        self.port = free_port()
        self.host = "127.0.0.1"
        self.bootstrap = f"{self.host}:{self.port}"
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.settings = dict(TEST_SETTINGS)
        self.settings.update(settings or {})
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})
        self.proc = None
        self.starts = 0

    def command(self):
        cmd = [
            str(strom_bin()),
            "serve",
            "--listen",
            self.bootstrap,
            "--data-dir",
            str(self.data_dir),
        ]
        for name, value in self.settings.items():
            cmd += ["--set", f"{name}={value}"]
        return cmd + self.extra_args

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        binary = strom_bin()
        if not binary.exists():
            pytest.fail(f"strom binary not found at {binary}; run `cargo build --release -p strom` or set STROM_BIN")
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
        log.flush()
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env["NO_COLOR"] = "1"
        env.update(self.env)
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.data_dir.parent)
        )
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                pytest.fail(f"strom exited with code {code} during startup; log:\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"strom did not accept connections within {START_TIMEOUT_S}s; log:\n{self.log_tail()}")

    def stop(self):
        """Graceful shutdown: SIGTERM, then wait for the process to exit on its own."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"strom did not exit within {STOP_TIMEOUT_S}s of SIGTERM")
        assert code == 0, f"strom exited with code {code} after SIGTERM; log:\n{self.log_tail()}"

    def kill9(self):
        """Crash the broker with SIGKILL, then start it again on the same port and data dir."""
        self.kill9_only()
        return self.start()

    def kill9_only(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def restart(self):
        self.stop()
        return self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, max_bytes=20000):
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "(no broker log)"
        return data[-max_bytes:].decode(errors="replace")

    def partition_dir(self, topic, partition=0):
        return self.data_dir / topic / f"partition-{partition}"


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture
def start_broker(request, tmp_path):
    """Factory: `start_broker(settings={...}, extra_args=[...], env={...}, data_dir=...)` returns
    a running Broker (on a fresh directory under the test's tmp dir unless `data_dir` is given,
    e.g. one on a small disk)."""
    brokers = []

    def start(settings=None, extra_args=None, env=None, data_dir=None):
        n = len(brokers)
        if data_dir is None:
            data_dir = tmp_path / f"data{n}"
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        b = Broker(data_dir, tmp_path / f"broker{n}.log", settings, extra_args, env)
        brokers.append(b)
        return b.start()

    yield start

    failed = any(getattr(request.node, "rep_" + when, None) and getattr(request.node, "rep_" + when).failed
                 for when in ("setup", "call"))
    helpers.forget_clients()
    for b in brokers:
        crashed = b.proc is not None and b.proc.poll() not in (None, 0, -signal.SIGKILL)
        if b.alive():
            b.proc.send_signal(signal.SIGTERM)
            try:
                b.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                b.proc.kill()
                b.proc.wait()
        if failed or crashed:
            print(f"\n----- strom log ({b.bootstrap}, {b.data_dir}) -----\n{b.log_tail()}")


@pytest.fixture
def broker(start_broker):
    return start_broker()


@pytest.fixture
def topic_name(request):
    """A topic name unique to this test (and legal for Kafka)."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:80]
    return f"t-{base}-{uuid.uuid4().hex[:6]}"
