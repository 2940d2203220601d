"""An asyncio collector for the Allegro relay (protocol/PROTOCOL.md section 5), standard library only.

One `Collector` holds one subscription to one relay and keeps it: it says HELLO as a collector,
SUBSCRIBEs (from `earliest`, `latest`, `committed` or a relay sequence), decodes DELIVER frames
straight out of its receive buffer, grants CREDIT as records are taken (the window is the memory
bound: records received and not yet taken never exceed it), coalesces COMMITs (at most every
`commit_interval_ms` or `commit_records` records, and on close), hands SKIPs out as `Gap` markers,
answers PINGs and PINGs a quiet relay, treats `idle_timeout_ms` of silence as a lost connection, and
reconnects with backoff, resuming just after the last record it received: no gap, no duplicate.
A relay ERROR is raised as a typed exception when reconnecting cannot fix it (`AuthFailed`,
`UnknownCollector`, `CollectorBusy`: a newer connection took the name over, ...) and retried
otherwise (`ShuttingDown`, a lost connection).

    async with Collector("127.0.0.1:7400", name="timmy", token="...") as collector:
        async for item in collector:          # TelemetryEvent, or Gap where the relay skipped numbers
            handle(item)
            await item.commit()               # cheap: sent coalesced

`HermesBridge` (allegro_client.timmy) runs one Collector per relay into one merged stream.
"""

import asyncio
import collections
import datetime
import json
import logging
import os
import random
import struct
import sys
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Deque, Dict, List, Optional, Tuple, Union

from . import wire
from .producer import RelayRefused

__all__ = ["Collector", "TelemetryEvent", "Gap", "CollectorError", "RelayError", "PermanentRelayError",
           "TransientRelayError", "AuthFailed", "UnknownCollector", "CursorUnavailable", "CollectorBusy",
           "ShuttingDown", "ProtocolViolation", "ConnectionLost", "SameRelayTwice"]

log = logging.getLogger("allegro_client.collector")

_SLOTS: Dict[str, Any] = {"slots": True} if sys.version_info >= (3, 10) else {}
_U32 = struct.Struct("<I")


# -- errors ------------------------------------------------------------------------------------

class CollectorError(Exception):
    """Base of the collector's errors."""


class ConnectionLost(CollectorError):
    """The connection ended (closed, reset, silent past idle_timeout_ms, ...). Retried."""


class ProtocolViolation(CollectorError, RelayRefused):
    """The relay sent something this client cannot accept (a bug on one side). Not retried."""


class RelayError(CollectorError):
    """The relay answered with an ERROR frame (every ERROR closes the connection).

    `code` and `name` are the protocol's (section 8), `relay_message` the relay's own words,
    `relay` the address, `advice` what to configure (empty when the relay's message says it)."""

    def __init__(self, code: int, name: str, relay_message: str, relay: str = "", advice: str = ""):
        self.code, self.name, self.relay_message, self.relay, self.advice = code, name, relay_message, relay, advice
        text = "%s from the relay at %s: %s" % (name, relay or "?", relay_message)
        if advice:
            text += " (" + advice + ")"
        super().__init__(text)


class PermanentRelayError(RelayError, RelayRefused):
    """An ERROR that reconnecting cannot fix: raised to the caller, the collector stops."""


class TransientRelayError(RelayError):
    """An ERROR a later connection may not get: the collector reconnects with backoff."""


class AuthFailed(PermanentRelayError):
    """AUTH_FAILED: the collector token is wrong for this relay."""


class UnknownCollector(PermanentRelayError):
    """UNKNOWN_COLLECTOR: the durable collector name is not configured on this relay."""


class CursorUnavailable(PermanentRelayError):
    """CURSOR_UNAVAILABLE: the start asked for is outside what the relay holds."""


class CollectorBusy(PermanentRelayError):
    """COLLECTOR_BUSY: a newer connection subscribed under this durable name and took it over.
    Not retried: taking the name back would start a tug of war between the two."""


class ShuttingDown(TransientRelayError):
    """SHUTTING_DOWN: the relay is stopping."""


class SameRelayTwice(CollectorError):
    """Two configured addresses lead to one relay identity (relay_id from WELCOME); only one
    subscription per relay is kept, the other address waits. Retried."""


