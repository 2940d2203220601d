"""The Hermes plugin's mapping, in process, against the real relay: every observer hook Hermes 0.19.0
calls, with the keyword arguments its call sites pass, becomes the documented event kind; whole
histories are left out; a failing hook is counted and never raises."""

import json

import pytest

from allegro_client import hermes_plugin
from hermes_support import assert_one_producer_in_order, kinds, payload, read_count

SESSION = "20261203_063743_d74072"
TURN = SESSION + ":task:turn"
HISTORY = [{"role": "user", "content": "old " * 1000}] * 30

# One call of each hook, with the keyword arguments Hermes 0.19.0 passes (read from its call sites:
# agent/conversation_loop.py, agent/turn_context.py, agent/turn_finalizer.py, model_tools.py,
# hermes_cli/plugins.py, tools/approval.py, tools/delegate_tool.py, cli.py).
CALLS = [
    ("on_session_start", dict(session_id=SESSION, model="fake-model", platform="cli",
                              telemetry_schema_version="hermes.observer.v1")),
    ("pre_llm_call", dict(session_id=SESSION, task_id="task", turn_id=TURN, user_message="read the notes",
                          conversation_history=HISTORY, is_first_turn=True, model="fake-model", platform="cli",
                          sender_id="")),
    ("pre_api_request", dict(task_id="task", turn_id=TURN, api_request_id=TURN + ":api:1", session_id=SESSION,
                             user_message="read the notes", conversation_history=HISTORY, platform="cli",
                             model="fake-model", provider="custom", base_url="http://127.0.0.1:1/v1",
                             api_mode="chat_completions", api_call_count=1, request_messages=HISTORY,
                             message_count=31, tool_count=2, approx_input_tokens=9000, request_char_count=36000,
                             max_tokens=None, started_at=1.5, middleware_trace=[],
                             request={"method": "POST", "body": {"model": "fake-model", "messages": HISTORY[:2],
                                                                 "tools": [{"type": "function", "function": {
                                                                     "name": "read_file", "parameters": {}}},
                                                                           {"type": "function", "function": {
                                                                               "name": "search_files"}}]}})),
    ("post_api_request", dict(task_id="task", turn_id=TURN, api_request_id=TURN + ":api:1", session_id=SESSION,
                              platform="cli", model="fake-model", provider="custom", base_url="http://127.0.0.1:1/v1",
                              api_mode="chat_completions", api_call_count=1, api_duration=0.4, started_at=1.5,
                              ended_at=1.9, finish_reason="tool_calls", message_count=31, response_model="fake-model",
                              response={"model": "fake-model", "finish_reason": "tool_calls",
                                        "assistant_message": {"role": "assistant", "content": "", "tool_calls": []}},
                              usage={"input_tokens": 1187, "output_tokens": 7, "prompt_tokens": 1187,
                                     "total_tokens": 1194},
                              assistant_message=object(), assistant_content_chars=0, assistant_tool_call_count=1)),
    ("pre_tool_call", dict(tool_name="read_file", args={"path": "notes.txt"}, task_id="task", session_id=SESSION,
                           tool_call_id="call_2", turn_id=TURN, api_request_id=TURN + ":api:1", middleware_trace=[])),
    ("pre_approval_request", dict(command="rm -rf build", description="recursive delete", pattern_key="rm",
                                  pattern_keys=["rm"], session_key=SESSION, surface="cli", turn_id=TURN,
                                  tool_call_id="call_2")),
    ("post_approval_response", dict(command="rm -rf build", description="recursive delete", pattern_key="rm",
                                    pattern_keys=["rm"], session_key=SESSION, surface="cli", choice="deny",
                                    turn_id=TURN, tool_call_id="call_2")),
    ("post_tool_call", dict(tool_name="read_file", args={"path": "notes.txt"}, result='{"content": "1|hello"}',
                            task_id="task", session_id=SESSION, tool_call_id="call_2", turn_id=TURN,
                            api_request_id=TURN + ":api:1", duration_ms=42, status="ok", error_type=None,
                            error_message=None, middleware_trace=[])),
    ("subagent_start", dict(parent_session_id=SESSION, parent_turn_id=TURN, parent_subagent_id=None,
                            child_session_id="child-1", child_subagent_id="sa-1", child_role="leaf",
                            child_goal="summarise")),
    ("subagent_stop", dict(parent_session_id=SESSION, parent_turn_id=TURN, child_session_id="child-1",
                           child_role="leaf", child_summary="done", child_status="completed", duration_ms=1234)),
    ("api_request_error", dict(task_id="task", turn_id=TURN, api_request_id=TURN + ":api:2", session_id=SESSION,
                               platform="cli", model="fake-model", provider="custom", base_url="http://127.0.0.1:1/v1",
                               api_mode="chat_completions", api_call_count=2, api_duration=0.3, started_at=2.0,
                               ended_at=2.3, status_code=500, retry_count=0, max_retries=3, retryable=False,
                               reason="server_error", error={"type": "InternalServerError", "message": "boom"},
                               request={"method": "POST", "body": {"model": "fake-model", "messages": []}})),
    ("post_llm_call", dict(session_id=SESSION, task_id="task", turn_id=TURN, user_message="read the notes",
                           assistant_response="All done.", conversation_history=HISTORY, model="fake-model",
                           platform="cli")),
    ("on_session_end", dict(session_id=SESSION, task_id="task", turn_id=TURN, completed=True, interrupted=False,
                            model="fake-model", platform="cli")),
    ("on_session_reset", dict(session_id=SESSION, platform="cli", reason="new_session")),
    ("on_session_finalize", dict(session_id=SESSION, platform="cli", reason="shutdown")),
]
EXPECTED_KINDS = ["session_start", "turn_start", "api_request", "api_response", "usage", "tool_call",
                  "approval_request", "approval_response", "tool_result", "subagent_start", "subagent_stop",
                  "api_request_error", "turn_response", "turn_end", "session_reset", "session_finalize"]


