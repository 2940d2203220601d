"""A producer that never blocks the caller on the network and never loses an acknowledged event.

`emit()` encodes the record and appends it to a bounded in-memory buffer; a background thread
batches records into PUBLISH frames, pipelines them, reads cumulative ACKs, and after a lost
connection reconnects (exponential backoff with jitter, endpoints tried in order) and resends
every record not yet acknowledged. The relay drops the duplicates resending may create.
"""

import collections
import os
import random
import select
import socket
import threading
import time

from . import wire

__all__ = ["Producer", "BufferFull", "RelayRefused"]


class BufferFull(Exception):
    """`emit()` waited `block_timeout` seconds for room (policy "block")."""


class RelayRefused(Exception):
    """The relay refused this producer for good (wrong token, unsupported version, ...)."""


def _text(value):
    if value is None:
        return b""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


class Producer:
    """Publishes records to an Allegro relay.

    relays: list of (host, port) or "host:port", tried in order on every (re)connect.
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
    """

    def __init__(self, relays, producer_id=None, token="", *, batch_records=512, max_buffer=100_000,
                 on_full="block", block_timeout=5.0, connect_timeout=5.0, max_backoff=2.0, first_sequence=None,
                 on_connection=None):
        if on_full not in ("block", "drop_oldest"):
            raise ValueError('on_full must be "block" or "drop_oldest"')
        self.relays = [self._address(r) for r in relays]
        if not self.relays:
            raise ValueError("at least one relay address is needed")
        self.producer_id = producer_id or "py-%s-%d" % (socket.gethostname(), os.getpid())
        self.token = token
        self.batch_records = max(1, batch_records)
        self.max_buffer = max(1, max_buffer)
        self.on_full = on_full
        self.block_timeout = block_timeout
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self._cond = threading.Condition()
        self._pending = collections.deque()    # (sequence, encoded record): not sent on this connection
        self._unacked = collections.deque()    # (sequence, encoded record): sent, not acknowledged
        self._next_sequence = first_sequence if first_sequence else time.time_ns() // 1000
        self.acked_through = self._next_sequence - 1
        self.dropped = 0
        self.emitted = 0
        self.reconnects = 0
        self.error = None
        self.last_error = None
        self.on_connection = on_connection
        self._closing = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="allegro-producer", daemon=True)
        self._thread.start()

    @staticmethod
    def _address(relay):
        if isinstance(relay, str):
            host, colon, port = relay.rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("relay address %r: expected HOST:PORT, for example 127.0.0.1:7400" % relay)
            return host.strip("[]"), int(port)
        return relay[0], int(relay[1])

    # -- caller side --------------------------------------------------------------------

    def emit(self, payload, session="", kind="", content_type=None, event_time_ns=None):
        """Queues one record and returns its producer sequence. Does not touch the network.
        `payload` may be bytes, str (UTF-8) or any JSON-serialisable object (sent as JSON)."""
        if isinstance(payload, (bytes, bytearray, memoryview)):
            data, default_type = bytes(payload), "application/octet-stream"
        elif isinstance(payload, str):
            data, default_type = payload.encode("utf-8"), "text/plain"
        else:
            import json
            data, default_type = json.dumps(payload, separators=(",", ":")).encode("utf-8"), "application/json"
        session_b, kind_b = _text(session), _text(kind)
        type_b = _text(content_type if content_type is not None else default_type)
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
            self._pending.append((sequence, wire.record(sequence, when, session_b, kind_b, type_b, data)))
            self.emitted += 1
            if len(self._pending) == 1 or len(self._pending) >= self.batch_records:
                self._cond.notify_all()
        return sequence

    def _make_room(self):
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

    def flush(self, timeout=30.0):
        """Waits until every emitted record is acknowledged. True when it is."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._pending or self._unacked:
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def close(self, timeout=30.0):
        """Flushes, says GOODBYE and stops the sender. True when everything was acknowledged."""
        done = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(5.0)
        return done

    @property
    def unacked(self):
        with self._cond:
            return len(self._pending) + len(self._unacked)

    # -- sender thread -------------------------------------------------------------------

    def _run(self):
        attempt = 0
        while True:
            with self._cond:
                if self._closing and not (self._pending or self._unacked):
                    break
                if self._closing and self.error is not None:
                    break
            try:
                connection, welcome = self._connect()
            except RelayRefused as refused:
                with self._cond:
                    self.error = refused
                    self._cond.notify_all()
                return
            except OSError as error:
                self.last_error = error
                if self.on_connection is not None:
                    self.on_connection("failed", error)
                attempt += 1
                delay = min(self.max_backoff, 0.05 * (2 ** min(attempt, 10)))
                time.sleep(delay / 2 + random.random() * delay / 2)
                with self._cond:
                    if self._closing:
                        break  # close() already waited its timeout: give up (it returned False)
                continue
            attempt = 0
            if self.on_connection is not None:
                self.on_connection("connected", None)
            try:
                self._serve(connection, welcome)
            except RelayRefused as refused:
                with self._cond:
                    self.error = refused
                    self._cond.notify_all()
                return
            except (OSError, wire.ProtocolError):
                pass
            finally:
                connection[0].close()
            self.reconnects += 1
        self._stopped = True

    def _connect(self):
        last = None
        for host, port in self.relays:
            try:
                sock = socket.create_connection((host, port), timeout=self.connect_timeout)
            except OSError as error:
                last = ConnectionError("cannot reach the relay at %s:%d: %s" % (host, port, error.strerror or error))
                continue
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(wire.hello(self.producer_id, self.token))
                decoder = wire.Decoder()
                while True:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("the relay closed during the handshake")
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
                decoder.max_frame = fields["max_frame"] + 4096
                sock.settimeout(None)
                sock.setblocking(False)
                # Everything not acknowledged goes out again, oldest first.
                with self._cond:
                    self._pending.extendleft(reversed(self._unacked))
                    self._unacked.clear()
                return (sock, decoder), fields
            except (OSError, wire.ProtocolError) as error:
                sock.close()
                last = error
        raise last if isinstance(last, OSError) else ConnectionError(str(last))

    def _serve(self, connection, welcome):
        sock, decoder = connection
        max_batch = max(1, min(self.batch_records, welcome["max_batch"]))
        # A PUBLISH frame's length counts its type byte and record count besides the records.
        max_bytes = welcome["max_frame"] - 5
        heartbeat = max(welcome["heartbeat_ms"] / 1000.0, 0.05)
        outgoing = bytearray()
        last_sent = time.monotonic()
        while True:
            with self._cond:
                if not outgoing and not self._pending:
                    if self._closing and not self._unacked:
                        outgoing += wire.goodbye()
                    else:
                        # Nothing to send: wait for records (or read acks meanwhile).
                        self._cond.wait(0.002 if self._unacked else 0.05)
                batch, size = [], 0
                while self._pending and len(batch) < max_batch:
                    sequence, encoded = self._pending[0]
                    if batch and size + len(encoded) > max_bytes:
                        break
                    self._pending.popleft()
                    self._unacked.append((sequence, encoded))
                    batch.append(encoded)
                    size += len(encoded)
            if batch:
                outgoing += wire.publish(batch)
            elif not outgoing and time.monotonic() - last_sent > heartbeat:
                outgoing += wire.ping(0)
            readable, writable, _ = select.select([sock], [sock] if outgoing else [], [], 0.0 if outgoing or batch else 0.01)
            if writable:
                sent = sock.send(outgoing)
                del outgoing[:sent]
                last_sent = time.monotonic()
            if readable:
                data = sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("the relay closed the connection")
                decoder.feed(data)
                for frame_type, fields in decoder.frames():
                    self._handle(frame_type, fields, outgoing)
            with self._cond:
                if self._closing and not self._pending and not self._unacked and not outgoing:
                    return

    def _handle(self, frame_type, fields, outgoing):
        if frame_type == wire.ACK:
            through = fields["through"]
            with self._cond:
                while self._unacked and self._unacked[0][0] <= through:
                    self._unacked.popleft()
                self.acked_through = max(self.acked_through, through)
                self._cond.notify_all()
        elif frame_type == wire.PING:
            outgoing += wire.pong(fields["nonce"])
        elif frame_type == wire.ERROR:
            if fields["name"] in wire.PERMANENT_ERRORS:
                raise RelayRefused("%s: %s" % (fields["name"], fields["message"]))
            raise ConnectionError("%s: %s" % (fields["name"], fields["message"]))
        elif frame_type == wire.GOODBYE:
            raise ConnectionError("the relay said GOODBYE")
