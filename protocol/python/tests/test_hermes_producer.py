"""What the Hermes plugin needs from the producer, against the real relay binary: no one event can
silence it (payload caps, refusal at emit, a relay with a smaller max_frame), and a relay that goes
silent is left for the next one, and taken back only once it has stayed healthy."""

import json
import os
import socket
import threading
import time

import pytest

from allegro_client.producer import Producer, RecordTooLarge, truncate_json, truncate_text
from conftest import Relay
from hermes_support import read_count, read_relay, stop_process


def dumps(value):
    return json.dumps(value, separators=(",", ":")).encode()


def test_a_json_value_over_the_cap_is_cut_to_the_cap_and_marked_with_its_original_size():
    value = {"event": "api_request", "request": {"messages": [{"role": "user", "content": "x" * 50_000}] * 4},
             "model": "m"}
    encoded = dumps(value)
    cut = truncate_json(value, encoded, 16_384, dumps)
    assert cut is not None and len(cut) <= 16_384
    decoded = json.loads(cut)
    assert decoded["truncated"] is True and decoded["original_bytes"] == len(encoded)
    assert decoded["event"] == "api_request" and decoded["model"] == "m", "small fields survive"
    content = decoded["request"]["messages"][0]["content"]
    assert content.startswith("xxxx") and content.endswith("chars]"), "a cut string says how much was cut"
    # A value that is not an object is wrapped; a limit too small for the marker gives None.
    wrapped = json.loads(truncate_json(["y" * 5000], dumps(["y" * 5000]), 1000, dumps))
    assert wrapped["truncated"] is True and wrapped["original_bytes"] == len(dumps(["y" * 5000])) and "value" in wrapped
    assert truncate_json({"a": "b" * 100}, dumps({"a": "b" * 100}), 10, dumps) is None


def test_text_over_the_cap_is_cut_at_a_character_boundary_and_ends_with_its_original_size():
    text = ("é" * 40_000).encode()
    cut = truncate_text(text, 1001)
    assert len(cut) <= 1001
    decoded = cut.decode("utf-8")   # no half character
    assert decoded.endswith("[truncated, original 80000 bytes]")


def test_oversized_events_arrive_truncated_and_the_events_after_them_arrive_too(relay):
    producer = Producer([relay.address], producer_id="capped", max_event_bytes=4096)
    producer.emit({"n": 1, "result": "z" * 100_000}, session="s", kind="tool_result")
    producer.emit("t" * 10_000, session="s", kind="note")
    producer.emit({"n": 3}, session="s", kind="after")
    assert producer.close(10)
    records = read_count(relay, 3)
    assert [r["kind"] for r in records] == ["tool_result", "note", "after"]
    first = json.loads(records[0]["payload"])
    assert first["truncated"] is True and first["original_bytes"] > 100_000 and first["n"] == 1
    assert len(records[0]["payload"].encode()) <= 4096
    assert records[1]["payload"].endswith("[truncated, original 10000 bytes]")
    assert json.loads(records[2]["payload"]) == {"n": 3}
    assert producer.truncated == 2 and producer.refused == 0


def test_a_record_too_large_for_any_frame_is_refused_at_emit_and_the_stream_goes_on(relay):
    producer = Producer([relay.address], producer_id="refuser", max_frame_bytes=65_536)
    producer.emit(b"before", kind="k")
    with pytest.raises(RecordTooLarge) as refused:
        producer.emit(b"\x00" * 70_000, kind="k")   # opaque bytes are never cut
    assert "cannot fit in a frame of 65536 bytes" in str(refused.value)
    assert producer.emitted == 1 and producer.unacked <= 1, "the refused record was never queued"
    # The limit counts the delivered form: producer id, session, kind and content type too.
    room = producer.payload_limit(b"", b"k", b"application/octet-stream")
    producer.emit(b"\xff" * room, kind="k", content_type="application/octet-stream")
    with pytest.raises(RecordTooLarge):
        producer.emit(b"\xff" * (room + 1), kind="k", content_type="application/octet-stream")
    producer.emit(b"after", kind="k")
    assert producer.close(10)
    records = read_count(relay, 3)
    assert [r.get("payload", "") for r in (records[0], records[2])] == ["before", "after"]
    assert len(bytes.fromhex(records[1]["payload_hex"])) == room
    assert producer.error is None and producer.refused == 0


