"""Timmy's Hermes sessions end to end: the real `hermes gateway run` (hermes-agent 0.19.0, its
OpenAI-compatible API server, the Allegro plugin loaded), a scripted fake model (tests/fake_model.py),
the real relay and the real `allegro bridge` ($ALLEGRO_BIN) with its `hermes:` duty, and Timmy's side,
allegro_client.timmy.HermesBridge (run_session, session, cancel_session, stream_telemetry).

What is checked is the bridge's contract: a session runs once per operation id and reports Hermes'
answer, session id, usage, tool calls and approvals; at most hermes.max_sessions run at once, the rest
wait in order; a session past hermes.session_timeout_ms or cancelled is stopped through Hermes and
reported interrupted; with no hermes.allowed_signers every approval Hermes asks for is denied at once,
so a dangerous command never runs; only Hermes' default model and hermes.models may be asked for. The
session's telemetry reaches Timmy's stream through the plugin, under Hermes' session id.

Approvals (with hermes.allowed_signers trusting Timmy's real ssh-keygen key): a dangerous command
waits, told on the stream (an allegro.request and the alert hermes_approval_pending) and listed by
pending_approvals(); it runs only with Timmy's signed hermes_approve of exactly that request and
command (approve_hermes), never after deny_hermes, past hermes.approval_timeout_ms, or with an
approval of another command's hash (refused 403, the request still waiting).

One gateway serves the whole module (it takes seconds to start); each test starts its own bridge
with the settings it needs. Every wait is bounded; everything started is stopped by its process group."""

import asyncio
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from allegro_client import approval as approvals
from allegro_client.timmy import HermesBridge, HermesResult, HermesSessionError, PendingHermesApproval
from bridge_run import BridgeRun
from conftest import Relay
from fake_model import FakeModel
from hermes_support import HERMES, ONE_TOOL_TURN, hermes_env, make_home, needs_hermes
from stream_watcher import StreamWatcher
from loopback_ports import free_port

pytestmark = [needs_hermes, pytest.mark.skipif(not os.environ.get("ALLEGRO_BIN"),
                                               reason="ALLEGRO_BIN is not set (the allegro binary with `allegro bridge`)")]

COMMAND_TOKEN = "timmy-hermes-command-token-0123456789"
API_KEY = "hermes-api-key-" + secrets.token_hex(16)
OTHER_MODEL = "other-model"
PRODUCER = "hermes-gateway-e2e"
NOTES = "hello from the notes file\n"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- the model ----------------------------------------------------------------------------------------


class ScriptedModel(FakeModel):
    """The fake model, scripted by the user's message: "[slow N]" answers after N seconds, with no
    tool call; "[terminal CMD]" calls the terminal tool with CMD once, then answers with what the tool
    said; anything else is FakeModel's script (read_file on the notes, then the final answer). The
    final answer names the prompt, so sessions can be told apart. `log` keeps [time the request came,
    time it was answered (None until then), marker, model asked for] of every completion request with
    a prompt marker "#NAME"."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.log: List[List[Any]] = []
        self.wake = threading.Event()       # set at the end: no slow answer outlives the module
        # A run Hermes stopped leaves the model writing to a closed connection: not worth a traceback.
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]

    @staticmethod
    def user_text(body: Dict[str, Any]) -> str:
        for message in reversed(body.get("messages") or []):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):
                    return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
                return str(content or "")
        return ""

    def _reply(self, body: Dict[str, Any]) -> Dict[str, Any]:
        user = self.user_text(body)
        marker = re.search(r"#[\w-]+", user)
        messages = body.get("messages") or []
        last = messages[-1].get("role") if messages else "user"
        tools = {((t or {}).get("function") or {}).get("name") for t in body.get("tools") or []}
        entry: List[Any] = [time.monotonic(), None, marker.group(0) if marker else "", str(body.get("model"))]
        if marker and tools:                # the agent's own calls (not an auxiliary one without tools)
            with self.lock:
                self.log.append(entry)
        slow = re.search(r"\[slow ([0-9.]+)\]", user)
        terminal = re.search(r"\[terminal (.+?)\]", user)
        if slow and tools:
            self.wake.wait(float(slow.group(1)))
            reply: Dict[str, Any] = {"content": "Slow answer to %s" % (marker.group(0) if marker else "?"),
                                     "tool_call": None}
        elif terminal and tools:
            if last == "user" and "terminal" in tools:
                reply = {"content": "", "tool_call": ("terminal", {"command": terminal.group(1)})}
            else:
                reply = {"content": "Tool said: " + str(messages[-1].get("content"))[:400], "tool_call": None}
        else:
            reply = super()._reply(body)
            if reply["tool_call"] is None and marker:
                reply["content"] = "%s %s" % (self.final_text, marker.group(0))
        entry[1] = time.monotonic()
        return reply

    def seen(self, marker: str) -> List[List[Any]]:
        """The log's entries of the prompt marked `marker` ("#NAME")."""
        with self.lock:
            return [list(entry) for entry in self.log if entry[2] == marker]


