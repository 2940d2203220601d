"""A producer that never blocks the caller on the network and never loses an acknowledged event.

`emit()` encodes the record and appends it to a bounded in-memory buffer; when nothing is queued
ahead of it it also sends it at once (one non-blocking send(); `direct_send`). A background thread
batches the rest into PUBLISH frames, pipelines them, reads cumulative ACKs, and after a lost
connection reconnects (exponential backoff with jitter, the next relay in the list first) and resends
every record not yet acknowledged. The relay drops the duplicates resending may create.

No single record can stop the stream: a JSON or text payload larger than `max_event_bytes` is cut
down and marked (`"truncated": true` and the original size), and a record that could never fit in a
frame is refused by `emit()` itself with `RecordTooLarge`, before it is queued. A relay that goes
silent (stopped, or a host that vanished without a RST) is given up after `idle_timeout` and the
next relay in the list is used; the first relay is taken back only once it has answered probes for
`failback_after` seconds in a row.
"""

import collections
import json
import logging
import os
import random
import select
import socket
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set, Tuple, Union

from . import wire

__all__ = ["Producer", "BufferFull", "RelayRefused", "RecordTooLarge", "DEFAULT_MAX_FRAME_BYTES",
           "DEFAULT_MAX_EVENT_BYTES", "delivered_size"]

logger = logging.getLogger("allegro_client")

DEFAULT_MAX_FRAME_BYTES = 1 << 20     # the relay's default max_frame_bytes (config/README.md)
DEFAULT_MAX_EVENT_BYTES = 64 * 1024
# A delivered record: the DELIVER frame's type byte and count (5), then 40 bytes of header.
_DELIVER_OVERHEAD = 5 + 40
# emit() sends a record itself (no batching) only while fewer records than this are unacknowledged.
_DIRECT_IN_FLIGHT = 16
# Errors that concern one record (or one frame), not the producer: the stream goes on without it.
_RECORD_ERRORS = {"RECORD_TOO_LARGE", "FRAME_TOO_LARGE"}

Address = Tuple[str, int]
Entry = Tuple[int, bytes, int]   # (producer sequence, encoded PUBLISH record, delivered size)


class BufferFull(Exception):
    """`emit()` waited `block_timeout` seconds for room (policy "block")."""


class RelayRefused(Exception):
    """The relay refused this producer for good (wrong token, unsupported version, ...)."""


class RecordTooLarge(ValueError):
    """This one record can never be delivered: even alone it is larger than a frame may be.

    Raised by `emit()` before the record is queued, so nothing else is affected."""


class _Silent(ConnectionError):
    """The relay said nothing for longer than its idle timeout."""


class _Probe:
    """The first relay's health while the producer uses another: since when it has answered every probe."""

    def __init__(self, timeout: float) -> None:
        self.stop = threading.Event()
        self.healthy_since: Optional[float] = None
        self.timeout = timeout           # one probe's handshake takes at most this long
        self.thread: Optional[threading.Thread] = None

    def finish(self) -> None:
        """Stops probing, and waits for a probe handshake still under way (bounded by its timeout):
        the producer's next connection may go to the first relay, and a probe's HELLO arriving there
        after the producer's own would close the producer's connection as PRODUCER_REPLACED."""
        self.stop.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(self.timeout + 1.0)

    def due(self, failback_after: float) -> bool:
        since = self.healthy_since
        return since is not None and time.monotonic() - since >= failback_after


def _text(value: Union[None, str, bytes]) -> bytes:
    if value is None:
        return b""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def delivered_size(producer_id: bytes, session: bytes, kind: bytes, content_type: bytes, payload_length: int) -> int:
    """Bytes a record takes, alone, in a DELIVER frame's length: what the relay checks against max_frame."""
    return _DELIVER_OVERHEAD + len(producer_id) + len(session) + len(kind) + len(content_type) + payload_length


# -- payload caps -------------------------------------------------------------------------------

