"""The collector's encoder and decoder against protocol/vectors: the frames a collector sends and receives."""

import asyncio
import json
import struct
from pathlib import Path

import pytest

from allegro_client import wire
from allegro_client.collector import Collector, ProtocolViolation, _Wire

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def vector(name):
    description = json.loads((VECTORS / (name + ".json")).read_text())
    return (VECTORS / (name + ".bin")).read_bytes(), description


def test_hello_collector_matches_vector():
    data, description = vector("hello_collector")
    fields = description["frames"][0]
    assert fields["role"] == "collector"
    assert wire.hello(fields["client_id"], b"", role=wire.ROLE_COLLECTOR) == data


@pytest.mark.parametrize("name", ["subscribe_earliest", "subscribe_latest", "subscribe_committed", "subscribe_sequence",
                                  "subscribe_live"])
def test_subscribe_matches_vector(name):
    data, description = vector(name)
    fields = description["frames"][0]
    encoded = wire.subscribe(fields["start"], fields["credit"], fields["name"], fields.get("sequence", 0),
                             fields.get("live", False))
    assert encoded == data


@pytest.mark.parametrize("name", ["subscribe_live_named", "subscribe_committed_no_name"])
def test_subscribe_encoder_refuses_what_the_relay_rejects(name):
    _, description = vector(name)
    assert description["error"]["code"] == "MALFORMED_FRAME"
    with pytest.raises(ValueError):
        if name == "subscribe_live_named":
            wire.subscribe("earliest", 10, "timmy", live=True)
        else:
            wire.subscribe("committed", 10, "")


def test_credit_and_commit_match_vectors():
    credit, credit_description = vector("credit")
    commit, commit_description = vector("commit")
    assert wire.credit(credit_description["frames"][0]["credit"]) == credit
    assert wire.commit(commit_description["frames"][0]["through"]) == commit


@pytest.mark.parametrize("name", ["subscribed", "deliver_batch", "committed", "skip", "welcome", "ping", "error_frame",
                                  "error_unknown_code", "goodbye"])
def test_collector_decoder_reads_relay_frames_as_the_vector_says(name):
    data, description = vector(name)
    (length,) = struct.unpack_from("<I", data)
    assert len(data) == 4 + length
    fields = wire.decode_collector_body(data[4], data[5:])
    expected = description["frames"][0]
    if name == "welcome":
        expected = {k: v for k, v in expected.items() if k != "flags"}
    if name.startswith("error"):
        fields = {k: v for k, v in fields.items() if k != "name"}
        expected = {k: v for k, v in expected.items() if k not in ("name", "message_length")}
    assert {k: v for k, v in fields.items() if k in expected} == expected


def test_skip_whose_first_is_after_its_last_is_rejected():
    data, description = vector("skip_reversed")
    assert description["error"]["kind"] == "invalid_value"
    with pytest.raises(wire.ProtocolError):
        wire.decode_collector_body(data[4], data[5:])


def deliver_variants():
    data, _ = vector("deliver_batch")
    body = data[5:]
    yield "a payload that runs past the frame", body[:-1]
    yield "a byte after the last record", body + b"\x00"
    yield "a count of zero", struct.pack("<I", 0)
    yield "a count above the records there", struct.pack("<I", 3) + body[4:]
    # The first record's producer length (offset 4 + 36) set to 0.
    yield "an empty producer id", body[:40] + b"\x00" + body[41:]


@pytest.mark.parametrize("why,body", list(deliver_variants()), ids=[why for why, _ in deliver_variants()])
def test_invalid_deliver_bodies_are_rejected(why, body):
    with pytest.raises(wire.ProtocolError):
        wire.decode_collector_body(wire.DELIVER, body)


def test_deliver_with_invalid_utf8_in_a_text_is_rejected():
    data, _ = vector("deliver_batch")
    body = bytearray(data[5:])
    at = body.index(b"hermes-7f3a")
    body[at] = 0xC0  # an overlong-form lead byte
    with pytest.raises(wire.ProtocolError):
        wire.decode_collector_body(wire.DELIVER, bytes(body))


def feed(protocol, data, chunk):
    for start in range(0, len(data), chunk):
        piece = data[start:start + chunk]
        buffer = protocol.get_buffer(len(piece))
        buffer[:len(piece)] = piece
        protocol.buffer_updated(len(piece))


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_the_collector_connection_splits_a_session_of_relay_frames_in_any_chunking(chunk):
    """WELCOME, SUBSCRIBED, DELIVER, COMMITTED and SKIP from the vectors, through the collector's
    own receive path, fed one byte at a time, in odd pieces, and whole."""
    stream = b"".join(vector(name)[0] for name in ("welcome", "subscribed"))
    deliver, deliver_description = vector("deliver_batch")
    stream += deliver + vector("committed")[0]
    # A SKIP after the delivered records (relay sequences 103 ... 110).
    stream += wire.frame(wire.SKIP, struct.pack("<QQ", 103, 110))

    async def run():
        collector = Collector("127.0.0.1:9", name="timmy", window=10)
        protocol = _Wire(collector)
        collector._claim("allegro")
        collector._wire = protocol
        protocol.start = "committed"
        feed(protocol, stream, chunk)
        assert not protocol.failed
        assert protocol.welcome.result()["relay_id"] == "relay-1"
        assert protocol.subscribed.result() == {"type": "SUBSCRIBED", "first_sequence": 101, "head_sequence": 250,
                                                "committed": 100}
        deliver_batch = collector._inbox.entries.popleft()
        expected = deliver_description["frames"][0]["records"]
        assert [(e.relay_seq, e.producer, e.producer_seq, e.session, e.kind, e.content_type, e.event_time_ns,
                 e.ingest_ns, e.payload.hex()) for e in deliver_batch.items] == \
            [(r["relay_seq"], r["producer"], r["producer_seq"], r["session"], r["kind"], r["content_type"],
              r["event_time_ns"], r["ingest_ns"], r["payload_hex"]) for r in expected]
        assert all(type(e.payload) is bytes for e in deliver_batch.items)
        skip_batch = collector._inbox.entries.popleft()
        assert (skip_batch.items[0].first, skip_batch.items[0].last, skip_batch.items[0].lost) == (103, 110, False)
        assert collector.committed == 102
        assert collector.last_received == 110

    asyncio.run(run())


def test_a_relay_sequence_that_goes_backwards_is_a_protocol_violation():
    deliver, _ = vector("deliver_batch")
    stream = vector("welcome")[0] + vector("subscribed")[0] + deliver + deliver

    async def run():
        collector = Collector("127.0.0.1:9", name="timmy")
        protocol = _Wire(collector)
        collector._claim("allegro")
        collector._wire = protocol
        feed(protocol, stream, len(stream))
        assert protocol.failed
        assert isinstance(protocol.closed.result(), ProtocolViolation)
        assert "delivered relay sequence 101 after 102" in str(protocol.closed.result())

    asyncio.run(run())


def test_a_welcome_whose_relay_id_is_not_utf8_is_a_protocol_error_not_a_crash():
    body = struct.pack("<HHIIII", 1, 0, 1 << 20, 4096, 5000, 15000) + bytes([2, 0xFF, 0xFE])
    with pytest.raises(wire.ProtocolError, match="relay_id is not UTF-8"):
        wire.decode_body(wire.WELCOME, body)
