"""HermesBridge's sessions (run_session, session, cancel_session), Timmy's answers to Hermes' approvals
(pending_approvals, approve_hermes, deny_hermes) and model access (provide_model_access,
model_access_keys, revoke_model_access) against a tiny stand-in for the Hermes API of `allegro bridge`: what it sends (paths, bearer token, exact body keys, operation ids, wait_ms),
how it reads the session JSON into a HermesResult, and the error paths: refusals are
HermesSessionError at once, an unreachable or unavailable bridge is asked again with the same
operation id (bounded), run_session's timeout leaves the session running. The real bridge and the
real Hermes are in test_hermes_sessions_e2e.py, the real model endpoint in test_model_access_e2e.py."""

import asyncio
import json
import re
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Tuple, Union

import pytest

import allegro_client
from allegro_client import HermesBridge as ExportedHermesBridge, HermesResult as ExportedHermesResult, approval
from allegro_client.timmy import (HermesApproval, HermesBridge, HermesResult, HermesSessionError, HermesToolCall,
                                  ModelAccessKey, ModelEndpoint, PendingHermesApproval)

TOKEN = "hermes-command-token-0123456789"


@dataclass
class Seen:
    """One request the stand-in received."""

    method: str
    path: str
    query: Dict[str, str]
    headers: Dict[str, str]
    body: Any
    raw: bytes


# An answer: (status, JSON value or raw bytes), "drop" (close unanswered), "hang" (never answer); or a
# coroutine giving one (an answer that takes its time).
Answer = Union[Tuple[int, Any], str]


@dataclass
class HermesAPI:
    """The bridge's Hermes API, stood in: `answer(seen)` decides each answer; `seen` lists the requests."""

    answer: Callable[[Seen], Union[Answer, Awaitable[Answer]]]
    seen: List[Seen] = field(default_factory=list)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = head.split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            raw = await reader.readexactly(int(headers.get("content-length", "0")))
            split = urllib.parse.urlsplit(target)
            seen = Seen(method, split.path, dict(urllib.parse.parse_qsl(split.query)), headers,
                        json.loads(raw) if raw else None, raw)
            self.seen.append(seen)
            answer = self.answer(seen)
            if asyncio.iscoroutine(answer):
                answer = await answer
            if answer == "drop":
                return
            if answer == "hang":
                await reader.read()
                return
            assert isinstance(answer, tuple), answer
            status, value = answer
            data = value if isinstance(value, bytes) else json.dumps(value).encode()
            writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                         % (status, len(data)) + data)
            await writer.drain()
        finally:
            writer.close()


def run(answer: Callable[[Seen], Union[Answer, Awaitable[Answer]]], scenario: Callable[[HermesBridge, HermesAPI], Awaitable[None]],
        **options: Any) -> HermesAPI:
    """Serves the stand-in on loopback and runs `scenario(bridge, api)` against it."""
    api = HermesAPI(answer)

    async def main() -> None:
        server = await asyncio.start_server(api.serve, "127.0.0.1", 0)
        api.port = server.sockets[0].getsockname()[1]
        settings: Dict[str, Any] = {"bridge_timeout": 5.0, "bridge_retry_delay": 0.01}
        settings.update(options)
        try:
            await scenario(HermesBridge(bridge_url="127.0.0.1:%d" % api.port, bridge_token=TOKEN, **settings), api)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), 60))
    return api


def session(operation: str, state: str, **extra: Any) -> Dict[str, Any]:
    """The session JSON as the bridge writes it."""
    value: Dict[str, Any] = {"id": operation, "state": state, "model": None, "run_id": None, "session_id": None,
                             "answer": None, "error": None, "usage": {}, "tool_calls": [], "approvals": [],
                             "duration_ms": None, "waited_ms": None}
    value.update(extra)
    return value


DONE = dict(model="fake-model", run_id="run_0a1b", session_id="20261203_101500_abcdef", answer="All done.",
            usage={"fake-model": {"input_tokens": 1200, "output_tokens": 14, "total_tokens": 1214}},
            tool_calls=[{"tool": "terminal", "preview": "rm -rf /tmp/x/victim", "duration_ms": 12, "error": True}],
            approvals=[{"request": "hermes-run_0a1b-1", "command": "rm -rf /tmp/x/victim",
                        "description": "delete in root path", "decision": "deny",
                        "why": "denied: hermes.allowed_signers is empty"}],
            duration_ms=2500, waited_ms=3)