_PERMANENT = {1, 2, 3, 4, 6, 7, 12, 13, 18, 19}
_ADVICE = {
    5: "give the collector token the relay is configured with (its collector_token setting, or "
       "ALLEGRO_COLLECTOR_TOKEN in the relay's environment) as token=..., or set ALLEGRO_COLLECTOR_TOKEN here",
    4: "this client speaks protocol version 1 only",
    14: "add the name to the relay's durable_collectors setting "
        "(for example --set durable_collectors=NAME), or use no name for an ephemeral collector",
    15: "another connection subscribed under this name and took it over: run one collector per "
        "durable name (or give each its own name in durable_collectors)",
}
# The codes with an exception type of their own; the others are PermanentRelayError or
# TransientRelayError by _PERMANENT.
_TYPES = {5: AuthFailed, 11: CursorUnavailable, 14: UnknownCollector, 15: CollectorBusy, 16: ShuttingDown}


def relay_error(code: int, message: str, relay: str) -> RelayError:
    """The typed exception for an ERROR frame."""
    name = wire.ERROR_NAMES.get(code, "ERROR %d" % code)
    kind = _TYPES.get(code) or (PermanentRelayError if code in _PERMANENT else TransientRelayError)
    return kind(code, name, message, relay, _ADVICE.get(code, ""))


# -- what a collector hands out ---------------------------------------------------------------

@dataclass(**_SLOTS)
class TelemetryEvent:
    """One delivered record. `relay_id` and `relay_seq` say where it sits in its relay's stream;
    `producer` and `producer_seq` identify it across relays. Times are ns since the Unix epoch:
    `event_time_ns` from the producer, `ingest_ns` when the relay accepted it."""

    relay_id: str
    relay_seq: int
    producer: str
    producer_seq: int
    session: str
    kind: str
    content_type: str
    event_time_ns: int
    ingest_ns: int
    payload: bytes
    source: Optional["_RelayState"] = field(default=None, repr=False, compare=False)

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)

    def text(self) -> str:
        """The payload as UTF-8 text."""
        return self.payload.decode("utf-8")

    @property
    def event_time(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.event_time_ns / 1e9, datetime.timezone.utc)

    @property
    def ingest_time(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.ingest_ns / 1e9, datetime.timezone.utc)

    async def commit(self) -> None:
        """Marks this event, and every earlier event of its relay, as processed. Cheap: the
        COMMIT frame goes out coalesced (see Collector). Does nothing on an ephemeral
        subscription (the relay keeps no cursor for it and refuses COMMIT)."""
        if self.source is None:
            raise RuntimeError("this event did not come from a collector")
        self.source.want(self.relay_seq)


@dataclass(**_SLOTS)
class Gap:
    """Relay sequences `first ... last` of relay `relay_id` hold no record for this collector.

    `lost` False: the relay never assigned them (a SKIP after a relay crash; their producers
    resent those records, which came under new numbers): nothing is missing. `lost` True: the
    relay no longer held them when this collector subscribed (retention removed them while it
    was away; the relay counts them): that is loss, and it is reported."""

    relay_id: str
    first: int
    last: int
    lost: bool = False

    async def commit(self) -> None:
        """Nothing to do: a gap is committed with the records around it."""


Item = Union[TelemetryEvent, Gap]


class _Batch:
    """What one relay frame delivered, as queued for the consumer."""

    __slots__ = ("collector", "state", "items", "records", "last_user", "auto_after")

    def __init__(self, collector: "Collector", state: "_RelayState", items: List[Any], records: int,
                 last_user: int, auto_after: int):
        self.collector, self.state, self.items = collector, state, items
        self.records = records        # delivered records in it (credit to give back once taken)
        self.last_user = last_user    # highest relay sequence handed to the user (0: none)
        self.auto_after = auto_after  # highest sequence after it that needs no user commit (gaps, dropped duplicates)


