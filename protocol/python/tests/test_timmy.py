"""HermesBridge against real relays: every relay at once, cross-relay duplicates dropped, failover, sessions."""

import asyncio
import re
import threading
import time

import pytest

from allegro_client import Collector, Producer
from allegro_client.timmy import HermesBridge, SeenWindow, SessionNotFound


def run(coroutine, timeout=90):
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


async def head_of(relay):
    """The next relay sequence the relay will assign (from an ephemeral subscription's SUBSCRIBED)."""
    collector = Collector(relay.address, start="latest")
    await collector.start_collecting()
    for _ in range(200):
        if collector.connected:
            break
        await asyncio.sleep(0.05)
    head = collector.subscription["head_sequence"]
    await collector.close()
    return head


async def read_until_settled(bridge, relays, wanted, timeout=60):
    """Reads the bridge in a task until `wanted` distinct (producer, producer_seq) pairs arrived and
    every relay's stream is read to its head with nothing left queued; returns every event yielded."""
    events = []

    async def reader():
        async for event in bridge.stream_telemetry():
            events.append(event)

    task = asyncio.get_running_loop().create_task(reader())
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if task.done():
                task.result()
            if len({(e.producer, e.producer_seq) for e in events}) < wanted:
                continue
            heads = {relay.address: await head_of(relay) for relay in relays}
            received = {c.address_text: c.last_received for c in bridge.collectors}
            if all(received[a] >= heads[a] - 1 for a in heads) and not bridge._inbox.entries and bridge._handout.open is None:
                await asyncio.sleep(0.2)  # nothing more arrives
                if not bridge._inbox.entries and bridge._handout.open is None:
                    return events
        raise AssertionError("not settled: %d events, %d distinct" % (len(events), len({(e.producer, e.producer_seq) for e in events})))
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


def test_the_same_record_held_by_two_relays_is_given_once_and_both_cursors_move_past_it(relays):
    alpha, beta = relays.start("alpha"), relays.start("beta")
    # As after a failover: alpha holds 1 ... 1000, of which it acknowledged only some; the
    # producer resent 501 ... 1000 to beta and went on there.
    first = Producer([alpha.address], producer_id="twice", first_sequence=1)
    for sequence in range(1, 1001):
        first.emit("r-%d" % sequence)
    assert first.close(30)
    second = Producer([beta.address], producer_id="twice", first_sequence=501)
    for sequence in range(501, 1501):
        second.emit("r-%d" % sequence)
    assert second.close(30)

    async def read():
        bridge = HermesBridge([alpha.address, beta.address], collector="timmy", token="")
        events = await read_until_settled(bridge, [alpha, beta], 1500)
        await bridge.commit()
        assert await bridge.close()
        return events, bridge.stats, bridge.committed

    events, stats, committed = run(read())
    assert sorted(e.producer_seq for e in events) == list(range(1, 1501)), "every record exactly once"
    assert all(e.payload == b"r-%d" % e.producer_seq for e in events)
    assert stats["duplicates_dropped"] == 500
    for relay_id in ("alpha", "beta"):
        sequences = [e.relay_seq for e in events if e.relay_id == relay_id]
        assert sequences == sorted(sequences), "relay order within each relay"
    assert committed == {"alpha": 1000, "beta": 1000}, "dropped duplicates are committed with the rest"


def test_two_relays_with_a_producer_failing_over_between_them_give_every_event_exactly_once(relays):
    alpha, beta = relays.start("alpha"), relays.start("beta")
    total = 20_000
    producer = Producer([alpha.address, beta.address], producer_id="hermes-failover", max_backoff=0.1)

    def emit_all():
        for index in range(total):
            producer.emit("f-%d" % index)
            if index % 100 == 0:
                time.sleep(0.01)  # about 2 s in all

    async def scenario():
        bridge = HermesBridge([alpha.address, beta.address], collector="timmy", token="", max_backoff=0.3)
        thread = threading.Thread(target=emit_all)
        thread.start()
        await asyncio.sleep(0.5)
        alpha.crash()  # kill -9: the producer resends what alpha did not acknowledge to beta
        acked_at_crash = producer.acked_through
        await asyncio.sleep(0.7)
        await asyncio.get_running_loop().run_in_executor(None, alpha.restart)  # its backlog arrives
        events = await read_until_settled(bridge, [alpha, beta], total, timeout=90)
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 60)
        assert await bridge.close()
        return events, acked_at_crash, bridge.stats

    events, acked_at_crash, stats = run(scenario(), timeout=150)
    assert producer.flush(30)
    producer.close(5)
    payloads = [e.payload for e in events]
    assert len(payloads) == total and set(payloads) == {b"f-%d" % i for i in range(total)}, \
        "every event exactly once (%d duplicates dropped)" % stats["duplicates_dropped"]
    by_relay = {e.relay_id for e in events}
    assert by_relay == {"alpha", "beta"}, "both relays hold some of the events"
    assert acked_at_crash < producer.acked_through
    for relay_id in ("alpha", "beta"):
        from_relay = [e for e in events if e.relay_id == relay_id]
        assert [e.relay_seq for e in from_relay] == sorted(e.relay_seq for e in from_relay)
        assert [e.producer_seq for e in from_relay] == sorted(e.producer_seq for e in from_relay), \
            "a producer's order is kept within each relay"