# -- what is sent, what is read ------------------------------------------------------------------


def test_run_session_posts_the_prompt_then_waits_on_the_session_until_it_ended_and_reads_it_all():
    answers = iter([(200, session("plan-7", "queued")), (200, session("plan-7", "running", run_id="run_0a1b")),
                    (200, session("plan-7", "completed", **DONE))])

    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        result = await bridge.run_session("Read notes.txt", operation_id="plan-7")
        assert isinstance(result, HermesResult) and result.ended and result.ok
        assert (result.operation_id, result.status, result.session_id, result.run_id, result.model) == \
            ("plan-7", "completed", "20261203_101500_abcdef", "run_0a1b", "fake-model")
        assert result.answer == "All done." and result.error is None
        assert result.usage == {"fake-model": {"input_tokens": 1200, "output_tokens": 14, "total_tokens": 1214}}
        assert result.tool_calls == [HermesToolCall("terminal", "rm -rf /tmp/x/victim", 12, True)]
        assert result.approvals == [HermesApproval("rm -rf /tmp/x/victim", "delete in root path", "deny",
                                                   "denied: hermes.allowed_signers is empty", "hermes-run_0a1b-1")]
        assert (result.duration_ms, result.waited_ms) == (2500, 3)

    api = run(lambda seen: next(answers), scenario)
    post, first, second = api.seen
    assert (post.method, post.path) == ("POST", "/v1/hermes/sessions")
    assert post.body == {"operation_id": "plan-7", "prompt": "Read notes.txt", "model": ""}, "exactly these keys"
    assert post.headers["authorization"] == "Bearer " + TOKEN
    assert post.headers["content-type"] == "application/json"
    for get in (first, second):
        assert (get.method, get.path, get.body) == ("GET", "/v1/hermes/sessions/plan-7", None)
        assert get.query == {"wait_ms": "60000"}, "the longest wait the bridge takes"
        assert get.headers["authorization"] == "Bearer " + TOKEN


def test_a_model_is_sent_by_name_and_an_operation_id_is_made_when_none_is_given_and_quoted_in_paths():
    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        first = await bridge.run_session("Hello", "other-model")
        assert first.status == "completed"
        await bridge.run_session("Hello", operation_id="timmy:plan/7 ü")
        await bridge.session("timmy:plan/7 ü")
        await bridge.cancel_session("timmy:plan/7 ü")

    def answer(seen: Seen) -> Answer:
        operation = seen.body["operation_id"] if seen.method == "POST" and seen.path == "/v1/hermes/sessions" \
            else urllib.parse.unquote(seen.path.split("/")[4])
        return 200, session(operation, "completed", **DONE)

    api = run(answer, scenario)
    made = api.seen[0].body
    assert made["model"] == "other-model" and made["prompt"] == "Hello"
    assert re.fullmatch(r"timmy-session-[0-9a-f-]{36}", made["operation_id"]), made
    assert api.seen[1].body["operation_id"] == "timmy:plan/7 ü"
    assert api.seen[1].raw == json.dumps({"operation_id": "timmy:plan/7 ü", "prompt": "Hello", "model": ""},
                                         ensure_ascii=False).encode("utf-8"), "UTF-8 JSON"
    assert api.seen[2].method == "GET" and api.seen[2].path == "/v1/hermes/sessions/timmy%3Aplan%2F7%20%C3%BC"
    assert api.seen[2].query == {"wait_ms": "0"}
    assert api.seen[3].method == "POST" and api.seen[3].path == "/v1/hermes/sessions/timmy%3Aplan%2F7%20%C3%BC/cancel"
    assert api.seen[3].body == {}


