"""Timmy's side of Allegro: the seed's HermesBridge API over every configured relay.

    from allegro_client.timmy import HermesBridge
    bridge = HermesBridge(relays=["vps1:7400", "vps2:7400"], collector="timmy", token="...",
                          control="http://vps1:7401")
    async for event in bridge.stream_telemetry():          # TelemetryEvent
        handle(event)
        await event.commit()
    summary = await bridge.get_session_summary("20261201_190121_d0353d")   # SessionSummary

`stream_telemetry()` reads every relay at once, each through its own durable subscription (one
cursor per relay, kept by that relay and keyed by the relay's identity from WELCOME), and merges
them as batches arrive. A producer that failed over from relay A to relay B resends to B what A
never acknowledged, so the same record can be held by both: with more than one relay the bridge
drops a record whose (producer, producer_seq) it has already handed out, within the window
described at `SeenWindow`. Order: per relay, relay sequence order; across relays, each
producer's records keep their producer order as long as that producer wrote to one relay at a
time (a failover's resent records come after what the other relay already delivered).
"""

import asyncio
import bisect
import json
import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, List, Optional, Sequence, Tuple, Union

from .collector import (Collector, Gap, TelemetryEvent, _Batch, _Handout, _Inbox, _RelayState, AuthFailed, CollectorBusy,
                        CollectorError, ConnectionLost, CursorUnavailable, PermanentRelayError, ProtocolViolation,
                        RelayError, ShuttingDown, TransientRelayError, UnknownCollector)

__all__ = ["HermesBridge", "TelemetryEvent", "SessionSummary", "KindCount", "ProducerCount", "SeenWindow",
           "SessionNotFound", "ControlError", "Gap", "AuthFailed", "UnknownCollector", "CollectorBusy",
           "CollectorError", "ConnectionLost", "CursorUnavailable", "PermanentRelayError", "ProtocolViolation",
           "RelayError", "ShuttingDown", "TransientRelayError"]


# -- cross-relay duplicates ------------------------------------------------------------------------

class _Ranges:
    """The producer sequences seen for one producer, as sorted disjoint ranges [starts[i], ends[i]]."""

    __slots__ = ("starts", "ends", "current", "floor", "touched")

    def __init__(self) -> None:
        self.starts: List[int] = []
        self.ends: List[int] = []
        self.current = -1     # the range last extended or hit (the fast path)
        self.floor = 0        # sequences at or below it fell out of the window
        self.touched = 0