def _clip(value: Any, max_string: int, max_items: int, depth: int = 0) -> Any:
    """A copy of a JSON value with long strings and long lists cut, marked where they were cut."""
    if isinstance(value, str):
        if len(value) > max_string:
            return value[:max_string] + "...[+%d chars]" % (len(value) - max_string)
        return value
    if depth >= 12:
        return "...[nested too deep]"
    if isinstance(value, dict):
        out = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= max_items * 4:
                out["..."] = "+%d keys" % (len(value) - index)
                break
            out[key] = _clip(item, max_string, max_items, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        items = [_clip(item, max_string, max_items, depth + 1) for item in value[:max_items]]
        if len(value) > max_items:
            items.append("...[+%d items]" % (len(value) - max_items))
        return items
    return value


def truncate_json(value: Any, encoded: bytes, limit: int, dumps: Callable[[Any], bytes]) -> Optional[bytes]:
    """`value` (whose encoding is `encoded`, over `limit` bytes) cut down to at most `limit` bytes of
    JSON, with `"truncated": true` and `"original_bytes"` at the top level (a non-object value is
    wrapped as `{"truncated": true, "original_bytes": N, "value": ...}`). None when even the marker
    alone does not fit."""
    original = len(encoded)
    max_string, max_items = max(32, limit // 2), 200
    while True:
        clipped = _clip(value, max_string, max_items)
        if isinstance(clipped, dict):
            marked = {"truncated": True, "original_bytes": original}
            marked.update((k, v) for k, v in clipped.items() if k not in marked)
        else:
            marked = {"truncated": True, "original_bytes": original, "value": clipped}
        data = dumps(marked)
        if len(data) <= limit:
            return data
        if max_string <= 32:
            break
        max_string, max_items = max(32, max_string // 4), max(5, max_items // 2)
    # Last resort: the start of the encoded form, as text.
    preview_length = max(0, limit - 80)
    while True:
        preview = encoded[:preview_length].decode("utf-8", "ignore")
        data = dumps({"truncated": True, "original_bytes": original, "preview": preview})
        if len(data) <= limit:
            return data
        if preview_length == 0:
            return None
        preview_length = preview_length // 2


def truncate_text(data: bytes, limit: int) -> Optional[bytes]:
    """UTF-8 text cut to at most `limit` bytes, ending with a marker naming the original size."""
    marker = ("...[truncated, original %d bytes]" % len(data)).encode()
    if limit < len(marker):
        return None
    return data[:limit - len(marker)].decode("utf-8", "ignore").encode("utf-8") + marker


class Producer:
    """Publishes records to an Allegro relay.

    relays: list of (host, port) or "host:port". The first is preferred; after a lost connection the
        next one is tried first (wrapping around).
    producer_id: the relay drops resent duplicates by (producer_id, sequence); defaults to
        a name made from the host and process id.
    max_buffer: most records held (waiting to be sent, or sent and not yet acknowledged).
    on_full: "block" (emit waits up to block_timeout, then raises BufferFull) or "drop_oldest"
        (the oldest record not yet sent is dropped, or else the oldest unacknowledged; counted
        in `dropped`). Never silent.
    first_sequence: producer sequences start here; by default the wall clock in microseconds,
        so a restarted process never reuses a number under the same producer id.
    on_connection: called from the sender thread as on_connection("failed", error) after each
        failed attempt to reach a relay, and on_connection("connected", None) once connected,
        so a command line can say at once why it waits. `last_error` holds the latest failure.
    max_frame_bytes: the largest frame the relays accept (their `max_frame_bytes`, default 1 MiB).
        A record that cannot fit in it alone is refused by `emit()` with RecordTooLarge; a relay
        that announces a smaller `max_frame` in its WELCOME lowers it.
    max_event_bytes: payload cap for JSON and text payloads (default 64 KiB; None: only the frame
        limit). A larger one is cut down and marked (see `truncate_json`, `truncate_text`); counted
        in `truncated`. Bytes payloads are opaque and never cut.
    idle_timeout: seconds of hearing nothing from a relay (no ACK, PING or PONG) after which it is
        taken for dead and the next one is tried; default: the idle_timeout_ms of its WELCOME.
    failback_after: while connected to another relay than the first, the first is probed (HELLO,
        WELCOME, GOODBYE) every heartbeat; once it has answered every probe for this many seconds,
        the producer waits for its outstanding ACKs and moves back to it.
    json_default: passed to json.dumps as `default=` for values it cannot encode.
    direct_send: while fewer than 16 records are unacknowledged and none is queued, `emit()` sends
        the record itself (one non-blocking send(), some tens of microseconds) instead of leaving it
        to the sender thread, which in a busy process waits for the GIL (milliseconds). False: the
        sender thread sends everything (emit() then costs a few microseconds, lag is higher).
    """

    def __init__(self, relays: Sequence[Union[str, Address]], producer_id: Optional[str] = None, token: str = "", *,
                 batch_records: int = 512, max_buffer: int = 100_000, on_full: str = "block",
                 block_timeout: float = 5.0, connect_timeout: float = 5.0, max_backoff: float = 2.0,
                 first_sequence: Optional[int] = None,
                 on_connection: Optional[Callable[[str, Optional[BaseException]], None]] = None,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 max_event_bytes: Optional[int] = DEFAULT_MAX_EVENT_BYTES,
                 idle_timeout: Optional[float] = None, failback_after: float = 60.0,
                 json_default: Optional[Callable[[Any], Any]] = None, direct_send: bool = True) -> None:
        if on_full not in ("block", "drop_oldest"):
            raise ValueError('on_full must be "block" or "drop_oldest"')
        self.relays: List[Address] = [self._address(r) for r in relays]
        if not self.relays:
            raise ValueError("at least one relay address is needed")
        self.producer_id = producer_id or "py-%s-%d" % (socket.gethostname(), os.getpid())
        self._producer_id_bytes = self.producer_id.encode("utf-8")
        if not 1 <= len(self._producer_id_bytes) <= 255:
            raise ValueError("the producer id must be 1 to 255 bytes of UTF-8")
        if not 64 <= max_frame_bytes <= wire.MAX_FRAME:
            raise ValueError("max_frame_bytes must be 64 ... %d" % wire.MAX_FRAME)
        self.token = token
        self.batch_records = max(1, batch_records)
        self.max_buffer = max(1, max_buffer)
        self.on_full = on_full
        self.block_timeout = block_timeout
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self.max_frame_bytes = max_frame_bytes
        self.max_event_bytes = max_event_bytes if max_event_bytes else None
        self.idle_timeout = idle_timeout
        self.failback_after = failback_after
        self._json_default = json_default
        self.direct_send = direct_send
        self._cond = threading.Condition()
        self._unexpected_seen: Set[type] = set()
        self._pending: Deque[Entry] = collections.deque()   # not sent on this connection
        self._unacked: Deque[Entry] = collections.deque()   # sent, not acknowledged
        self._next_sequence = first_sequence if first_sequence else time.time_ns() // 1000
        self.acked_through = self._next_sequence - 1
        self.dropped = 0
        self.emitted = 0
        self.truncated = 0
        self.refused = 0            # records the relay could not take (see last_refusal); never sent again
        self.last_refusal: Optional[str] = None
        self.reconnects = 0
        self.failovers = 0          # connections given up because the relay went silent
        self.error: Optional[BaseException] = None
        self.last_error: Optional[BaseException] = None
        self.on_connection = on_connection
        self.relay: Optional[Address] = None      # the relay connected to, None between connections
        self._start_index = 0
        self._unreachable = False
        self._sleeping = False          # the sender waits in select() with nothing to send
        self._sock: Optional[socket.socket] = None   # while connected; written to under the lock only
        self._draining = False
        self._outgoing = bytearray()
        self._last_sent = 0.0
        # emit() writes a byte here to wake the sender from its select(); never blocks (a full
        # buffer already means a wake-up is pending).
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._failed_rounds = 0
        self._retry_now = False
        self._closing = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="allegro-producer", daemon=True)
        self._thread.start()

    _address = staticmethod(wire.parse_address)

    # -- caller side --------------------------------------------------------------------

    def _dumps(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), default=self._json_default).encode("utf-8")

    def payload_limit(self, session: bytes = b"", kind: bytes = b"", content_type: bytes = b"application/json") -> int:
        """The most payload bytes a record with these fields can carry in a frame, as things stand."""
        return self.max_frame_bytes - delivered_size(self._producer_id_bytes, session, kind, content_type, 0)

    def emit(self, payload: Any, session: Union[str, bytes] = "", kind: Union[str, bytes] = "",
             content_type: Optional[str] = None, event_time_ns: Optional[int] = None) -> int:
        """Queues one record and returns its producer sequence. Never waits for the network (at most
        one non-blocking send(), see `direct_send`).
        `payload` may be bytes, str (UTF-8) or any JSON-serialisable object (sent as JSON).
        JSON and text over `max_event_bytes` are cut down and marked; a record that cannot fit in a
        frame at all raises RecordTooLarge (nothing is queued)."""
        session_b, kind_b = _text(session), _text(kind)
        if isinstance(payload, (bytes, bytearray, memoryview)):
            data, default_type, shape = bytes(payload), "application/octet-stream", "bytes"
        elif isinstance(payload, str):
            data, default_type, shape = payload.encode("utf-8"), "text/plain", "text"
        else:
            data, default_type, shape = self._dumps(payload), "application/json", "json"
        type_b = _text(content_type if content_type is not None else default_type)
        if len(session_b) > 255 or len(kind_b) > 255 or len(type_b) > 255:
            raise ValueError("session, kind and content type are at most 255 bytes each")
        room = self.payload_limit(session_b, kind_b, type_b)
        limit = room if self.max_event_bytes is None or shape == "bytes" else min(room, self.max_event_bytes)
        if len(data) > limit:
            cut: Optional[bytes] = None
            if shape == "json":
                cut = truncate_json(payload, data, limit, self._dumps)
            elif shape == "text":
                cut = truncate_text(data, limit)
            if cut is None:
                raise RecordTooLarge(
                    "a record of %d payload bytes (session %d, kind %d, content type %d bytes) cannot fit in a "
                    "frame of %d bytes: at most %d payload bytes fit" % (
                        len(data), len(session_b), len(kind_b), len(type_b), self.max_frame_bytes, max(room, 0)))
            data = cut
            with self._cond:
                self.truncated += 1
        size = delivered_size(self._producer_id_bytes, session_b, kind_b, type_b, len(data))
        when = event_time_ns if event_time_ns is not None else time.time_ns()
        with self._cond:
            if self.error is not None:
                raise self.error
            if self._closing:
                raise RuntimeError("the producer is closed")
            if len(self._pending) + len(self._unacked) >= self.max_buffer:
                self._make_room()
            sequence = self._next_sequence
            self._next_sequence += 1
            self._pending.append((sequence, wire.record(sequence, when, session_b, kind_b, type_b, data), size))
            self.emitted += 1
            if (self.direct_send and self._sock is not None and not self._outgoing and len(self._pending) == 1 and not self._draining
                    and len(self._unacked) < _DIRECT_IN_FLIGHT):
                # Nothing queued ahead of it on a live connection, and few records in flight (events,
                # not a bulk stream): send it from here with one non-blocking send, rather than wait
                # for the sender thread to get the GIL. A bulk stream goes through the sender, batched.
                self._send_now()
            elif self._sleeping:
                self._sleeping = False
                self._wake()
        return sequence

    def _send_now(self) -> None:
        """With the lock held, and nothing queued ahead: the one pending record goes out on the socket
        now; what the socket does not take is left to the sender thread, woken to send it. Every write
        to the socket happens under the lock, so the bytes keep the order they were queued in."""
        sock = self._sock
        entry = self._pending.popleft()
        self._unacked.append(entry)
        frame = wire.publish([entry[1]])
        try:
            sent = sock.send(frame)   # type: ignore[union-attr]
        except OSError:
            sent = 0          # the sender finds the error (or the room) itself
        self._last_sent = time.monotonic()
        if sent < len(frame):
            self._outgoing += frame[sent:]
            self._sleeping = False
            self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"w")
        except OSError:
            pass

    def _make_room(self) -> None:
        if self.on_full == "drop_oldest":
            if self._pending:
                self._pending.popleft()
            else:
                self._unacked.popleft()
            self.dropped += 1
            return
        deadline = time.monotonic() + self.block_timeout
        while len(self._pending) + len(self._unacked) >= self.max_buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.error is not None:
                raise self.error or BufferFull("%d records held unacknowledged for %.1f s" % (self.max_buffer, self.block_timeout))
            self._cond.wait(left)

    def flush(self, timeout: float = 30.0, *, while_reachable: bool = False) -> bool:
        """Waits until every emitted record is acknowledged. True when it is.

        while_reachable: when no relay answered the last attempt, try again at once (not after the
        backoff) and stop waiting as soon as that attempt fails too, so a caller is held up only
        while there is a relay to wait for."""
        deadline = time.monotonic() + timeout
        with self._cond:
            rounds = self._failed_rounds
            if while_reachable and self._unreachable and self.relay is None:
                self._retry_now = True
            self._cond.notify_all()
            while self._pending or self._unacked:
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    return False
                if while_reachable and self._failed_rounds != rounds and self.relay is None:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def close(self, timeout: float = 30.0) -> bool:
        """Flushes, says GOODBYE and stops the sender. True when everything was acknowledged."""
        done = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._wake()
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()
        return done

    @property
    def unacked(self) -> int:
        with self._cond:
            return len(self._pending) + len(self._unacked)

    @property
    def connected(self) -> bool:
        """True while a relay connection is up (handshake done)."""
        return self.relay is not None

    @property
    def unreachable(self) -> bool:
        """True when the last attempt to reach every relay failed and none answered since."""
        return self._unreachable and self.relay is None

    # -- sender thread -------------------------------------------------------------------

    def _wait_backoff(self, attempt: int) -> bool:
        """Waits the jittered, doubling backoff for `attempt` (cut short by flush(while_reachable=True));
        True when the producer is closing and the thread should stop."""
        delay = min(self.max_backoff, 0.05 * (2 ** min(attempt, 10)))
        wake = time.monotonic() + delay / 2 + random.random() * delay / 2
        with self._cond:
            while not self._retry_now and not self._closing:
                left = wake - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._retry_now = False
            return self._closing

    def _run(self) -> None:
        attempt = 0
        quick_failures = 0
        while True:
            with self._cond:
                if self._closing and not (self._pending or self._unacked):
                    break
                if self._closing and self.error is not None:
                    break
            try:
                connection, welcome, index = self._connect()
            except RelayRefused as refused:
                with self._cond:
                    self.error = refused
                    self._cond.notify_all()
                return
            except OSError as error:
                self.last_error = error
                self._start_index = 0   # a whole round failed: the next one starts with the first relay again
                with self._cond:
                    self._unreachable = True
                    self._failed_rounds += 1
                    self._cond.notify_all()
                if self.on_connection is not None:
                    self.on_connection("failed", error)
                attempt += 1
                if self._wait_backoff(attempt):
                    break  # close() already waited its timeout: give up (it returned False)
                continue
            attempt = 0
            self._unreachable = False
            self.relay = self.relays[index]
            if self.on_connection is not None:
                self.on_connection("connected", None)
            probe = self._start_probe(welcome) if index != 0 else None
            failback = False
            served_since = time.monotonic()
            try:
                failback = self._serve(connection, welcome, probe)
            except RelayRefused as refused:
                with self._cond:
                    self.error = refused
                    self._cond.notify_all()
                return
            except _Silent as silent:
                self.last_error = silent
                self.failovers += 1
                logger.warning("allegro: %s; trying the next relay", silent)
            except (OSError, wire.ProtocolError) as error:
                self.last_error = error if isinstance(error, OSError) else ConnectionError(str(error))
            except Exception as error:  # a bug of ours must not end the sender thread silently
                self.last_error = ConnectionError("unexpected %s: %s" % (type(error).__name__, error))
                if type(error) not in self._unexpected_seen:
                    self._unexpected_seen.add(type(error))
                    logger.exception("allegro: the sender met an unexpected error; it reconnects with backoff")
            finally:
                self.relay = None
                if probe is not None:
                    probe.finish()
                connection[0].close()
            # The next attempt starts with the next relay (the first again after a failback).
            self._start_index = 0 if failback else (index + 1) % len(self.relays)
            self.reconnects += 1
            if not failback and time.monotonic() - served_since < 1.0:
                # A relay that takes the handshake and then fails at once (an error storm, a bug)
                # gets the same backoff as one that cannot be reached, not a tight loop.
                quick_failures += 1
                if self._wait_backoff(quick_failures):
                    break
            else:
                quick_failures = 0
        self._stopped = True

    def _handshake(self, host: str, port: int, timeout: float) -> Tuple[socket.socket, "wire.Decoder", Dict[str, Any]]:
        """A connected socket after HELLO and WELCOME; raises OSError, RelayRefused or ProtocolError."""
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as error:
            raise ConnectionError("cannot reach the relay at %s:%d: %s" % (host, port, error.strerror or error))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(wire.hello(self.producer_id, self.token))
            decoder = wire.Decoder()
            while True:
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    raise ConnectionError("the relay at %s:%d did not answer HELLO within %g s" % (host, port, timeout))
                if not data:
                    raise ConnectionError("the relay at %s:%d closed during the handshake" % (host, port))
                decoder.feed(data)
                frames = decoder.frames()
                if frames:
                    break
            frame_type, fields = frames[0]
            if frame_type == wire.ERROR:
                if fields["name"] in wire.PERMANENT_ERRORS:
                    raise RelayRefused("%s: %s" % (fields["name"], fields["message"]))
                raise ConnectionError("%s: %s" % (fields["name"], fields["message"]))
            if frame_type != wire.WELCOME:
                raise wire.ProtocolError("expected WELCOME")
            return sock, decoder, fields
        except BaseException:
            sock.close()
            raise

    def _connect(self) -> Tuple[Tuple[socket.socket, "wire.Decoder"], Dict[str, Any], int]:
        last: Optional[BaseException] = None
        count = len(self.relays)
        for step in range(count):
            index = (self._start_index + step) % count
            host, port = self.relays[index]
            try:
                sock, decoder, fields = self._handshake(host, port, self.connect_timeout)
            except (OSError, wire.ProtocolError) as error:
                last = error
                continue
            decoder.max_frame = fields["max_frame"] + 4096
            sock.settimeout(None)
            sock.setblocking(False)
            with self._cond:
                self._adopt_limit(fields["max_frame"])
                # Everything not acknowledged goes out again, oldest first.
                self._pending.extendleft(reversed(self._unacked))
                self._unacked.clear()
            return (sock, decoder), fields, index
        raise last if isinstance(last, OSError) else ConnectionError(str(last))

    def _adopt_limit(self, max_frame: int) -> None:
        """Called with the lock held: the relay's max_frame becomes the limit if it is lower; queued
        records that no longer fit are refused here, so they are never sent (the relay would close)."""
        if max_frame < self.max_frame_bytes:
            logger.warning("allegro: the relay accepts frames of at most %d bytes (configured: %d); using %d",
                           max_frame, self.max_frame_bytes, max_frame)
            self.max_frame_bytes = max_frame
        kept: Deque[Entry] = collections.deque()
        for entry in list(self._unacked) + list(self._pending):
            if entry[2] > max_frame:
                self._refuse(entry, "record %d (%d bytes delivered) is larger than the relay's max_frame %d"
                             % (entry[0], entry[2], max_frame))
            else:
                kept.append(entry)
        if len(kept) != len(self._unacked) + len(self._pending):
            self._unacked.clear()
            self._pending = kept
            self._cond.notify_all()

    def _refuse(self, entry: Entry, reason: str) -> None:
        self.refused += 1
        self.last_refusal = reason
        logger.warning("allegro: dropped one event: %s", reason)

    def _start_probe(self, welcome: Dict[str, Any]) -> "_Probe":
        """While connected to a fallback relay, checks the first one every heartbeat in a thread."""
        interval = max(0.1, welcome["heartbeat_ms"] / 1000.0)
        probe = _Probe(min(self.connect_timeout, max(interval, 1.0)))
        host, port = self.relays[0]

        def run() -> None:
            while not probe.stop.wait(interval):
                try:
                    sock, _, _ = self._handshake(host, port, probe.timeout)
                    try:
                        sock.sendall(wire.goodbye())
                    finally:
                        sock.close()
                    if probe.healthy_since is None:
                        probe.healthy_since = time.monotonic()
                except Exception:
                    probe.healthy_since = None

        probe.thread = threading.Thread(target=run, name="allegro-probe", daemon=True)
        probe.thread.start()
        return probe

    def _serve(self, connection: Tuple[socket.socket, "wire.Decoder"], welcome: Dict[str, Any],
               probe: Optional["_Probe"]) -> bool:
        """Runs one connection (`probe`: on a fallback relay, the first relay's probe). Returns True
        when it ended for a failback to the first relay.

        Writes to the socket happen under the lock, from here or from `emit()` (a record with nothing
        queued ahead of it goes out at once from the caller's thread); reads happen here only. This
        thread waits in select() on the socket and on a wake-up socket `emit()` writes to when it
        leaves work for it."""
        sock, decoder = connection
        max_batch = max(1, min(self.batch_records, welcome["max_batch"]))
        # A PUBLISH frame's length counts its type byte and record count besides the records.
        max_bytes = welcome["max_frame"] - 5
        heartbeat = max(welcome["heartbeat_ms"] / 1000.0, 0.05)
        idle = self.idle_timeout if self.idle_timeout is not None else welcome["idle_timeout_ms"] / 1000.0
        idle = max(idle, 0.1)
        last_heard = time.monotonic()
        draining_since: Optional[float] = None   # failback: waiting for the last ACKs before leaving
        with self._cond:
            self._outgoing = bytearray()
            self._last_sent = last_heard
            self._draining = False
            self._sock = sock
        try:
            while True:
                now = time.monotonic()
                with self._cond:
                    if probe is not None and draining_since is None and probe.due(self.failback_after):
                        draining_since = now
                    if draining_since is not None and now - draining_since > max(5.0, idle):
                        draining_since = None            # the ACKs did not come: stay, and try again later
                        if probe is not None:
                            probe.healthy_since = now
                    self._draining = draining_since is not None
                    leave = draining_since is not None and not self._unacked and not self._outgoing
                    batch, size = [], 0
                    while draining_since is None and self._pending and len(batch) < max_batch:
                        entry = self._pending[0]
                        if batch and size + len(entry[1]) > max_bytes:
                            break
                        self._pending.popleft()
                        self._unacked.append(entry)
                        batch.append(entry[1])
                        size += len(entry[1])
                    if batch:
                        self._outgoing += wire.publish(batch)
                    elif not self._outgoing and now - self._last_sent > heartbeat:
                        self._outgoing += wire.ping(0)
                    closing = self._closing and not self._pending and not self._unacked and not self._outgoing
                    if leave or closing:
                        self._sock = None
                    elif self._outgoing:
                        with memoryview(self._outgoing) as view:
                            try:
                                sent = sock.send(view[:1 << 18])
                            except (BlockingIOError, InterruptedError):
                                sent = 0
                        del self._outgoing[:sent]
                        if sent:
                            self._last_sent = now
                    writing = bool(self._outgoing)
                    last_sent = self._last_sent
                    # Asleep: emit() wakes this thread when it leaves work for it.
                    self._sleeping = not writing and not leave and not closing
                if leave or closing:
                    self._send_all(sock, bytearray(wire.goodbye()))
                    if leave:
                        logger.info("allegro: the first relay has answered for %g s: moving back to it",
                                    self.failback_after)
                    return leave
                timeout = max(0.0, min(0.05, last_sent + heartbeat - now, last_heard + idle - now))
                readable, _, _ = select.select([sock, self._wake_r], [sock] if writing else [], [], timeout)
                with self._cond:
                    self._sleeping = False
                now = time.monotonic()
                if self._wake_r in readable:
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                if sock in readable:
                    data = sock.recv(1 << 16)
                    if not data:
                        raise ConnectionError("the relay closed the connection")
                    last_heard = now
                    decoder.feed(data)
                    for frame_type, fields in decoder.frames():
                        self._handle(frame_type, fields)
                elif now - last_heard > idle:
                    host, port = self.relay if self.relay is not None else ("?", 0)
                    raise _Silent("heard nothing from the relay at %s:%d for %.1f s (idle timeout %.1f s)"
                                  % (host, port, now - last_heard, idle))
        finally:
            with self._cond:
                self._sock = None
                self._sleeping = False
                self._draining = False

    @staticmethod
    def _send_all(sock: socket.socket, data: bytearray) -> None:
        """Best effort, bounded: the last bytes of a connection being left (GOODBYE)."""
        deadline = time.monotonic() + 1.0
        while data and time.monotonic() < deadline:
            _, writable, _ = select.select([], [sock], [], 0.05)
            if writable:
                try:
                    del data[:sock.send(data)]
                except OSError:
                    return

    def _handle(self, frame_type: int, fields: Dict[str, Any]) -> None:
        if frame_type == wire.ACK:
            through = fields["through"]
            with self._cond:
                while self._unacked and self._unacked[0][0] <= through:
                    self._unacked.popleft()
                self.acked_through = max(self.acked_through, through)
                self._cond.notify_all()
        elif frame_type == wire.PING:
            with self._cond:
                self._outgoing += wire.pong(fields["nonce"])
        elif frame_type == wire.ERROR:
            if fields["name"] in _RECORD_ERRORS:
                # Not expected (emit() and the WELCOME's max_frame keep every record within the
                # limit), but one record must never stop the stream: the largest record sent and not
                # acknowledged on this connection is the one that did not fit; it is dropped, counted,
                # and the rest is resent on the next connection.
                with self._cond:
                    if self._unacked:
                        largest = max(self._unacked, key=lambda entry: entry[2])
                        self._unacked.remove(largest)
                        self._refuse(largest, "%s: %s" % (fields["name"], fields["message"]))
                raise ConnectionError("%s: %s" % (fields["name"], fields["message"]))
            if fields["name"] in wire.PERMANENT_ERRORS:
                raise RelayRefused("%s: %s" % (fields["name"], fields["message"]))
            raise ConnectionError("%s: %s" % (fields["name"], fields["message"]))
        elif frame_type == wire.GOODBYE:
            raise ConnectionError("the relay said GOODBYE")