def test_session_and_cancel_session_read_the_session_the_bridge_holds():
    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        now = await bridge.session("s-1", wait_ms=1500)
        assert now.status == "running" and not now.ended and not now.ok and now.answer is None
        cancelled = await bridge.cancel_session("s-1")
        assert cancelled.status == "interrupted" and cancelled.error == "cancelled by Timmy" and cancelled.ended
        with pytest.raises(HermesSessionError) as missing:
            await bridge.session("s-2")
        assert missing.value.status == 404 and missing.value.operation_id == "s-2"
        assert "no session s-2" in str(missing.value)
        with pytest.raises(ValueError):
            await bridge.session("s-1", wait_ms=60001)

    def answer(seen: Seen) -> Answer:
        if seen.path.endswith("/s-2"):
            return 404, {"error": "no session s-2"}
        if seen.path.endswith("/cancel"):
            return 200, session("s-1", "interrupted", error="cancelled by Timmy", run_id="run_1")
        return 200, session("s-1", "running", run_id="run_1")

    api = run(answer, scenario)
    assert [(s.method, s.path, s.query) for s in api.seen] == [
        ("GET", "/v1/hermes/sessions/s-1", {"wait_ms": "1500"}), ("POST", "/v1/hermes/sessions/s-1/cancel", {}),
        ("GET", "/v1/hermes/sessions/s-2", {"wait_ms": "0"})]


def test_failed_and_interrupted_sessions_are_returned_not_raised():
    for state, error in (("failed", "HTTP 400: the fake model is failing on purpose"),
                         ("interrupted", "stopped after hermes.session_timeout_ms (1000 ms)")):
        async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
            result = await bridge.run_session("Hello", operation_id="op")
            assert result.status == state and result.ended and not result.ok and result.error == error

        run(lambda seen: (200, session("op", state, error=error)), scenario)


# -- refusals and failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("status, reason", [
    (400, "model other is not in hermes.models"),
    (401, "a missing or wrong token"),
    (409, "operation_id op was used for another prompt or model"),
    (429, "16 sessions wait already (hermes.max_queued); ask again later"),
])
def test_a_refusal_is_a_hermes_session_error_at_once_with_the_bridges_reason(status, reason):
    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        with pytest.raises(HermesSessionError) as refused:
            await bridge.run_session("Hello", "other", operation_id="op")
        assert (refused.value.status, refused.value.reason, refused.value.operation_id) == (status, reason, "op")
        assert str(refused.value) == "HTTP %d: %s" % (status, reason)

    api = run(lambda seen: (status, {"error": reason}), scenario)
    assert len(api.seen) == 1, "a refusal is not asked again"


def test_an_unreachable_or_unavailable_bridge_is_asked_again_with_the_same_operation_id():
    script = iter(["drop", "hang", (503, {"error": "restarting"}), (200, session("op", "running")),
                   "drop", (502, b"<html>bad gateway</html>"), (200, session("op", "completed", **DONE))])

    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        result = await bridge.run_session("Hello", operation_id="op")
        assert result.status == "completed" and result.answer == "All done."

    api = run(lambda seen: next(script), scenario, bridge_timeout=0.3, bridge_attempts=4)
    posts = [s for s in api.seen if s.method == "POST"]
    assert len(posts) == 4 and all(p.body == {"operation_id": "op", "prompt": "Hello", "model": ""} for p in posts), \
        "the session is asked for again after a drop, an answer that did not come in time and a 503"
    gets = [s for s in api.seen if s.method == "GET"]
    assert len(gets) == 3 and {g.path for g in gets} == {"/v1/hermes/sessions/op"}, \
        "the wait is asked again after a drop and a 502"


def test_a_bridge_that_stays_unreachable_gives_up_after_the_attempts_naming_it():
    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        with pytest.raises(HermesSessionError) as failed:
            await bridge.run_session("Hello", operation_id="op")
        assert failed.value.status == 0 and failed.value.operation_id == "op"
        assert "cannot reach the bridge at 127.0.0.1:%d" % api.port in str(failed.value)

    api = run(lambda seen: "drop", scenario, bridge_attempts=3)
    assert len(api.seen) == 3


def test_an_answer_that_is_not_a_session_is_an_error_and_not_asked_again():
    for value in (b"not json", [1, 2], {"id": "op", "state": "thinking"}, {"id": "op", "state": "running",
                                                                            "usage": {"m": {"input_tokens": "x"}}}):
        async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
            with pytest.raises(HermesSessionError) as bad:
                await bridge.run_session("Hello", operation_id="op")
            assert bad.value.status == 200 and "no session" in str(bad.value)

        api = run(lambda seen: (200, value), scenario)
        assert len(api.seen) == 1


