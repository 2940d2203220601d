"""A Hermes Agent plugin that streams the agent's observer hooks to an Allegro relay.

hermes-agent (0.19.0 and later) finds it through the `hermes_agent.plugins` entry point `allegro`,
imports this module and calls `register(ctx)`; plugins are opt-in, so enable it once with
`hermes plugins enable allegro`. Each hook call becomes one record (`post_api_request` two: the
response and its usage): the session id, an event kind (the table in README.md), and a JSON payload
made of the hook's keyword arguments, minus the whole-history ones (`conversation_history`,
`request_messages`, `assistant_message`): the model request and response are Hermes' sanitized
`request` / `response` summaries, with the request's tool schemas reduced to their names.

Configuration comes from the environment:

  ALLEGRO_RELAYS           comma-separated HOST:PORT list, first preferred (default 127.0.0.1:7400)
  ALLEGRO_PRODUCER_TOKEN   the producer token
  ALLEGRO_PRODUCER_ID      the producer id (default: hermes-HOST-PID)
  ALLEGRO_MAX_EVENT_BYTES  payload cap per event; larger ones are cut and marked (default 65536)
  ALLEGRO_MAX_FRAME_BYTES  the relays' max_frame_bytes, when set below the default (default 1048576)
  ALLEGRO_FLUSH_TIMEOUT    seconds to wait for acknowledgements at turn end and session end (default 2)
  ALLEGRO_IDLE_TIMEOUT_MS  silence after which a relay is taken for dead (default: the relay's own)
  ALLEGRO_FAILBACK_AFTER   seconds the first relay must stay healthy before it is used again (default 60)
  ALLEGRO_MAX_BUFFER       events held unacknowledged before the oldest are dropped (default 100000)
  ALLEGRO_DIRECT_SEND      1 (default): a hook sends its event itself; 0: the sender thread does

Hooks run on the agent's thread, so a hook only encodes the event, queues it and, when nothing is
queued ahead of it, sends it with one non-blocking send() (tens of microseconds; see BENCHMARKS.md);
a background thread sends the rest and reads the acknowledgements. A hook never raises and never returns a value (a value
returned from `pre_llm_call` or `pre_tool_call` would change what the agent does); a failure is
counted in `stats()` and logged once. At turn end (`on_session_end`) and session end
(`on_session_finalize`, `on_session_reset`) it waits, at most ALLEGRO_FLUSH_TIMEOUT seconds, for the
relay to acknowledge everything (when no relay answered the last attempt, only as long as one more
attempt takes): Hermes' one-shot mode (`hermes -z`) leaves with os._exit, which would otherwise lose
what is still queued.
"""

import atexit
import logging
import os
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .producer import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_FRAME_BYTES, Producer

logger = logging.getLogger("allegro_client.hermes_plugin")

# Hermes hook name -> Allegro event kind. `post_api_request` also emits USAGE_KIND.
HOOKS: Dict[str, str] = {
    "on_session_start": "session_start",
    "pre_llm_call": "turn_start",
    "pre_api_request": "api_request",
    "post_api_request": "api_response",
    "api_request_error": "api_request_error",
    "pre_tool_call": "tool_call",
    "post_tool_call": "tool_result",
    "pre_approval_request": "approval_request",
    "post_approval_response": "approval_response",
    "subagent_start": "subagent_start",
    "subagent_stop": "subagent_stop",
    "post_llm_call": "turn_response",
    "on_session_end": "turn_end",          # Hermes fires it after every turn (run_conversation)
    "on_session_finalize": "session_finalize",
    "on_session_reset": "session_reset",
}
USAGE_KIND = "usage"
# Hooks after which the plugin waits (bounded) for the relay's acknowledgements.
FLUSH_HOOKS = {"on_session_end", "on_session_finalize", "on_session_reset"}
# Whole histories (every turn) and internals: never sent.
OMITTED = {"session_id", "conversation_history", "request_messages", "assistant_message", "middleware_trace",
           "telemetry_schema_version"}
USAGE_FIELDS = ("task_id", "turn_id", "api_request_id", "api_call_count", "model", "response_model", "provider")

_lock = threading.Lock()
_producer: Optional[Producer] = None
_local = threading.local()
_stats: Dict[str, int] = {"events": 0, "errors": 0, "flushes": 0, "flush_timeouts": 0}
_logged: set = set()


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        _log_once("env:" + name, "allegro: %s=%r is not a number; using %g", name, raw, default)
        return default


def _log_once(key: str, message: str, *args: Any) -> None:
    if key not in _logged:
        _logged.add(key)
        logger.warning(message, *args)


def producer() -> Producer:
    """The process-wide producer, created from the environment at `register()` (or first use)."""
    global _producer
    current = _producer
    if current is not None:
        return current
    with _lock:
        if _producer is None:
            relays = [r.strip() for r in os.environ.get("ALLEGRO_RELAYS", "127.0.0.1:7400").split(",") if r.strip()]
            idle_ms = _env_number("ALLEGRO_IDLE_TIMEOUT_MS", 0)
            _producer = Producer(
                relays,
                producer_id=os.environ.get("ALLEGRO_PRODUCER_ID") or "hermes-%s-%d" % (socket.gethostname(), os.getpid()),
                token=os.environ.get("ALLEGRO_PRODUCER_TOKEN", ""),
                on_full="drop_oldest",
                max_buffer=int(_env_number("ALLEGRO_MAX_BUFFER", 100_000)),
                max_event_bytes=int(_env_number("ALLEGRO_MAX_EVENT_BYTES", DEFAULT_MAX_EVENT_BYTES)),
                max_frame_bytes=int(_env_number("ALLEGRO_MAX_FRAME_BYTES", DEFAULT_MAX_FRAME_BYTES)),
                idle_timeout=idle_ms / 1000.0 if idle_ms > 0 else None,
                failback_after=_env_number("ALLEGRO_FAILBACK_AFTER", 60.0),
                json_default=_fallback,
                direct_send=os.environ.get("ALLEGRO_DIRECT_SEND", "1").strip() not in ("0", "false", "no"))
            atexit.register(_at_exit)
        return _producer