class _Handout:
    """Hands batches to the consumer item by item or as lists, keeping the one batch that is open
    (partly handed out); a batch's records are given back as credit once all of it is taken.
    `fetch` waits for the next batch, or returns None at the end."""

    def __init__(self, fetch: Callable[[], Awaitable[Optional[_Batch]]]):
        self._fetch = fetch
        self.open: Optional[_Batch] = None
        self.index = 0

    @property
    def last_handed(self) -> Optional[Any]:
        """The item handed out last from the open batch (None when none is open)."""
        return self.open.items[self.index - 1] if self.open is not None and self.index else None

    async def items(self) -> AsyncIterator[Any]:
        while True:
            batch = self.open
            if batch is not None:
                items, index = batch.items, self.index
                while index < len(items):
                    index += 1
                    self.index = index
                    yield items[index - 1]
                self._finish(batch)
            if not await self._next():
                return

    async def lists(self) -> AsyncIterator[List[Any]]:
        while True:
            batch = self.open
            if batch is not None:
                rest = batch.items[self.index:]
                self.index = len(batch.items)
                if rest:
                    yield rest
                self._finish(batch)
            if not await self._next():
                return

    def _finish(self, batch: _Batch) -> None:
        self.open = None
        batch.collector._taken(batch)

    async def _next(self) -> bool:
        batch = await self._fetch()
        if batch is None:
            return False
        self.open, self.index = batch, 0
        return True


class _Inbox:
    """Batches waiting for the consumer, from one or several collectors; bounded by their windows."""

    def __init__(self) -> None:
        self.entries: Deque[_Batch] = collections.deque()
        self.waiter: Optional["asyncio.Future[None]"] = None
        self.error: Optional[BaseException] = None
        self.closed = False

    def put(self, batch: _Batch) -> None:
        self.entries.append(batch)
        self._wake()

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Optional[_Batch]:
        """The next batch; None once closed; raises a collector's permanent error."""
        while True:
            if self.error is not None:
                raise self.error
            if self.entries:
                return self.entries.popleft()
            if self.closed:
                return None
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None


class _RelayState:
    """What this process knows of one relay identity (relay_id from WELCOME): the last sequence
    received, and the commit: wanted by the user, sent, confirmed (COMMITTED)."""

    def __init__(self, relay_id: str, interval: float, records: int, durable: bool = True):
        self.relay_id = relay_id
        self.interval, self.records = interval, records
        self.durable = durable  # False: an ephemeral subscription, which may not COMMIT (NOT_PERMITTED)
        self.holder: Optional["Collector"] = None   # the collector subscribed to it now
        self.last_received = 0
        self.resumable = False  # subscribed at least once: a reconnect resumes at last_received + 1
        self.last_user = 0      # last relay sequence handed to the user, of batches taken
        self.auto_after = 0     # gaps and dropped duplicates after last_user: committed with it
        self.wanted = 0
        self.sent = 0
        self.confirmed = 0
        self.timer: Optional[asyncio.TimerHandle] = None

    def want(self, through: int) -> None:
        if not self.durable:
            return  # nothing to commit: the relay keeps no cursor for an ephemeral subscription
        if through > self.wanted:
            self.wanted = through
        if self.auto_after > self.wanted and self.wanted >= self.last_user:
            self.wanted = self.auto_after
        if self.wanted <= self.sent:
            return
        if self.wanted - self.sent >= self.records:
            self.flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.interval, self.flush)

    def taken(self, last_user: int, auto_after: int) -> None:
        if last_user:
            self.last_user, self.auto_after = last_user, auto_after
        elif auto_after > self.auto_after:
            self.auto_after = auto_after
        if self.auto_after > self.wanted and self.wanted >= self.last_user:
            self.want(self.auto_after)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        holder = self.holder
        if self.wanted > self.sent and holder is not None and holder._subscribed:
            holder._write(wire.commit(self.wanted))
            self.sent = self.wanted


_address = wire.parse_address


# -- the connection ------------------------------------------------------------------------------

