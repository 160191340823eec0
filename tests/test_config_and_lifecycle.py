"""How the broker is started, configured and stopped, and how it waits: settings from the
command line, the environment and a TOML file; startup errors; the start log line; graceful
shutdown; segment rolling by time; long-polling fetches that wake on a produce without
spinning."""

import os
import subprocess
import time

import pytest
from confluent_kafka import TopicPartition

from conftest import free_port, strom_bin
from helpers import consumer, create_topic, produce_values, wait_for_topic


def run_expecting_failure(tmp_path, *args, env=None):
    cmd = [str(strom_bin()), "serve", "--listen", f"127.0.0.1:{free_port()}", "--data-dir",
           str(tmp_path / "data"), *args]
    r = subprocess.run(cmd, capture_output=True, timeout=20, env={**os.environ, "NO_COLOR": "1", **(env or {})})
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def test_unknown_setting_stops_startup_and_names_it(tmp_path):
    code, out = run_expecting_failure(tmp_path, "--set", "no.such.setting=1")
    assert code != 0
    assert "no.such.setting" in out, out


def test_bad_value_stops_startup_and_names_it(tmp_path):
    code, out = run_expecting_failure(tmp_path, "--set", "num.partitions=lots")
    assert code != 0
    assert "num.partitions" in out, out


def test_bad_environment_value_stops_startup(tmp_path):
    code, out = run_expecting_failure(tmp_path, env={"STROM_LOG_RETENTION_MS": "forever"})
    assert code != 0
    assert "log.retention.ms" in out or "STROM_LOG_RETENTION_MS" in out, out


def test_environment_setting_applies_and_command_line_wins(start_broker, topic_name):
    b = start_broker(env={"STROM_NUM_PARTITIONS": "4"})
    produce_values(b.bootstrap, topic_name, [b"x"])
    wait_for_topic(b.bootstrap, topic_name, 4)

    b2 = start_broker(env={"STROM_NUM_PARTITIONS": "4"}, settings={"num.partitions": "2"})
    produce_values(b2.bootstrap, topic_name, [b"x"])
    wait_for_topic(b2.bootstrap, topic_name, 2)


def test_toml_config_file(start_broker, tmp_path, topic_name):
    path = tmp_path / "strom.toml"
    path.write_text('"num.partitions" = 5\n"auto.create.topics.enable" = true\n')
    b = start_broker(extra_args=["--config", str(path)])
    produce_values(b.bootstrap, topic_name, [b"x"])
    wait_for_topic(b.bootstrap, topic_name, 5)


def test_start_log_line_names_listener_and_data_dir(broker):
    text = broker.log_tail()
    assert broker.bootstrap in text, text
    assert str(broker.data_dir) in text, text


def test_sigterm_with_connected_clients_exits_promptly_and_cleanly(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    produce_values(broker.bootstrap, topic_name, [b"a", b"b"], partition=0)
    # A consumer at the end of the log with a fetch parked for up to 10 s (KafkaJS waits 5 s
    # by default): shutdown answers it rather than waiting it out.
    c = consumer(broker.bootstrap, **{"fetch.wait.max.ms": 10000})
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        got = 0
        deadline = time.monotonic() + 10
        while got < 2 and time.monotonic() < deadline:
            m = c.poll(0.2)
            got += m is not None and not m.error()
        assert got == 2
        started = time.monotonic()
        broker.stop()  # asserts exit code 0
        took = time.monotonic() - started
        assert took < 3, f"SIGTERM took {took:.1f}s: shutdown waited out a parked long-poll fetch"
    finally:
        c.close()
    broker.start()
    wait_for_topic(broker.bootstrap, topic_name, 1)


def test_segments_roll_by_time(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1, config={"segment.ms": "1000"})
    produce_values(broker.bootstrap, topic_name, [b"first"], partition=0)
    time.sleep(1.5)
    produce_values(broker.bootstrap, topic_name, [b"second"], partition=0)
    logs = sorted(f for f in os.listdir(broker.partition_dir(topic_name)) if f.endswith(".log"))
    assert logs == ["00000000000000000000.log", "00000000000000000001.log"], logs


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_long_poll_wakes_on_produce_without_spinning(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    c = consumer(broker.bootstrap, **{"fetch.wait.max.ms": 10000, "fetch.min.bytes": 1})
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        c.poll(0.5)  # connect and park a fetch at the end of the empty log
        cpu_before = cpu_seconds(broker.proc.pid)
        idle_until = time.monotonic() + 2
        while time.monotonic() < idle_until:
            assert c.poll(0.2) is None
        idle_cpu = cpu_seconds(broker.proc.pid) - cpu_before
        assert idle_cpu < 0.5, f"broker used {idle_cpu:.2f}s CPU in 2s with one parked fetch"

        sent_at = time.monotonic()
        produce_values(broker.bootstrap, topic_name, [b"wake-up"], partition=0)
        m = None
        while m is None and time.monotonic() < sent_at + 9:
            m = c.poll(0.05)
        assert m is not None and m.value() == b"wake-up"
        # fetch.wait.max.ms is 10 s: a broker that does not wake the parked fetch on append
        # answers only when that runs out.
        assert time.monotonic() - sent_at < 2.0, f"message arrived {time.monotonic() - sent_at:.2f}s after produce"
    finally:
        c.close()
