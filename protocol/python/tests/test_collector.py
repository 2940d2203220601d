"""The asyncio collector and allegro-collect against the real relay binary: volume and order, crashes of
either side, silence, refusals, and the console script in a pipe."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from allegro_client import AuthFailed, Collector, CollectorBusy, Gap, Producer, TelemetryEvent, UnknownCollector
from allegro_client.timmy import HermesBridge


def run(coroutine, timeout=90):
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def push(binary, address, lines, producer, *flags, wait=True):
    """`allegro push` of the given lines (a list of str) as producer `producer`."""
    process = subprocess.Popen([binary, "push", "--relay", address, "--producer", producer] + list(flags),
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    data = "".join(line + "\n" for line in lines).encode()
    if not wait:
        threading.Thread(target=process.communicate, args=(data,), daemon=True).start()
        return process
    _, stderr = process.communicate(data, timeout=120)
    assert process.returncode == 0, stderr.decode()
    return process


def collect_cli(*arguments, env=None):
    return [sys.executable, "-m", "allegro_client.collect_cli"] + list(arguments)


def test_a_million_events_from_four_producers_arrive_once_in_relay_order_through_stream_telemetry(binary, relays):
    relay = relays.start("alpha")
    per_producer = 250_000
    pushes = [push(binary, relay.address, ["p%d-%d" % (p, n) for n in range(per_producer)], "producer-%d" % p,
                   "--batch", "4096", wait=False) for p in range(4)]

    async def consume():
        bridge = HermesBridge([relay.address], collector="timmy", token="")
        expected_seq = 1
        next_number = {}
        last_producer_seq = {}
        count = 0
        async for event in bridge.stream_telemetry():
            assert event.relay_seq == expected_seq, "relay order, no gap, no duplicate"
            expected_seq += 1
            name, number = event.payload.split(b"-")
            assert int(number) == next_number.get(name, 0), "each producer's events once and in its order"
            next_number[name] = int(number) + 1
            assert event.producer_seq > last_producer_seq.get(event.producer, 0)
            last_producer_seq[event.producer] = event.producer_seq
            count += 1
            if count % 1000 == 0:
                await event.commit()
            if count == 4 * per_producer:
                break
        assert await bridge.close()
        return count, next_number, bridge.committed

    count, next_number, committed = run(consume(), timeout=300)
    assert count == 1_000_000
    assert next_number == {b"p%d" % p: per_producer for p in range(4)}
    assert committed == {"alpha": 1_000_000}
    for process in pushes:
        assert process.wait(60) == 0


def test_the_collector_killed_mid_stream_resumes_from_committed_without_gap_or_duplicate_beyond_the_last_commit(binary, relays):
    relay = relays.start("alpha")
    total = 200_000
    push(binary, relay.address, ["e-%d" % n for n in range(total)], "steady", "--batch", "4096", wait=False)
    first = subprocess.Popen(collect_cli("--relay", relay.address, "--collector", "timmy"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    assert first.stdout is not None
    out1 = []
    while len(out1) < 50_000:
        line = first.stdout.readline()
        assert line, first.stderr.read().decode() if first.stderr else ""
        out1.append(json.loads(line))
    first.kill()  # SIGKILL: no goodbye, no last commit
    rest = first.stdout.read()
    first.wait(10)
    out1 += [json.loads(line) for line in rest.split(b"\n") if line.endswith(b"}")]  # a cut last line was never committed
    lines1 = [r["relay_seq"] for r in out1]
    assert lines1 == list(range(1, len(lines1) + 1)), "the first collector wrote a gapless prefix"
    assert len(lines1) < total, "it was killed mid-stream"
    second = subprocess.run(collect_cli("--relay", relay.address, "--collector", "timmy", "--idle-exit-ms", "2000"),
                            capture_output=True, timeout=120)
    assert second.returncode == 0, second.stderr.decode()
    records2 = [json.loads(line) for line in second.stdout.splitlines()]
    seqs2 = [r["relay_seq"] for r in records2]
    resumed_at = seqs2[0]
    assert seqs2 == list(range(resumed_at, total + 1)), "the second collector is gapless to the end"
    assert 1 < resumed_at <= len(lines1) + 1, "it resumes after a commit of the first, and no later than its last line"
    duplicates = len(lines1) - (resumed_at - 1)
    assert duplicates >= 0
    assert {r["payload"] for r in records2} | {r["payload"] for r in out1} == {"e-%d" % n for n in range(total)}
    assert "committed alpha through %d" % total in second.stderr.decode()


def test_a_relay_killed_and_restarted_under_a_running_collector_is_reconnected_by_itself(relays):
    relay = relays.start("alpha")
    total = 30_000
    producer = Producer([relay.address], producer_id="steady", max_backoff=0.2)

    def emit_all():
        for index in range(total):
            producer.emit("steady-%d" % index)
            if index % 100 == 0:
                time.sleep(0.01)  # about 3 s in all: the crash comes mid-stream

    async def consume():
        collector = Collector(relay.address, name="timmy", max_backoff=0.5)
        payloads = []
        distinct = set()
        gaps = []
        last_seq = 0
        thread = threading.Thread(target=emit_all)
        thread.start()
        crashed = False
        acked_at_crash = 0
        async for item in collector:
            if isinstance(item, Gap):
                gaps.append(item)
                assert item.first > last_seq
                last_seq = item.last
                continue
            assert item.relay_seq > last_seq
            last_seq = item.relay_seq
            payloads.append(item.payload)
            distinct.add(item.payload)
            await item.commit()
            if len(payloads) == 5_000 and not crashed:
                relay.crash()
                crashed = True
                acked_at_crash = producer.acked_through
                await asyncio.sleep(0.3)
                await asyncio.get_running_loop().run_in_executor(None, relay.restart)
            if len(distinct) == total:
                break
        thread.join(60)
        assert await collector.close()
        assert producer.emitted == total and acked_at_crash < producer.acked_through, "the relay crashed mid-stream"
        return payloads, gaps, collector.reconnects

    payloads, gaps, reconnects = run(consume(), timeout=120)
    assert producer.flush(30)
    producer.close(5)
    assert reconnects >= 1
    assert len(payloads) == total, "every event exactly once"
    assert sorted(payloads, key=lambda p: int(p.split(b"-")[1])) == [b"steady-%d" % i for i in range(total)]
    assert all(not gap.lost for gap in gaps), "only numbers never assigned are skipped"


def test_a_sigstopped_relay_is_detected_within_idle_timeout_plus_a_second(relays):
    relay = relays.start("alpha", "--set", "heartbeat_ms=500", "--set", "idle_timeout_ms=2000")
    changes = []

    async def watch():
        connected = asyncio.Event()
        lost = asyncio.Event()

        def on_state(collector, what, detail):
            changes.append((time.monotonic(), what, detail))
            (connected if what == "connected" else lost).set()

        collector = Collector(relay.address, name="timmy", on_state=on_state, max_backoff=0.2)
        await collector.start_collecting()
        await asyncio.wait_for(connected.wait(), 10)
        connected.clear()
        await asyncio.sleep(0.6)  # past one heartbeat: the connection is in its steady state
        os.kill(relay.process.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            await asyncio.wait_for(lost.wait(), 10)
        finally:
            os.kill(relay.process.pid, signal.SIGCONT)
        detected = changes[-1][0] - stopped_at
        # Continued, the relay serves again: the collector gets a record published after.
        await asyncio.wait_for(connected.wait(), 15)
        producer = Producer([relay.address], producer_id="after-stop")
        producer.emit("after")
        iterator = collector.__aiter__()
        item = await asyncio.wait_for(iterator.__anext__(), 15)
        producer.close(5)
        await collector.close()
        return detected, item

    detected, item = run(watch(), timeout=60)
    assert detected <= 2.0 + 1.0, "detected %.2f s after SIGSTOP" % detected
    assert detected >= 2.0 - 0.5 - 0.3, "it is the silence that was detected (%.2f s)" % detected
    assert "heard nothing from the relay" in [c for c in changes if c[1] == "disconnected"][0][2]
    assert isinstance(item, TelemetryEvent) and item.payload == b"after"


def test_a_quiet_collector_stays_connected_past_the_relays_idle_timeout(relays):
    relay = relays.start("alpha", "--set", "heartbeat_ms=300", "--set", "idle_timeout_ms=1000")

    async def idle():
        collector = Collector(relay.address, name="timmy")
        await collector.start_collecting()
        for _ in range(100):
            if collector.connected:
                break
            await asyncio.sleep(0.05)
        assert collector.connected
        await asyncio.sleep(3.5)
        state = (collector.connected, collector.connects, collector.last_disconnect)
        await collector.close()
        return state

    assert run(idle()) == (True, 1, None)


def test_the_window_bounds_the_records_a_slow_consumer_holds(binary, relays):
    relay = relays.start("alpha")
    push(binary, relay.address, ["w-%d" % n for n in range(5_000)], "bulk")

    async def slow():
        collector = Collector(relay.address, start="earliest", window=64)
        most = 0
        count = 0
        async for item in collector:
            most = max(most, collector._held)
            count += 1
            if count % 500 == 0:
                await asyncio.sleep(0.01)
            if count == 5_000:
                break
        await collector.close()
        return most, count

    most, count = run(slow())
    assert count == 5_000
    assert 0 < most <= 64


def test_a_wrong_token_and_an_unconfigured_name_raise_typed_errors_that_say_what_to_configure(binary, relays, monkeypatch):
    monkeypatch.setenv("ALLEGRO_COLLECTOR_TOKEN", "right")
    relay = relays.start("alpha")
    monkeypatch.delenv("ALLEGRO_COLLECTOR_TOKEN")

    async def first_item(source):
        async for item in source:
            return item

    with pytest.raises(AuthFailed) as refused:
        run(first_item(Collector(relay.address, name="timmy", token="wrong")), timeout=20)
    assert refused.value.name == "AUTH_FAILED" and refused.value.code == 5
    assert "collector_token" in str(refused.value) and relay.address in str(refused.value)

    with pytest.raises(UnknownCollector) as unknown:
        run(first_item(Collector(relay.address, name="nobody", token="right")), timeout=20)
    assert unknown.value.name == "UNKNOWN_COLLECTOR"
    assert "nobody" in str(unknown.value) and "durable_collectors" in str(unknown.value)

    with pytest.raises(UnknownCollector):
        run(first_item(HermesBridge([relay.address], collector="nobody", token="right").stream_telemetry()), timeout=20)

    result = subprocess.run(collect_cli("--relay", relay.address, "--collector", "timmy", "--token", "wrong"),
                            capture_output=True, timeout=30)
    assert result.returncode == 1
    assert "AUTH_FAILED" in result.stderr.decode() and "Traceback" not in result.stderr.decode()


def test_a_collector_whose_name_a_newer_connection_took_over_stops_instead_of_taking_it_back(binary, relays):
    relay = relays.start("alpha")
    push(binary, relay.address, ["one"], "p1")

    async def scenario():
        older = Collector(relay.address, name="timmy", start="earliest")
        items = older.__aiter__()
        first = await items.__anext__()
        assert isinstance(first, TelemetryEvent) and first.payload == b"one"
        newer = Collector(relay.address, name="timmy", start="earliest")
        newer_items = newer.__aiter__()
        assert (await newer_items.__anext__()).payload == b"one"
        with pytest.raises(CollectorBusy) as busy:
            await items.__anext__()
        # The newer one keeps the name: it still receives what comes next.
        push(binary, relay.address, ["two"], "p2")
        assert (await newer_items.__anext__()).payload == b"two"
        await newer.close()
        return busy.value

    busy = run(scenario(), timeout=30)
    assert busy.name == "COLLECTOR_BUSY" and "one collector per durable name" in str(busy)


def test_allegro_collect_writes_payloads_and_json_lines_into_a_pipe(binary, relays):
    relay = relays.start("alpha")
    push(binary, relay.address, ["line-%d" % n for n in range(1000)], "writer", "--session", "s-1", "--kind", "note")
    payloads = subprocess.run(collect_cli("--relay", relay.address, "--collector", "", "--from", "earliest",
                                          "--format", "payload", "--count", "1000"), capture_output=True, timeout=60)
    assert payloads.returncode == 0, payloads.stderr.decode()
    assert payloads.stdout == b"".join(b"line-%d\n" % n for n in range(1000))

    lines = subprocess.run(collect_cli("--relay", relay.address, "--from", "earliest", "--collector", "timmy",
                                       "--count", "600"), capture_output=True, timeout=60)
    assert lines.returncode == 0, lines.stderr.decode()
    records = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [r["relay_seq"] for r in records] == list(range(1, 601))
    assert {(r["relay_id"], r["producer"], r["session"], r["kind"], r["content_type"]) for r in records} == \
        {("alpha", "writer", "s-1", "note", "text/plain")}
    assert [r["payload"] for r in records] == ["line-%d" % n for n in range(600)]
    assert "committed alpha through 600" in lines.stderr.decode()
    # The next run resumes just after what the first one wrote.
    rest = subprocess.run(collect_cli("--relay", relay.address, "--count", "400"), capture_output=True, timeout=60)
    assert [json.loads(line)["payload"] for line in rest.stdout.splitlines()] == ["line-%d" % n for n in range(600, 1000)]


def test_allegro_collect_exits_cleanly_on_sigterm_with_its_last_commit_sent(binary, relays):
    relay = relays.start("alpha")
    push(binary, relay.address, ["t-%d" % n for n in range(3000)], "writer")
    process = subprocess.Popen(collect_cli("--relay", relay.address, "--collector", "timmy", "--format", "payload"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    received = [process.stdout.readline() for _ in range(3000)]
    assert received[-1] == b"t-2999\n"
    process.send_signal(signal.SIGTERM)
    rest, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()
    assert rest == b""
    assert "wrote 3000 events; committed alpha through 3000" in stderr.decode()
    assert "not confirmed" not in stderr.decode()

    async def resume_point():
        collector = Collector(relay.address, name="timmy")
        await collector.start_collecting()
        for _ in range(200):
            if collector.connected:
                break
            await asyncio.sleep(0.05)
        answer = collector.subscription
        await collector.close()
        return answer

    answer = run(resume_point())
    assert answer["committed"] == 3000 and answer["first_sequence"] == 3001


def test_an_ephemeral_collector_whose_consumer_commits_is_not_refused_and_keeps_collecting(binary, relays):
    """commit() on an ephemeral subscription is a no-op: a COMMIT frame would get NOT_PERMITTED
    (permanent) and stop the collector, and allegro-collect --collector '' with it."""
    relay = relays.start("alpha")
    push(binary, relay.address, ["one"], "p1")

    async def scenario():
        collector = Collector(relay.address, start="earliest", commit_interval_ms=10)
        items = collector.__aiter__()
        first = await asyncio.wait_for(items.__anext__(), 10)
        await first.commit()
        await collector.commit()
        await asyncio.sleep(0.3)  # well past the commit interval
        await asyncio.get_running_loop().run_in_executor(None, push, binary, relay.address, ["two"], "p2")
        second = await asyncio.wait_for(items.__anext__(), 10)
        confirmed = await collector.close()
        return first.payload, second.payload, confirmed, collector.error

    assert run(scenario(), timeout=30) == (b"one", b"two", True, None)

    process = subprocess.Popen(collect_cli("--relay", relay.address, "--collector", "", "--from", "earliest",
                                           "--format", "payload", "--idle-exit-ms", "1500"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    push(binary, relay.address, ["three"], "p3")
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err.decode()
    assert out == b"one\ntwo\nthree\n" and "NOT_PERMITTED" not in err.decode()