class _Wire(asyncio.BufferedProtocol):
    """One TCP connection: reads straight into a buffer it owns, splits frames in place."""

    def __init__(self, owner: "Collector"):
        self.owner = owner
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray(1 << 18)
        self.view = memoryview(self.buffer)
        self.filled = 0
        self.need = 0                   # bytes the frame at the buffer's start needs, when known
        self.max_frame = 1 << 16        # until WELCOME says
        self.transport: Optional[asyncio.Transport] = None
        self.welcome: "asyncio.Future[Any]" = self.loop.create_future()
        self.subscribed: "asyncio.Future[Any]" = self.loop.create_future()
        self.closed: "asyncio.Future[BaseException]" = self.loop.create_future()
        self.heard = self.sent = self.loop.time()
        self.failed = False
        self.start = ""
        self.credit = 0                 # the credit the SUBSCRIBE gave

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        want = max(self.need - self.filled, 1 << 16)
        if len(self.buffer) - self.filled < want:
            grown = bytearray(max(len(self.buffer) * 2, self.filled + want))
            grown[:self.filled] = self.view[:self.filled]
            self.buffer, self.view = grown, memoryview(grown)
        return self.view[self.filled:]

    def buffer_updated(self, nbytes: int) -> None:
        self.filled += nbytes
        self.heard = self.loop.time()
        if self.failed:
            return
        try:
            self._frames()
        except ProtocolViolation as error:
            self.fail(error)
        except wire.ProtocolError as error:
            self.fail(ProtocolViolation("from the relay at %s: %s" % (self.owner.address_text, error)))

    def _frames(self) -> None:
        buffer, view, filled, owner = self.buffer, self.view, self.filled, self.owner
        position = 0
        self.need = 0
        while filled - position >= 5 and not self.failed:
            (length,) = _U32.unpack_from(buffer, position)
            if length == 0 or length > self.max_frame:
                raise ProtocolViolation("the relay at %s sent a frame length of %d (limit %d)" %
                                        (owner.address_text, length, self.max_frame))
            end = position + 4 + length
            if end > filled:
                self.need = end - position
                break
            frame_type = buffer[position + 4]
            if frame_type == wire.DELIVER:
                owner._deliver(view, position + 5, end)
            else:
                owner._frame(self, frame_type, bytes(view[position + 5:end]))
            position = end
        if position:
            rest = filled - position
            if rest:
                buffer[:rest] = bytes(view[position:filled])
            self.filled = rest

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.sent = self.loop.time()

    def fail(self, error: BaseException) -> None:
        """Ends the connection with this reason (the first one given wins)."""
        if not self.failed:
            self.failed = True
            for future in (self.welcome, self.subscribed, self.closed):
                if not future.done():
                    future.set_result(error)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        reason = "the relay at %s closed the connection" % self.owner.address_text
        if exc is not None:
            reason += ": %s" % exc
        self.fail(ConnectionLost(reason))

    def eof_received(self) -> Optional[bool]:
        return False


# -- the collector -------------------------------------------------------------------------------

