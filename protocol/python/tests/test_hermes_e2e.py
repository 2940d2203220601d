"""The real Hermes (hermes-agent 0.19.0, the `hermes` beside this Python) with the plugin enabled, a
local fake model server (tests/fake_model.py) and the real relay binary: real sessions deliver every
event, in order, through the relay, also when Hermes leaves with os._exit, when the history outgrows
the relay's frames, when the relay stops mid-session, and when the model fails."""

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Relay
from fake_model import FakeModel
from hermes_support import (HERMES, ONE_TOOL_TURN, assert_one_producer_in_order, hermes_env, kinds, make_home,
                            needs_hermes, payload, read_count, read_relay, run_hermes, session_id_printed,
                            stop_process)

pytestmark = needs_hermes

QUERY = "Read notes.txt and tell me what it says."
NOTES = "hello from the notes file\n"


@pytest.fixture
def workdir(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text(NOTES)
    return work


@pytest.fixture
def model_factory(workdir):
    models = []

    def make(**options):
        model = FakeModel(tool_path=str(workdir / "notes.txt"), **options)
        models.append(model)
        return model

    yield make
    for model in models:
        model.release.set()
        model.close()


def quick_relay(binary, path, *extra):
    """A relay that PINGs every 300 ms and gives up on silence after 1.5 s."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return Relay(binary, path, extra=["--set", "heartbeat_ms=300", "--set", "idle_timeout_ms=1500"] + list(extra))


def test_a_real_hermes_chat_session_streams_every_event_in_order_through_the_relay(relay, tmp_path, workdir,
                                                                                   model_factory):
    model = model_factory()
    home = make_home(tmp_path, model.base_url, enable=False)
    env = hermes_env(home, [relay.address], "hermes-e2e-chat")
    # Plugins are opt-in: enable it the way a user does, and check what Hermes recorded.
    enabled = run_hermes(["plugins", "enable", "allegro"], env, workdir, timeout=60)
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    assert "allegro" in (home / "config.yaml").read_text().split("enabled:", 1)[1].split("disabled:", 1)[0]

    result = run_hermes(["chat", "-Q", "-t", "file", "-q", QUERY], env, workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All done: the notes say hello." in result.stdout
    session = session_id_printed(result.stderr)
    assert "no register() function" not in result.stdout + result.stderr

    records = read_relay(relay)
    assert kinds(records) == ONE_TOOL_TURN + ["session_finalize"]
    assert {record["session"] for record in records} == {session}
    assert_one_producer_in_order(records, "hermes-e2e-chat")
    bodies = [payload(record) for record in records]
    for body in bodies:
        assert not {"conversation_history", "request_messages", "assistant_message"} & set(body)
    by_kind = {}
    for record, body in zip(records, bodies):
        by_kind.setdefault(record["kind"], []).append(body)
    assert by_kind["turn_start"][0]["user_message"] == QUERY
    first_request = by_kind["api_request"][0]
    assert first_request["model"] == "fake-model" and first_request["api_call_count"] == 1
    assert "read_file" in first_request["request"]["body"]["tools"], "tool schemas are sent as names"
    assert by_kind["api_response"][0]["finish_reason"] == "tool_calls"
    assert by_kind["tool_call"][0]["tool_name"] == "read_file"
    assert by_kind["tool_call"][0]["args"] == {"path": str(workdir / "notes.txt")}
    assert "hello from the notes file" in by_kind["tool_result"][0]["result"]
    assert all(usage["usage"]["prompt_tokens"] > 0 and usage["usage"]["output_tokens"] == 7
               for usage in by_kind["usage"])
    assert [u["api_request_id"] for u in by_kind["usage"]] == [r["api_request_id"] for r in by_kind["api_request"]]
    assert by_kind["turn_response"][0]["assistant_response"].startswith("All done")
    assert by_kind["turn_end"][0]["completed"] is True
    assert by_kind["session_finalize"][0]["reason"] == "shutdown"
    assert len(model.requests) == 2


def test_one_shot_mode_which_leaves_with_os_exit_still_delivers_every_event(relay, tmp_path, workdir, model_factory):
    # The relay is restarted while Hermes waits for the model: when the turn ends, the plugin's
    # producer is most likely still in its reconnect backoff, and `hermes -z` leaves with os._exit
    # right after the last hook. Only the turn-end flush (an immediate reconnect, then the ACKs)
    # gets the last events out.
    model = model_factory(hold_call=2)
    home = make_home(tmp_path, model.base_url)
    env = hermes_env(home, [relay.address], "hermes-e2e-oneshot")
    hermes = subprocess.Popen([str(HERMES), "-z", QUERY, "-t", "file"], env=env, cwd=str(workdir),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert model.held.wait(60), "Hermes never made its second model call"
        assert kinds(read_count(relay, 8)) == ONE_TOOL_TURN[:8]
        relay.stop()
        time.sleep(2.0)                         # the producer's reconnect backoff grows meanwhile
        relay.restart()
        model.release.set()
        out, err = hermes.communicate(timeout=60)
    finally:
        if hermes.poll() is None:
            hermes.kill()
            hermes.wait()
    assert hermes.returncode == 0, out + err
    assert out.strip() == "All done: the notes say hello."
    # -z prints no session id; Hermes' own session store has it.
    with sqlite3.connect(str(home / "state.db")) as db:
        sessions = [row[0] for row in db.execute("SELECT id FROM sessions")]
    assert len(sessions) == 1
    records = read_relay(relay)
    # No on_session_finalize in one-shot mode: the turn end is the last hook.
    assert kinds(records) == ONE_TOOL_TURN
    assert {record["session"] for record in records} == set(sessions)
    assert_one_producer_in_order(records, "hermes-e2e-oneshot")


def test_a_history_that_outgrows_max_frame_bytes_arrives_truncated_and_the_stream_goes_on(binary, tmp_path, workdir,
                                                                                        model_factory):
    small = Relay(binary, tmp_path / "data", extra=["--set", "max_frame_bytes=16384"])
    try:
        # Four tool rounds with 6 KB of text in every assistant message: the request history
        # Hermes hands the hooks grows past 16 KiB after a couple of rounds.
        model = model_factory(tool_rounds=4, filler_bytes=6000)
        home = make_home(tmp_path, model.base_url)
        env = hermes_env(home, [small.address], "hermes-e2e-history")
        result = run_hermes(["chat", "-Q", "-t", "file", "-q", QUERY], env, workdir)
        assert result.returncode == 0, result.stdout + result.stderr
        session = session_id_printed(result.stderr)
        records = read_relay(small)
        expected = ["session_start", "turn_start"]
        expected += ["api_request", "api_response", "usage", "tool_call", "tool_result"] * 4
        expected += ["api_request", "api_response", "usage", "turn_response", "turn_end", "session_finalize"]
        assert kinds(records) == expected
        assert {record["session"] for record in records} == {session}
        assert_one_producer_in_order(records, "hermes-e2e-history")
        requests = [payload(record) for record in records if record["kind"] == "api_request"]
        truncated = [body for body in requests if body.get("truncated")]
        assert truncated, "the later requests carry a history over 16 KiB"
        assert all(body["original_bytes"] > 16384 and body["model"] == "fake-model" for body in truncated)
        assert not requests[0].get("truncated"), "the first request is small"
        # Every record fits the relay's frames; the events after the big ones all arrived.
        assert all(len(record["payload"].encode()) < 16384 for record in records)
        assert payload(records[-1])["reason"] == "shutdown"
    finally:
        small.stop()


def test_a_relay_stopped_mid_session_is_left_for_the_second_within_its_idle_timeout(binary, tmp_path, workdir,
                                                                                   model_factory):
    first = quick_relay(binary, tmp_path / "a" / "data")
    second = quick_relay(binary, tmp_path / "b" / "data")
    hermes = None
    try:
        model = model_factory(hold_call=2)      # Hermes waits on the model after the tool call
        home = make_home(tmp_path, model.base_url)
        env = hermes_env(home, [first.address, second.address], "hermes-e2e-failover")
        hermes = subprocess.Popen([str(HERMES), "chat", "-Q", "-t", "file", "-q", QUERY], env=env, cwd=str(workdir),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert model.held.wait(60), "Hermes never made its second model call"
        before = read_count(first, 8)          # everything up to the second api_request, acknowledged
        assert kinds(before) == ONE_TOOL_TURN[:8]
        time.sleep(0.3)                        # the ACKs reach the plugin
        stop_process(first.process)
        stopped = time.time()
        model.release.set()
        out, err = hermes.communicate(timeout=60)
        assert hermes.returncode == 0, out + err
        session = session_id_printed(err)
        after = read_relay(second)
        assert kinds(after) == ONE_TOOL_TURN[8:] + ["session_finalize"]
        waited = after[0]["ingest_ns"] / 1e9 - stopped
        assert waited <= 1.5 + 1.0, "the second relay got the first record %.2f s after the stop" % waited
        # Every event once across the two relays, in the producer's order.
        merged = sorted(before + after, key=lambda record: record["producer_seq"])
        assert kinds(merged) == ONE_TOOL_TURN + ["session_finalize"]
        assert_one_producer_in_order(merged, "hermes-e2e-failover")
        assert {record["session"] for record in merged} == {session}
        # The stopped relay never stored what it was sent while stopped (never acknowledged, resent
        # to the second): killed and restarted on its data, it holds exactly what it had.
        first.crash()
        first.restart()
        assert [r["producer_seq"] for r in read_relay(first)] == [r["producer_seq"] for r in before]
    finally:
        if hermes is not None and hermes.poll() is None:
            hermes.kill()
            hermes.wait()
        if first.process.poll() is None:
            first.process.kill()
            first.process.wait()
        first.stop()
        second.stop()


def test_a_failing_model_server_shows_up_as_api_request_error_events(relay, tmp_path, workdir, model_factory):
    model = model_factory(fail_status=500)
    home = make_home(tmp_path, model.base_url)
    env = hermes_env(home, [relay.address], "hermes-e2e-failing")
    result = run_hermes(["chat", "-Q", "-t", "file", "-q", QUERY], env, workdir)
    assert result.returncode != 0, "Hermes reports the failed turn"
    session = session_id_printed(result.stderr)
    records = read_relay(relay)
    assert kinds(records)[:3] == ["session_start", "turn_start", "api_request"]
    assert kinds(records)[-1] == "session_finalize"
    errors = [payload(record) for record in records if record["kind"] == "api_request_error"]
    assert errors and len(errors) == len(model.requests), "one error event per failed model call"
    assert all(error["status_code"] == 500 and "failing on purpose" in error["error"]["message"] for error in errors)
    assert "api_response" not in kinds(records)
    # Every request has its outcome: the error carries the request's id.
    requests = [payload(record)["api_request_id"] for record in records if record["kind"] == "api_request"]
    assert [error["api_request_id"] for error in errors] == requests
    assert {record["session"] for record in records} == {session}
    assert_one_producer_in_order(records, "hermes-e2e-failing")