class Context:
    """What `register(ctx)` is given, reduced to the part the plugin uses."""

    def __init__(self):
        self.hooks = {}

    def register_hook(self, name, callback):
        self.hooks.setdefault(name, []).append(callback)


@pytest.fixture
def plugin(relay, monkeypatch):
    monkeypatch.setenv("ALLEGRO_RELAYS", relay.address)
    monkeypatch.setenv("ALLEGRO_PRODUCER_ID", "hermes-unit")
    monkeypatch.setattr(hermes_plugin, "_producer", None)
    context = Context()
    hermes_plugin.register(context)
    yield context
    if hermes_plugin._producer is not None:
        hermes_plugin._producer.close(5)
    hermes_plugin._producer = None


def test_every_observer_hook_becomes_its_documented_kind_in_order(plugin, relay):
    assert set(plugin.hooks) == set(hermes_plugin.HOOKS)
    assert all(len(callbacks) == 1 for callbacks in plugin.hooks.values())
    for hook, kwargs in CALLS:
        assert plugin.hooks[hook][0](**kwargs) is None, "an observer returns nothing (a value would steer the agent)"
    records = read_count(relay, len(EXPECTED_KINDS))
    assert kinds(records) == EXPECTED_KINDS
    assert_one_producer_in_order(records, "hermes-unit")
    # Subagent events have no session_id: they belong to the parent's session; approvals carry the
    # session key, which the CLI sets to the session id.
    assert {record["session"] for record in records} == {SESSION}
    assert hermes_plugin.stats()["errors"] == 0


