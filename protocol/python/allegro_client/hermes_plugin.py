"""A Hermes Agent plugin that sends the agent's lifecycle events to an Allegro relay.

hermes-agent loads plugins through the `hermes_agent.plugins` entry point and calls
`register(ctx)`; this one registers observer hooks (they receive keyword arguments and must not
raise). Each event becomes one record: session id from the hook's arguments, event kind from the
hook, payload as JSON. Configuration comes from the environment:

  ALLEGRO_RELAYS          comma-separated HOST:PORT list (default 127.0.0.1:7400)
  ALLEGRO_PRODUCER_TOKEN  the producer token
  ALLEGRO_PRODUCER_ID     the producer id (default: hermes-HOST-PID)

The hook names follow Hermes' plugin hooks; a Hermes build without one of them simply never
calls it. Emitting never blocks the agent: when the buffer is full the oldest events are dropped
and counted.
"""

import json
import os
import socket

from .producer import Producer

# Hermes hook name -> Allegro event kind.
HOOKS = {
    "on_session_start": "session_start",
    "on_session_end": "session_end",
    "pre_llm_call": "model_turn_start",
    "post_llm_call": "model_turn",
    "post_api_request": "token_usage",
    "pre_tool_call": "tool_call",
    "post_tool_call": "tool_result",
}

_producer = None


def producer():
    """The process-wide producer, created on first use."""
    global _producer
    if _producer is None:
        relays = [r.strip() for r in os.environ.get("ALLEGRO_RELAYS", "127.0.0.1:7400").split(",") if r.strip()]
        _producer = Producer(relays, producer_id=os.environ.get("ALLEGRO_PRODUCER_ID")
                             or "hermes-%s-%d" % (socket.gethostname(), os.getpid()),
                             token=os.environ.get("ALLEGRO_PRODUCER_TOKEN", ""), on_full="drop_oldest")
    return _producer


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)[:4096]


def event_record(kind, kwargs):
    """(session id, kind, payload dict) for one hook call."""
    session = str(kwargs.get("session_id") or kwargs.get("task_id") or "")
    payload = {"event": kind}
    for key, value in kwargs.items():
        if key in ("session_id",):
            continue
        payload[key] = _jsonable(value)
    return session, kind, payload


def make_hook(kind, emit=None):
    def hook(**kwargs):
        try:
            session, event_kind, payload = event_record(kind, kwargs)
            (emit or producer().emit)(payload, session=session, kind=event_kind, content_type="application/json")
        except Exception:  # an observer must never break the agent
            pass
        return None
    return hook


def register(ctx):
    """Entry point for hermes-agent: registers one observer hook per lifecycle event."""
    for hook_name, kind in HOOKS.items():
        ctx.register_hook(hook_name, make_hook(kind))
