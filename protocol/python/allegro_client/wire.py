"""Allegro wire protocol v1, producer and collector sides: encoding and decoding, no I/O.

Written from protocol/PROTOCOL.md. Integers are little-endian; a frame is a u32 length (type byte
plus body), the type byte, then the body.
"""

import struct
from typing import Tuple, Union

HELLO, WELCOME, PUBLISH, ACK = 0x01, 0x02, 0x10, 0x11
PING, PONG, GOODBYE, ERROR = 0x30, 0x31, 0x3E, 0x3F
SUBSCRIBE, SUBSCRIBED, DELIVER, CREDIT, COMMIT, COMMITTED, SKIP = 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26
KNOWN_TYPES = {HELLO, WELCOME, PUBLISH, ACK, SUBSCRIBE, SUBSCRIBED, DELIVER, CREDIT, COMMIT, COMMITTED, SKIP,
               PING, PONG, GOODBYE, ERROR}
ROLE_PRODUCER = 1
ROLE_COLLECTOR = 2
# SUBSCRIBE start positions.
START_CODES = {"earliest": 0, "latest": 1, "committed": 2, "sequence": 3}
START_NAMES = {code: name for name, code in START_CODES.items()}
SUBSCRIBE_LIVE = 0x01
MAGIC = b"ALGR"
MAX_FRAME = 16 * 1024 * 1024

ERROR_NAMES = {1: "MALFORMED_FRAME", 2: "FRAME_TOO_LARGE", 3: "UNKNOWN_FRAME_TYPE", 4: "UNSUPPORTED_VERSION",
               5: "AUTH_FAILED", 6: "NOT_PERMITTED", 7: "UNEXPECTED_FRAME", 8: "HANDSHAKE_TIMEOUT",
               9: "IDLE_TIMEOUT", 10: "TOO_MANY_CONNECTIONS", 11: "CURSOR_UNAVAILABLE", 12: "BATCH_TOO_LARGE",
               13: "COMMIT_OUT_OF_RANGE", 14: "UNKNOWN_COLLECTOR", 15: "COLLECTOR_BUSY", 16: "SHUTTING_DOWN",
               17: "INTERNAL_ERROR", 18: "PRODUCER_REPLACED", 19: "RECORD_TOO_LARGE"}
# Errors a reconnect cannot fix.
PERMANENT_ERRORS = {"AUTH_FAILED", "UNSUPPORTED_VERSION", "NOT_PERMITTED", "FRAME_TOO_LARGE", "BATCH_TOO_LARGE",
                    "MALFORMED_FRAME", "UNKNOWN_FRAME_TYPE", "UNEXPECTED_FRAME", "PRODUCER_REPLACED",
                    "RECORD_TOO_LARGE"}

_RECORD_HEADER = struct.Struct("<QQIBBBB")
_HEADER = struct.Struct("<IB")


class ProtocolError(Exception):
    """The relay sent bytes this client cannot decode (or the reverse was detected)."""


def frame(frame_type, body=b""):
    return _HEADER.pack(len(body) + 1, frame_type) + body


def hello(client_id, token=b"", min_version=1, max_version=1, role=ROLE_PRODUCER):
    client = client_id.encode() if isinstance(client_id, str) else client_id
    secret = token.encode() if isinstance(token, str) else token
    if not 1 <= len(client) <= 255:
        raise ValueError("client id must be 1 to 255 bytes of UTF-8")
    if len(secret) > 1024:
        raise ValueError("token must be at most 1024 bytes")
    body = MAGIC + struct.pack("<HHBB", min_version, max_version, role, 0)
    body += struct.pack("<B", len(client)) + client + struct.pack("<H", len(secret)) + secret
    return frame(HELLO, body)


def record(producer_seq, event_time_ns, session, kind, content_type, payload):
    """One record in PUBLISH layout. `session`, `kind`, `content_type` are bytes of at most 255."""
    if len(session) > 255 or len(kind) > 255 or len(content_type) > 255:
        raise ValueError("session, kind and content type are at most 255 bytes each")
    return _RECORD_HEADER.pack(producer_seq, event_time_ns, len(payload), len(session), len(kind),
                               len(content_type), 0) + session + kind + content_type + payload


def publish(records):
    """A PUBLISH frame from already-encoded records."""
    body = b"".join(records)
    return _HEADER.pack(len(body) + 5, PUBLISH) + struct.pack("<I", len(records)) + body


def ping(nonce):
    return frame(PING, struct.pack("<Q", nonce))


def pong(nonce):
    return frame(PONG, struct.pack("<Q", nonce))


def goodbye():
    return frame(GOODBYE)