def test_run_session_past_its_timeout_raises_with_the_session_as_last_seen_and_does_not_cancel_it():
    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(HermesSessionError) as late:
            await bridge.run_session("Hello", operation_id="slow", timeout=0.5)
        assert 0.4 <= loop.time() - started < 3
        assert late.value.status == 0 and late.value.operation_id == "slow"
        assert late.value.result is not None and late.value.result.status == "running"
        assert "still running after 0.5 s" in str(late.value)

    async def answer(seen: Seen) -> Answer:
        if seen.method == "GET":
            # The bridge waits wait_ms for the end, then answers the session still running.
            await asyncio.sleep(int(seen.query["wait_ms"]) / 1000.0)
        return 200, session("slow", "running", run_id="run_s")

    api = run(answer, scenario)
    assert all(s.path != "/v1/hermes/sessions/slow/cancel" for s in api.seen), "the session is left running"
    waits = [int(s.query["wait_ms"]) for s in api.seen if s.method == "GET"]
    assert waits and all(1 <= wait <= 500 for wait in waits), waits


# -- construction -----------------------------------------------------------------------------------


def test_the_bridge_settings_are_checked_and_the_token_defaults_to_the_environment(monkeypatch):
    assert ExportedHermesBridge is HermesBridge and ExportedHermesResult is HermesResult
    with pytest.raises(ValueError, match="relay"):
        HermesBridge()
    with pytest.raises(ValueError, match="bridge_url"):
        HermesBridge(bridge_url="https://vps1:7402")
    with pytest.raises(ValueError):
        HermesBridge(bridge_url="vps1:7402", bridge_attempts=0)
    monkeypatch.setenv("ALLEGRO_HERMES_COMMAND_TOKEN", "from-the-environment-0123")
    assert HermesBridge(bridge_url="vps1:7402").bridge_token == "from-the-environment-0123"
    assert HermesBridge(bridge_url="vps1:7402", bridge_token="given-0123456789ab").bridge_token == "given-0123456789ab"
    # The old form still works: relays first, telemetry only; sessions then say what is missing.
    telemetry_only = HermesBridge(["127.0.0.1:7400"], "timmy", "")
    assert telemetry_only.bridge_url is None and len(telemetry_only.collectors) == 1
    with pytest.raises(ValueError, match="no bridge configured"):
        asyncio.run(telemetry_only.run_session("Hello"))
    monkeypatch.delenv("ALLEGRO_HERMES_COMMAND_TOKEN")
    with pytest.raises(ValueError, match="token"):
        asyncio.run(HermesBridge(bridge_url="127.0.0.1:9").session("op"))
    with pytest.raises(ValueError, match="prompt"):
        asyncio.run(HermesBridge(bridge_url="127.0.0.1:9", bridge_token=TOKEN).run_session(""))

    async def no_stream() -> None:
        with pytest.raises(ValueError, match="no relay"):
            async for _ in HermesBridge(bridge_url="127.0.0.1:9").stream_telemetry():
                pass

    asyncio.run(no_stream())


def test_the_session_json_may_omit_what_it_does_not_know_yet():
    bare = HermesResult.from_json({"id": "op", "state": "queued"})
    assert bare == HermesResult(operation_id="op", status="queued")
    assert HermesResult.from_json({"state": "running"}, "asked").operation_id == "asked"
    tool = HermesToolCall.from_json({"tool": "read_file", "preview": None, "duration_ms": 1.6, "error": "boom"})
    assert tool == HermesToolCall("read_file", None, 1, "boom")


# -- Hermes' approvals: Timmy's answers ----------------------------------------------------------------

COMMAND = "rm -rf /tmp/x/victim"
COMMAND_SHA256 = approval.hash_command(COMMAND)
REQUEST = "hermes-run_0a1b-1"


def waiting(request: str = REQUEST, command: str = COMMAND, **extra: Any) -> Dict[str, Any]:
    """One approval as GET /v1/hermes/approvals lists it."""
    value = {"request": request, "session": "plan-7", "run_id": "run_0a1b", "command": command,
             "description": "delete in root path", "command_sha256": approval.hash_command(command),
             "deadline": "2026-12-03T10:17:00Z"}
    value.update(extra)
    return value


@pytest.fixture(scope="module")
def timmy_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Timmy's Ed25519 key, made with ssh-keygen (approve_hermes only passes its path to ssh-keygen)."""
    key = tmp_path_factory.mktemp("timmy") / "timmy_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key), "-C", "timmy"], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)
    return key