def test_a_relay_with_a_smaller_max_frame_lowers_the_cap_and_nothing_stops_the_stream(binary, tmp_path):
    # The relay starts only after the first events are queued, so they are queued under the
    # configured 1 MiB limit, before any WELCOME said 8192.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    producer = Producer(["127.0.0.1:%d" % port], producer_id="small-frames", max_event_bytes=65_536, max_backoff=0.1)
    producer.emit(b"\x02" * 20_000, kind="early-bytes")
    producer.emit({"n": 1}, kind="first")
    small = Relay(binary, tmp_path / "data", listen="127.0.0.1:%d" % port, extra=["--set", "max_frame_bytes=8192"])
    try:
        # The early 20,000-byte record fits 1 MiB, not this relay: it is dropped and counted, never
        # sent (the relay would close the connection on it).
        assert producer.flush(10)
        assert producer.max_frame_bytes == 8192
        assert producer.refused == 1 and "larger than the relay's max_frame 8192" in producer.last_refusal
        # From now on JSON events are cut to fit this relay's frames.
        producer.emit({"n": 2, "history": ["h" * 3000] * 10}, kind="big")
        producer.emit({"n": 3}, kind="last")
        assert producer.close(10)
        records = read_relay(small)
        assert [r["kind"] for r in records] == ["first", "big", "last"]
        big = json.loads(records[1]["payload"])
        assert big["truncated"] is True and big["original_bytes"] > 30_000
        assert producer.error is None
    finally:
        small.stop()


def quick_relay(binary, path, heartbeat_ms=200, idle_ms=1000):
    path.parent.mkdir(parents=True, exist_ok=True)
    return Relay(binary, path, extra=["--set", "heartbeat_ms=%d" % heartbeat_ms, "--set", "idle_timeout_ms=%d" % idle_ms])


def test_a_silent_relay_is_left_for_the_next_within_its_idle_timeout_and_every_event_lands_once(binary, tmp_path):
    first = quick_relay(binary, tmp_path / "a" / "data", heartbeat_ms=300, idle_ms=1500)
    second = quick_relay(binary, tmp_path / "b" / "data")
    try:
        producer = Producer([first.address, second.address], producer_id="failover", max_backoff=0.2)
        for index in range(100):
            producer.emit("before-%d" % index)
        assert producer.flush(10)
        assert len(read_count(first, 100)) == 100
        stop_process(first.process)   # no RST, no FIN: just silence
        stopped = time.time()
        for index in range(100):
            producer.emit("after-%d" % index)
        assert producer.flush(15), "the second relay acknowledged everything"
        assert producer.failovers == 1
        assert producer.relay == ("127.0.0.1", int(second.address.rsplit(":", 1)[1]))
        on_second = read_relay(second)
        assert [r["payload"] for r in on_second] == ["after-%d" % i for i in range(100)]
        waited = on_second[0]["ingest_ns"] / 1e9 - stopped
        assert waited <= 1.5 + 1.0, "failed over %.2f s after the relay stopped (idle timeout 1.5 s)" % waited
        producer.close(5)
        # What the first relay kept is exactly what it had before it stopped: it never stored the
        # records that sat unread in its socket (they were never acknowledged, and went to the second).
        first.crash()
        first.restart()
        assert [r["payload"] for r in read_relay(first)] == ["before-%d" % i for i in range(100)]
    finally:
        if first.process.poll() is None:
            first.process.kill()
            first.process.wait()
        first.stop()
        second.stop()