class Decoder:
    """Splits a byte stream into frames, in any chunking: `feed(bytes)`, then `frames()`."""

    def __init__(self, max_frame=4096):
        self.buffer = bytearray()
        self.max_frame = max_frame

    def feed(self, data):
        self.buffer += data

    def frames(self):
        """Whole frames as (type, decoded fields dict); raises ProtocolError on invalid input."""
        out = []
        while len(self.buffer) >= 4:
            (length,) = struct.unpack_from("<I", self.buffer)
            if length == 0:
                raise ProtocolError("frame length 0")
            if length > self.max_frame:
                raise ProtocolError("frame length %d exceeds %d" % (length, self.max_frame))
            if len(self.buffer) < 4 + length:
                break
            frame_type = self.buffer[4]
            body = bytes(self.buffer[5:4 + length])
            del self.buffer[:4 + length]
            out.append((frame_type, decode_body(frame_type, body)))
        return out


def decode_body(frame_type, body):
    """The fields of the frames a producer receives (and PING/PONG either way)."""
    def exact(size, name):
        if len(body) != size:
            raise ProtocolError("%s body is %d bytes, expected %d" % (name, len(body), size))

    if frame_type == WELCOME:
        if len(body) < 21:
            raise ProtocolError("WELCOME too short")
        version, flags, max_frame, max_batch, heartbeat, idle = struct.unpack_from("<HHIIII", body)
        relay_length = body[20]
        if len(body) != 21 + relay_length:
            raise ProtocolError("WELCOME relay_id length mismatch")
        try:
            relay_id = body[21:].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("WELCOME relay_id is not UTF-8") from None
        return dict(type="WELCOME", version=version, max_frame=max_frame, max_batch=max_batch,
                    heartbeat_ms=heartbeat, idle_timeout_ms=idle, relay_id=relay_id)
    if frame_type in (ACK, PING, PONG):
        exact(8, "ACK/PING/PONG")
        (value,) = struct.unpack("<Q", body)
        name = {ACK: "ACK", PING: "PING", PONG: "PONG"}[frame_type]
        return {"type": name, ("through" if frame_type == ACK else "nonce"): value}
    if frame_type == GOODBYE:
        exact(0, "GOODBYE")
        return dict(type="GOODBYE")
    if frame_type == ERROR:
        if len(body) < 4:
            raise ProtocolError("ERROR too short")
        code, length = struct.unpack_from("<HH", body)
        if len(body) != 4 + length:
            raise ProtocolError("ERROR message length mismatch")
        return dict(type="ERROR", code=code, name=ERROR_NAMES.get(code, "UNKNOWN"),
                    message=body[4:].decode("utf-8", "replace"))
    if frame_type in KNOWN_TYPES:
        return dict(type="OTHER", frame_type=frame_type)
    raise ProtocolError("unknown frame type 0x%02X" % frame_type)


# -- collector side ---------------------------------------------------------------------------
#
# Frames a collector sends (SUBSCRIBE, CREDIT, COMMIT) and the relay frames only a collector
# receives (SUBSCRIBED, DELIVER, COMMITTED, SKIP). DELIVER is decoded straight out of the
# receive buffer: one struct unpack per record, the four texts looked up as one slice in a small
# cache (a stream has few distinct producer/session/kind/type combinations), and the payload
# copied once, into the bytes the caller gets.

_DELIVERED = struct.Struct("<QQQQIBBBB")
DELIVERED_HEADER = _DELIVERED.size  # 40
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SUBSCRIBED = struct.Struct("<QQQ")
_SKIP = struct.Struct("<QQ")
_SUBSCRIBE = struct.Struct("<BBHQI")
TEXT_CACHE_LIMIT = 4096


def subscribe(start, credit, name="", sequence=0, live=False):
    """A SUBSCRIBE frame. `start` is "earliest", "latest", "committed" or "sequence" (then
    `sequence` is the first relay sequence wanted); `name` is the durable collector's name, empty
    for an ephemeral subscription; `credit` the initial window in records."""
    if start not in START_CODES:
        raise ValueError("start must be earliest, latest, committed or sequence, not %r" % (start,))
    encoded = name.encode("utf-8") if isinstance(name, str) else bytes(name)
    if len(encoded) > 255:
        raise ValueError("a collector name is at most 255 bytes of UTF-8")
    if start == "sequence" and sequence < 1:
        raise ValueError("start sequence needs a relay sequence of at least 1")
    if start == "committed" and not encoded:
        raise ValueError("start committed needs a durable collector name")
    if live and encoded:
        raise ValueError("live is for ephemeral subscriptions only")
    if not 0 <= credit <= 0xFFFFFFFF:
        raise ValueError("credit must fit in a u32")
    body = _SUBSCRIBE.pack(START_CODES[start], SUBSCRIBE_LIVE if live else 0, 0,
                           sequence if start == "sequence" else 0, credit)
    return frame(SUBSCRIBE, body + struct.pack("<B", len(encoded)) + encoded)


def credit(count):
    return frame(CREDIT, _U32.pack(count))


def commit(through):
    return frame(COMMIT, _U64.pack(through))