def signed_statement(seen: Seen) -> Dict[str, str]:
    """The fields of the statement Timmy's approve_hermes sent (its syntax checked), with an armored
    signature beside it (ssh-keygen verifies one in the next test)."""
    assert set(seen.body) == {"statement", "signature"}, seen.body
    assert seen.body["signature"].startswith("-----BEGIN SSH SIGNATURE-----\n")
    return approval.parse_statement(seen.body["statement"])


def test_pending_approvals_lists_what_hermes_waits_for():
    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        found = await bridge.pending_approvals()
        assert found == [PendingHermesApproval(
            request=REQUEST, session="plan-7", run_id="run_0a1b", command=COMMAND, command_sha256=COMMAND_SHA256,
            description="delete in root path", deadline=datetime(2026, 12, 3, 10, 17, tzinfo=timezone.utc)),
            PendingHermesApproval(request="hermes-run_0a1b-2", session="plan-7", run_id="run_0a1b", command="echo ü",
                                  command_sha256=approval.hash_command("echo ü"), description="delete in root path",
                                  deadline=datetime(2026, 12, 3, 10, 17, tzinfo=timezone.utc))]
        assert all(item.decision is None for item in found)

    api = run(lambda seen: (200, {"approvals": [waiting(), waiting("hermes-run_0a1b-2", "echo ü")]}), scenario)
    (get,) = api.seen
    assert (get.method, get.path, get.body) == ("GET", "/v1/hermes/approvals", None)
    assert get.headers["authorization"] == "Bearer " + TOKEN


def test_approve_hermes_looks_up_the_command_hash_signs_hermes_approve_and_posts_it(timmy_key: Path):
    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        before = datetime.now(timezone.utc).replace(microsecond=0)
        decided = await bridge.approve_hermes(REQUEST, key_path=timmy_key, valid_for=timedelta(minutes=3))
        assert isinstance(decided, PendingHermesApproval)
        assert (decided.request, decided.command, decided.command_sha256, decided.decision) == \
            (REQUEST, COMMAND, COMMAND_SHA256, "approve")
        fields = signed_statement(api.seen[-1])
        assert fields["action"] == "hermes_approve" and fields["request"] == REQUEST
        assert fields["command_sha256"] == COMMAND_SHA256 and fields["audience"] == "allegro"
        not_after = datetime.strptime(fields["not_after"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert before + timedelta(minutes=3) <= not_after <= before + timedelta(minutes=3, seconds=5)

    def answer(seen: Seen) -> Answer:
        if seen.method == "GET":
            return 200, {"approvals": [waiting("hermes-run_0a1b-9", "ls"), waiting()]}
        return 200, dict(waiting(), decision="approve")

    api = run(answer, scenario)
    get, post = api.seen
    assert (get.method, get.path) == ("GET", "/v1/hermes/approvals")
    assert (post.method, post.path) == ("POST", "/v1/hermes/approvals/%s/approve" % REQUEST)
    assert post.headers["authorization"] == "Bearer " + TOKEN and post.headers["content-type"] == "application/json"
    # ssh-keygen's own check of the signature, over the exact statement sent, in Allegro's namespace.
    signers = timmy_key.parent / "allowed_signers"
    kind, blob = Path(str(timmy_key) + ".pub").read_text().split()[:2]
    signers.write_text('timmy namespaces="allegro-approval" %s %s\n' % (kind, blob))
    signature = timmy_key.parent / "sig"
    signature.write_text(post.body["signature"])
    checked = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", "timmy", "-n", "allegro-approval",
                              "-s", str(signature)], input=post.body["statement"].encode(), capture_output=True)
    assert checked.returncode == 0, checked.stderr


def test_approve_hermes_with_a_hash_or_the_command_signs_that_without_asking_what_waits(timmy_key: Path):
    other = approval.hash_command("rm -rf /")

    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        await bridge.approve_hermes(REQUEST, key_path=timmy_key, command_sha256=other)
        await bridge.approve_hermes(REQUEST, key_path=timmy_key, command=COMMAND)
        with pytest.raises(ValueError, match="not the SHA-256 of the command"):
            await bridge.approve_hermes(REQUEST, key_path=timmy_key, command=COMMAND, command_sha256=other)
        with pytest.raises(ValueError, match="request"):
            await bridge.approve_hermes("hermes run/1", key_path=timmy_key, command_sha256=other)
        with pytest.raises(approval.ApprovalError, match="valid_for"):
            await bridge.approve_hermes(REQUEST, key_path=timmy_key, command_sha256=other, valid_for=timedelta(days=2))

    api = run(lambda seen: (200, dict(waiting(), decision="approve")), scenario)
    assert [s.method for s in api.seen] == ["POST", "POST"], "no lookup, and nothing sent for a wrong argument"
    assert [signed_statement(s)["command_sha256"] for s in api.seen] == [other, COMMAND_SHA256]
    nonces = {signed_statement(s)["nonce"] for s in api.seen}
    assert len(nonces) == 2, "every approval has its own nonce"


