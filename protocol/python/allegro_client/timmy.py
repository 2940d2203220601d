"""Timmy's side of Allegro: the seed's HermesBridge API over every configured relay, and GiteaBridge,
his commands to Gitea through `allegro bridge` (protocol/GITEA.md; at the end of this module).

    from allegro_client.timmy import HermesBridge
    bridge = HermesBridge(relays=["vps1:7400", "vps2:7400"], collector="timmy", token="...",
                          control="http://vps1:7401")
    async for event in bridge.stream_telemetry():          # TelemetryEvent
        handle(event)
        await event.commit()
    summary = await bridge.get_session_summary("20261201_190121_d0353d")   # SessionSummary

    # Hermes sessions, run by `allegro bridge` on Hermes' API server (bridge: its HTTP port).
    sessions = HermesBridge(bridge_url="http://vps1:7402", bridge_token="...")
    result = await sessions.run_session("Summarise issue 7", operation_id="plan-7-summary")
    result.answer, result.session_id, result.usage          # HermesResult
    for waiting in await sessions.pending_approvals():      # PendingHermesApproval: a command Hermes flagged
        if looks_fine(waiting.command):
            await sessions.approve_hermes(waiting.request, command=waiting.command, key_path="~/.ssh/id_ed25519")
        else:
            await sessions.deny_hermes(waiting.request)
    endpoint = await sessions.provide_model_access("gpt-4o-mini", ttl_ms=600_000)   # ModelEndpoint
    openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.key)   # a scoped key; revoke_model_access(endpoint.key_id)

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
import re
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

from . import approval as _approval
from .approval import Approval
from .collector import (Collector, Gap, TelemetryEvent, _Batch, _Handout, _Inbox, _RelayState, AuthFailed, CollectorBusy,
                        CollectorError, ConnectionLost, CursorUnavailable, PermanentRelayError, ProtocolViolation,
                        RelayError, ShuttingDown, TransientRelayError, UnknownCollector)

__all__ = ["HermesBridge", "TelemetryEvent", "SessionSummary", "KindCount", "ProducerCount", "SeenWindow",
           "SessionNotFound", "ControlError", "Gap", "AuthFailed", "UnknownCollector", "CollectorBusy",
           "CollectorError", "ConnectionLost", "CursorUnavailable", "PermanentRelayError", "ProtocolViolation",
           "RelayError", "ShuttingDown", "TransientRelayError", "GiteaBridge", "GiteaBridgeError", "Issue",
           "IssueComment", "Approval", "read_approval", "HermesResult", "HermesToolCall", "HermesApproval",
           "HermesSessionError", "PendingHermesApproval", "ModelEndpoint", "ModelAccessKey"]


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


# -- Hermes sessions, through the bridge -----------------------------------------------------------

HERMES_STATES = ("queued", "running", "completed", "failed", "interrupted")
HERMES_ENDED = frozenset({"completed", "failed", "interrupted"})


@dataclass
class HermesToolCall:
    """One tool call of a session, as Hermes reported it: the tool's name, a preview of its
    arguments, how long it took, and its error (Hermes says only whether it failed: True/False;
    text when the bridge has it)."""

    tool: str
    preview: Optional[str] = None
    duration_ms: Optional[int] = None
    error: Union[bool, str, None] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "HermesToolCall":
        if not isinstance(data, dict):
            raise ValueError("a tool call is a JSON object, not %s" % type(data).__name__)
        error = data.get("error")
        return cls(tool=str(data.get("tool") or ""), preview=_optional_text(data, "preview"),
                   duration_ms=_optional_int(data, "duration_ms"),
                   error=error if isinstance(error, (bool, str)) or error is None else str(error))


@dataclass
class HermesApproval:
    """One approval Hermes asked for during a session (a dangerous command): what it was, what was
    decided ("pending", "approve" or "deny") and why, and the bridge's id of the request."""

    command: str
    description: Optional[str] = None
    decision: Optional[str] = None
    why: Optional[str] = None
    request: Optional[str] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "HermesApproval":
        if not isinstance(data, dict):
            raise ValueError("an approval is a JSON object, not %s" % type(data).__name__)
        return cls(command=str(data.get("command") or ""), description=_optional_text(data, "description"),
                   decision=_optional_text(data, "decision"), why=_optional_text(data, "why"),
                   request=_optional_text(data, "request"))