# -- the gateway ----------------------------------------------------------------------------------------



def call(url: str, method: str, path: str, body: Any = None, token: Optional[str] = None,
         timeout: float = 30) -> Tuple[int, Any]:
    """One HTTP request: (status, JSON answer or text); status 0 with the error when none came."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)
    if token is not None:
        request.add_header("Authorization", "Bearer " + token)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(request, timeout=timeout) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    except OSError as error:
        return 0, str(error)
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text.decode(errors="replace")


def stop_group(process: "subprocess.Popen[bytes]", timeout: float = 10) -> None:
    """SIGTERM to the process group the test started, SIGKILL to it after `timeout` seconds."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)    # whatever of the group is left (tool commands)
    except ProcessLookupError:
        pass
    process.wait(5)


class Gateway:
    """`hermes gateway run` with its API server on a loopback port, in a process group of its own."""

    def __init__(self, root: Path, model: ScriptedModel, relay: Relay) -> None:
        self.root = root
        self.workdir = root / "work"
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "notes.txt").write_text(NOTES)
        self.home = make_home(root, model.base_url)
        with open(self.home / "config.yaml", "a") as config:
            config.write("\n".join([
                # Dangerous commands wait for an answer (the default "smart" would ask the model), longer
                # than the bridge's hermes.approval_timeout_ms, as config/README.md asks.
                "approvals:", "  mode: manual", "  timeout: 300",
                "platform_toolsets:", "  api_server: [terminal, file]",
                "platforms:", "  api_server:", "    enabled: true", "    extra:", "      model_routes:",
                "        %s:" % OTHER_MODEL, "          model: %s" % OTHER_MODEL,
                "          base_url: %s" % model.base_url, "          api_key: other-key",
            ]) + "\n")
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        (root / "home").mkdir(exist_ok=True)
        self.env = hermes_env(self.home, [relay.address], PRODUCER, HOME=str(root / "home"),
                              API_SERVER_ENABLED="true", API_SERVER_KEY=API_KEY, API_SERVER_HOST="127.0.0.1",
                              API_SERVER_PORT=str(self.port))
        self.log_path = root / "gateway.log"
        self.process: Optional["subprocess.Popen[bytes]"] = None

    def start(self, timeout: float = 60) -> "Gateway":
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([str(HERMES), "gateway", "run"], env=self.env, cwd=str(self.workdir),
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, answer = call(self.url, "GET", "/health", timeout=2)
            if status == 200 and isinstance(answer, dict) and answer.get("status") == "ok":
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        output = self.output()
        self.stop()
        raise RuntimeError("the gateway's API server never answered /health:\n" + output[-4000:])

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)

    def run_status(self, run_id: str) -> Dict[str, Any]:
        status, answer = call(self.url, "GET", "/v1/runs/" + run_id, token=API_KEY)
        assert status == 200 and isinstance(answer, dict), (status, answer)
        return answer

    def wait_run(self, run_id: str, statuses: Tuple[str, ...], timeout: float = 20) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        answer = self.run_status(run_id)
        while answer.get("status") not in statuses and time.monotonic() < deadline:
            time.sleep(0.1)
            answer = self.run_status(run_id)
        return answer

    def stored_sessions(self) -> List[str]:
        """The session ids in Hermes' own session store."""
        with sqlite3.connect(str(self.home / "state.db")) as db:
            return [row[0] for row in db.execute("SELECT id FROM sessions")]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hermes-sessions")


@pytest.fixture(scope="module")
def relay(binary: str, root: Path) -> Iterator[Relay]:
    """The module's relay, with no daily report on the stream."""
    (root / "relay").mkdir()
    running = Relay(binary, root / "relay" / "data", extra=["--set", "daily_report_at=off"])
    yield running
    running.stop()