class Collector:
    """A subscription to one relay that survives the relay's restarts and silences.

    relay: "HOST:PORT" or (host, port).
    name: a durable collector name configured on the relay (its cursor lives there, across
        restarts of both sides); None for an ephemeral subscription.
    token: the relay's collector token; defaults to $ALLEGRO_COLLECTOR_TOKEN.
    start: "committed" (default with a name), "latest" (default without), "earliest", or a relay
        sequence (int). Only the first subscription uses it: a reconnect resumes just after the
        last record received.
    window: flow-control window in records; records received and not yet taken by the consumer
        never exceed it (the memory bound, with one receive buffer of at most max_frame).
    commit_interval_ms, commit_records: a COMMIT goes out at most this long after commit() is
        called, or at once when this many records are waiting to be committed; and on close().
    live: ephemeral only: records before they are fsync'd (see PROTOCOL.md section 5).
    idle_timeout_ms, heartbeat_ms: override the relay's (from WELCOME): silence this long is a
        lost connection; a PING goes out when nothing was sent for heartbeat_ms.
    on_state: called as on_state(collector, "connected" | "disconnected", detail) on changes.
    """

    def __init__(self, relay: Union[str, Tuple[str, int]], name: Optional[str] = None, token: Optional[str] = None, *,
                 start: Union[str, int, None] = None, client_id: Optional[str] = None, window: int = 4096,
                 commit_interval_ms: int = 50, commit_records: int = 2048, live: bool = False,
                 connect_timeout: float = 5.0, min_backoff: float = 0.05, max_backoff: float = 5.0,
                 idle_timeout_ms: Optional[int] = None, heartbeat_ms: Optional[int] = None,
                 on_state: Optional[Callable[["Collector", str, str], None]] = None,
                 _inbox: Optional[_Inbox] = None, _registry: Optional[Dict[str, _RelayState]] = None):
        self.address = _address(relay)
        self.address_text = "%s:%d" % self.address
        self.name = name or ""
        if start is None:
            start = "committed" if self.name else "latest"
        if isinstance(start, int) and not isinstance(start, bool):
            if start < 1:
                raise ValueError("a start sequence is at least 1")
            self.start, self.start_sequence = "sequence", start
        elif start in ("earliest", "latest", "committed"):
            self.start, self.start_sequence = str(start), 0
        else:
            raise ValueError("start must be earliest, latest, committed or a relay sequence, not %r" % (start,))
        if self.start == "committed" and not self.name:
            raise ValueError('start "committed" needs a durable collector name')
        if live and self.name:
            raise ValueError("live is for ephemeral collectors: a durable one is given only records that are fsync'd")
        if not 1 <= window <= 0xFFFFFFFF:
            raise ValueError("window must be 1 ... 2^32-1 records")
        self.token = token if token is not None else os.environ.get("ALLEGRO_COLLECTOR_TOKEN", "")
        self.client_id = client_id or self.name or "py-collector-%d" % os.getpid()
        self.window = window
        self.commit_interval = max(commit_interval_ms, 0) / 1000.0
        self.commit_records = max(commit_records, 1)
        self.live = live
        self.connect_timeout = connect_timeout
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.idle_timeout_ms, self.heartbeat_ms = idle_timeout_ms, heartbeat_ms
        self.on_state = on_state
        self._inbox = _inbox if _inbox is not None else _Inbox()
        self._own_inbox = _inbox is None
        self._registry: Dict[str, _RelayState] = _registry if _registry is not None else {}
        self._state: Optional[_RelayState] = None
        self._wire: Optional[_Wire] = None
        self._subscribed = False
        self._held = 0              # records received and not yet taken by the consumer
        self._credit_due = 0        # taken since the last CREDIT
        self._task: Optional["asyncio.Task[None]"] = None
        self._ticker: Optional[asyncio.TimerHandle] = None
        self._closing = False
        self._wake: Optional[asyncio.Event] = None
        self._texts: Dict[bytes, Tuple[str, str, str, str]] = {}
        self._resume_failed = False
        self._handout = _Handout(self._inbox.get)
        self.welcome: Dict[str, Any] = {}
        self.subscription: Dict[str, Any] = {}
        self.connects = 0
        self.reconnects = 0
        self.last_disconnect: Optional[str] = None
        self.error: Optional[BaseException] = None

    # -- public ---------------------------------------------------------------------------

    @property
    def relay_id(self) -> Optional[str]:
        """The relay's identity from WELCOME (None before the first connection)."""
        return self._state.relay_id if self._state is not None else None

    @property
    def connected(self) -> bool:
        return self._subscribed

    @property
    def committed(self) -> int:
        """The cursor the relay last confirmed (COMMITTED) for this durable collector."""
        return self._state.confirmed if self._state is not None else 0

    @property
    def last_received(self) -> int:
        return self._state.last_received if self._state is not None else 0

    async def start_collecting(self) -> "Collector":
        """Starts connecting (in the background; also done by iterating). Idempotent."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aenter__(self) -> "Collector":
        return await self.start_collecting()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[Item]:
        return self._items()

    async def _items(self) -> AsyncIterator[Item]:
        await self.start_collecting()
        async for item in self._handout.items():
            yield item

    async def stream_batches(self) -> AsyncIterator[List[Item]]:
        """Lists of items as they arrived (one relay frame each): less overhead per record."""
        await self.start_collecting()
        async for items in self._handout.lists():
            yield items

    async def commit(self, item: Optional[Item] = None) -> None:
        """Marks `item` (and everything before it from this relay) as processed; with no item,
        everything handed out so far. The COMMIT frame is coalesced; close() sends the last."""
        if item is None:
            handed = self._handout.last_handed
            if handed is not None and self._handout.open is not None:
                self._handout.open.state.want(handed.relay_seq if isinstance(handed, TelemetryEvent) else handed.last)
            elif self._state is not None:
                self._state.want(self._state.last_user)
            return
        if isinstance(item, TelemetryEvent):
            await item.commit()

    async def close(self, timeout: float = 10.0) -> bool:
        """Sends the last COMMIT and GOODBYE, waits (up to `timeout`) for COMMITTED and the
        relay's close, and stops. True when the relay confirmed every commit asked for."""
        if self._closing:
            return self._all_confirmed()
        self._closing = True
        state, wire_ = self._state, self._wire
        if state is not None:
            state.flush()
        if wire_ is not None and self._subscribed and not wire_.failed:
            wire_.write(wire.goodbye())
            try:
                await asyncio.wait_for(asyncio.shield(wire_.closed), timeout)
            except asyncio.TimeoutError:
                pass
            wire_.fail(ConnectionLost("closed by the collector"))
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._stop_ticker()
        if self._own_inbox:
            self._inbox.close()
        return self._all_confirmed()

    def _all_confirmed(self) -> bool:
        state = self._state
        return state is None or state.confirmed >= state.wanted

    # -- connection loop ------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # a bug or a bad setting (a token over 1024 bytes, ...): say it, do not hang
            if self._wire is not None:
                self._wire.fail(ConnectionLost("the collector stopped"))
            self._disconnected()
            self._stop(error)
            if not isinstance(error, Exception):
                raise

    async def _loop(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                wire_ = await self._connect()
            except PermanentRelayError as error:
                self._stop(error)
                return
            except ProtocolViolation as error:
                self._stop(error)
                return
            except (OSError, asyncio.TimeoutError, CollectorError) as error:
                reason = self._describe(error)
            else:
                attempt = 0
                self.connects += 1
                if self.connects > 1:
                    self.reconnects += 1
                self._notify("connected", "%s (relay %s)" % (self.address_text, self.relay_id))
                result = await wire_.closed
                self._disconnected()
                if self._closing:
                    return
                if isinstance(result, (PermanentRelayError, ProtocolViolation)):
                    self._stop(result)
                    return
                reason = self._describe(result)
            if self._closing:
                return
            self.last_disconnect = reason
            self._notify("disconnected", reason)
            attempt += 1
            delay = min(self.max_backoff, self.min_backoff * (2 ** min(attempt - 1, 16)))
            delay = delay / 2 + random.random() * delay / 2
            assert self._wake is not None
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    def _describe(self, error: BaseException) -> str:
        if isinstance(error, asyncio.TimeoutError):
            return "the relay at %s did not answer within %.1f s" % (self.address_text, self.connect_timeout)
        if isinstance(error, OSError) and not isinstance(error, CollectorError):
            return "cannot reach the relay at %s: %s" % (self.address_text, error.strerror or error)
        return str(error)

    def _stop(self, error: BaseException) -> None:
        self.error = error
        log.error("collector %s stops: %s", self.address_text, error)
        self._inbox.fail(error)

    def _notify(self, what: str, detail: str) -> None:
        if what == "disconnected":
            log.warning("collector %s: %s; reconnecting", self.address_text, detail)
        else:
            log.info("collector %s: connected %s", self.address_text, detail)
        if self.on_state is not None:
            try:
                self.on_state(self, what, detail)
            except Exception:  # a callback must not break the collector
                log.exception("on_state callback failed")

    async def _connect(self) -> _Wire:
        loop = asyncio.get_running_loop()
        host, port = self.address
        deadline = loop.time() + self.connect_timeout
        transport, wire_ = await asyncio.wait_for(loop.create_connection(lambda: _Wire(self), host, port),
                                                  self.connect_timeout)
        try:
            wire_.write(wire.hello(self.client_id, self.token, role=wire.ROLE_COLLECTOR))
            welcome = await asyncio.wait_for(asyncio.shield(wire_.welcome), max(deadline - loop.time(), 0.01))
            if isinstance(welcome, BaseException):
                raise welcome
            self.welcome = welcome
            wire_.max_frame = welcome["max_frame"]
            state = self._claim(welcome["relay_id"])
            self._wire = wire_
            if state.resumable and not self._resume_failed:
                start, sequence = "sequence", state.last_received + 1
            else:
                start, sequence = self.start, self.start_sequence
            credit = max(self.window - self._held, 0)
            wire_.write(wire.subscribe(start, credit, self.name, sequence, self.live))
            wire_.start, wire_.credit = start, credit
            answer = await asyncio.wait_for(asyncio.shield(wire_.subscribed), max(deadline - loop.time(), 0.01))
            if isinstance(answer, CursorUnavailable) and start == "sequence" and state.resumable:
                # The relay no longer holds what follows our last record (retention, or a relay
                # whose data was replaced): start over as configured next time, and say so.
                log.error("collector %s: cannot resume after relay sequence %d: %s; resubscribing from %s",
                          self.address_text, state.last_received, answer.relay_message, self.start)
                self._resume_failed = True
                state.last_received = 0
                state.resumable = False
                raise ConnectionLost(str(answer))
            if isinstance(answer, BaseException):
                raise answer
        except BaseException:
            wire_.fail(ConnectionLost("handshake abandoned"))
            self._disconnected()
            raise
        self._resume_failed = False
        self._start_ticker(wire_)
        return wire_

    def _on_subscribed(self, wire_: _Wire, answer: Dict[str, Any]) -> None:
        """SUBSCRIBED, handled at once: DELIVER frames may follow in the same read."""
        state = self._state
        assert state is not None
        self.subscription = answer
        self._subscribed = True
        if answer["committed"] > state.confirmed:
            state.confirmed = answer["committed"]
        if state.sent > state.confirmed:
            state.sent = state.confirmed  # unconfirmed commits go out again on this connection
        if wire_.start == "committed" and not state.resumable and answer["first_sequence"] > answer["committed"] + 1:
            first, last = answer["committed"] + 1, answer["first_sequence"] - 1
            log.error("collector %s: relay sequences %d ... %d were removed by the relay's retention before "
                      "this collector committed them", self.address_text, first, last)
            self._inbox.put(_Batch(self, state, [Gap(state.relay_id, first, last, True)], 0, 0, last))
        if not state.resumable:
            state.last_received = answer["first_sequence"] - 1
            state.resumable = True
        # Credit: the relay now holds wire_.credit. Records taken between the SUBSCRIBE and this
        # answer were not credited to any connection (not subscribed): they are due on this one,
        # or the window would shrink by them for the connection's whole life (down to a stall).
        self._credit_due = max(self.window - self._held - wire_.credit, 0)
        if self._credit_due and self._credit_due >= (self.window + 1) // 2:
            wire_.write(wire.credit(self._credit_due))
            self._credit_due = 0
        state.flush()

    def _claim(self, relay_id: str) -> _RelayState:
        """The state of this relay identity; one subscription per identity in a registry."""
        state = self._registry.get(relay_id)
        if state is None:
            state = _RelayState(relay_id, self.commit_interval, self.commit_records, bool(self.name))
            self._registry[relay_id] = state
        if state.holder is not None and state.holder is not self:
            raise SameRelayTwice("the relay at %s is relay %r, which this process already reads through %s; "
                                 "waiting" % (self.address_text, relay_id, state.holder.address_text))
        if self._state is not None and self._state is not state:
            log.warning("collector %s: the address now leads to relay %r (was %r)", self.address_text, relay_id,
                        self._state.relay_id)
        self._state = state
        state.holder = self
        return state

    def _disconnected(self) -> None:
        self._subscribed = False
        self._stop_ticker()
        self._wire = None
        state = self._state
        if state is not None and state.holder is self:
            state.holder = None

    # -- heartbeats and silence -----------------------------------------------------------

    def _start_ticker(self, wire_: _Wire) -> None:
        idle = (self.idle_timeout_ms or self.welcome.get("idle_timeout_ms") or 15000) / 1000.0
        heartbeat = (self.heartbeat_ms or self.welcome.get("heartbeat_ms") or 5000) / 1000.0
        period = min(max(min(idle, heartbeat) / 4, 0.02), 1.0)
        loop = asyncio.get_running_loop()
        nonce = [0]

        def tick() -> None:
            now = loop.time()
            if now - wire_.heard > idle:
                wire_.fail(ConnectionLost("heard nothing from the relay at %s for %.0f ms (idle timeout)" %
                                          (self.address_text, (now - wire_.heard) * 1000)))
                return
            if now - wire_.sent >= heartbeat:
                nonce[0] += 1
                wire_.write(wire.ping(nonce[0]))
            self._ticker = loop.call_later(period, tick)

        self._ticker = loop.call_later(period, tick)

    def _stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    # -- frames ---------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._wire is not None:
            self._wire.write(data)

    def _deliver(self, view: memoryview, start: int, end: int) -> None:
        state = self._state
        if state is None or not self._subscribed:
            raise ProtocolViolation("the relay at %s sent DELIVER before SUBSCRIBED" % self.address_text)
        if self._closing:
            return
        items = wire.decode_deliver(view, start, end, TelemetryEvent, state.relay_id, self._texts,
                                    self.welcome.get("max_batch", 0xFFFFFFFF), state)
        first, last = items[0].relay_seq, items[-1].relay_seq
        count = len(items)
        if first <= state.last_received or (last - first != count - 1 and not self._increasing(items)):
            raise ProtocolViolation("the relay at %s delivered relay sequence %d after %d" %
                                    (self.address_text, first, state.last_received))
        state.last_received = last
        self._held += count
        self._inbox.put(_Batch(self, state, items, count, last, 0))

    @staticmethod
    def _increasing(items: List[TelemetryEvent]) -> bool:
        previous = 0
        for item in items:
            if item.relay_seq <= previous:
                return False
            previous = item.relay_seq
        return True

    def _frame(self, wire_: _Wire, frame_type: int, body: bytes) -> None:
        fields = wire.decode_collector_body(frame_type, body)
        state = self._state
        if frame_type == wire.PING:
            wire_.write(wire.pong(fields["nonce"]))
        elif frame_type == wire.PONG:
            pass
        elif frame_type == wire.COMMITTED:
            if state is not None and fields["through"] > state.confirmed:
                state.confirmed = fields["through"]
        elif frame_type == wire.SKIP:
            if state is None or not self._subscribed:
                raise ProtocolViolation("the relay at %s sent SKIP before SUBSCRIBED" % self.address_text)
            if fields["first"] <= state.last_received:
                raise ProtocolViolation("the relay at %s skipped %d ... %d after delivering %d" %
                                        (self.address_text, fields["first"], fields["last"], state.last_received))
            state.last_received = fields["last"]
            log.info("collector %s: relay %s skipped sequences %d ... %d (never assigned: not a loss)",
                     self.address_text, state.relay_id, fields["first"], fields["last"])
            if not self._closing:
                self._inbox.put(_Batch(self, state, [Gap(state.relay_id, fields["first"], fields["last"])], 0, 0,
                                       fields["last"]))
        elif frame_type == wire.WELCOME:
            if wire_.welcome.done():
                raise ProtocolViolation("a second WELCOME from the relay at %s" % self.address_text)
            wire_.welcome.set_result(fields)
        elif frame_type == wire.SUBSCRIBED:
            if wire_.subscribed.done() or not wire_.welcome.done():
                raise ProtocolViolation("an unexpected SUBSCRIBED from the relay at %s" % self.address_text)
            self._on_subscribed(wire_, fields)
            wire_.subscribed.set_result(fields)
        elif frame_type == wire.ERROR:
            wire_.fail(relay_error(fields["code"], fields["message"], self.address_text))
        elif frame_type == wire.GOODBYE:
            wire_.fail(ConnectionLost("the relay at %s said GOODBYE" % self.address_text))
        else:
            raise ProtocolViolation("the relay at %s sent a %s frame to a collector" %
                                    (self.address_text, fields.get("type", "0x%02X" % frame_type)))

    def _taken(self, batch: _Batch) -> None:
        """The consumer finished a batch: credit its records back, and let the commit move
        over what needs no user commit."""
        records = batch.records
        if records:
            self._held -= records
            if self._subscribed:
                due = self._credit_due + records
                if due >= (self.window + 1) // 2:
                    self._write(wire.credit(due))
                    due = 0
                self._credit_due = due
        batch.state.taken(batch.last_user, batch.auto_after)