def test_a_relay_that_is_down_does_not_stop_the_others_and_its_backlog_arrives_when_it_returns(binary, relays):
    alpha, beta = relays.start("alpha"), relays.start("beta")
    later = Producer([beta.address], producer_id="on-beta")
    for index in range(100):
        later.emit("b-%d" % index)
    assert later.close(30)
    beta.stop()
    now = Producer([alpha.address], producer_id="on-alpha")
    for index in range(100):
        now.emit("a-%d" % index)
    assert now.close(30)

    async def scenario():
        bridge = HermesBridge([alpha.address, beta.address], collector="timmy", token="", max_backoff=0.2)
        iterator = bridge.stream_telemetry().__aiter__()
        first = [await asyncio.wait_for(iterator.__anext__(), 20) for _ in range(100)]
        await asyncio.get_running_loop().run_in_executor(None, beta.restart)
        second = [await asyncio.wait_for(iterator.__anext__(), 20) for _ in range(100)]
        await bridge.commit()
        assert await bridge.close()
        return first, second, bridge.committed

    first, second, committed = run(scenario())
    assert [e.payload for e in first] == [b"a-%d" % i for i in range(100)]
    assert [e.payload for e in second] == [b"b-%d" % i for i in range(100)]
    assert committed == {"alpha": 100, "beta": 100}


def control_address(relay):
    """The control port's address from the relay's log; it starts listening a moment after the relay."""
    deadline = time.monotonic() + 20
    while True:
        match = re.search(r"event=http_listening address=(\S+)", relay.log_path.read_text())
        if match or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert match, relay.log_path.read_text()
    return "http://" + match.group(1)


def test_get_session_summary_reads_the_control_ports_and_adds_up_the_relays(relays):
    alpha = relays.start("alpha", "--http", "127.0.0.1:0")
    beta = relays.start("beta", "--http", "127.0.0.1:0")
    on_alpha = Producer([alpha.address], producer_id="hermes-a")
    for kind, count in (("model_turn", 6), ("tool_error", 2), ("tool_call", 2)):
        for _ in range(count):
            on_alpha.emit(b"x" * 10, session="20261201_190121_d0353d", kind=kind)
    assert on_alpha.close(30)
    on_beta = Producer([beta.address], producer_id="hermes-b")
    for _ in range(5):
        on_beta.emit(b"y" * 4, session="20261201_190121_d0353d", kind="model_turn")
    assert on_beta.close(30)

    async def ask():
        bridge = HermesBridge([alpha.address, beta.address], control=[control_address(alpha), control_address(beta)])
        summary = None
        for _ in range(100):  # summaries are saved by the spill thread, shortly after the fsync
            try:
                summary = await bridge.get_session_summary("20261201_190121_d0353d")
            except SessionNotFound:
                summary = None
            if summary is not None and summary.records == 15:
                break
            await asyncio.sleep(0.1)
        with pytest.raises(SessionNotFound):
            await bridge.get_session_summary("no/such session")
        return summary

    summary = run(ask())
    assert summary.id == "20261201_190121_d0353d"
    assert (summary.records, summary.bytes, summary.errors) == (15, 6 * 10 + 2 * 10 + 2 * 10 + 5 * 4, 2)
    assert [(k.kind, k.records, k.bytes, k.errors) for k in summary.kinds] == \
        [("model_turn", 11, 80, 0), ("tool_call", 2, 20, 0), ("tool_error", 2, 20, 2)]
    assert [(p.producer, p.records, p.bytes) for p in summary.producers] == [("hermes-a", 10, 100), ("hermes-b", 5, 20)]
    assert 0 < summary.first_seen_ns <= summary.last_seen_ns
    assert sorted(summary.relays) == sorted([control_address(alpha), control_address(beta)])
    assert summary.unreachable == []


def test_the_duplicate_window_keeps_ranges_not_records_and_forgets_the_oldest_past_its_bound():
    window = SeenWindow(max_ranges=3, max_producers=10)
    assert all(window.add("p", s) for s in range(1, 100_001))
    assert window.producers["p"].starts == [1] and window.producers["p"].ends == [100_000]
    assert not window.add("p", 5) and not window.add("p", 100_000)
    # Four separate ranges: the lowest falls out of the window.
    for start in (200_000, 300_000, 400_000):
        assert window.add("p", start)
    assert window.producers["p"].starts == [200_000, 300_000, 400_000]
    assert window.add("p", 5), "below the window: delivered again, and counted"
    assert window.beyond_window == 1
    # Filling a hole merges the ranges around it.
    assert window.add("p", 200_001) and all(window.add("p", s) for s in range(200_002, 300_000))
    assert window.producers["p"].starts == [200_000, 400_000]
    for name in range(20):
        window.add("producer-%d" % name, 1)
    assert len(window.producers) <= 10 and window.forgotten_producers >= 10


def test_the_duplicate_window_is_bounded_in_ranges_across_all_producers():
    window = SeenWindow(max_ranges=1000, max_producers=1000, max_total_ranges=50)
    # Ten producers, each with ten separate ranges: 100 ranges asked for, 50 allowed in all.
    for producer in range(10):
        for start in range(10):
            assert window.add("p%d" % producer, start * 10 + 1)
    assert window.total_ranges == sum(len(r.starts) for r in window.producers.values())
    assert window.total_ranges <= 50 and window.forgotten_producers > 0
    assert "p9" in window.producers, "the producer being added to is never the one forgotten"
    # Merging two ranges gives one back.
    before = window.total_ranges
    for sequence in range(82, 91):
        window.add("p9", sequence)
    assert window.total_ranges == before - 1


@pytest.mark.parametrize("answer, reason", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", "malformed body"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n{}\r\n0\r\n\r\n", "malformed body"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n{}", "malformed body"),
    (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (17 << 20), "sent more than"),
])
def test_a_control_port_that_answers_badly_is_a_control_error_naming_it(answer, reason):
    from allegro_client.timmy import ControlError, _http_get

    async def scenario():
        async def serve(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ControlError, match=reason):
                await _http_get("http://127.0.0.1:%d" % port, "/sessions/x", None, 10)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(scenario(), 30))