@pytest.fixture(scope="module")
def model(root: Path) -> Iterator[ScriptedModel]:
    fake = ScriptedModel(tool_path=str(root / "work" / "notes.txt"))
    yield fake
    fake.wake.set()
    fake.close()


@pytest.fixture(scope="module")
def gateway(root: Path, model: ScriptedModel, relay: Relay) -> Iterator[Gateway]:
    running = Gateway(root, model, relay).start()
    try:
        yield running
    finally:
        model.wake.set()
        running.stop()


# -- the bridge ----------------------------------------------------------------------------------------


class HermesBridgeProcess(BridgeRun):
    """`allegro bridge` with its Hermes duty only, configured by a JSON file; `address` is its HTTP port."""

    def __init__(self, binary: str, root: Path, relay: Relay, gateway: Gateway, **hermes: Any) -> None:
        super().__init__()
        self.binary, self.root = binary, root
        root.mkdir(parents=True, exist_ok=True)
        section: Dict[str, Any] = {"api_url": gateway.url, "max_sessions": 2, "max_queued": 16,
                                   "session_timeout_ms": 60000, "models": [OTHER_MODEL], "keep_results_ms": 600000}
        section.update(hermes)
        self.config = root / "allegro.json"
        self.config.write_text(json.dumps({
            "bridge": {"http": "127.0.0.1:0", "relay": relay.address, "data_dir": str(root / "data"),
                       "relay_down_ms": 0},
            "hermes": section}, indent=1))
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("ALLEGRO_", "HERMES_")) and key.lower() not in
                    ("http_proxy", "https_proxy", "all_proxy")}
        self.env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
                        ALLEGRO_HERMES_API_KEY=API_KEY, ALLEGRO_HERMES_COMMAND_TOKEN=COMMAND_TOKEN)
        self.log_path = root / "bridge.log"
        self.address = ""

    def start(self) -> "HermesBridgeProcess":
        self.stopping = False
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([self.binary, "bridge", "--config", str(self.config)], env=self.env,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            match = re.search(r"http_listening\b.*?\baddress=(\S+)", self.output())
            if match:
                self.address = match.group(1).strip('"')
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("the bridge did not log http_listening (exit %s):\n%s"
                           % (self.process.poll(), self.output()[-4000:]))

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def url(self) -> str:
        return "http://" + self.address

    def client(self, **options: Any) -> HermesBridge:
        return HermesBridge(bridge_url=self.url, bridge_token=COMMAND_TOKEN, **options)

    def call(self, method: str, path: str, body: Any = None, token: Optional[str] = COMMAND_TOKEN) -> Tuple[int, Any]:
        return call(self.url, method, path, body, token)


@pytest.fixture
def bridges(binary: str, tmp_path: Path, relay: Relay, gateway: Gateway) -> Iterator[Any]:
    """bridges(**hermes settings) starts a bridge on the module's gateway; each is stopped at the end,
    and one that died under the test fails it with its output."""
    started: List[HermesBridgeProcess] = []

    def start(**hermes: Any) -> HermesBridgeProcess:
        bridge = HermesBridgeProcess(binary, tmp_path / ("bridge-%d" % len(started)), relay, gateway, **hermes)
        started.append(bridge)
        RUNNING.append(bridge)
        return bridge.start()

    yield start
    died = [bridge for bridge in started if bridge.died()]
    for bridge in started:
        RUNNING.remove(bridge)
        if bridge.process is not None:
            bridge.stopping = True
            stop_group(bridge.process)
    assert not died, "a bridge exited under the test:\n" + died[0].output()[-4000:]


RUNNING: List[HermesBridgeProcess] = []


def ask(coroutine: Any, timeout: float = 60) -> Any:
    """Runs Timmy's side; when it fails, the running bridges' logs are printed (pytest shows them)."""
    try:
        return asyncio.run(asyncio.wait_for(coroutine, timeout))
    except BaseException:
        for bridge in RUNNING:
            print("--- %s\n%s" % (bridge.log_path, bridge.output()[-6000:]))
        raise


def prompt_seen_by_hermes(model: ScriptedModel, marker: str) -> int:
    """How many runs Hermes made of the prompt marked `marker`: the model requests whose last message is
    the user's (the first of each run)."""
    with model.lock:
        bodies = list(model.requests)
    return sum(1 for body in bodies if body.get("tools") and marker in ScriptedModel.user_text(body)
               and (body.get("messages") or [{}])[-1].get("role") == "user")


# -- the tests ----------------------------------------------------------------------------------------


def test_run_session_returns_the_answer_with_hermes_session_id_and_its_telemetry_reaches_timmy_under_that_id(
        bridges, gateway, model, relay):
    bridge = bridges()

    async def scenario() -> Tuple[HermesResult, List[Any]]:
        timmy = HermesBridge([relay.address], "timmy", "", start="earliest", bridge_url=bridge.url,
                             bridge_token=COMMAND_TOKEN)
        events: List[Any] = []

        async def read() -> None:
            async for event in timmy.stream_telemetry():
                events.append(event)
                await event.commit()

        reader = asyncio.get_running_loop().create_task(read())
        try:
            result = await timmy.run_session("Read notes.txt and tell me what it says. #first",
                                             operation_id="e2e-first", timeout=45)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(
                    e.session == result.session_id and e.kind == "turn_end" for e in events):
                await asyncio.sleep(0.1)
            return result, [e for e in events if e.session == result.session_id]
        finally:
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                pass
            await timmy.close()

    result, events = ask(scenario())
    assert result.status == "completed", result
    assert result.operation_id == "e2e-first"
    assert result.answer == "All done: the notes say hello. #first"
    assert result.error is None and result.run_id and result.session_id
    # The session id is Hermes' own: its API server and its session store say so.
    assert gateway.run_status(result.run_id)["session_id"] == result.session_id
    assert gateway.run_status(result.run_id)["status"] == "completed"
    assert result.session_id in gateway.stored_sessions()
    assert [call.tool for call in result.tool_calls] == ["read_file"]
    assert result.tool_calls[0].error in (False, None, "")
    assert result.approvals == []
    assert len(result.usage) == 1, result.usage
    (usage,) = result.usage.values()
    assert usage["input_tokens"] > 0 and usage["output_tokens"] == 14, "two model calls, 7 tokens each"
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert result.duration_ms is not None and result.duration_ms > 0 and result.waited_ms is not None
    assert prompt_seen_by_hermes(model, "#first") == 1
    # Its telemetry, on Timmy's stream, under that session id.
    assert [event.kind for event in events] == ONE_TOOL_TURN, "one turn with one tool call, every event once"
    assert {event.producer for event in events} == {PRODUCER}
    by_kind = {event.kind: json.loads(event.payload) for event in events}
    assert "#first" in by_kind["turn_start"]["user_message"]
    assert by_kind["tool_call"]["tool_name"] == "read_file"
    assert by_kind["turn_response"]["assistant_response"] == result.answer


def test_with_max_sessions_1_a_second_session_waits_in_the_queue_and_starts_after_the_first_ended(
        bridges, model):
    bridge = bridges(max_sessions=1)

    async def scenario() -> Tuple[HermesResult, HermesResult, HermesResult]:
        timmy = bridge.client()
        first = asyncio.ensure_future(timmy.run_session("Think slowly. [slow 3] #queue-a", operation_id="e2e-queue-a"))
        deadline = time.monotonic() + 20
        while not model.seen("#queue-a") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        first_while_running = await timmy.session("e2e-queue-a")
        second = await timmy.run_session("Read notes.txt. #queue-b", operation_id="e2e-queue-b", timeout=45)
        return await first, second, first_while_running

    first, second, first_while_running = ask(scenario())
    assert first_while_running.status == "running" and first_while_running.run_id
    assert (first.status, second.status) == ("completed", "completed"), (first, second)
    assert first.answer == "Slow answer to #queue-a"
    assert second.answer == "All done: the notes say hello. #queue-b"
    assert first.waited_ms is not None and first.waited_ms < 1000
    assert second.waited_ms is not None and second.waited_ms > 1000, second
    # The model saw the second session only once the first had its answer.
    first_answered = max(answered for _, answered, _, _ in model.seen("#queue-a"))
    second_began = min(came for came, _, _, _ in model.seen("#queue-b"))
    assert second_began >= first_answered, "the second session started while the first still ran"
    assert first.session_id != second.session_id


def test_the_same_operation_id_twice_is_one_run_and_with_another_prompt_it_is_refused(bridges, gateway, model):
    bridge = bridges()
    prompt = "Read notes.txt. #twice"

    async def scenario() -> Tuple[HermesResult, HermesResult, HermesResult]:
        timmy = bridge.client()
        one, two = await asyncio.gather(timmy.run_session(prompt, operation_id="e2e-twice", timeout=45),
                                        timmy.run_session(prompt, operation_id="e2e-twice", timeout=45))
        again = await timmy.run_session(prompt, operation_id="e2e-twice", timeout=45)
        with pytest.raises(HermesSessionError) as refused:
            await timmy.run_session("Something else. #twice-other", operation_id="e2e-twice")
        assert refused.value.status == 409, refused.value
        with pytest.raises(HermesSessionError) as other_model:
            await timmy.run_session(prompt, OTHER_MODEL, operation_id="e2e-twice")
        assert other_model.value.status == 409, other_model.value
        return one, two, again

    one, two, again = ask(scenario())
    assert one.status == "completed" and one.run_id
    assert one == two == again, "the same session, its first outcome"
    assert prompt_seen_by_hermes(model, "#twice") == 1, "Hermes ran the prompt once"
    assert prompt_seen_by_hermes(model, "#twice-other") == 0
    # Raw, as the contract says: the same body answers the same session.
    status, answer = bridge.call("POST", "/v1/hermes/sessions",
                                 {"operation_id": "e2e-twice", "prompt": prompt, "model": ""})
    assert status == 200 and answer["id"] == "e2e-twice" and answer["run_id"] == one.run_id, (status, answer)


def test_a_session_past_its_timeout_is_stopped_through_hermes_and_reported_interrupted(bridges, gateway, model):
    bridge = bridges(session_timeout_ms=2000)

    async def scenario() -> HermesResult:
        return await bridge.client().run_session("Take forever. [slow 30] #timeout", operation_id="e2e-timeout",
                                                 timeout=30)

    began = time.monotonic()
    result = ask(scenario())
    took = time.monotonic() - began
    assert result.status == "interrupted", result
    assert result.error and "timeout" in result.error, result.error
    assert result.answer is None or "Slow answer" not in result.answer
    assert took < 15, "stopped at its timeout, not at the model's 30 s (%.1f s)" % took
    assert result.run_id
    assert gateway.wait_run(result.run_id, ("cancelled",))["status"] == "cancelled"


def test_cancel_interrupts_a_queued_session_at_once_and_stops_a_running_one_through_hermes(bridges, gateway, model):
    bridge = bridges(max_sessions=1)

    async def scenario() -> Tuple[HermesResult, HermesResult, HermesResult, HermesResult]:
        timmy = bridge.client()
        running = asyncio.ensure_future(timmy.run_session("Take forever. [slow 30] #cancel-run",
                                                          operation_id="e2e-cancel-run", timeout=30))
        deadline = time.monotonic() + 20
        while not model.seen("#cancel-run") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert model.seen("#cancel-run"), "Hermes never asked the model"
        queued = asyncio.ensure_future(timmy.run_session("Never run. #cancel-queued", operation_id="e2e-cancel-queued",
                                                         timeout=30))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if (await timmy.session("e2e-cancel-queued")).status == "queued":
                    break
            except HermesSessionError as error:
                if error.status != 404:
                    raise
            await asyncio.sleep(0.05)
        queued_cancel = await timmy.cancel_session("e2e-cancel-queued")
        running_cancel = await timmy.cancel_session("e2e-cancel-run")
        return await running, await queued, queued_cancel, running_cancel

    began = time.monotonic()
    running, queued, queued_cancel, running_cancel = ask(scenario())
    assert queued_cancel.status == "interrupted", "a queued session ends at once: %r" % queued_cancel
    assert queued.status == "interrupted" and queued.run_id is None and queued.answer is None
    assert prompt_seen_by_hermes(model, "#cancel-queued") == 0, "Hermes never saw the cancelled queued session"
    assert running_cancel.status in ("running", "interrupted"), running_cancel
    assert running.status == "interrupted" and running.error, running
    assert time.monotonic() - began < 20, "stopped by the cancel, not by the model's 30 s"
    assert gateway.wait_run(running.run_id, ("cancelled",))["status"] == "cancelled"


def test_a_dangerous_terminal_command_is_denied_and_does_not_run(bridges, gateway, root):
    bridge = bridges()
    target = root / "victim-dir"
    target.mkdir(exist_ok=True)
    victim = target / "victim"
    victim.write_text("still here\n")

    async def scenario() -> HermesResult:
        return await bridge.client().run_session("Clean up. [terminal rm -rf %s] #danger" % target,
                                                 operation_id="e2e-danger", timeout=45)

    result = ask(scenario())
    assert victim.read_text() == "still here\n", "the denied command did not run"
    assert result.status == "completed", result
    assert len(result.approvals) == 1, result.approvals
    approval = result.approvals[0]
    assert "rm -rf %s" % target in approval.command
    # No hermes.allowed_signers here: no approval is possible, so every request is denied at once.
    assert approval.decision == "deny" and approval.why, approval
    assert approval.description
    assert [call.tool for call in result.tool_calls] == ["terminal"], result.tool_calls
    assert result.answer and result.answer.startswith("Tool said:") and "BLOCKED" in result.answer, result.answer


def test_a_model_not_in_hermes_models_is_refused_and_one_in_it_reaches_the_model_under_its_name(bridges, model):
    bridge = bridges()

    async def scenario() -> HermesResult:
        timmy = bridge.client()
        with pytest.raises(HermesSessionError) as refused:
            await timmy.run_session("Read notes.txt. #model-no", "gpt-unlisted", operation_id="e2e-model-no")
        assert refused.value.status == 400, refused.value
        return await timmy.run_session("Read notes.txt. #model-yes", OTHER_MODEL, operation_id="e2e-model-yes",
                                       timeout=45)

    result = ask(scenario())
    assert prompt_seen_by_hermes(model, "#model-no") == 0
    assert result.status == "completed" and result.answer == "All done: the notes say hello. #model-yes", result
    assert result.model == OTHER_MODEL
    asked = {name for _, _, _, name in model.seen("#model-yes")}
    assert asked == {OTHER_MODEL}, asked
    assert set(result.usage) == {OTHER_MODEL}, result.usage


# -- approvals: Timmy's answer decides ------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer(root: Path) -> Tuple[Path, Path]:
    """Timmy's Ed25519 key (made with ssh-keygen) and an allowed_signers file trusting it for approvals."""
    directory = root / "timmy"
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "timmy_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key), "-C", "timmy"], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    kind, blob = Path(str(key) + ".pub").read_text().split()[:2]
    signers = directory / "allowed_signers"
    signers.write_text('timmy namespaces="allegro-approval" %s %s\n' % (kind, blob))
    return key, signers


@pytest.fixture
def stream(relay: Relay) -> Iterator[StreamWatcher]:
    """The relay's allegro.* records, read from the earliest by a collector of the test's own."""
    watcher = StreamWatcher(relay.address)
    yield watcher
    watcher.stop()


def victim(root: Path, name: str) -> Tuple[Path, Path]:
    """A directory with a file in it, for Hermes to be asked to delete."""
    target = root / name
    target.mkdir(exist_ok=True)
    (target / "victim").write_text("still here\n")
    return target, target / "victim"


async def wait_pending(timmy: HermesBridge, operation: str, timeout: float = 30) -> PendingHermesApproval:
    """The approval the session `operation` waits for, once pending_approvals() lists it (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [item for item in await timmy.pending_approvals() if item.session == operation]
        if found:
            assert len(found) == 1, found
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no approval of session %s was pending within %g s" % (operation, timeout))


def wait_records(stream: StreamWatcher, test: Any, what: str, count: int = 1, timeout: float = 15) -> List[Any]:
    """The stream's events for which `test(event)` holds, once there are `count` (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [event for event in stream.snapshot() if test(event)]
        if len(found) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(found) >= count, "%d of %d %s on the stream within %g s; seen: %s" % (
        len(found), count, what, timeout, [(e.kind, e.session) for e in stream.snapshot()][-20:])
    return found


def alerts(stream: StreamWatcher, request: str, status: str) -> List[Dict[str, Any]]:
    """The payloads of the hermes_approval_pending alerts about `request` with `status`, waited for."""
    found = wait_records(stream, lambda e: e.kind == "allegro.alert" and e.session == request
                         and e.json().get("status") == status, "%s alert about %s" % (status, request))
    payloads = [event.json() for event in found]
    assert all(p["alert"] == "hermes_approval_pending" and p["subject"] == request for p in payloads), payloads
    return payloads


def verdicts(stream: StreamWatcher, request: str, verdict: str, count: int = 1) -> List[Dict[str, Any]]:
    """The allegro.approval verdicts (APPROVAL.md section 8) about `request`, waited for."""
    found = wait_records(stream, lambda e: e.kind == "allegro.approval"
                         and (e.json().get("target") or {}).get("request") == request
                         and e.json().get("verdict") == verdict, "%s verdict about %s" % (verdict, request), count)
    return [event.json() for event in found]


def check_told(stream: StreamWatcher, waiting: PendingHermesApproval, target: Path) -> None:
    """What Timmy was told of the pending approval: it, as listed, and its Request and alert on the stream."""
    assert "rm -rf %s" % target in waiting.command, waiting
    assert waiting.command_sha256 == approvals.hash_command(waiting.command)
    assert re.fullmatch(r"hermes-.+-1", waiting.request) and waiting.run_id and waiting.run_id in waiting.request
    assert waiting.description and waiting.decision is None
    assert waiting.deadline is not None and waiting.deadline > datetime.now(timezone.utc), waiting.deadline
    (request,) = wait_records(stream, lambda e: e.kind == "allegro.request" and e.session == waiting.request,
                              "allegro.request for %s" % waiting.request)
    told = request.json()
    assert told["type"] == "approval" and told["message"] == "allegro.request", told
    assert waiting.command in told["question"], told["question"]
    lines = told["question"].splitlines()
    assert "request=%s" % waiting.request in lines and "command_sha256=%s" % waiting.command_sha256 in lines, lines
    (firing,) = alerts(stream, waiting.request, "firing")
    assert "rm -rf" in firing["summary"], firing


def test_timmys_signed_approval_lets_the_dangerous_command_run_once(bridges, signer, stream, root):
    key, signers = signer
    bridge = bridges(allowed_signers=str(signers), approval_timeout_ms=30000)
    target, file = victim(root, "victim-approve")

    async def scenario() -> Tuple[PendingHermesApproval, PendingHermesApproval, List[Any], HermesResult]:
        timmy = bridge.client()
        running = asyncio.ensure_future(timmy.run_session("Clean up. [terminal rm -rf %s] #approve" % target,
                                                          operation_id="e2e-approve", timeout=45))
        try:
            waiting = await wait_pending(timmy, "e2e-approve")
            assert file.exists(), "the command waits for Timmy"
            await asyncio.get_running_loop().run_in_executor(None, check_told, stream, waiting, target)
            decided = await timmy.approve_hermes(waiting.request, key_path=key)
            left = await timmy.pending_approvals()
            return waiting, decided, left, await running
        finally:
            running.cancel()

    waiting, decided, left, result = ask(scenario())
    assert decided.decision == "approve" and decided.request == waiting.request
    assert decided.command == waiting.command and decided.command_sha256 == waiting.command_sha256
    assert waiting.request not in [item.request for item in left], "answered: no longer pending"
    assert not target.exists(), "the approved command ran"
    assert result.status == "completed", result
    assert [(a.request, a.decision) for a in result.approvals] == [(waiting.request, "approve")], result.approvals
    assert result.approvals[0].why and "approved" in result.approvals[0].why, result.approvals
    assert result.answer and result.answer.startswith("Tool said:") and "BLOCKED" not in result.answer, result.answer
    (resolved,) = alerts(stream, waiting.request, "resolved")
    assert "Approved" in resolved["summary"], resolved
    for accepted in verdicts(stream, waiting.request, "accepted"):
        assert accepted["action"] == "hermes_approve" and accepted["signer"] == "timmy", accepted
        assert accepted["target"] == {"request": waiting.request, "command_sha256": waiting.command_sha256}, accepted
    # The same request cannot be approved twice: nothing waits under it now.
    status, answer = bridge.call("POST", "/v1/hermes/approvals/%s/deny" % waiting.request, {})
    assert status == 404, (status, answer)


def test_timmys_denial_stops_the_dangerous_command(bridges, signer, stream, root):
    _, signers = signer
    bridge = bridges(allowed_signers=str(signers), approval_timeout_ms=30000)
    target, file = victim(root, "victim-deny")

    async def scenario() -> Tuple[PendingHermesApproval, PendingHermesApproval, HermesResult]:
        timmy = bridge.client()
        running = asyncio.ensure_future(timmy.run_session("Clean up. [terminal rm -rf %s] #deny" % target,
                                                          operation_id="e2e-deny", timeout=45))
        try:
            waiting = await wait_pending(timmy, "e2e-deny")
            await asyncio.get_running_loop().run_in_executor(None, check_told, stream, waiting, target)
            decided = await timmy.deny_hermes(waiting.request)
            return waiting, decided, await running
        finally:
            running.cancel()

    waiting, decided, result = ask(scenario())
    assert decided.decision == "deny" and decided.request == waiting.request
    assert file.read_text() == "still here\n", "the denied command did not run"
    assert result.status == "completed", result
    assert [(a.request, a.decision, a.why) for a in result.approvals] == [
        (waiting.request, "deny", "denied by Timmy")], result.approvals
    assert result.answer and "BLOCKED" in result.answer, result.answer
    (resolved,) = alerts(stream, waiting.request, "resolved")
    assert "Denied" in resolved["summary"], resolved


def test_no_answer_by_the_approval_timeout_is_a_denial(bridges, signer, stream, root):
    key, signers = signer
    bridge = bridges(allowed_signers=str(signers), approval_timeout_ms=1500)
    target, file = victim(root, "victim-timeout")

    async def scenario() -> Tuple[PendingHermesApproval, float, HermesResult, List[PendingHermesApproval]]:
        timmy = bridge.client()
        running = asyncio.ensure_future(timmy.run_session("Clean up. [terminal rm -rf %s] #approval-timeout" % target,
                                                          operation_id="e2e-approval-timeout", timeout=45))
        try:
            waiting = await wait_pending(timmy, "e2e-approval-timeout")
            seen = time.monotonic()
            result = await running
            return waiting, time.monotonic() - seen, result, await timmy.pending_approvals()
        finally:
            running.cancel()

    waiting, waited, result, left = ask(scenario())
    assert file.read_text() == "still here\n", "the unanswered command did not run"
    assert waiting.deadline is not None and waiting.deadline <= datetime.now(timezone.utc)
    assert waited >= 1.0, "the session went on only at the deadline (%.2f s after the approval was seen)" % waited
    assert waiting.request not in [item.request for item in left]
    assert result.status == "completed", result
    assert [(a.request, a.decision) for a in result.approvals] == [(waiting.request, "deny")], result.approvals
    assert "no answer from Timmy" in (result.approvals[0].why or ""), result.approvals
    assert result.answer and "BLOCKED" in result.answer, result.answer
    (resolved,) = alerts(stream, waiting.request, "resolved")
    assert "no answer from Timmy" in resolved["summary"], resolved
    # Too late: an approval now is refused, as there is nothing left to approve.
    with pytest.raises(HermesSessionError) as late:
        ask(bridge.client().approve_hermes(waiting.request, key_path=key, command_sha256=waiting.command_sha256))
    assert late.value.status == 404, late.value


def test_an_approval_signed_for_another_command_is_refused_and_the_request_stays_pending(bridges, signer, stream,
                                                                                           root):
    key, signers = signer
    bridge = bridges(allowed_signers=str(signers), approval_timeout_ms=30000)
    target, file = victim(root, "victim-other-hash")
    other = approvals.hash_command("rm -rf /")

    async def scenario() -> Tuple[PendingHermesApproval, HermesSessionError, List[PendingHermesApproval],
                                  HermesSessionError, HermesResult]:
        timmy = bridge.client()
        running = asyncio.ensure_future(timmy.run_session("Clean up. [terminal rm -rf %s] #other-hash" % target,
                                                          operation_id="e2e-other-hash", timeout=45))
        try:
            waiting = await wait_pending(timmy, "e2e-other-hash")
            with pytest.raises(HermesSessionError) as refused:
                await timmy.approve_hermes(waiting.request, key_path=key, command_sha256=other)
            still = await timmy.pending_approvals()
            # Signed by a key hermes.allowed_signers does not hold: refused too.
            stranger = root / "stranger"
            stranger.mkdir(exist_ok=True)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger / "key"), "-C", "eve"],
                           check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            with pytest.raises(HermesSessionError) as untrusted:
                await timmy.approve_hermes(waiting.request, key_path=stranger / "key")
            assert file.exists(), "nothing ran while the request waited"
            await timmy.deny_hermes(waiting.request)
            return waiting, refused.value, still, untrusted.value, await running
        finally:
            running.cancel()

    waiting, refused, still, untrusted, result = ask(scenario())
    assert refused.status == 403, refused
    assert other in refused.reason and waiting.command_sha256 in refused.reason, refused.reason
    assert [item.request for item in still if item.session == "e2e-other-hash"] == [waiting.request], \
        "a refused approval leaves the request pending"
    assert untrusted.status == 403, untrusted
    assert file.read_text() == "still here\n", "the command never ran"
    assert [(a.request, a.decision) for a in result.approvals] == [(waiting.request, "deny")], result.approvals
    refusals = verdicts(stream, waiting.request, "refused", count=2)
    assert len(refusals) == 2 and "action" in {r.get("check") for r in refusals}, refusals
    assert any(r["target"]["command_sha256"] == other for r in refusals), refusals
