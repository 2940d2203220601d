#!/usr/bin/env python3
"""Writes the protocol v1 test vectors: NAME.bin (the bytes) and NAME.json (what a decoder must return).

An encoder independent of the Swift one, written from PROTOCOL.md. Run it from anywhere:
    python3 protocol/vectors/generate.py           # rewrite the vectors
    python3 protocol/vectors/generate.py --check   # exit 1 if the committed files differ
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

T = dict(HELLO=0x01, WELCOME=0x02, PUBLISH=0x10, ACK=0x11, SUBSCRIBE=0x20, SUBSCRIBED=0x21,
         DELIVER=0x22, CREDIT=0x23, COMMIT=0x24, COMMITTED=0x25, SKIP=0x26, PING=0x30, PONG=0x31,
         GOODBYE=0x3E, ERROR=0x3F)
ERROR_NAMES = {1: "MALFORMED_FRAME", 2: "FRAME_TOO_LARGE", 3: "UNKNOWN_FRAME_TYPE",
               4: "UNSUPPORTED_VERSION", 5: "AUTH_FAILED", 6: "NOT_PERMITTED", 7: "UNEXPECTED_FRAME",
               8: "HANDSHAKE_TIMEOUT", 9: "IDLE_TIMEOUT", 10: "TOO_MANY_CONNECTIONS",
               11: "CURSOR_UNAVAILABLE", 12: "BATCH_TOO_LARGE", 13: "COMMIT_OUT_OF_RANGE",
               14: "UNKNOWN_COLLECTOR", 15: "COLLECTOR_BUSY", 16: "SHUTTING_DOWN", 17: "INTERNAL_ERROR",
               18: "PRODUCER_REPLACED", 19: "RECORD_TOO_LARGE"}


def frame(type_name, body=b""):
    t = T[type_name] if isinstance(type_name, str) else type_name
    return struct.pack("<IB", len(body) + 1, t) + body


def s8(text):
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<B", len(raw)) + raw


def hello(role, client_id, token, lo=1, hi=1, magic=b"ALGR"):
    role_byte = {"producer": 1, "collector": 2}.get(role, role)
    body = magic + struct.pack("<HHBB", lo, hi, role_byte, 0) + s8(client_id)
    body += struct.pack("<H", len(token)) + token
    desc = dict(type="HELLO", min_version=lo, max_version=hi, role=role, client_id=client_id,
                token_length=len(token))
    return frame("HELLO", body), desc


def welcome(relay_id="relay-1", max_frame=1 << 20, max_batch=4096, hb=5000, idle=15000):
    body = struct.pack("<HHIIII", 1, 0, max_frame, max_batch, hb, idle) + s8(relay_id)
    desc = dict(type="WELCOME", version=1, max_frame=max_frame, max_batch=max_batch,
                heartbeat_ms=hb, idle_timeout_ms=idle, relay_id=relay_id)
    return frame("WELCOME", body), desc


def pub_record(seq, ts, session, kind, ctype, payload):
    s, k, c = session.encode(), kind.encode(), ctype.encode()
    raw = struct.pack("<QQIBBBB", seq, ts, len(payload), len(s), len(k), len(c), 0) + s + k + c + payload
    desc = dict(producer_seq=seq, event_time_ns=ts, session=session, kind=kind, content_type=ctype,
                payload_hex=payload.hex())
    return raw, desc


def publish(records):
    encoded = [pub_record(*r) for r in records]
    body = struct.pack("<I", len(encoded)) + b"".join(e[0] for e in encoded)
    return frame("PUBLISH", body), dict(type="PUBLISH", count=len(encoded), records=[e[1] for e in encoded])


def del_record(rseq, ingest, producer, pseq, ts, session, kind, ctype, payload):
    p, s, k, c = producer.encode(), session.encode(), kind.encode(), ctype.encode()
    raw = struct.pack("<QQQQIBBBB", rseq, ingest, pseq, ts, len(payload), len(p), len(s), len(k), len(c))
    raw += p + s + k + c + payload
    desc = dict(relay_seq=rseq, ingest_ns=ingest, producer=producer, producer_seq=pseq, event_time_ns=ts,
                session=session, kind=kind, content_type=ctype, payload_hex=payload.hex())
    return raw, desc


def deliver(records):
    encoded = [del_record(*r) for r in records]
    body = struct.pack("<I", len(encoded)) + b"".join(e[0] for e in encoded)
    return frame("DELIVER", body), dict(type="DELIVER", count=len(encoded), records=[e[1] for e in encoded])


def u64(type_name, key, value):
    return frame(type_name, struct.pack("<Q", value)), {"type": type_name, key: value}


def subscribe(start, credit, name, sequence=0, live=False):
    code = ["earliest", "latest", "committed", "sequence"].index(start)
    body = struct.pack("<BBHQI", code, 1 if live else 0, 0, sequence, credit) + s8(name)
    desc = dict(type="SUBSCRIBE", start=start)
    if start == "sequence":
        desc["sequence"] = sequence
    desc.update(credit=credit, name=name)
    if live:
        desc["live"] = True
    return frame("SUBSCRIBE", body), desc


def error(code, message):
    raw = message.encode()
    body = struct.pack("<HH", code, len(raw)) + raw
    return frame("ERROR", body), dict(type="ERROR", code=code, name=ERROR_NAMES.get(code, "UNKNOWN"), message=message)


TS = 1_764_000_000_123_456_789
JSON_EVENT = b'{"event":"model_turn","model":"hermes-3","tokens_in":812,"tokens_out":96}'


def vectors():
    v = []

    def ok(name, description, *frames, negotiate=None):
        item = dict(name=name, description=description, bytes=b"".join(f[0] for f in frames),
                    frames=[f[1] for f in frames], error=None)
        if negotiate:
            item["negotiate"] = negotiate
        v.append(item)

    def bad(name, description, data, kind, code, offset, frames=(), limits=None, relay=None):
        item = dict(name=name, description=description, bytes=data, frames=list(frames),
                    error=dict(kind=kind, code=code, offset=offset))
        if relay:
            item["error"]["relay"] = relay
        if limits:
            item["limits"] = limits
        v.append(item)

    # Valid frames, one of each type.
    ok("hello_producer", "a producer's HELLO with a token", hello("producer", "hermes-7f3a", b"s3cret"))
    ok("hello_collector", "a collector's HELLO with an empty token", hello("collector", "timmy", b""))
    ok("hello_version_range", "a HELLO offering versions 1 to 3: the relay accepts version 1",
       hello("producer", "p", b"t", lo=1, hi=3), negotiate=dict(version=1))
    ok("hello_unsupported_version", "a HELLO offering only versions 2 to 3: decodes, but a v1 relay answers "
       "ERROR UNSUPPORTED_VERSION", hello("producer", "p", b"t", lo=2, hi=3),
       negotiate=dict(error="UNSUPPORTED_VERSION"))
    ok("welcome", "the relay's WELCOME", welcome())
    ok("publish_single", "one record", publish([(1, TS, "sess-1", "model_turn", "application/json", JSON_EVENT)]))
    ok("publish_batch", "three records: empty fields, non-ASCII text, binary payload", publish([
        (7, TS, "", "", "", b""),
        (8, TS + 1, "séance-✓", "tool_call", "text/plain", "héllo".encode()),
        (10, TS + 2, "s", "k", "application/octet-stream", bytes(range(256))),
    ]))
    ok("ack", "cumulative acknowledgement", u64("ACK", "through", 10))
    ok("subscribe_earliest", "ephemeral subscription from the oldest record", subscribe("earliest", 1000, ""))
    ok("subscribe_latest", "ephemeral subscription to new records only", subscribe("latest", 64, ""))
    ok("subscribe_live", "ephemeral subscription asking for records before they are fsync'd",
       subscribe("latest", 64, "", live=True))
    ok("subscribe_committed", "durable collector resuming after its commit", subscribe("committed", 4096, "timmy"))
    ok("subscribe_sequence", "durable collector from an explicit sequence",
       subscribe("sequence", 10, "timmy", sequence=123456789))
    ok("subscribed", "the relay's answer to SUBSCRIBE", (
        frame("SUBSCRIBED", struct.pack("<QQQ", 101, 250, 100)),
        dict(type="SUBSCRIBED", first_sequence=101, head_sequence=250, committed=100)))
    ok("deliver_batch", "two delivered records from two producers", deliver([
        (101, TS + 50, "hermes-7f3a", 1, TS, "sess-1", "model_turn", "application/json", JSON_EVENT),
        (102, TS + 60, "hermes-9b21", 44, TS + 5, "sess-2", "tool_result", "", b"\x00\xff"),
    ]))
    ok("credit", "more flow-control credit", (frame("CREDIT", struct.pack("<I", 512)), dict(type="CREDIT", credit=512)))
    ok("commit", "commit a cursor", u64("COMMIT", "through", 102))
    ok("committed", "the relay confirms a commit", u64("COMMITTED", "through", 102))
    ok("skip", "sequences 200 to 263 were never assigned (a crash), not lost",
       (frame("SKIP", struct.pack("<QQ", 200, 263)), dict(type="SKIP", first=200, last=263)))
    ok("ping", "heartbeat", u64("PING", "nonce", 42))
    ok("pong", "heartbeat answer", u64("PONG", "nonce", 42))
    ok("goodbye", "clean close", (frame("GOODBYE"), dict(type="GOODBYE")))
    ok("error_frame", "an ERROR with a message", error(11, "cursor 5 is older than the oldest record held (900)"))
    ok("error_unknown_code", "an ERROR with a code this version does not define: still decodes", error(999, "future"))
    ok("producer_session", "a whole producer conversation, both directions concatenated",
       hello("producer", "hermes-7f3a", b"tok"), welcome(),
       publish([(1, TS, "s", "k", "application/json", b"{}"), (2, TS + 1, "s", "k", "application/json", b"[]")]),
       u64("ACK", "through", 2), u64("PING", "nonce", 1), u64("PONG", "nonce", 1), (frame("GOODBYE"), dict(type="GOODBYE")))

    # Invalid streams.
    h, hd = hello("producer", "p", b"")
    waits = "waits for the rest: ERROR IDLE_TIMEOUT idle_timeout_ms after the last byte, or a close if the peer closes"
    bad("truncated_prefix", "two bytes of a length prefix, then end of stream", b"\x05\x00", "truncated", None, 0,
        relay=waits)
    pub, pubd = publish([(1, TS, "s", "k", "t", b"0123456789")])
    bad("truncated_body", "a PUBLISH cut off halfway, after a valid HELLO", h + pub[: len(pub) // 2],
        "truncated", None, len(h), frames=[hd], relay=waits)
    bad("frame_too_large", "a length prefix of 0xFFFFFFFF: over every limit, rejected before any body arrives",
        b"\xff\xff\xff\xff\x01", "frame_too_large", "FRAME_TOO_LARGE", 0)
    bad("frame_over_limit", "a 64-byte PING frame with a limit of 32 bytes", frame("PING", bytes(63)),
        "frame_too_large", "FRAME_TOO_LARGE", 0, limits=dict(max_frame=32, max_batch=4096))
    bad("empty_frame", "a length of zero", b"\x00\x00\x00\x00", "empty_frame", "MALFORMED_FRAME", 0)
    bad("unknown_type", "frame type 0x7F", frame(0x7F, b"abc"), "unknown_frame_type", "UNKNOWN_FRAME_TYPE", 0)
    bad("garbage", "an HTTP request instead of a HELLO", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "frame_too_large", "FRAME_TOO_LARGE", 0)
    bad("hello_bad_magic", "a HELLO whose magic is not ALGR",
        hello("producer", "p", b"", magic=b"ALGX")[0], "invalid_value", "MALFORMED_FRAME", 0)
    bad("hello_bad_role", "a HELLO with role 3", hello(3, "p", b"")[0], "invalid_value", "MALFORMED_FRAME", 0)
    bad("hello_version_zero", "a HELLO with min_version 0", hello("producer", "p", b"", lo=0, hi=1)[0],
        "invalid_value", "MALFORMED_FRAME", 0)
    bad("hello_empty_client_id", "a HELLO with an empty client id", hello("producer", "", b"")[0],
        "invalid_value", "MALFORMED_FRAME", 0)
    overrun = struct.pack("<I", 1) + struct.pack("<QQIBBBB", 1, TS, 1000, 0, 0, 0, 0) + b"short"
    bad("field_overrun", "a record whose payload length runs past the end of the frame", frame("PUBLISH", overrun),
        "field_overrun", "MALFORMED_FRAME", 0)
    bad("string_overrun", "a HELLO whose client id length runs past the end of the frame",
        frame("HELLO", b"ALGR" + struct.pack("<HHBB", 1, 1, 1, 0) + b"\x20abc"), "field_overrun", "MALFORMED_FRAME", 0)
    bad("trailing_bytes", "an ACK with one byte after its field", frame("ACK", struct.pack("<Q", 1) + b"\x00"),
        "trailing_bytes", "MALFORMED_FRAME", 0)
    bad("short_fixed_field", "a PING with 4 of its 8 nonce bytes", frame("PING", b"\x01\x02\x03\x04"),
        "field_overrun", "MALFORMED_FRAME", 0)
    bad("publish_zero_count", "a PUBLISH with no records", frame("PUBLISH", struct.pack("<I", 0)),
        "invalid_value", "MALFORMED_FRAME", 0)
    bad("publish_sequence_order", "producer sequences must increase within a batch",
        publish([(5, TS, "s", "k", "t", b"a"), (5, TS, "s", "k", "t", b"b")])[0], "invalid_value", "MALFORMED_FRAME", 0)
    bad("publish_sequence_zero", "producer sequences start at 1", publish([(0, TS, "s", "k", "t", b"a")])[0],
        "invalid_value", "MALFORMED_FRAME", 0)
    bad_utf8 = struct.pack("<I", 1) + struct.pack("<QQIBBBB", 1, TS, 0, 2, 0, 0, 0) + b"\xc3\x28"
    bad("publish_invalid_utf8", "a session id that is not UTF-8", frame("PUBLISH", bad_utf8),
        "invalid_value", "MALFORMED_FRAME", 0)
    flags = struct.pack("<I", 1) + struct.pack("<QQIBBBB", 1, TS, 0, 0, 0, 0, 1)
    bad("publish_record_flags", "a record with a non-zero reserved flags byte", frame("PUBLISH", flags),
        "invalid_value", "MALFORMED_FRAME", 0)
    bad("batch_too_large", "three records with a limit of two per batch",
        publish([(1, TS, "", "", "", b""), (2, TS, "", "", "", b""), (3, TS, "", "", "", b"")])[0],
        "batch_too_large", "BATCH_TOO_LARGE", 0, limits=dict(max_frame=1 << 20, max_batch=2))
    bad("subscribe_committed_no_name", "start committed without a collector name",
        frame("SUBSCRIBE", struct.pack("<BBHQI", 2, 0, 0, 0, 10) + s8("")), "invalid_value", "MALFORMED_FRAME", 0)
    bad("subscribe_live_named", "live delivery asked for a durable collector",
        frame("SUBSCRIBE", struct.pack("<BBHQI", 0, 1, 0, 0, 10) + s8("timmy")), "invalid_value", "MALFORMED_FRAME", 0)
    bad("subscribe_unknown_flag", "a SUBSCRIBE flag bit that is not defined",
        frame("SUBSCRIBE", struct.pack("<BBHQI", 0, 2, 0, 0, 10) + s8("")), "invalid_value", "MALFORMED_FRAME", 0)
    bad("subscribe_bad_start", "start 9", frame("SUBSCRIBE", struct.pack("<BBHQI", 9, 0, 0, 0, 10) + s8("")),
        "invalid_value", "MALFORMED_FRAME", 0)
    bad("skip_reversed", "a SKIP whose first is after its last", frame("SKIP", struct.pack("<QQ", 10, 9)),
        "invalid_value", "MALFORMED_FRAME", 0)
    ping, pingd = u64("PING", "nonce", 7)
    bad("valid_then_unknown", "two valid frames, then an unknown type: the error's offset is the third frame's",
        ping + ping + frame(0x55), "unknown_frame_type", "UNKNOWN_FRAME_TYPE", 2 * len(ping), frames=[pingd, pingd])
    return v


def render():
    files = {}
    names = []
    for item in vectors():
        name = item.pop("name")
        names.append(name)
        data = item.pop("bytes")
        files[name + ".bin"] = data
        item = dict(name=name, length=len(data), **item)
        files[name + ".json"] = (json.dumps(item, indent=2, ensure_ascii=False) + "\n").encode()
    files["index.json"] = (json.dumps(sorted(names), indent=2) + "\n").encode()
    return files


def main():
    files = render()
    if "--check" in sys.argv:
        stale = [n for n, data in files.items()
                 if not os.path.exists(os.path.join(HERE, n)) or open(os.path.join(HERE, n), "rb").read() != data]
        if stale:
            print("vectors out of date (run protocol/vectors/generate.py):", ", ".join(sorted(stale)))
            return 1
        print(f"vectors up to date: {len(files) - 1} files checked")
        return 0
    for n, data in files.items():
        with open(os.path.join(HERE, n), "wb") as f:
            f.write(data)
    print(f"wrote {len(files)} files to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