@dataclass
class HermesResult:
    """One Hermes session run for Timmy by `allegro bridge` (its session JSON).

    operation_id: Timmy's id of the session (the bridge runs each id once).
    status: "queued", "running", "completed", "failed" or "interrupted" (cancelled, or stopped at
        the bridge's hermes.session_timeout_ms); `ended` is True for the last three.
    session_id: Hermes' own session id (the `session` of the session's telemetry records); None
        until Hermes reported it. run_id: the run on Hermes' API server.
    answer: Hermes' final answer (completed sessions). error: why it failed or was interrupted.
    usage: tokens by model: {model: {"input_tokens", "output_tokens", "total_tokens"}}.
    tool_calls, approvals: what Hermes did and asked for, in order.
    duration_ms: how long it ran; waited_ms: how long it was queued before it started.
    """

    operation_id: str
    status: str
    session_id: Optional[str] = None
    run_id: Optional[str] = None
    model: Optional[str] = None
    answer: Optional[str] = None
    error: Optional[str] = None
    usage: Dict[str, Dict[str, int]] = field(default_factory=dict)
    tool_calls: List[HermesToolCall] = field(default_factory=list)
    approvals: List[HermesApproval] = field(default_factory=list)
    duration_ms: Optional[int] = None
    waited_ms: Optional[int] = None

    @property
    def ended(self) -> bool:
        return self.status in HERMES_ENDED

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @classmethod
    def from_json(cls, data: Any, operation_id: str = "") -> "HermesResult":
        """From the bridge's session JSON; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("a session is a JSON object, not %s" % type(data).__name__)
        state = data.get("state")
        if state not in HERMES_STATES:
            raise ValueError("state: one of %s, not %r" % (", ".join(HERMES_STATES), state))
        usage_in = data.get("usage") or {}
        tools_in = data.get("tool_calls") or []
        approvals_in = data.get("approvals") or []
        if not isinstance(usage_in, dict) or not isinstance(tools_in, list) or not isinstance(approvals_in, list):
            raise ValueError("usage is an object, tool_calls and approvals are lists")
        usage: Dict[str, Dict[str, int]] = {}
        for model, counts in usage_in.items():
            if not isinstance(counts, dict):
                raise ValueError("usage of %r is not an object" % model)
            usage[str(model)] = {str(key): _int(value, "usage %s %s" % (model, key)) for key, value in counts.items()}
        identifier = data.get("id")
        return cls(operation_id=str(identifier) if isinstance(identifier, str) and identifier else operation_id,
                   status=state, session_id=_optional_text(data, "session_id"), run_id=_optional_text(data, "run_id"),
                   model=_optional_text(data, "model"), answer=_optional_text(data, "answer"),
                   error=_optional_text(data, "error"), usage=usage,
                   tool_calls=[HermesToolCall.from_json(item) for item in tools_in],
                   approvals=[HermesApproval.from_json(item) for item in approvals_in],
                   duration_ms=_optional_int(data, "duration_ms"), waited_ms=_optional_int(data, "waited_ms"))


def _optional_text(data: Dict[str, Any], key: str) -> Optional[str]:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("%s: text or null, not %r" % (key, value))
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError("%s: a number, not %r" % (what, value))
    return int(value)


def _optional_int(data: Dict[str, Any], key: str) -> Optional[int]:
    value = data.get(key)
    return None if value is None else _int(value, key)


@dataclass
class PendingHermesApproval:
    """An approval Hermes waits for (GET /v1/hermes/approvals): a command it flagged as dangerous
    during one of Timmy's sessions, which runs only with Timmy's signed `hermes_approve` of exactly
    this request and command (approve_hermes) and never after a denial (deny_hermes) or the deadline.

    request: the bridge's id of the request (`hermes-RUN-N`; the session of its allegro.request
        record and the subject of its hermes_approval_pending alert).
    session: the operation id of Timmy's session that asked; run_id: its run on Hermes' API server.
    command: the exact command text; command_sha256: the SHA-256 of its UTF-8 bytes (what is signed).
    description: why Hermes flagged it. deadline: when no answer becomes a denial (aware, UTC).
    decision: None while it waits; "approve" or "deny" in the answer to approve_hermes/deny_hermes.
    """

    request: str
    session: str
    run_id: str
    command: str
    command_sha256: str
    description: Optional[str] = None
    deadline: Optional[datetime] = None
    decision: Optional[str] = None

    @classmethod
    def from_json(cls, data: Any) -> "PendingHermesApproval":
        """From the bridge's JSON of one approval; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("an approval is a JSON object, not %s" % type(data).__name__)
        texts = {}
        for key in ("request", "session", "run_id", "command", "command_sha256"):
            value = data.get(key)
            if not isinstance(value, str) or (not value and key != "command"):
                raise ValueError("%s: text, not %r" % (key, value))
            texts[key] = value
        if not re.fullmatch(r"[0-9a-f]{64}", texts["command_sha256"]):
            raise ValueError("command_sha256: 64 lowercase hex digits, not %r" % texts["command_sha256"])
        return cls(description=_optional_text(data, "description"), deadline=_time_field(data, "deadline"),
                   decision=_optional_text(data, "decision"), **texts)


