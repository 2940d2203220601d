"""The collector against a scripted relay on a real socket: what it sends at the edges of a
reconnect (the resume point, the credit), and what reaches the consumer when its loop fails."""

import asyncio
import struct

import pytest

from allegro_client import wire
from allegro_client.collector import Collector

_DELIVERED = struct.Struct("<QQQQIBBBB")


class Peer:
    """One connection the collector opened, driven by the test."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    async def read_frame(self):
        (length,) = struct.unpack("<I", await self.reader.readexactly(4))
        body = await self.reader.readexactly(length)
        return body[0], body[1:]

    async def handshake(self, relay_id=b"fake"):
        """Reads HELLO, sends WELCOME, reads SUBSCRIBE: its fields."""
        frame_type, _ = await self.read_frame()
        assert frame_type == wire.HELLO
        self.send(wire.frame(wire.WELCOME, struct.pack("<HHIIII", 1, 0, 1 << 20, 4096, 5000, 15000)
                             + bytes([len(relay_id)]) + relay_id))
        frame_type, body = await self.read_frame()
        assert frame_type == wire.SUBSCRIBE
        start, flags, _, sequence, credit = struct.unpack_from("<BBHQI", body)
        return dict(start=wire.START_NAMES[start], sequence=sequence, credit=credit, name=body[17:].decode())

    def subscribed(self, first, head, committed=0):
        self.send(wire.frame(wire.SUBSCRIBED, struct.pack("<QQQ", first, head, committed)))

    def deliver(self, sequences):
        body = struct.pack("<I", len(sequences))
        for sequence in sequences:
            payload = b"r-%d" % sequence
            body += _DELIVERED.pack(sequence, 1, sequence, 1, len(payload), 1, 0, 0, 0) + b"p" + payload
        self.send(wire.frame(wire.DELIVER, body))

    def send(self, data):
        self.writer.write(data)

    def close(self):
        self.writer.close()


class FakeRelay:
    async def start(self):
        self.peers = asyncio.Queue()
        self.server = await asyncio.start_server(lambda r, w: self.peers.put_nowait(Peer(r, w)), "127.0.0.1", 0)
        self.address = "127.0.0.1:%d" % self.server.sockets[0].getsockname()[1]
        return self

    async def accept(self, timeout=5):
        return await asyncio.wait_for(self.peers.get(), timeout)

    def stop(self):
        self.server.close()


def run(coroutine, timeout=30):
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def test_records_taken_while_a_reconnect_waits_for_subscribed_are_credited_on_the_new_connection():
    """A full window is queued when the connection drops; the new SUBSCRIBE gives credit 0. If the
    consumer takes those records before SUBSCRIBED arrives, their credit is owed to the new
    connection: without it the relay never has credit again and the stream stalls for good."""

    async def scenario():
        relay = await FakeRelay().start()
        collector = Collector(relay.address, name="timmy", window=4, min_backoff=0.01, max_backoff=0.02)
        await collector.start_collecting()
        first = await relay.accept()
        assert (await first.handshake())["credit"] == 4
        first.subscribed(1, 5)
        first.deliver([1, 2, 3, 4])
        for _ in range(200):
            if collector._held == 4:
                break
            await asyncio.sleep(0.01)
        first.close()
        second = await relay.accept()
        subscribe = await second.handshake()
        assert (subscribe["start"], subscribe["sequence"], subscribe["credit"]) == ("sequence", 5, 0)
        items = collector.__aiter__()
        taken = [(await items.__anext__()).relay_seq for _ in range(4)]
        following = asyncio.ensure_future(items.__anext__())  # finishes the batch: all four are taken
        await asyncio.sleep(0.05)
        assert collector._held == 0
        second.subscribed(5, 5)
        frame_type, body = await asyncio.wait_for(second.read_frame(), 2)
        following.cancel()
        await collector.close(timeout=0.2)
        relay.stop()
        return taken, frame_type, body

    taken, frame_type, body = run(scenario())
    assert taken == [1, 2, 3, 4]
    assert frame_type == wire.CREDIT and struct.unpack("<I", body) == (4,)


def test_a_reconnect_resumes_after_a_first_subscription_that_started_at_sequence_1():
    """`latest` on a relay that has assigned nothing yet starts at relay sequence 1. A reconnect
    must ask for sequence 1, not `latest` again: that would skip what arrived in between."""

    async def scenario():
        relay = await FakeRelay().start()
        collector = Collector(relay.address, start="latest", min_backoff=0.01, max_backoff=0.02)
        await collector.start_collecting()
        first = await relay.accept()
        assert (await first.handshake())["start"] == "latest"
        first.subscribed(1, 1)
        for _ in range(200):
            if collector.connected:
                break
            await asyncio.sleep(0.01)
        first.close()
        second = await relay.accept()
        subscribe = await second.handshake()
        await collector.close(timeout=0.2)
        relay.stop()
        return subscribe

    subscribe = run(scenario())
    assert (subscribe["start"], subscribe["sequence"]) == ("sequence", 1)


def test_an_unexpected_failure_in_the_connection_loop_reaches_the_consumer_instead_of_hanging_it():
    async def scenario():
        relay = await FakeRelay().start()
        collector = Collector(relay.address, name="timmy", token="t" * 2000)  # over the 1024-byte limit
        try:
            with pytest.raises(ValueError, match="1024"):
                async for _ in collector:
                    pass
        finally:
            await collector.close(timeout=0.2)
            relay.stop()
        return collector.error

    assert isinstance(run(scenario(), timeout=10), ValueError)