def test_a_refused_approval_is_403_and_nothing_waiting_is_404_without_signing(timmy_key: Path, tmp_path: Path):
    refusal = "action: command_sha256 is %s in the statement but %s in the action" % ("a" * 64, COMMAND_SHA256)

    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        with pytest.raises(HermesSessionError) as refused:
            await bridge.approve_hermes(REQUEST, key_path=timmy_key, command_sha256="a" * 64)
        assert (refused.value.status, refused.value.reason) == (403, refusal)
        # Nothing waits under this id: no signature is made (a key that does not exist is never asked for).
        with pytest.raises(HermesSessionError) as missing:
            await bridge.approve_hermes("hermes-run_0a1b-7", key_path=tmp_path / "no-such-key")
        assert missing.value.status == 404 and "hermes-run_0a1b-7" in missing.value.reason
        with pytest.raises(HermesSessionError) as gone:
            await bridge.deny_hermes("hermes-run_0a1b-8")
        assert gone.value.status == 404 and gone.value.reason == "no approval hermes-run_0a1b-8 is waiting"

    def answer(seen: Seen) -> Answer:
        if seen.method == "GET":
            return 200, {"approvals": [waiting()]}
        if seen.path.endswith("/approve"):
            return 403, {"error": refusal}
        return 404, {"error": "no approval hermes-run_0a1b-8 is waiting"}

    api = run(answer, scenario)
    assert [(s.method, s.path) for s in api.seen] == [
        ("POST", "/v1/hermes/approvals/%s/approve" % REQUEST), ("GET", "/v1/hermes/approvals"),
        ("POST", "/v1/hermes/approvals/hermes-run_0a1b-8/deny")], "a refusal is not asked again"


def test_deny_hermes_posts_an_empty_object_and_reads_the_decision():
    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        denied = await bridge.deny_hermes(REQUEST)
        assert denied.decision == "deny" and denied.request == REQUEST and denied.command == COMMAND
        with pytest.raises(HermesSessionError) as odd:
            await bridge.deny_hermes(REQUEST)
        assert odd.value.status == 200 and "decision" in odd.value.reason

    answers = iter([(200, dict(waiting(), decision="deny")), (200, dict(waiting(), decision="approve"))])
    api = run(lambda seen: next(answers), scenario)
    assert [(s.method, s.path, s.body, s.raw) for s in api.seen][0] == (
        "POST", "/v1/hermes/approvals/%s/deny" % REQUEST, {}, b"{}")


# -- model access ----------------------------------------------------------------------------------

SCOPED_KEY = "allegro-mk-" + "5a" * 24
ENDPOINT = {"key_id": "mk_0123456789abcdef", "base_url": "http://127.0.0.1:7402/v1/model", "model": "fake-model",
            "key": SCOPED_KEY, "expires_at": "2026-12-03T11:15:00Z"}


def test_provide_model_access_sends_the_model_and_ttl_as_strings_and_hides_the_key_from_repr():
    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        endpoint = await bridge.provide_model_access("fake-model")
        assert isinstance(endpoint, ModelEndpoint)
        assert (endpoint.key_id, endpoint.base_url, endpoint.model, endpoint.key) == (
            "mk_0123456789abcdef", "http://127.0.0.1:7402/v1/model", "fake-model", SCOPED_KEY)
        assert endpoint.expires_at == datetime(2026, 12, 3, 11, 15, tzinfo=timezone.utc)
        for shown in (repr(endpoint), str(endpoint), repr([endpoint])):
            assert SCOPED_KEY not in shown and "mk_0123456789abcdef" in shown, shown
        await bridge.provide_model_access("fake-model", ttl_ms=1000)
        for wrong in (0, -5, True, 1.5, "1000"):
            with pytest.raises(ValueError, match="ttl_ms"):
                await bridge.provide_model_access("fake-model", ttl_ms=wrong)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="model"):
            await bridge.provide_model_access("")

    api = run(lambda seen: (200, ENDPOINT), scenario)
    assert [(s.method, s.path) for s in api.seen] == [("POST", "/v1/hermes/model-access")] * 2
    assert api.seen[0].body == {"model": "fake-model", "ttl_ms": ""}, "\"\" asks for hermes.model_key_ms"
    assert api.seen[1].body == {"model": "fake-model", "ttl_ms": "1000"}
    assert all(s.headers["authorization"] == "Bearer " + TOKEN for s in api.seen)