@dataclass
class ModelEndpoint:
    """Model access for Timmy (provide_model_access): an OpenAI-compatible endpoint on the bridge,
    `base_url` (as for any OpenAI client: `BASE_URL/chat/completions`, `BASE_URL/models`), for one
    `model`, with a scoped `key` (the bearer token: `openai.OpenAI(base_url=e.base_url, api_key=e.key)`)
    that works until `expires_at` (aware, UTC) or until revoke_model_access(key_id). The bridge shows
    the key once and keeps only its SHA-256; it is left out of repr() so it is not logged by accident."""

    base_url: str
    model: str
    key: str = field(repr=False)
    expires_at: datetime
    key_id: str

    @classmethod
    def from_json(cls, data: Any) -> "ModelEndpoint":
        """From the bridge's answer to POST /v1/hermes/model-access; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("a model endpoint is a JSON object, not %s" % type(data).__name__)
        texts = {}
        for key in ("key_id", "base_url", "model", "key"):
            value = data.get(key)
            if not isinstance(value, str) or not value:
                raise ValueError("%s: missing or not text" % key if key == "key" else "%s: text, not %r" % (key, value))
            texts[key] = value
        expires = _time_field(data, "expires_at", required=True)
        assert expires is not None
        return cls(base_url=texts["base_url"].rstrip("/"), model=texts["model"], key=texts["key"], expires_at=expires,
                   key_id=texts["key_id"])


@dataclass
class ModelAccessKey:
    """One scoped key as the bridge lists it (never the key itself): its models, expiry, state
    ("valid", "expired" or "revoked") and the usage counted against it (answers and tokens)."""

    key_id: str
    models: List[str]
    expires_at: datetime
    state: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @classmethod
    def from_json(cls, data: Any) -> "ModelAccessKey":
        if not isinstance(data, dict):
            raise ValueError("a key is a JSON object, not %s" % type(data).__name__)
        key_id, state, models = data.get("key_id"), data.get("state"), data.get("models")
        if not isinstance(key_id, str) or not key_id:
            raise ValueError("key_id: text, not %r" % (key_id,))
        if state not in ("valid", "expired", "revoked"):
            raise ValueError("state: valid, expired or revoked, not %r" % (state,))
        if not isinstance(models, list) or not all(isinstance(model, str) for model in models):
            raise ValueError("models: a list of names, not %r" % (models,))
        expires = _time_field(data, "expires_at", required=True)
        assert expires is not None
        return cls(key_id=key_id, models=list(models), expires_at=expires, state=state,
                   requests=_optional_int(data, "requests") or 0, input_tokens=_optional_int(data, "input_tokens") or 0,
                   output_tokens=_optional_int(data, "output_tokens") or 0)


class HermesSessionError(Exception):
    """The bridge's Hermes API refused or failed a request, or could not be asked: sessions,
    approvals and model access alike.

    `status` is the HTTP status (400 a wrong request or a model not in hermes.models or
    hermes.provider_models, 401 a wrong token, 403 a refused approval, 404 no session of that
    operation id, no approval waiting under that request id or no such key, 409 the operation id was
    used for another prompt or model, 429 the bridge's queue is full; 502/503/504 were asked again
    first), or 0 when no answer came or run_session's `timeout` passed. For a session,
    `operation_id` is its id: asking again with it is safe (the bridge runs an id at most once);
    `result` is the session as last seen, if any. For the other calls both are None."""

    def __init__(self, status: int, reason: str, operation_id: Optional[str] = None,
                 result: Optional[HermesResult] = None) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.operation_id = operation_id
        self.result = result

    def __str__(self) -> str:
        return "HTTP %d: %s" % (self.status, self.reason) if self.status else self.reason


# The longest wait_ms the bridge takes on GET /v1/hermes/sessions/{id}.
_HERMES_MAX_WAIT_MS = 60_000
# The most one session answer may be (an answer, tool previews and approvals).
_MAX_SESSION_ANSWER = 16 << 20


class ControlError(Exception):
    """A control port answered with an error (status and its message), or could not be reached."""


# The most a control-port answer may be (a /sessions/{id} summary is a few KiB).
_MAX_RESPONSE_BYTES = 16 << 20
# An item of a list the bridge answers (approvals, keys).
_Item = TypeVar("_Item")


class _BadAnswer(Exception):
    """An HTTP answer that cannot be read (the message names the server and what was wrong)."""


class _NoAnswer(_BadAnswer):
    """The server closed the connection without sending a byte of an answer."""


def _http_address(base: str) -> Optional[Tuple[str, int, str]]:
    """(host, port, path prefix) of "HOST:PORT" or "http://HOST:PORT[/prefix]"; None if it is neither."""
    url = urllib.parse.urlsplit(base if "//" in base else "http://" + base)
    try:
        port = url.port or 80
    except ValueError:
        return None
    if url.scheme != "http" or not url.hostname:
        return None
    return url.hostname, port, url.path.rstrip("/")


async def _http_exchange(base: str, method: str, path: str, token: Optional[str], timeout: float,
                         body: Optional[bytes] = None, label: str = "control port",
                         max_bytes: int = _MAX_RESPONSE_BYTES) -> Tuple[int, bytes]:
    """A minimal HTTP/1.1 exchange over asyncio (one request on its own connection, plain HTTP):
    the status and the body. `timeout` bounds the connect and each read. Raises _BadAnswer (the
    message names `label` and `base`) for an answer it cannot read, _NoAnswer when the connection
    closes before any, ValueError for an address that is not http://HOST:PORT, and lets OSError
    and asyncio.TimeoutError through."""
    address = _http_address(base)
    if address is None:
        raise ValueError("%s address %r: expected http://HOST:PORT" % (label.split()[0], base))
    host, port, prefix = address
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        head = "%s %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: application/json\r\nConnection: close\r\n" % (
            method, prefix + path, host, port)
        if token:
            head += "Authorization: Bearer %s\r\n" % token
        if body is not None:
            head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        writer.write((head + "\r\n").encode("latin-1") + (body or b""))
        chunks, size = [], 0
        while True:
            chunk = await asyncio.wait_for(reader.read(64 * 1024), timeout)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise _BadAnswer("the %s at %s sent more than %d bytes" % (label, base, max_bytes))
            chunks.append(chunk)
        raw = b"".join(chunks)
    finally:
        writer.close()
    if not raw:
        raise _NoAnswer("the %s at %s closed the connection without answering" % (label, base))
    header, _, data = raw.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise _BadAnswer("the %s at %s sent no HTTP status line" % (label, base)) from None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    try:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = _unchunk(data)
        elif "content-length" in headers:
            data = data[:int(headers["content-length"])]
    except ValueError:
        raise _BadAnswer("the %s at %s sent a malformed body (chunking or Content-Length)" % (label, base)) from None
    return status, data


async def _http_get(base: str, path: str, token: Optional[str], timeout: float) -> Tuple[int, bytes]:
    """A minimal HTTP/1.1 GET over asyncio (the control port speaks plain HTTP)."""
    try:
        return await _http_exchange(base, "GET", path, token, timeout)
    except (_BadAnswer, ValueError) as error:
        raise ControlError(str(error)) from None


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
    bridge_url: the HTTP port of `allegro bridge` ("HOST:PORT" or "http://HOST:PORT"), for
        run_session, session and cancel_session (the bridge runs Hermes sessions for Timmy on
        Hermes' API server), Timmy's answers to Hermes' approvals (pending_approvals,
        approve_hermes, deny_hermes) and model access (provide_model_access, model_access_keys,
        revoke_model_access). With it, `relays` may be empty (no telemetry, sessions only).
    bridge_token: the bearer token of the bridge's Hermes API (its hermes.command_token; default
        $ALLEGRO_HERMES_COMMAND_TOKEN).
    bridge_timeout: seconds for connecting to the bridge and for each read of an answer (beyond
        the wait asked for). bridge_attempts, bridge_retry_delay: a request that finds the bridge
        unreachable (refused, reset, closed unanswered, no answer in time) or answered
        502/503/504 is asked again, at most bridge_attempts times in a row, after
        bridge_retry_delay, 2 x bridge_retry_delay, ... seconds (at most 5 s). Always with the
        same operation id, which the bridge runs once, so a retry never starts a second session.
    Other keyword arguments go to each relay's Collector (commit_interval_ms, idle_timeout_ms, ...).
    """

    def __init__(self, relays: Sequence[str] = (), collector: Optional[str] = "timmy", token: Optional[str] = None,
                 control: Union[str, Sequence[str], None] = None, *, control_token: Optional[str] = None,
                 start: Union[str, int] = "committed", window: int = 4096, dedup_ranges: int = 1024,
                 dedup_producers: int = 100_000, gaps: bool = False, control_timeout: float = 10.0,
                 bridge_url: Optional[str] = None, bridge_token: Optional[str] = None, bridge_timeout: float = 30.0,
                 bridge_attempts: int = 6, bridge_retry_delay: float = 0.5,
                 **collector_options: Any):
        if isinstance(relays, str):
            relays = [relays]
        if not relays and not bridge_url:
            raise ValueError("at least one relay address is needed (or bridge_url, for sessions alone)")
        if bridge_url is not None and _http_address(bridge_url) is None:
            raise ValueError("bridge_url %r: expected HOST:PORT or http://HOST:PORT" % bridge_url)
        if bridge_timeout <= 0 or bridge_attempts < 1 or bridge_retry_delay < 0:
            raise ValueError("bridge_timeout above 0, bridge_attempts at least 1, bridge_retry_delay not negative")
        self.bridge_url = bridge_url or None
        self.bridge_token = bridge_token if bridge_token is not None else os.environ.get("ALLEGRO_HERMES_COMMAND_TOKEN")
        self.bridge_timeout = bridge_timeout
        self.bridge_attempts = bridge_attempts
        self.bridge_retry_delay = bridge_retry_delay
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
        if not self.collectors:
            raise ValueError("no relay configured: HermesBridge([\"HOST:7400\", ...])")
        await self.start()
        async for event in self._handout.items():
            yield event

    async def stream_batches(self) -> AsyncIterator[List[TelemetryEvent]]:
        """The same stream as lists (one relay frame each, duplicates removed): less overhead per event."""
        if not self.collectors:
            raise ValueError("no relay configured: HermesBridge([\"HOST:7400\", ...])")
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

    # -- Hermes sessions run by the bridge ------------------------------------------------

    async def run_session(self, prompt: str, model: Optional[str] = None, *, operation_id: Optional[str] = None,
                          timeout: Optional[float] = None) -> HermesResult:
        """Runs `prompt` as one Hermes session through the bridge and returns it once it ended
        (status completed, failed or interrupted): Hermes' answer, its session id (the `session`
        of the session's telemetry on stream_telemetry()), usage, tool calls and approvals.

        model: one of the bridge's hermes.models, or None for Hermes' default model.
        operation_id: Timmy's id of the session (a new uuid4-based one when None). The bridge runs
            an id once: the same id again, with the same prompt and model, is the same session
            (also after this call gave up or the connection was lost), so asking again is safe.
        timeout: seconds to wait for the end; past it, HermesSessionError (status 0, with the
            session as last seen in `result`). The session goes on: ask session(operation_id)
            later, or cancel_session(operation_id). None: wait as long as it runs (the bridge
            stops a session at its hermes.session_timeout_ms).

        Raises HermesSessionError for a refusal (400 a model not allowed, 409 the id was used for
        another prompt or model, 429 the bridge's queue is full) or a bridge that stays
        unreachable; ValueError for a wrong argument."""
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("prompt: the text Hermes is asked, not %r" % (prompt,))
        if model is not None and not isinstance(model, str):
            raise ValueError("model: a model name or None, not %r" % (model,))
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout: above 0 seconds, or None")
        operation = self._operation(operation_id) if operation_id is not None else _new_operation("session")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        result = await self._session_call("POST", "/v1/hermes/sessions", operation,
                                          {"operation_id": operation, "prompt": prompt, "model": model or ""},
                                          deadline=deadline)
        while not result.ended:
            wait = _HERMES_MAX_WAIT_MS
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise HermesSessionError(0, "session %s is still %s after %g s" % (operation, result.status, timeout),
                                             operation, result)
                wait = max(1, min(wait, int(remaining * 1000)))
            result = await self._session_call("GET", self._session_path(operation, wait), operation, wait_ms=wait,
                                              deadline=deadline, last=result)
        return result

    async def session(self, operation_id: str, *, wait_ms: int = 0) -> HermesResult:
        """The session of `operation_id` as the bridge holds it now (or, with wait_ms up to 60000,
        once it ended or wait_ms passed). HermesSessionError 404 when the bridge has no such
        session (never asked, or ended longer ago than its hermes.keep_results_ms)."""
        operation = self._operation(operation_id)
        if isinstance(wait_ms, bool) or not isinstance(wait_ms, int) or not 0 <= wait_ms <= _HERMES_MAX_WAIT_MS:
            raise ValueError("wait_ms: 0 to %d, not %r" % (_HERMES_MAX_WAIT_MS, wait_ms))
        return await self._session_call("GET", self._session_path(operation, wait_ms), operation, wait_ms=wait_ms)

    async def cancel_session(self, operation_id: str) -> HermesResult:
        """Cancels the session: a queued one ends at once (interrupted); a running one is stopped
        through Hermes and becomes interrupted shortly (its status may still say running in the
        answer: wait with session(operation_id, wait_ms=...)). An ended one is left as it is."""
        operation = self._operation(operation_id)
        return await self._session_call("POST", "/v1/hermes/sessions/%s/cancel" % urllib.parse.quote(operation, safe=""),
                                        operation, {})

    # -- Hermes' approvals: Timmy's answers ---------------------------------------------------

    async def pending_approvals(self) -> List[PendingHermesApproval]:
        """The approvals Hermes waits for now, oldest first: each a command it flagged as dangerous
        in one of Timmy's sessions, held until Timmy answers (approve_hermes, deny_hermes) or its
        deadline passes (then it is denied)."""
        return await self._api_list("/v1/hermes/approvals", "approvals", PendingHermesApproval.from_json)

    async def approve_hermes(self, request: str, *, key_path: Union[str, "os.PathLike[str]"],
                             command_sha256: Optional[str] = None, command: Optional[str] = None,
                             valid_for: timedelta = timedelta(minutes=10),
                             ssh_keygen: str = "ssh-keygen") -> PendingHermesApproval:
        """Lets Hermes run the command of the pending approval `request`, once: signs Timmy's
        `hermes_approve` of exactly that request and command (approval.approve with `key_path`;
        the key is only passed to ssh-keygen) and gives it to the bridge, which checks it against
        hermes.allowed_signers and answers Hermes.

        command_sha256: the SHA-256 of the command Timmy approves (as the Request showed it); or
        command: its exact text, hashed here. With neither, the pending approval is looked up and
        its command_sha256 signed (whatever command that is: read it first, pending_approvals()).
        valid_for: the approval's own expiry (it never extends the request's deadline).

        Returns the approval with decision "approve". HermesSessionError 403 when the bridge refuses
        the approval (another command's hash, a key it does not trust, no hermes.allowed_signers),
        404 when nothing waits under `request` (answered, past its deadline, never asked);
        approval.ApprovalError / SigningError when the statement cannot be made or signed."""
        self._request_id(request)
        if command is not None:
            digest = _approval.hash_command(command)
            if command_sha256 is not None and command_sha256 != digest:
                raise ValueError("command_sha256 %s is not the SHA-256 of the command given (%s)" % (command_sha256, digest))
            command_sha256 = digest
        if command_sha256 is None:
            found = [item for item in await self.pending_approvals() if item.request == request]
            if not found:
                raise HermesSessionError(404, "no approval %s is waiting (answered, past its deadline, or never asked)"
                                         % request)
            command_sha256 = found[0].command_sha256
        loop = asyncio.get_running_loop()
        # ssh-keygen runs in a thread: the event loop (and Timmy's other work) goes on meanwhile.
        made = await loop.run_in_executor(None, lambda: _approval.approve(
            "hermes_approve", request=request, command_sha256=command_sha256, key_path=key_path, valid_for=valid_for,
            ssh_keygen=ssh_keygen))
        answer = await self._api_call("POST", "/v1/hermes/approvals/%s/approve" % urllib.parse.quote(request, safe=""),
                                      {"statement": made.statement, "signature": made.signature})
        return self._pending(answer, "approve")

    async def deny_hermes(self, request: str) -> PendingHermesApproval:
        """Denies the pending approval `request` (no signature: denying is always safe); Hermes
        does not run the command. Returns the approval with decision "deny"; HermesSessionError
        404 when nothing waits under `request`."""
        self._request_id(request)
        answer = await self._api_call("POST", "/v1/hermes/approvals/%s/deny" % urllib.parse.quote(request, safe=""), {})
        return self._pending(answer, "deny")

    @staticmethod
    def _request_id(request: str) -> None:
        if not isinstance(request, str) or not re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", request):
            raise ValueError("request: the approval's request id (1 to 128 of A-Z a-z 0-9 . _ : -), not %r" % (request,))

    @staticmethod
    def _pending(answer: Dict[str, Any], decision: str) -> PendingHermesApproval:
        try:
            decided = PendingHermesApproval.from_json(answer)
        except ValueError as failure:
            raise HermesSessionError(200, "the bridge's answer is not the approval: %s" % failure) from None
        if decided.decision != decision:
            raise HermesSessionError(200, "the bridge answered decision %r, not %r" % (decided.decision, decision))
        return decided

    # -- model access ----------------------------------------------------------------------

    async def provide_model_access(self, model: str, *, ttl_ms: Optional[int] = None) -> ModelEndpoint:
        """A scoped key for `model` (one of the bridge's hermes.provider_models) on the bridge's
        OpenAI-compatible endpoint, which forwards to the provider with Allegro's own key (never
        shown to Timmy). ttl_ms: the key's lifetime (the bridge takes 1000 ... 86400000); None: the
        bridge's hermes.model_key_ms. HermesSessionError 400 for a model not offered or a ttl out
        of range. Not asked again once the request may have reached the bridge and its answer did
        not come in time (a key whose answer was lost is never seen by anyone, and expires)."""
        if not isinstance(model, str) or not model:
            raise ValueError("model: a model name, not %r" % (model,))
        if ttl_ms is not None and (isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms < 1):
            raise ValueError("ttl_ms: milliseconds above 0, or None for the bridge's default, not %r" % (ttl_ms,))
        answer = await self._api_call("POST", "/v1/hermes/model-access",
                                      {"model": model, "ttl_ms": "" if ttl_ms is None else str(ttl_ms)})
        try:
            return ModelEndpoint.from_json(answer)
        except ValueError as failure:
            raise HermesSessionError(200, "the bridge's answer is not a model endpoint: %s" % failure) from None

    async def model_access_keys(self) -> List[ModelAccessKey]:
        """The scoped keys the bridge holds (never a key itself), oldest first, with their state
        and the usage counted against each."""
        return await self._api_list("/v1/hermes/model-access", "keys", ModelAccessKey.from_json)

    async def revoke_model_access(self, key_id: str) -> None:
        """Revokes the key at once (its next request is refused, 401). Revoking a revoked key again
        is fine; HermesSessionError 404 when the bridge holds no such key."""
        if not isinstance(key_id, str) or not key_id:
            raise ValueError("key_id: the key's id (ModelEndpoint.key_id), not %r" % (key_id,))
        await self._api_call("POST", "/v1/hermes/model-access/%s/revoke" % urllib.parse.quote(key_id, safe=""), {})

    async def _api_list(self, path: str, key: str, parse: Callable[[Any], _Item]) -> List[_Item]:
        """GET `path`: the list under `key` of its JSON object, each item read by `parse` (which
        raises ValueError for one it cannot read); HermesSessionError otherwise."""
        answer = await self._api_call("GET", path)
        items = answer.get(key)
        if not isinstance(items, list):
            raise HermesSessionError(200, "the bridge answered GET %s with no list of %s" % (path, key))
        try:
            return [parse(item) for item in items]
        except ValueError as failure:
            raise HermesSessionError(200, "the bridge's list of %s holds one that is not: %s" % (key, failure)) from None

    async def _api_call(self, method: str, path: str, body: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        """One request of the bridge's Hermes API outside sessions: its JSON object, or
        HermesSessionError. Asked again (bounded, as _session_call) while the bridge is unreachable
        or answers 502/503/504; a POST whose answer did not come in time is not asked again (the
        bridge may have done it: an approval then is no longer pending, a key was issued)."""
        if self.bridge_url is None:
            raise ValueError("no bridge configured: HermesBridge(..., bridge_url=\"HOST:PORT\")")
        if not self.bridge_token:
            raise ValueError("the bridge's Hermes API needs its token: bridge_token= or $ALLEGRO_HERMES_COMMAND_TOKEN")
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        what = "%s %s" % (method, path.split("?")[0])
        error = HermesSessionError(0, "not asked")
        for attempt in range(1, self.bridge_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(min(self.bridge_retry_delay * 2 ** (attempt - 2), 5.0))
            try:
                status, answer = await _http_exchange(self.bridge_url, method, path, self.bridge_token, self.bridge_timeout,
                                                      data, label="bridge", max_bytes=_MAX_SESSION_ANSWER)
            except asyncio.TimeoutError:
                error = HermesSessionError(0, "the bridge at %s did not answer %s within %g s"
                                           % (self.bridge_url, what, self.bridge_timeout))
                if method != "GET":
                    raise error from None
                continue
            except (OSError, _NoAnswer) as failure:
                error = HermesSessionError(0, "cannot reach the bridge at %s: %s" % (
                    self.bridge_url, failure or type(failure).__name__))
                continue
            except _BadAnswer as failure:
                raise HermesSessionError(0, str(failure)) from None
            try:
                parsed = json.loads(answer.decode("utf-8")) if answer else None
            except (UnicodeDecodeError, ValueError):
                parsed = None
            if status == 200:
                if isinstance(parsed, dict):
                    return parsed
                raise HermesSessionError(200, "the bridge answered %s with no JSON object" % what)
            reason = parsed.get("error") if isinstance(parsed, dict) else None
            error = HermesSessionError(status, str(reason) if reason else "the bridge answered HTTP %d" % status)
            if status not in _UNAVAILABLE:
                raise error
        raise error

    @staticmethod
    def _operation(operation_id: str) -> str:
        if not isinstance(operation_id, str) or not operation_id:
            raise ValueError("operation_id: a non-empty string, not %r" % (operation_id,))
        return operation_id

    @staticmethod
    def _session_path(operation: str, wait_ms: int) -> str:
        return "/v1/hermes/sessions/%s?wait_ms=%d" % (urllib.parse.quote(operation, safe=""), wait_ms)

    async def _session_call(self, method: str, path: str, operation: str, body: Optional[Dict[str, str]] = None, *,
                            wait_ms: int = 0, deadline: Optional[float] = None,
                            last: Optional[HermesResult] = None) -> HermesResult:
        """One request of the bridge's Hermes API, asked again (same operation id, bounded) while the
        bridge is unreachable or unavailable; the session it answers, or HermesSessionError."""
        if self.bridge_url is None:
            raise ValueError("no bridge configured: HermesBridge(..., bridge_url=\"HOST:PORT\")")
        if not self.bridge_token:
            raise ValueError("the bridge's Hermes API needs its token: bridge_token= or $ALLEGRO_HERMES_COMMAND_TOKEN")
        loop = asyncio.get_running_loop()
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        what = "%s %s" % (method, path.split("?")[0])
        error = HermesSessionError(0, "not asked", operation, last)
        for attempt in range(1, self.bridge_attempts + 1):
            if attempt > 1:
                delay = min(self.bridge_retry_delay * 2 ** (attempt - 2), 5.0)
                if deadline is not None and loop.time() + delay >= deadline:
                    break
                await asyncio.sleep(delay)
            read_timeout = self.bridge_timeout + wait_ms / 1000.0
            if deadline is not None:
                read_timeout = min(read_timeout, max(deadline - loop.time(), 0.0) + self.bridge_timeout)
            try:
                status, answer = await _http_exchange(self.bridge_url, method, path, self.bridge_token, read_timeout,
                                                      data, label="bridge", max_bytes=_MAX_SESSION_ANSWER)
            except asyncio.TimeoutError:
                # The bridge runs an operation id once: asking again cannot start a second session.
                error = HermesSessionError(0, "the bridge at %s did not answer %s within %g s"
                                           % (self.bridge_url, what, read_timeout), operation, last)
                continue
            except (OSError, _NoAnswer) as failure:
                error = HermesSessionError(0, "cannot reach the bridge at %s: %s" % (
                    self.bridge_url, failure or type(failure).__name__), operation, last)
                continue
            except _BadAnswer as failure:
                raise HermesSessionError(0, str(failure), operation, last) from None
            try:
                parsed = json.loads(answer.decode("utf-8")) if answer else None
            except (UnicodeDecodeError, ValueError):
                parsed = None
            if status == 200:
                try:
                    return HermesResult.from_json(parsed, operation)
                except (TypeError, ValueError) as failure:
                    raise HermesSessionError(200, "the bridge answered %s with no session: %s" % (what, failure),
                                             operation, last) from None
            reason = parsed.get("error") if isinstance(parsed, dict) else None
            error = HermesSessionError(status, str(reason) if reason else "the bridge answered HTTP %d" % status,
                                       operation, last)
            if status not in _UNAVAILABLE:
                raise error
        raise error


# -- Gitea, through the bridge -------------------------------------------------------------------

class GiteaBridgeError(Exception):
    """The bridge's command API refused or failed a request, or could not be asked.

    `status` is the HTTP status of the answer (400 a wrong request, 401 a missing or wrong token,
    404 an unknown repository or issue, 409 Gitea refused or the operation id was used for another
    command, 503 Gitea is unavailable), or 0 when no answer came (the bridge could not be reached,
    or did not answer in time); `reason` is the bridge's `error` text. For a command,
    `operation_id` is its id: asking again with the same id is safe (the bridge does a command at
    most once per id, and answers a finished one with its first outcome)."""

    def __init__(self, status: int, reason: str, operation_id: Optional[str] = None) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.operation_id = operation_id

    def __str__(self) -> str:
        return "HTTP %d: %s" % (self.status, self.reason) if self.status else self.reason


def _parse_time(text: Any) -> Optional[datetime]:
    """An RFC 3339 time (Gitea's, any offset, "Z" for UTC) as an aware datetime; None if it is not one."""
    if not isinstance(text, str):
        return None
    match = _RFC3339.match(text.strip())
    if match is None:
        return None
    day, clock, fraction, zone = match.groups()
    micros = (fraction[1:] + "000000")[:6] if fraction else "000000"      # 3.9's fromisoformat wants 6 digits
    try:
        return datetime.fromisoformat("%sT%s.%s%s" % (day, clock, micros, "+00:00" if zone in "Zz" else zone))
    except ValueError:
        return None


_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(moment: datetime) -> str:
    """An aware datetime in UTC as RFC 3339 ("Z"), with milliseconds when it has any."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("since: a naive datetime is ambiguous; give one with a timezone (datetime.now(timezone.utc))")
    utc = moment.astimezone(timezone.utc)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    millis = utc.microsecond // 1000
    return text + (".%03dZ" % millis if millis else "Z")


def _time_field(data: Dict[str, Any], key: str, required: bool = False) -> Optional[datetime]:
    value = data.get(key)
    moment = _parse_time(value)
    if moment is None and (required or value not in (None, "")):
        raise ValueError("%s: not an RFC 3339 time: %r" % (key, value))
    return moment


@dataclass
class IssueComment:
    """One comment of an issue or pull request, as `get_issue_details` reads it from Gitea. A
    comment the bridge wrote ends with its hidden marker `<!-- allegro-op: ID -->`."""

    id: int
    user: str
    body: str
    updated_at: datetime
    html_url: str = ""

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "IssueComment":
        return cls(id=int(data["id"]), user=str(data.get("user") or ""), body=str(data.get("body") or ""),
                   updated_at=_time_field(data, "updated_at", required=True) or datetime.min,
                   html_url=str(data.get("html_url") or ""))


@dataclass
class Issue:
    """An issue or pull request (`kind` "issue" or "pull") as the bridge tells it: the payload of
    its `gitea.issue`/`gitea.pull` records. `labels` are names; `status` is the one `status/NAME`
    label's NAME. `comments` is filled by `get_issue_details` only (`comment_count` always)."""

    repo: str
    number: int
    title: str
    state: str
    labels: List[str]
    user: str
    updated_at: datetime
    html_url: str
    body: str
    kind: str = "issue"
    created_at: Optional[datetime] = None
    closed_at: Optional[datetime] = None
    comment_count: int = 0
    merged: Optional[bool] = None
    comments: List[IssueComment] = field(default_factory=list)

    @property
    def status(self) -> Optional[str]:
        return next((label[len(STATUS_PREFIX):] for label in self.labels if label.startswith(STATUS_PREFIX)), None)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Issue":
        """From a record payload (or the details answer, with "kind" and "comment_list");
        ValueError or KeyError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("an issue is a JSON object, not %s" % type(data).__name__)
        kind = data.get("kind") or ("pull" if "merged" in data else "issue")
        if kind not in ("issue", "pull"):
            raise ValueError("kind: issue or pull, not %r" % kind)
        labels = data.get("labels") or []
        comments = data.get("comment_list") or []
        if not isinstance(labels, list) or not isinstance(comments, list):
            raise ValueError("labels and comment_list are lists")
        return cls(repo=str(data["repo"]), number=int(data["number"]), title=str(data.get("title") or ""),
                   state=str(data.get("state") or ""), labels=[str(label) for label in labels],
                   user=str(data.get("user") or ""),
                   updated_at=_time_field(data, "updated_at", required=True) or datetime.min,
                   html_url=str(data.get("html_url") or ""), body=str(data.get("body") or ""), kind=kind,
                   created_at=_time_field(data, "created_at"), closed_at=_time_field(data, "closed_at"),
                   comment_count=int(data.get("comments") or 0),
                   merged=bool(data["merged"]) if "merged" in data else None,
                   comments=[IssueComment.from_json(comment) for comment in comments])


STATUS_PREFIX = "status/"

# Statuses of an answer that mean "the bridge (or Gitea behind it) is unavailable; ask again".
_UNAVAILABLE = frozenset({502, 503, 504})
# The most one answer of the command API may be (a page of issues whose bodies the bridge cut at 64 KiB).
_MAX_COMMAND_ANSWER = 64 << 20
_REPO_PART = re.compile(r"^[A-Za-z0-9._-]+$")


class GiteaBridge:
    """Timmy's hands in Gitea: the command API of `allegro bridge` (protocol/GITEA.md). Timmy never
    talks to Gitea himself; the bridge does, as Allegro's own bot account.

        from allegro_client.timmy import GiteaBridge
        gitea = GiteaBridge("vps1:7402", token=os.environ["ALLEGRO_GITEA_COMMAND_TOKEN"])
        for issue in await gitea.poll_issues("timmy/allegro", since=datetime.now(timezone.utc) - timedelta(hours=1)):
            ...
        await gitea.comment_on_issue("timmy/allegro", 7, "Looking into it.", operation_id="plan-7-ack")
        await gitea.update_status("timmy/allegro", 7, "in-progress")

    bridge: the bridge's HTTP port, "HOST:PORT" (or "http://HOST:PORT").
    token: the command API's bearer token (the bridge's gitea.command_token).
    timeout: seconds for connecting and for each read of an answer (a command whose answer does
        not come in time is not asked again: see below).
    attempts, retry_delay: a request that finds the bridge unreachable (refused, reset, closed
        unanswered) or answered 502/503/504 is asked again, at most `attempts` times in all, after
        retry_delay, 2 x retry_delay, ... seconds. A command goes again with the same operation id,
        which the bridge does at most once, so this never comments twice. Reads are also asked
        again after a timeout; commands are not (the bridge may still be doing them): the
        GiteaBridgeError carries the operation id, to ask again later.

    Every failure is a GiteaBridgeError (status 0 when no answer came); a wrong argument
    (a repository not "owner/name", a naive datetime) is a ValueError.
    """

    def __init__(self, bridge: str, token: str, timeout: float = 30.0, *, attempts: int = 4,
                 retry_delay: float = 0.5) -> None:
        if _http_address(bridge) is None:
            raise ValueError("bridge address %r: expected HOST:PORT or http://HOST:PORT" % bridge)
        if not token:
            raise ValueError("the command API's token is needed (the bridge's gitea.command_token)")
        if timeout <= 0 or attempts < 1 or retry_delay < 0:
            raise ValueError("timeout above 0, attempts at least 1, retry_delay not negative")
        self.bridge = bridge
        self.token = token
        self.timeout = timeout
        self.attempts = attempts
        self.retry_delay = retry_delay

    # -- reads ----------------------------------------------------------------------------

    async def poll_issues(self, repo: str, since: Optional[datetime], limit: Optional[int] = None) -> List[Issue]:
        """Issues and pull requests of `repo` updated at or after `since` (an aware datetime;
        None: all the bridge holds), oldest first, each once in its latest state: at most `limit`,
        else every one. Answered from the bridge's cache of what it polled, so it answers while
        Gitea is slow or down (and knows what the bridge's last poll saw)."""
        base = "/v1/gitea/%s/issues" % self._repo_path(repo)
        if limit is not None and limit < 1:
            raise ValueError("limit: at least 1")
        cursor = _rfc3339(since) if since is not None else None
        found: Dict[int, Issue] = {}
        page = _ISSUE_PAGE
        while True:
            want = page if limit is None else min(page, limit)
            query = [("limit", str(want))] + ([("since", cursor)] if cursor else [])
            answer = await self._call("GET", base + "?" + urllib.parse.urlencode(query))
            issues = self._issues(answer)
            fresh = [issue for issue in issues
                     if issue.number not in found or found[issue.number].updated_at < issue.updated_at]
            for issue in fresh:
                found[issue.number] = issue
            if len(issues) < want or (limit is not None and len(found) >= limit):
                break
            if not fresh:
                # A whole page at one instant: ask for a bigger one, or give what there is.
                if want >= _ISSUE_PAGE_MAX:
                    break
                page = min(want * 10, _ISSUE_PAGE_MAX)
                continue
            cursor = _rfc3339(issues[-1].updated_at)
        ordered = sorted(found.values(), key=lambda issue: (issue.updated_at, issue.number))
        return ordered if limit is None else ordered[:limit]

    async def get_issue_details(self, repo: str, issue: int) -> Issue:
        """One issue or pull request with its comments (`Issue.comments`), read from Gitea now."""
        answer = await self._call("GET", "/v1/gitea/%s/issues/%d" % (self._repo_path(repo), self._number(issue)))
        try:
            return Issue.from_json(answer)
        except (KeyError, TypeError, ValueError) as error:
            raise GiteaBridgeError(200, "the bridge's answer is not an issue: %s" % error) from None

    # -- commands -------------------------------------------------------------------------

    async def comment_on_issue(self, repo: str, issue: int, body: str,
                               operation_id: Optional[str] = None) -> Dict[str, Any]:
        """Posts `body` (Markdown) on the issue or pull request, once per operation id (a new
        uuid4-based one when None). Closing keywords ("fixes #3") are written as "Refs #3".
        Returns the bridge's answer: comment_id, html_url, written ("now", "found", "found after
        a lost answer") and, for an id already done, repeated: True."""
        operation = operation_id or _new_operation("comment")
        return await self._call("POST", "/v1/gitea/%s/issues/%d/comments" % (self._repo_path(repo), self._number(issue)),
                                {"operation_id": operation, "body": body}, operation=operation)

    async def update_status(self, repo: str, issue: int, status: str,
                            operation_id: Optional[str] = None) -> Dict[str, Any]:
        """Makes `status` (one of the bridge's gitea.statuses: triage, in-progress, blocked,
        review, done) the issue's one `status/` label, once per operation id (a new one when
        None). Returns the bridge's answer: status, label, removed (the other status labels)."""
        operation = operation_id or _new_operation("status")
        return await self._call("PUT", "/v1/gitea/%s/issues/%d/status" % (self._repo_path(repo), self._number(issue)),
                                {"operation_id": operation, "status": status}, operation=operation)

    # -- gated commands (Timmy's signed approval, protocol/APPROVAL.md) -----------------------

    async def create_pr(self, repo: str, branch: str, title: str, body: str, approval: Approval, base: str = "main",
                        operation_id: Optional[str] = None) -> Dict[str, Any]:
        """Opens a pull request of `branch` into `base`, once per operation id (a new one when
        None), with Timmy's `create_pr` approval of this repository, head, base and the commit the
        head points at (allegro-approve --action create_pr ... --head BRANCH --head-sha SHA). The
        head may be neither the default nor a protected branch; closing keywords in the title and
        body are written as "Refs #N". Returns the bridge's answer: pull, html_url, head_sha,
        written ("found" when such a pull request was open already). A refused approval is a
        GiteaBridgeError with status 403."""
        operation = operation_id or _new_operation("pr")
        return await self._call("POST", "/v1/gitea/%s/pulls" % self._repo_path(repo),
                                dict({"operation_id": operation, "head": branch, "base": base, "title": title,
                                      "body": body}, **self._approval(approval)), operation=operation)

    async def close_issue(self, repo: str, issue: int, approval: Approval,
                          operation_id: Optional[str] = None) -> Dict[str, Any]:
        """Closes the issue, once per operation id (a new one when None), with Timmy's
        `close_issue` approval of this repository and issue. Returns the bridge's answer: state,
        html_url, written ("found" when it was closed already). A refused approval is a
        GiteaBridgeError with status 403."""
        operation = operation_id or _new_operation("close")
        return await self._call("POST", "/v1/gitea/%s/issues/%d/close" % (self._repo_path(repo), self._number(issue)),
                                dict({"operation_id": operation}, **self._approval(approval)), operation=operation)

    async def merge_pr(self, repo: str, pull: int, approval: Approval,
                       operation_id: Optional[str] = None) -> Dict[str, Any]:
        """Merges the pull request, once per operation id (a new one when None), with Timmy's
        `merge_pr` approval of this pull request, its head branch, head commit and base (a head
        that moved since he signed is refused). Returns the bridge's answer: pull, merged,
        html_url, head_sha, written. A refused approval is a GiteaBridgeError with status 403."""
        operation = operation_id or _new_operation("merge")
        return await self._call("POST", "/v1/gitea/%s/pulls/%d/merge" % (self._repo_path(repo), self._number(pull)),
                                dict({"operation_id": operation}, **self._approval(approval)), operation=operation)

    # -- the exchange ---------------------------------------------------------------------

    @staticmethod
    def _repo_path(repo: str) -> str:
        parts = repo.split("/") if isinstance(repo, str) else []
        if len(parts) != 2 or not all(_REPO_PART.match(part) for part in parts) or any(p in (".", "..") for p in parts):
            raise ValueError("repo: owner/name (letters, digits, - _ .), not %r" % (repo,))
        return "/".join(urllib.parse.quote(part, safe="") for part in parts)

    @staticmethod
    def _number(issue: int) -> int:
        if isinstance(issue, bool) or not isinstance(issue, int) or issue < 1:
            raise ValueError("issue: a number above 0, not %r" % (issue,))
        return issue

    @staticmethod
    def _approval(approval: Approval) -> Dict[str, str]:
        statement, signature = getattr(approval, "statement", None), getattr(approval, "signature", None)
        if not isinstance(statement, str) or not isinstance(signature, str) or not statement or not signature:
            raise ValueError("approval: an Approval (statement and signature text), not %r" % (approval,))
        return {"statement": statement, "signature": signature}

    @staticmethod
    def _issues(answer: Dict[str, Any]) -> List[Issue]:
        items = answer.get("issues")
        if not isinstance(items, list):
            raise GiteaBridgeError(200, "the bridge's answer has no list of issues")
        try:
            return [Issue.from_json(item) for item in items]
        except (KeyError, TypeError, ValueError) as error:
            raise GiteaBridgeError(200, "the bridge's answer holds something that is not an issue: %s" % error) from None

    async def _call(self, method: str, path: str, body: Optional[Dict[str, str]] = None,
                    operation: Optional[str] = None) -> Dict[str, Any]:
        """One request of the command API, asked again while the bridge is unreachable or
        unavailable (bounded); the answer's JSON object, or GiteaBridgeError."""
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        error = GiteaBridgeError(0, "not asked", operation)
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 2))
            try:
                status, answer = await _http_exchange(self.bridge, method, path, self.token, self.timeout, data,
                                                      label="bridge", max_bytes=_MAX_COMMAND_ANSWER)
            except asyncio.TimeoutError:
                error = GiteaBridgeError(0, "the bridge at %s did not answer %s %s within %g s"
                                         % (self.bridge, method, path.split("?")[0], self.timeout), operation)
                if operation is not None:
                    raise error from None     # it may still be at it: never a second run alongside
                continue
            except (OSError, _NoAnswer) as failure:
                error = GiteaBridgeError(0, "cannot reach the bridge at %s: %s" % (self.bridge, failure or
                                                                                  type(failure).__name__), operation)
                continue
            except _BadAnswer as failure:
                raise GiteaBridgeError(0, str(failure), operation) from None
            try:
                parsed = json.loads(answer.decode("utf-8")) if answer else None
            except (UnicodeDecodeError, ValueError):
                parsed = None
            if status == 200 and isinstance(parsed, dict):
                return parsed
            if status == 200:
                raise GiteaBridgeError(200, "the bridge answered %s %s with no JSON object" % (method, path.split("?")[0]),
                                       operation)
            reason = parsed.get("error") if isinstance(parsed, dict) else None
            error = GiteaBridgeError(status, str(reason) if reason else "the bridge answered HTTP %d" % status, operation)
            if status not in _UNAVAILABLE:
                raise error
        raise error


_ISSUE_PAGE = 100           # issues per request of poll_issues (bodies are up to 64 KiB each)
_ISSUE_PAGE_MAX = 5000      # the bridge's largest limit


def read_approval(statement_path: Union[str, "os.PathLike[str]"],
                  signature_path: Union[str, "os.PathLike[str]"]) -> Approval:
    """The Approval that `allegro-approve --out DIR` wrote, from DIR/statement.txt and
    DIR/statement.txt.sig: both read exactly as written (no line-end translation: the signature
    is over the statement's bytes). OSError when a file cannot be read; ValueError when one is
    not ASCII text or is empty."""
    texts = []
    for path in (statement_path, signature_path):
        with open(path, "rb") as handle:
            data = handle.read(1 << 20)
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("%s is not ASCII text" % os.fspath(path)) from None
        if not text:
            raise ValueError("%s is empty" % os.fspath(path))
        texts.append(text)
    return Approval(texts[0], texts[1])


def _new_operation(kind: str) -> str:
    return "timmy-%s-%s" % (kind, uuid.uuid4())