class SeenWindow:
    """Which (producer, producer_seq) pairs were handed out: the bounded window within which
    cross-relay duplicates are dropped.

    Per producer, the sequences seen are kept as ranges of consecutive numbers (a producer
    numbers its records 1, 2, 3, ..., so one failover adds a range or two, not one entry per
    record). The bounds: at most `max_ranges` ranges per producer (past it the lowest range is
    forgotten, and a record at or below it is no longer recognised: it is delivered, and counted
    in `beyond_window`), at most `max_producers` producers, and at most `max_total_ranges`
    ranges in all (past either, the least recently seen tenth of the producers is forgotten,
    counted in `forgotten_producers`). Memory is about 100 bytes per range, so the defaults bound
    the window at about 10 MB whatever the traffic.
    """

    def __init__(self, max_ranges: int = 1024, max_producers: int = 100_000, max_total_ranges: int = 100_000):
        self.max_ranges = max(1, max_ranges)
        self.max_producers = max(1, max_producers)
        self.max_total_ranges = max(1, max_total_ranges)
        self.total_ranges = 0
        self.producers: Dict[str, _Ranges] = {}
        self.clock = 0
        self.beyond_window = 0
        self.forgotten_producers = 0

    def add(self, producer: str, sequence: int) -> bool:
        """True when the pair is new (and now seen), False for a duplicate."""
        ranges = self.producers.get(producer)
        if ranges is None:
            if len(self.producers) >= self.max_producers:
                self._forget_producers(keep=producer)
            ranges = self.producers[producer] = _Ranges()
        ranges.touched = self.clock
        starts, ends, index = ranges.starts, ranges.ends, ranges.current
        if index >= 0:
            end = ends[index]
            if sequence == end + 1:
                following = index + 1
                if following < len(starts) and starts[following] == sequence + 1:
                    ends[index] = ends[following]
                    del starts[following], ends[following]
                    self.total_ranges -= 1
                else:
                    ends[index] = sequence
                return True
            if starts[index] <= sequence <= end:
                return False
        if sequence <= ranges.floor:
            self.beyond_window += 1
            return True
        index = bisect.bisect_right(starts, sequence) - 1
        if index >= 0 and sequence <= ends[index]:
            ranges.current = index
            return False
        following = index + 1
        if index >= 0 and ends[index] + 1 == sequence:
            ends[index] = sequence
            if following < len(starts) and starts[following] == sequence + 1:
                ends[index] = ends[following]
                del starts[following], ends[following]
                self.total_ranges -= 1
            ranges.current = index
        elif following < len(starts) and starts[following] == sequence + 1:
            starts[following] = sequence
            ranges.current = following
        else:
            starts.insert(following, sequence)
            ends.insert(following, sequence)
            self.total_ranges += 1
            ranges.current = following
            if len(starts) > self.max_ranges:
                ranges.floor = ends[0]
                del starts[0], ends[0]
                self.total_ranges -= 1
                ranges.current -= 1
            if self.total_ranges > self.max_total_ranges:
                self._forget_producers(keep=producer)
        return True

    def tick(self) -> None:
        self.clock += 1

    def _forget_producers(self, keep: str) -> None:
        """Forgets the least recently seen tenth of the producers (never `keep`, the one being added to)."""
        by_age = sorted((item for item in self.producers.items() if item[0] != keep), key=lambda item: item[1].touched)
        for name, ranges in by_age[:max(1, len(by_age) // 10)]:
            self.total_ranges -= len(ranges.starts)
            del self.producers[name]
            self.forgotten_producers += 1


# -- session summaries ---------------------------------------------------------------------------

@dataclass
class KindCount:
    kind: str
    records: int
    bytes: int
    errors: int


@dataclass
class ProducerCount:
    producer: str
    records: int
    bytes: int


@dataclass
class SessionSummary:
    """One Hermes session as the relays saw it (GET /sessions/{id} on their control ports).

    Times are the relay's ingest times (ns since the Unix epoch) of the first and last record;
    `errors` counts records whose kind contains "error". With several control ports the counts
    are summed over the relays that hold the session (`relays`: their control URLs); a record a
    producer resent to a second relay after a failover is counted by both. `unreachable` lists
    control ports that could not be asked."""

    id: str
    first_seen_ns: int
    last_seen_ns: int
    records: int
    bytes: int
    errors: int
    kinds: List[KindCount] = field(default_factory=list)
    producers: List[ProducerCount] = field(default_factory=list)
    relays: List[str] = field(default_factory=list)
    unreachable: List[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Dict[str, Any], relay: str = "") -> "SessionSummary":
        """From the control port's JSON (`{"summary": {...}, "kinds": [...], "producers": [...]}`)."""
        summary = data["summary"]
        return cls(id=summary["id"], first_seen_ns=int(summary["first_seen_nanos"]),
                   last_seen_ns=int(summary["last_seen_nanos"]), records=int(summary["records"]),
                   bytes=int(summary["bytes"]), errors=int(summary["errors"]),
                   kinds=[KindCount(k["kind"], int(k["records"]), int(k["bytes"]), int(k["errors"]))
                          for k in data.get("kinds", [])],
                   producers=[ProducerCount(p["producer"], int(p["records"]), int(p["bytes"]))
                              for p in data.get("producers", [])],
                   relays=[relay] if relay else [])

    def merge(self, other: "SessionSummary") -> None:
        self.first_seen_ns = min(self.first_seen_ns, other.first_seen_ns)
        self.last_seen_ns = max(self.last_seen_ns, other.last_seen_ns)
        self.records += other.records
        self.bytes += other.bytes
        self.errors += other.errors
        kinds = {k.kind: k for k in self.kinds}
        for k in other.kinds:
            if k.kind in kinds:
                kinds[k.kind].records += k.records
                kinds[k.kind].bytes += k.bytes
                kinds[k.kind].errors += k.errors
            else:
                self.kinds.append(KindCount(k.kind, k.records, k.bytes, k.errors))
        producers = {p.producer: p for p in self.producers}
        for p in other.producers:
            if p.producer in producers:
                producers[p.producer].records += p.records
                producers[p.producer].bytes += p.bytes
            else:
                self.producers.append(ProducerCount(p.producer, p.records, p.bytes))
        self.kinds.sort(key=lambda k: (-k.records, k.kind))
        self.producers.sort(key=lambda p: (-p.records, p.producer))
        self.relays += other.relays


class SessionNotFound(LookupError):
    """No control port asked holds the session (never seen, or removed by retention)."""


class ControlError(Exception):
    """A control port answered with an error (status and its message), or could not be reached."""


# The most a control-port answer may be (a /sessions/{id} summary is a few KiB).
_MAX_RESPONSE_BYTES = 16 << 20


async def _http_get(base: str, path: str, token: Optional[str], timeout: float) -> Tuple[int, bytes]:
    """A minimal HTTP/1.1 GET over asyncio (the control port speaks plain HTTP)."""
    url = urllib.parse.urlsplit(base if "//" in base else "http://" + base)
    if url.scheme != "http" or not url.hostname:
        raise ControlError("control address %r: expected http://HOST:PORT" % base)
    host, port = url.hostname, url.port or 80
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        target = url.path.rstrip("/") + path
        head = "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: application/json\r\nConnection: close\r\n" % (target, host, port)
        if token:
            head += "Authorization: Bearer %s\r\n" % token
        writer.write((head + "\r\n").encode("latin-1"))
        chunks, size = [], 0
        while True:
            chunk = await asyncio.wait_for(reader.read(64 * 1024), timeout)
            if not chunk:
                break
            size += len(chunk)
            if size > _MAX_RESPONSE_BYTES:
                raise ControlError("the control port at %s sent more than %d bytes" % (base, _MAX_RESPONSE_BYTES))
            chunks.append(chunk)
        raw = b"".join(chunks)
    finally:
        writer.close()
    header, _, body = raw.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise ControlError("the control port at %s sent no HTTP status line" % base) from None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    try:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = _unchunk(body)
        elif "content-length" in headers:
            body = body[:int(headers["content-length"])]
    except ValueError:
        raise ControlError("the control port at %s sent a malformed body (chunking or Content-Length)" % base) from None
    return status, body


def _unchunk(data: bytes) -> bytes:
    """The body of a chunked response; ValueError when the chunking is malformed."""
    out, position = bytearray(), 0
    while True:
        line_end = data.index(b"\r\n", position)
        size = int(data[position:line_end].split(b";")[0], 16)
        if size < 0:
            raise ValueError("a negative chunk size")
        if size == 0:
            return bytes(out)
        out += data[line_end + 2:line_end + 2 + size]
        position = line_end + 2 + size + 2


# -- the bridge ----------------------------------------------------------------------------------

class HermesBridge:
    """Timmy's view of Hermes through Allegro: telemetry from every relay, session summaries.

    relays: relay addresses ("HOST:PORT"), all read at once.
    collector: the durable collector name configured on the relays ("timmy" out of the box).
    token: the relays' collector token (default $ALLEGRO_COLLECTOR_TOKEN).
    control: control port URL(s) ("http://HOST:PORT") for get_session_summary; a string or a list.
    control_token: bearer token of the control ports (default $ALLEGRO_CONTROL_TOKEN).
    start: where a relay's stream starts the first time: "committed" (default), "earliest",
        "latest", or with one relay a relay sequence (each relay's cursor moves on from there).
    window: flow-control window per relay, in records (the memory bound per relay).
    dedup_ranges, dedup_producers: the bounds of the duplicate window (SeenWindow); used only
        with more than one relay (one relay never delivers a record twice).
    gaps: also yield `Gap` markers (relay sequences a relay skipped after a crash, or lost to
        retention) from stream_telemetry(); they are always logged and counted in `stats`.
    Other keyword arguments go to each relay's Collector (commit_interval_ms, idle_timeout_ms, ...).
    """

    def __init__(self, relays: Sequence[str], collector: Optional[str] = "timmy", token: Optional[str] = None,
                 control: Union[str, Sequence[str], None] = None, *, control_token: Optional[str] = None,
                 start: Union[str, int] = "committed", window: int = 4096, dedup_ranges: int = 1024,
                 dedup_producers: int = 100_000, gaps: bool = False, control_timeout: float = 10.0,
                 **collector_options: Any):
        if isinstance(relays, str):
            relays = [relays]
        if not relays:
            raise ValueError("at least one relay address is needed")
        if isinstance(start, int) and not isinstance(start, bool):
            if len(relays) != 1:
                raise ValueError("a start sequence names a place in one relay's stream: give one relay")
        elif start not in ("committed", "earliest", "latest"):
            raise ValueError("start must be committed, earliest, latest or (with one relay) a relay sequence")
        self.name = collector or ""
        self._inbox = _Inbox()
        self._registry: Dict[str, _RelayState] = {}
        self.collectors = [Collector(relay, self.name or None, token,
                                     start=start if self.name or start != "committed" else "latest", window=window,
                                     _inbox=self._inbox, _registry=self._registry, **collector_options)
                           for relay in relays]
        self.controls: List[str] = [control] if isinstance(control, str) else list(control or [])
        self.control_token = control_token if control_token is not None else os.environ.get("ALLEGRO_CONTROL_TOKEN")
        self.control_timeout = control_timeout
        self.gaps = gaps
        self.seen: Optional[SeenWindow] = SeenWindow(dedup_ranges, dedup_producers) if len(relays) > 1 else None
        self.stats: Dict[str, int] = {"events": 0, "duplicates_dropped": 0, "gaps": 0, "lost": 0}
        self._handout = _Handout(self._next_batch)
        self._started = False
        self._closed = False

    # -- telemetry ------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._started:
            self._started = True
            for collector in self.collectors:
                await collector.start_collecting()

    async def __aenter__(self) -> "HermesBridge":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _next_batch(self) -> Optional[_Batch]:
        """The next batch from any relay, duplicates removed; None once closed."""
        inbox, seen, stats = self._inbox, self.seen, self.stats
        while True:
            batch = await inbox.get()
            if batch is None:
                return None
            items = batch.items
            if batch.records == 0:  # a gap marker
                gap = items[0]
                stats["lost" if gap.lost else "gaps"] += gap.last - gap.first + 1
                if not self.gaps:
                    batch.items = []
                return batch
            if seen is not None:
                seen.tick()
                add = seen.add
                kept = []
                last_user = auto_after = 0
                for event in items:
                    if add(event.producer, event.producer_seq):
                        kept.append(event)
                        last_user, auto_after = event.relay_seq, 0
                    else:
                        auto_after = event.relay_seq
                if len(kept) != len(items):
                    stats["duplicates_dropped"] += len(items) - len(kept)
                    batch.items, batch.last_user, batch.auto_after = kept, last_user, auto_after
            stats["events"] += len(batch.items)
            return batch

    async def stream_telemetry(self) -> AsyncIterator[TelemetryEvent]:
        """Every event from every relay, once, as it arrives (see the module's notes on order)."""
        await self.start()
        async for event in self._handout.items():
            yield event

    async def stream_batches(self) -> AsyncIterator[List[TelemetryEvent]]:
        """The same stream as lists (one relay frame each, duplicates removed): less overhead per event."""
        await self.start()
        async for events in self._handout.lists():
            yield events

    async def commit(self, event: Optional[TelemetryEvent] = None) -> None:
        """With an event: that event and every earlier one of its relay are processed (as
        `await event.commit()`). With none: everything handed out so far, from every relay.
        Commits are coalesced; close() sends the last ones and waits for the relays' answers."""
        if event is not None:
            await event.commit()
            return
        open_batch, handed = self._handout.open, self._handout.last_handed
        for state in self._registry.values():
            if open_batch is not None and open_batch.state is state and handed is not None:
                state.want(handed.relay_seq if isinstance(handed, TelemetryEvent) else handed.last)
            else:
                state.want(state.last_user)

    @property
    def committed(self) -> Dict[str, int]:
        """Each relay's confirmed cursor, by relay identity."""
        return {relay_id: state.confirmed for relay_id, state in self._registry.items()}

    async def close(self, timeout: float = 10.0) -> bool:
        """Sends the last commits and GOODBYE to every relay; True when all were confirmed."""
        if self._closed:
            return all(state.confirmed >= state.wanted for state in self._registry.values())
        self._closed = True
        results = await asyncio.gather(*(collector.close(timeout) for collector in self.collectors))
        self._inbox.close()
        return all(results) and all(state.confirmed >= state.wanted for state in self._registry.values())

    # -- sessions -------------------------------------------------------------------------

    async def get_session_summary(self, session_id: str) -> SessionSummary:
        """The session's summary from the control port(s): counts by kind and producer, first
        and last ingest time. Raises SessionNotFound when no control port holds it, and
        ControlError when none could answer."""
        if not self.controls:
            raise ControlError("no control port configured: HermesBridge(..., control=\"http://HOST:7401\")")
        path = "/sessions/" + urllib.parse.quote(session_id, safe="")
        answers = await asyncio.gather(*(self._ask(base, path) for base in self.controls), return_exceptions=True)
        found: Optional[SessionSummary] = None
        unreachable: List[str] = []
        errors: List[str] = []
        for base, answer in zip(self.controls, answers):
            if isinstance(answer, BaseException):
                unreachable.append(base)
                errors.append("%s: %s" % (base, answer))
            elif answer is not None:
                if found is None:
                    found = answer
                else:
                    found.merge(answer)
        if found is None:
            if len(unreachable) == len(self.controls):
                raise ControlError("no control port answered: " + "; ".join(errors))
            raise SessionNotFound("no session %r is held by %s" % (session_id, ", ".join(
                b for b in self.controls if b not in unreachable)))
        found.unreachable = unreachable
        return found

    async def _ask(self, base: str, path: str) -> Optional[SessionSummary]:
        try:
            status, body = await _http_get(base, path, self.control_token, self.control_timeout)
        except (OSError, asyncio.TimeoutError) as error:
            raise ControlError("cannot reach the control port at %s: %s" % (base, error)) from None
        if status == 404:
            return None
        try:
            data = json.loads(body)
        except ValueError:
            raise ControlError("the control port at %s answered %d with no JSON" % (base, status)) from None
        if status != 200:
            message = data.get("error", "") if isinstance(data, dict) else ""
            raise ControlError("the control port at %s answered %d: %s" % (base, status, message))
        return SessionSummary.from_json(data, base)