def test_an_answer_without_a_key_is_an_error_that_does_not_repeat_the_answer():
    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        with pytest.raises(HermesSessionError) as bad:
            await bridge.provide_model_access("fake-model")
        assert bad.value.status == 200 and "key" in str(bad.value)
        with pytest.raises(HermesSessionError) as refused:
            await bridge.provide_model_access("gpt-unlisted")
        assert refused.value.status == 400 and "not offered" in refused.value.reason

    answers = iter([(200, dict(ENDPOINT, key=None)),
                    (400, {"error": "model gpt-unlisted is not offered: hermes.provider_models are fake-model"})])
    run(lambda seen: next(answers), scenario)


def test_model_access_keys_lists_state_and_usage_and_revoke_posts_an_empty_object():
    keys = {"keys": [{"key_id": "mk_1", "models": ["fake-model"], "expires_at": "2026-12-03T11:15:00Z",
                      "state": "valid", "requests": 3, "input_tokens": 30, "output_tokens": 21},
                     {"key_id": "mk_2", "models": ["fake-model"], "expires_at": "2026-12-03T10:15:00Z",
                      "state": "revoked", "requests": 0, "input_tokens": 0, "output_tokens": 0}]}

    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        listed = await bridge.model_access_keys()
        assert listed == [ModelAccessKey("mk_1", ["fake-model"], datetime(2026, 12, 3, 11, 15, tzinfo=timezone.utc),
                                         "valid", 3, 30, 21),
                          ModelAccessKey("mk_2", ["fake-model"], datetime(2026, 12, 3, 10, 15, tzinfo=timezone.utc),
                                         "revoked", 0, 0, 0)]
        assert await bridge.revoke_model_access("mk_1") is None
        with pytest.raises(HermesSessionError) as missing:
            await bridge.revoke_model_access("mk_none")
        assert missing.value.status == 404 and missing.value.reason == "no key mk_none"

    def answer(seen: Seen) -> Answer:
        if seen.method == "GET":
            return 200, keys
        if "mk_none" in seen.path:
            return 404, {"error": "no key mk_none"}
        return 200, {"key_id": "mk_1", "state": "revoked"}

    api = run(answer, scenario)
    assert [(s.method, s.path, s.body) for s in api.seen] == [
        ("GET", "/v1/hermes/model-access", None), ("POST", "/v1/hermes/model-access/mk_1/revoke", {}),
        ("POST", "/v1/hermes/model-access/mk_none/revoke", {})]


def test_the_api_calls_are_asked_again_while_the_bridge_is_unreachable_but_a_late_post_is_not():
    script = iter(["drop", (503, {"error": "restarting"}), (200, {"approvals": []}),
                   "drop", (200, ENDPOINT),
                   "hang"])

    async def scenario(bridge: HermesBridge, api: HermesAPI) -> None:
        assert await bridge.pending_approvals() == []
        assert (await bridge.provide_model_access("fake-model")).key == SCOPED_KEY
        with pytest.raises(HermesSessionError) as late:
            await bridge.provide_model_access("fake-model")
        assert late.value.status == 0 and "did not answer" in str(late.value)

    api = run(lambda seen: next(script), scenario, bridge_timeout=0.3)
    assert [s.method for s in api.seen] == ["GET"] * 3 + ["POST"] * 3, "the late POST was not asked again"


def test_the_new_types_are_exported():
    for name in ("PendingHermesApproval", "ModelEndpoint", "ModelAccessKey"):
        assert name in allegro_client.__all__ and getattr(allegro_client, name).__name__ == name
    with pytest.raises(ValueError, match="command_sha256"):
        PendingHermesApproval.from_json(waiting(command_sha256="ABC"))
    with pytest.raises(ValueError, match="state"):
        ModelAccessKey.from_json({"key_id": "mk_1", "models": [], "expires_at": "2026-12-03T11:15:00Z", "state": "odd"})