def test_the_first_relay_is_taken_back_only_after_it_has_stayed_healthy_for_failback_after(binary, tmp_path):
    first = quick_relay(binary, tmp_path / "a" / "data")
    second = quick_relay(binary, tmp_path / "b" / "data")
    try:
        producer = Producer([first.address, second.address], producer_id="failback", max_backoff=0.1,
                            failback_after=1.5)
        producer.emit("one")
        assert producer.flush(10)
        first.crash()                        # a reset: noticed at once, the second relay takes over
        producer.emit("two")
        assert producer.flush(10)
        first.restart()
        restarted = time.time()
        sent = ["one", "two"]
        deadline = time.monotonic() + 15
        index = 0
        while time.monotonic() < deadline:
            index += 1
            sent.append("tick-%d" % index)
            producer.emit(sent[-1])
            time.sleep(0.05)
            if producer.relay is not None and producer.relay[1] == int(first.address.rsplit(":", 1)[1]) and index > 5:
                producer.emit("back")
                sent.append("back")
                break
        assert producer.flush(10)
        assert producer.relay[1] == int(first.address.rsplit(":", 1)[1]), "it moved back to the first relay"
        producer.close(5)
        on_first, on_second = read_relay(first), read_relay(second)
        after_restart = [r for r in on_first if r["ingest_ns"] / 1e9 >= restarted]
        assert after_restart, "records reached the first relay after it came back"
        assert after_restart[0]["ingest_ns"] / 1e9 - restarted >= 1.5, "not before it had been healthy for 1.5 s"
        # Every event exactly once across the two relays, in the producer's order.
        merged = sorted(on_first + on_second, key=lambda r: r["producer_seq"])
        assert [r["payload"] for r in merged] == sent
        assert on_first[-1]["payload"] == "back"
    finally:
        first.stop()
        second.stop()


def test_a_flush_while_no_relay_answers_gives_up_after_one_more_attempt_not_after_its_timeout():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()                                   # nothing listens there
    producer = Producer(["127.0.0.1:%d" % port], producer_id="nobody-home", max_backoff=5.0)
    producer.emit("lost for now")
    started = time.monotonic()
    assert not producer.flush(30, while_reachable=True)
    assert time.monotonic() - started < 10, "it did not wait out its 30 s timeout"
    assert producer.unreachable and producer.unacked == 1
    # Still unreachable: the next flush tries once more at once (no 5 s backoff) and gives up again.
    started = time.monotonic()
    assert not producer.flush(30, while_reachable=True)
    assert time.monotonic() - started < 10
    producer.close(0.1)


class _SlowProbeProducer(Producer):
    """Once a probe of the first relay has succeeded, the next probe waits 0.8 s before its HELLO:
    a probe handshake is under way when the producer moves back to the first relay."""

    probed = False

    def _handshake(self, host, port, timeout):
        if threading.current_thread().name == "allegro-probe" and self.probed:
            time.sleep(0.8)
        result = super()._handshake(host, port, timeout)
        if threading.current_thread().name == "allegro-probe":
            self.probed = True
        return result


def test_moving_back_to_the_first_relay_waits_for_a_probe_under_way_so_it_is_not_replaced_by_it(binary, tmp_path):
    # The probe says HELLO with the producer's own id: one arriving at the first relay after the
    # producer's connection would close that connection as PRODUCER_REPLACED, and stop the producer.
    first = quick_relay(binary, tmp_path / "a" / "data")
    second = quick_relay(binary, tmp_path / "b" / "data")     # heartbeat 200 ms: a probe every 0.2 s
    try:
        producer = _SlowProbeProducer([first.address, second.address], producer_id="probe-race", max_backoff=0.1,
                                      failback_after=0.6)
        producer.emit("one")
        assert producer.flush(10)
        first.crash()
        producer.emit("two")
        assert producer.flush(10)
        first.restart()
        port = int(first.address.rsplit(":", 1)[1])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (producer.relay is not None and producer.relay[1] == port):
            time.sleep(0.02)
        assert producer.relay is not None and producer.relay[1] == port, "it moved back to the first relay"
        time.sleep(1.5)                       # any probe still under way has said its HELLO by now
        producer.emit("three")
        assert producer.flush(10), "the producer still delivers after moving back"
        assert producer.error is None
        assert producer.close(5)
        merged = sorted(read_relay(first) + read_relay(second), key=lambda r: r["producer_seq"])
        assert [r["payload"] for r in merged] == ["one", "two", "three"]
    finally:
        first.stop()
        second.stop()