def decode_texts(raw):
    """The four length bytes and the texts of a delivered record (`raw` starts at offset 36):
    (producer, session, kind, content_type), strictly validated UTF-8."""
    producer_length, session_length, kind_length, type_length = raw[0], raw[1], raw[2], raw[3]
    if producer_length == 0:
        raise ProtocolError("a delivered record has an empty producer id")
    at = 4
    try:
        producer = raw[at:at + producer_length].decode("utf-8")
        at += producer_length
        session = raw[at:at + session_length].decode("utf-8")
        at += session_length
        kind = raw[at:at + kind_length].decode("utf-8")
        at += kind_length
        content_type = raw[at:at + type_length].decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProtocolError("a delivered record has invalid UTF-8 text: %s" % error) from None
    return producer, session, kind, content_type


def decode_deliver(view, start, end, make, relay_id, texts, max_batch=0xFFFFFFFF, source=None):
    """The records of a DELIVER body `view[start:end]` (a memoryview or bytes), in order, as
    `make(relay_id, relay_seq, producer, producer_seq, session, kind, content_type,
    event_time_ns, ingest_ns, payload, source)`; `payload` is a new bytes object (the only copy).
    `texts` is a dict used as a cache of decoded texts (cleared when it grows past
    TEXT_CACHE_LIMIT). Raises ProtocolError for a body that is not a valid DELIVER."""
    if end - start < 4:
        raise ProtocolError("DELIVER body is shorter than its record count")
    (count,) = _U32.unpack_from(view, start)
    if count == 0 or count > max_batch:
        raise ProtocolError("DELIVER count %d is outside 1 ... %d" % (count, max_batch))
    unpack = _DELIVERED.unpack_from
    out = []
    append = out.append
    position = start + 4
    for _ in range(count):
        texts_at = position + 36
        if texts_at + 4 > end:
            raise ProtocolError("a delivered record's header runs past the frame")
        relay_seq, ingest_ns, producer_seq, event_time_ns, payload_length, a, b, c, d = unpack(view, position)
        payload_at = texts_at + 4 + a + b + c + d
        payload_end = payload_at + payload_length
        if payload_end > end:
            raise ProtocolError("a delivered record's fields run past the frame")
        key = bytes(view[texts_at:payload_at])
        decoded = texts.get(key)
        if decoded is None:
            decoded = decode_texts(key)
            if len(texts) >= TEXT_CACHE_LIMIT:
                texts.clear()
            texts[key] = decoded
        append(make(relay_id, relay_seq, decoded[0], producer_seq, decoded[1], decoded[2], decoded[3],
                    event_time_ns, ingest_ns, bytes(view[payload_at:payload_end]), source))
        position = payload_end
    if position != end:
        raise ProtocolError("DELIVER has %d bytes after its last record" % (end - position))
    return out


def decode_collector_body(frame_type, body):
    """The fields of any frame a collector receives (the relay frames of decode_body plus
    SUBSCRIBED, DELIVER, COMMITTED and SKIP), in the field names of PROTOCOL.md; a DELIVER's
    payloads as `payload_hex`. The collector itself decodes DELIVER with decode_deliver."""
    def exact(size, name):
        if len(body) != size:
            raise ProtocolError("%s body is %d bytes, expected %d" % (name, len(body), size))

    if frame_type == SUBSCRIBED:
        exact(24, "SUBSCRIBED")
        first, head, committed = _SUBSCRIBED.unpack(body)
        return dict(type="SUBSCRIBED", first_sequence=first, head_sequence=head, committed=committed)
    if frame_type == COMMITTED:
        exact(8, "COMMITTED")
        return dict(type="COMMITTED", through=_U64.unpack(body)[0])
    if frame_type == SKIP:
        exact(16, "SKIP")
        first, last = _SKIP.unpack(body)
        if not 1 <= first <= last:
            raise ProtocolError("SKIP %d ... %d is not a range (1 <= first <= last)" % (first, last))
        return dict(type="SKIP", first=first, last=last)
    if frame_type == DELIVER:
        def as_dict(relay_id, relay_seq, producer, producer_seq, session, kind, content_type, event_time_ns,
                    ingest_ns, payload, source):
            return dict(relay_seq=relay_seq, ingest_ns=ingest_ns, producer=producer, producer_seq=producer_seq,
                        event_time_ns=event_time_ns, session=session, kind=kind, content_type=content_type,
                        payload_hex=payload.hex())
        records = decode_deliver(memoryview(body), 0, len(body), as_dict, "", {})
        return dict(type="DELIVER", count=len(records), records=records)
    return decode_body(frame_type, body)


def parse_address(relay: Union[str, Tuple[str, int]]) -> Tuple[str, int]:
    """A relay address, "HOST:PORT" (IPv6 in brackets) or (host, port), as (host, port)."""
    if isinstance(relay, str):
        host, colon, port = relay.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("relay address %r: expected HOST:PORT, for example 127.0.0.1:7400" % relay)
        return host.strip("[]"), int(port)
    return relay[0], int(relay[1])