def test_payloads_keep_the_summaries_and_leave_out_whole_histories(plugin, relay):
    for hook, kwargs in CALLS:
        plugin.hooks[hook][0](**kwargs)
    by_kind = {record["kind"]: payload(record) for record in read_count(relay, len(EXPECTED_KINDS))}
    for kind, body in by_kind.items():
        for left_out in ("conversation_history", "request_messages", "assistant_message", "session_id"):
            assert left_out not in body, (kind, left_out)
    assert by_kind["turn_start"]["user_message"] == "read the notes"
    assert by_kind["turn_start"]["history_messages"] == len(HISTORY)
    request = by_kind["api_request"]["request"]
    assert request["body"]["tools"] == ["read_file", "search_files"], "tool schemas become their names"
    assert request["body"]["messages"] == HISTORY[:2]
    assert by_kind["api_response"]["finish_reason"] == "tool_calls" and by_kind["api_response"]["api_duration"] == 0.4
    assert by_kind["usage"] == {"task_id": "task", "turn_id": TURN, "api_request_id": TURN + ":api:1",
                                "api_call_count": 1, "model": "fake-model", "response_model": "fake-model",
                                "provider": "custom", "usage": CALLS[3][1]["usage"]}
    assert by_kind["tool_result"]["result"] == '{"content": "1|hello"}' and by_kind["tool_result"]["duration_ms"] == 42
    assert by_kind["api_request_error"]["status_code"] == 500
    assert by_kind["api_request_error"]["error"] == {"type": "InternalServerError", "message": "boom"}
    assert by_kind["subagent_start"]["child_session_id"] == "child-1"
    assert by_kind["approval_response"]["choice"] == "deny"
    assert by_kind["turn_end"]["completed"] is True
    assert by_kind["session_finalize"]["reason"] == "shutdown"
    assert by_kind["session_start"]["hermes_schema"] == "hermes.observer.v1"


def test_a_hook_that_fails_never_raises_is_counted_and_the_next_events_still_go(plugin, relay, caplog):
    before = hermes_plugin.stats()["errors"]

    def broken_emit(*args, **kwargs):
        raise RuntimeError("simulated failure")

    broken = hermes_plugin.make_hook("pre_tool_call", emit=broken_emit)
    for _ in range(3):
        assert broken(session_id=SESSION, tool_name="x", args={}) is None
    assert hermes_plugin.stats()["errors"] == before + 3
    assert len([r for r in caplog.records if "simulated failure" in r.getMessage()]) == 1, "logged once"
    # An argument JSON cannot encode is sent as its repr, not as a failure.
    plugin.hooks["post_tool_call"][0](session_id=SESSION, tool_name="x", result=object(), args={"when": {1, 2}})
    plugin.hooks["on_session_end"][0](session_id=SESSION, completed=True)
    records = read_count(relay, 2)
    assert kinds(records) == ["tool_result", "turn_end"]
    result = payload(records[0])
    assert result["result"].startswith("<object object") and result["args"] == {"when": ["1", "2"]}
    assert hermes_plugin.stats()["errors"] == before + 3


def test_turn_end_waits_for_the_relay_so_nothing_is_left_queued(plugin, relay):
    for hook, kwargs in CALLS[:4]:
        plugin.hooks[hook][0](**kwargs)
    plugin.hooks["on_session_end"][0](**dict(CALLS[-3][1]))
    # on_session_end returned only once the relay had acknowledged everything (it is connected).
    assert hermes_plugin.producer().unacked == 0
    assert hermes_plugin.stats()["flush_timeouts"] == 0
    assert kinds(read_count(relay, 6)) == ["session_start", "turn_start", "api_request", "api_response", "usage",
                                           "turn_end"]


def test_an_event_over_the_cap_arrives_truncated_with_its_original_size(plugin, relay, monkeypatch):
    hermes_plugin.producer().close(5)      # the one register() started; the next reads the new cap
    hermes_plugin._producer = None
    monkeypatch.setenv("ALLEGRO_MAX_EVENT_BYTES", "8192")
    plugin.hooks["post_tool_call"][0](session_id=SESSION, tool_name="read_file", result="x" * 100_000,
                                      args={"path": "big.txt"})
    plugin.hooks["on_session_end"][0](session_id=SESSION, completed=True)
    records = read_count(relay, 2)
    assert kinds(records) == ["tool_result", "turn_end"]
    body = payload(records[0])
    assert body["truncated"] is True and body["original_bytes"] > 100_000 and body["tool_name"] == "read_file"
    assert len(records[0]["payload"].encode()) <= 8192
    assert json.loads(records[1]["payload"])["completed"] is True
