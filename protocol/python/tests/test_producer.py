"""The Python producer against the real relay binary: order, outages, crashes, buffer policies."""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from allegro_client import BufferFull, Producer, RelayRefused


def payloads(records):
    return [r["payload"] for r in records]


def test_hundred_thousand_events_arrive_in_order(relay):
    producer = Producer([relay.address], producer_id="bulk")
    for index in range(100_000):
        producer.emit("event-%d" % index, session="s-1", kind="bulk")
    assert producer.close(60)
    assert producer.dropped == 0
    records = relay.tail(100_000)
    assert payloads(records) == ["event-%d" % i for i in range(100_000)]
    assert [r["relay_seq"] for r in records] == list(range(1, 100_001))
    assert {r["session"] for r in records} == {"s-1"} and {r["kind"] for r in records} == {"bulk"}
    assert {r["producer"] for r in records} == {"bulk"}


def test_events_emitted_while_the_relay_is_down_arrive_after_it_returns(relay):
    producer = Producer([relay.address], producer_id="patient", max_backoff=0.2)
    producer.emit("before")
    assert producer.flush(10)
    relay.stop()
    for index in range(1000):
        producer.emit("during-%d" % index)
    assert not producer.flush(0.5), "nothing can be acked while the relay is down"
    relay.restart()
    assert producer.flush(30)
    assert payloads(relay.tail(1001)) == ["before"] + ["during-%d" % i for i in range(1000)]
    assert producer.reconnects >= 1
    producer.close(5)


def test_kill_nine_mid_stream_loses_nothing_acked_and_duplicates_nothing(relay):
    producer = Producer([relay.address], producer_id="steady", max_backoff=0.2)
    total = 50_000
    emitted = threading.Event()

    def emit_all():
        for index in range(total):
            producer.emit("steady-%d" % index)
            if index % 1000 == 0:
                time.sleep(0.005)
        emitted.set()

    thread = threading.Thread(target=emit_all)
    thread.start()
    time.sleep(0.3)
    relay.crash()
    acked_before_crash = producer.acked_through
    relay.restart()
    thread.join(120)
    assert emitted.is_set()
    assert producer.flush(60)
    assert producer.acked_through >= acked_before_crash
    records = relay.tail(total)
    assert sorted(payloads(records), key=lambda p: int(p.split("-")[1])) == ["steady-%d" % i for i in range(total)]
    assert len(set(payloads(records))) == total, "no duplicates"
    order = [int(p.split("-")[1]) for p in payloads(records)]
    assert order == sorted(order), "the producer's order is kept"
    producer.close(5)


def test_drop_oldest_counts_what_it_drops(tmp_path):
    # Nothing listens on this port: every record stays buffered.
    producer = Producer(["127.0.0.1:9"], producer_id="lossy", max_buffer=10, on_full="drop_oldest", max_backoff=0.05)
    for index in range(25):
        producer.emit("x-%d" % index)
    assert producer.dropped == 15
    assert producer.unacked == 10
    assert not producer.close(0.2)


def test_block_policy_raises_after_its_timeout():
    producer = Producer(["127.0.0.1:9"], producer_id="strict", max_buffer=3, block_timeout=0.2, max_backoff=0.05)
    for index in range(3):
        producer.emit("y-%d" % index)
    started = time.monotonic()
    with pytest.raises(BufferFull):
        producer.emit("one too many")
    assert time.monotonic() - started >= 0.2
    assert producer.dropped == 0


def test_wrong_token_is_a_clear_permanent_error(binary, tmp_path):
    from conftest import Relay
    env_relay = None
    os.environ["ALLEGRO_PRODUCER_TOKEN"] = "right"
    try:
        env_relay = Relay(binary, tmp_path / "data")
    finally:
        del os.environ["ALLEGRO_PRODUCER_TOKEN"]
    try:
        producer = Producer([env_relay.address], producer_id="intruder", token="wrong")
        deadline = time.monotonic() + 10
        while producer.error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(producer.error, RelayRefused) and "AUTH_FAILED" in str(producer.error)
        with pytest.raises(RelayRefused):
            producer.emit("rejected")
    finally:
        env_relay.stop()


def test_allegro_emit_has_the_push_flags(relay):
    lines = "".join("line-%d\n" % i for i in range(500))
    result = subprocess.run([sys.executable, "-m", "allegro_client.cli", "--relay", relay.address, "--session", "cli",
                             "--kind", "note", "--producer", "emitter"], input=lines.encode(), capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert "sent 500 records, acked 500" in result.stderr.decode()
    records = relay.tail(500)
    assert payloads(records) == ["line-%d" % i for i in range(500)]
    assert {(r["session"], r["kind"], r["content_type"]) for r in records} == {("cli", "note", "text/plain")}


def test_allegro_emit_says_at_once_why_it_waits_and_ends_with_the_reason():
    # A loopback port nothing listens on.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    started = time.monotonic()
    emit = subprocess.Popen([sys.executable, "-m", "allegro_client.cli", "--relay", "127.0.0.1:%d" % port, "--timeout", "3"],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert emit.stdin is not None and emit.stderr is not None
    emit.stdin.write(b"one\n")
    emit.stdin.close()
    first = emit.stderr.readline().decode()
    assert time.monotonic() - started < 2.5, "the first message comes before the timeout is up"
    assert "cannot reach the relay at 127.0.0.1:%d" % port in first and "retrying for" in first, first
    rest = emit.stderr.read().decode()
    assert emit.wait(timeout=30) == 1
    last = rest.strip().splitlines()[-1]
    assert "gave up after 3 s (--timeout)" in last and "cannot reach the relay" in last and "sent 1 record," in last, rest


def test_allegro_emit_rejects_an_address_without_a_port_without_a_traceback():
    result = subprocess.run([sys.executable, "-m", "allegro_client.cli", "--relay", "localhost"], input=b"",
                            capture_output=True, timeout=30)
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "expected HOST:PORT" in stderr and "Traceback" not in stderr, stderr