def stats() -> Dict[str, int]:
    """Counters: events emitted, hook failures swallowed, flushes and flushes that timed out, and the
    producer's own (truncated, refused, dropped, failovers)."""
    out = dict(_stats)
    current = _producer
    if current is not None:
        out.update(truncated=current.truncated, refused=current.refused, dropped=current.dropped,
                   failovers=current.failovers, unacked=current.unacked)
    return out


def _fallback(value: Any) -> Any:
    """json.dumps' `default`: objects Hermes hands over that JSON cannot encode."""
    if isinstance(value, (set, frozenset)):
        return sorted(map(str, value))
    if isinstance(value, (bytes, bytearray)):
        return "<%d bytes>" % len(value)
    return repr(value)[:1024]


def _tool_name(tool: Any) -> Any:
    if isinstance(tool, dict):
        function = tool.get("function")
        if isinstance(function, dict) and "name" in function:
            return function["name"]
        return tool.get("name", "?")
    return str(tool)[:64]


def _summarise_request(request: Any) -> Any:
    """Hermes' sanitized request with its tool schemas (the same every call, and large) as names."""
    if isinstance(request, dict):
        body = request.get("body")
        if isinstance(body, dict) and isinstance(body.get("tools"), list):
            body = dict(body)
            body["tools"] = [_tool_name(tool) for tool in body["tools"]]
            request = dict(request)
            request["body"] = body
    return request


def _session(hook: str, kwargs: Dict[str, Any]) -> str:
    session = kwargs.get("session_id")
    if session:
        session = str(session)
        _local.session = session
        return session
    if hook.startswith("subagent_"):
        return str(kwargs.get("parent_session_id") or "")
    if hook.endswith("_approval_request") or hook.endswith("_approval_response"):
        # The CLI's session_key is the session id; a gateway's is its own key: prefer the session
        # this thread last reported.
        return str(getattr(_local, "session", "") or kwargs.get("session_key") or "")
    return ""


def event_records(hook: str, kwargs: Dict[str, Any]) -> List[Tuple[str, str, Dict[str, Any]]]:
    """(session id, kind, payload) for one hook call: one record, two for `post_api_request`."""
    kind = HOOKS.get(hook, hook)
    session = _session(hook, kwargs)
    payload: Dict[str, Any] = {}
    for key, value in kwargs.items():
        if key not in OMITTED:
            payload[key] = value
    if "request" in payload:
        payload["request"] = _summarise_request(payload["request"])
    if hook == "pre_llm_call":
        history = kwargs.get("conversation_history")
        payload["history_messages"] = len(history) if isinstance(history, list) else None
    elif hook == "on_session_start":
        payload["hermes_schema"] = kwargs.get("telemetry_schema_version")
    records = [(session, kind, payload)]
    if hook == "post_api_request" and kwargs.get("usage"):
        usage = {key: kwargs.get(key) for key in USAGE_FIELDS if key in kwargs}
        usage["usage"] = kwargs.get("usage")
        records.append((session, USAGE_KIND, usage))
    return records


def _flush(target: Producer) -> None:
    # Bounded; and when no relay answered the last attempt, one immediate attempt more, not the
    # whole timeout: the agent is never held up for a relay that is not there.
    _stats["flushes"] += 1
    if not target.flush(max(0.0, _env_number("ALLEGRO_FLUSH_TIMEOUT", 2.0)), while_reachable=True):
        _stats["flush_timeouts"] += 1


def _at_exit() -> None:
    current = _producer
    if current is not None:
        try:
            _flush(current)
        except Exception:
            pass


def make_hook(hook: str, emit: Optional[Callable[..., Any]] = None) -> Callable[..., None]:
    """The observer for one Hermes hook. It never raises and always returns None."""
    flushes = hook in FLUSH_HOOKS

    def observe(**kwargs: Any) -> None:
        when = time.time_ns()     # the event's time: when Hermes called the hook
        try:
            target = producer() if emit is None else None
            send = emit if emit is not None else target.emit   # type: ignore[union-attr]
            for session, kind, payload in event_records(hook, kwargs):
                send(payload, session=session, kind=kind, content_type="application/json", event_time_ns=when)
                _stats["events"] += 1
            if flushes and target is not None:
                _flush(target)
        except Exception as error:  # an observer must never break the agent
            _stats["errors"] += 1
            _log_once("hook:%s:%s" % (hook, type(error).__name__),
                      "allegro: the %s hook failed (%s: %s); counted, and not logged again", hook,
                      type(error).__name__, error)
        return None

    observe.__name__ = "allegro_" + hook
    return observe


def register(ctx: Any) -> None:
    """Entry point for hermes-agent: one observer per hook this Hermes knows."""
    try:
        from hermes_cli.plugins import VALID_HOOKS  # type: ignore[import-not-found]
        known = set(VALID_HOOKS)
    except Exception:
        known = set(HOOKS)
    for hook in HOOKS:
        if hook in known:
            ctx.register_hook(hook, make_hook(hook))
    # Connect now, while Hermes starts up, so the session's first events do not wait for the
    # handshake. Never fails the load: a problem shows in the hooks (counted, logged once).
    try:
        producer()
    except Exception as error:
        _log_once("register", "allegro: cannot start the producer yet (%s: %s)", type(error).__name__, error)
