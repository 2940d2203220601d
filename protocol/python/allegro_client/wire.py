"""Allegro wire protocol v1, producer side: encoding and decoding, no I/O.

Written from protocol/PROTOCOL.md. Integers are little-endian; a frame is a u32 length (type byte
plus body), the type byte, then the body.
"""

import struct

HELLO, WELCOME, PUBLISH, ACK = 0x01, 0x02, 0x10, 0x11
PING, PONG, GOODBYE, ERROR = 0x30, 0x31, 0x3E, 0x3F
SUBSCRIBE, SUBSCRIBED, DELIVER, CREDIT, COMMIT, COMMITTED, SKIP = 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26
KNOWN_TYPES = {HELLO, WELCOME, PUBLISH, ACK, SUBSCRIBE, SUBSCRIBED, DELIVER, CREDIT, COMMIT, COMMITTED, SKIP,
               PING, PONG, GOODBYE, ERROR}
ROLE_PRODUCER = 1
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


def hello(client_id, token=b"", min_version=1, max_version=1):
    client = client_id.encode() if isinstance(client_id, str) else client_id
    secret = token.encode() if isinstance(token, str) else token
    if not 1 <= len(client) <= 255:
        raise ValueError("client id must be 1 to 255 bytes of UTF-8")
    if len(secret) > 1024:
        raise ValueError("token must be at most 1024 bytes")
    body = MAGIC + struct.pack("<HHBB", min_version, max_version, ROLE_PRODUCER, 0)
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
        return dict(type="WELCOME", version=version, max_frame=max_frame, max_batch=max_batch,
                    heartbeat_ms=heartbeat, idle_timeout_ms=idle, relay_id=body[21:].decode("utf-8"))
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
