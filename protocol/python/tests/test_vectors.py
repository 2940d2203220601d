"""The client's encoder and decoder against protocol/vectors: the frames a producer sends and receives."""

import json
from pathlib import Path

import pytest

from allegro_client import wire

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def vector(name):
    description = json.loads((VECTORS / (name + ".json")).read_text())
    return (VECTORS / (name + ".bin")).read_bytes(), description


def test_hello_producer_matches_vector():
    data, description = vector("hello_producer")
    assert description["frames"][0]["role"] == "producer"
    assert wire.hello("hermes-7f3a", b"s3cret") == data


@pytest.mark.parametrize("name", ["publish_single", "publish_batch"])
def test_publish_matches_vector(name):
    data, description = vector(name)
    records = [wire.record(r["producer_seq"], r["event_time_ns"], r["session"].encode(), r["kind"].encode(),
                           r["content_type"].encode(), bytes.fromhex(r["payload_hex"]))
               for r in description["frames"][0]["records"]]
    assert wire.publish(records) == data


@pytest.mark.parametrize("name", ["ping", "pong", "goodbye"])
def test_heartbeat_and_goodbye_match_vectors(name):
    data, description = vector(name)
    fields = description["frames"][0]
    encoded = {"ping": lambda: wire.ping(fields.get("nonce", 0)), "pong": lambda: wire.pong(fields.get("nonce", 0)),
               "goodbye": wire.goodbye}[name]()
    assert encoded == data


@pytest.mark.parametrize("name", ["welcome", "ack", "ping", "pong", "goodbye", "error_frame", "error_unknown_code"])
def test_decoder_reads_relay_frames_in_any_chunking(name):
    data, description = vector(name)
    for chunk in (1, 3, len(data)):
        decoder = wire.Decoder(max_frame=1 << 20)
        frames = []
        for start in range(0, len(data), chunk):
            decoder.feed(data[start:start + chunk])
            frames += decoder.frames()
        assert [fields for _, fields in frames] == description["frames"]


def test_producer_session_vector_round_trip():
    data, description = vector("producer_session")
    decoder = wire.Decoder(max_frame=1 << 20)
    decoder.feed(data)
    # HELLO and PUBLISH are client frames: framed, but not read as fields ("OTHER").
    frames = decoder.frames()
    assert [fields.get("type") for _, fields in frames] == ["OTHER", "WELCOME", "OTHER", "ACK", "PING", "PONG", "GOODBYE"]


@pytest.mark.parametrize("name", ["unknown_type", "empty_frame", "frame_too_large"])
def test_decoder_rejects_invalid_streams(name):
    data, _ = vector(name)
    decoder = wire.Decoder(max_frame=1 << 20)
    decoder.feed(data)
    with pytest.raises(wire.ProtocolError):
        decoder.frames()
