"""provide_model_access end to end: the real relay and the real `allegro bridge` ($ALLEGRO_BIN) with
model access only (hermes.provider_url pointing at the fake model of tests/fake_model.py, Allegro's
provider key given by the environment), Timmy's side (allegro_client.timmy.HermesBridge:
provide_model_access, model_access_keys, revoke_model_access) and, as Timmy's OpenAI client, both
plain HTTP and the `openai` package (base_url and api_key from the ModelEndpoint).

What is checked is the bridge's contract (config/README.md, "Model access"): a scoped key reaches the
key's model only (another is 403 model_not_allowed), until it expires or is revoked (then 401, as
OpenAI writes errors); a streamed answer is passed on chunk by chunk as the provider sends it (the
fake waits between chunks; the first arrives long before the last is written); usage is counted
per key and put on the stream as allegro.model_usage; Allegro's provider key reaches the provider
as its bearer and nothing else: no answer Timmy gets (bodies, headers, errors the provider wrote
with the key in them), no log line of the bridge or the relay, no record on the stream. The scoped
keys themselves are kept by the bridge as SHA-256 only.

Every wait is bounded; the processes started are stopped by their process group."""

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import httpx
import pytest

from allegro_client.timmy import HermesBridge, HermesSessionError, ModelAccessKey, ModelEndpoint
from bridge_run import BridgeRun
from conftest import Relay
from fake_model import MODEL, FakeModel
from hermes_support import read_relay
from stream_watcher import StreamWatcher
from loopback_ports import free_port

pytestmark = pytest.mark.skipif(not os.environ.get("ALLEGRO_BIN"),
                                reason="ALLEGRO_BIN is not set (the allegro binary with `allegro bridge`)")

PROVIDER_KEY = "sk-allegro-provider-" + secrets.token_hex(20)
COMMAND_TOKEN = "timmy-hermes-command-token-" + secrets.token_hex(8)
OTHER_MODEL = "other-model"
ANSWER = "All done: the notes say hello."
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What do the notes say?"}]

# Everything Timmy's clients were answered (status, headers, body text), for the secret hunt at the end.
SEEN: List[Tuple[int, Dict[str, str], str]] = []
# Every scoped key the bridge issued in this module.
ISSUED: List[str] = []


# -- the processes ------------------------------------------------------------------------------------



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
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(5)


class ModelBridge(BridgeRun):
    """`allegro bridge` with model access only, on a loopback port chosen here (so the base URL it
    gives Timmy, http:// + bridge.http + /v1/model, is the one it listens on)."""

    def __init__(self, binary: str, root: Path, relay: Relay, model: FakeModel) -> None:
        super().__init__()
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.data = root / "data"
        self.config = root / "allegro.json"
        # No secret in the file: the provider key and the command token come by the environment.
        self.config.write_text(json.dumps({
            "bridge": {"http": self.address, "relay": relay.address, "data_dir": str(self.data), "relay_down_ms": 0},
            "hermes": {"provider_url": model.base_url, "provider_models": [MODEL, OTHER_MODEL]}}, indent=1))
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("ALLEGRO_", "HERMES_", "OPENAI_")) and key.lower() not in
               ("http_proxy", "https_proxy", "all_proxy")}
        env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
                   ALLEGRO_HERMES_PROVIDER_KEY=PROVIDER_KEY, ALLEGRO_HERMES_COMMAND_TOKEN=COMMAND_TOKEN)
        self.log_path = root / "bridge.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([binary, "bridge", "--config", str(self.config)], env=env,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if re.search(r"http_listening\b", self.output()):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        output = self.output()
        stop_group(self.process)
        raise RuntimeError("the bridge did not log http_listening (exit %s):\n%s" % (self.process.poll(), output[-4000:]))

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def url(self) -> str:
        return "http://" + self.address

    def client(self) -> HermesBridge:
        return HermesBridge(bridge_url=self.url, bridge_token=COMMAND_TOKEN, bridge_timeout=10)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-access")


@pytest.fixture(scope="module")
def relay(binary: str, root: Path) -> Iterator[Relay]:
    (root / "relay").mkdir()
    running = Relay(binary, root / "relay" / "data", extra=["--set", "daily_report_at=off"])
    yield running
    running.stop()


@pytest.fixture(scope="module")
def model(root: Path) -> Iterator[FakeModel]:
    """The provider: the fake model, its answer streamed 6 bytes a chunk."""
    fake = FakeModel(tool_path=str(root / "notes.txt"), final_text=ANSWER, chunk_bytes=6)
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def stream(relay: Relay) -> Iterator[StreamWatcher]:
    """Every record on the relay (any kind), read from the earliest."""
    watcher = StreamWatcher(relay.address, kinds=("",))
    yield watcher
    watcher.stop()


@pytest.fixture(scope="module")
def bridge(binary: str, root: Path, relay: Relay, model: FakeModel, stream: StreamWatcher) -> Iterator[ModelBridge]:
    running = ModelBridge(binary, root / "bridge", relay, model)
    yield running
    died = running.died()
    running.stopping = True
    stop_group(running.process)
    assert not died, "the bridge exited under the tests:\n" + running.output()[-4000:]


@pytest.fixture
def http(bridge: ModelBridge) -> Iterator[httpx.Client]:
    """Timmy's plain HTTP client (no proxy from the environment); every answer is kept in SEEN (a
    stream's body by `streamed`, as it is read: reading it here would wait for its end)."""
    def keep(response: httpx.Response) -> None:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            SEEN.append((response.status_code, dict(response.headers), ""))
            return
        response.read()
        SEEN.append((response.status_code, dict(response.headers), response.text))

    with httpx.Client(trust_env=False, timeout=30, event_hooks={"response": [keep]}) as client:
        yield client


def ask(bridge: ModelBridge, coroutine: Any, timeout: float = 30) -> Any:
    """Runs Timmy's side; when it fails, the bridge's log is printed (pytest shows it)."""
    try:
        return asyncio.run(asyncio.wait_for(coroutine, timeout))
    except BaseException:
        print("--- %s\n%s" % (bridge.log_path, bridge.output()[-6000:]))
        raise


def issue(bridge: ModelBridge, model: str = MODEL, ttl_ms: Optional[int] = None) -> ModelEndpoint:
    endpoint = ask(bridge, bridge.client().provide_model_access(model, ttl_ms=ttl_ms))
    assert isinstance(endpoint, ModelEndpoint)
    ISSUED.append(endpoint.key)
    return endpoint


def keys(bridge: ModelBridge) -> Dict[str, ModelAccessKey]:
    return {key.key_id: key for key in ask(bridge, bridge.client().model_access_keys())}


def bearer(key: str) -> Dict[str, str]:
    return {"Authorization": "Bearer " + key}


def streamed(http: httpx.Client, endpoint: ModelEndpoint, **extra: Any) -> Tuple[httpx.Response, List[Tuple[float, str]]]:
    """A streamed chat completion through the endpoint: the answer and its SSE `data:` lines, each
    with the monotonic time it arrived."""
    body = dict({"model": endpoint.model, "messages": MESSAGES, "stream": True}, **extra)
    lines: List[Tuple[float, str]] = []
    with http.stream("POST", endpoint.base_url + "/chat/completions", json=body, headers=bearer(endpoint.key)) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                lines.append((time.monotonic(), line[5:].strip()))
    SEEN.append((response.status_code, dict(response.headers), "\n".join(text for _, text in lines)))
    return response, lines


def content_of(lines: List[Tuple[float, str]]) -> Tuple[List[Tuple[float, str]], Optional[Dict[str, Any]]]:
    """The content deltas (arrival time, text) of a stream's chunks, and its usage chunk's usage."""
    deltas: List[Tuple[float, str]] = []
    usage = None
    for arrived, text in lines:
        if text == "[DONE]":
            continue
        chunk = json.loads(text)
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                deltas.append((arrived, piece))
    return deltas, usage


def openai_error(response: httpx.Response, status: int, code: str) -> str:
    """The message of an OpenAI-style error answer with this status and code."""
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"} and error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    return error["message"]


def usage_records(stream: StreamWatcher, key_id: str, count: int, timeout: float = 15) -> List[Dict[str, Any]]:
    """The allegro.model_usage records of the key, once there are `count` (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [event for event in stream.snapshot()
                 if event.kind == "allegro.model_usage" and event.session == "model-access:" + key_id]
        if len(found) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(found) == count, "%d allegro.model_usage records of %s, not %d" % (len(found), key_id, count)
    assert all(event.content_type == "application/json" for event in found)
    return [event.json() for event in found]


# -- the tests ----------------------------------------------------------------------------------------


def test_provide_model_access_gives_a_scoped_key_for_an_endpoint_on_the_bridge(bridge, http):
    before = datetime.now(timezone.utc)
    endpoint = issue(bridge)
    assert endpoint.base_url == "http://%s/v1/model" % bridge.address, endpoint
    assert endpoint.model == MODEL and endpoint.key and endpoint.key != PROVIDER_KEY and endpoint.key_id
    assert endpoint.key not in repr(endpoint)
    # hermes.model_key_ms: an hour by default (the answer's time is whole seconds).
    assert before + timedelta(minutes=59) <= endpoint.expires_at <= before + timedelta(minutes=61), endpoint.expires_at
    listed = keys(bridge)[endpoint.key_id]
    assert (listed.models, listed.state, listed.requests, listed.input_tokens, listed.output_tokens) == \
        ([MODEL], "valid", 0, 0, 0)
    assert listed.expires_at == endpoint.expires_at
    # The endpoint's model list is the key's model.
    models = http.get(endpoint.base_url + "/models", headers=bearer(endpoint.key))
    assert models.status_code == 200, models.text
    assert [item["id"] for item in models.json()["data"]] == [MODEL]
    # What the bridge does not offer, a lifetime out of range, and a wrong command token are refused.
    client = bridge.client()
    with pytest.raises(HermesSessionError) as unlisted:
        ask(bridge, client.provide_model_access("gpt-unlisted"))
    assert unlisted.value.status == 400, unlisted.value
    for ttl in (999, 86_400_001):
        with pytest.raises(HermesSessionError) as bad_ttl:
            ask(bridge, client.provide_model_access(MODEL, ttl_ms=ttl))
        assert bad_ttl.value.status == 400 and "ttl_ms" in bad_ttl.value.reason, bad_ttl.value
    wrong = http.post(bridge.url + "/v1/hermes/model-access", json={"model": MODEL, "ttl_ms": ""},
                      headers=bearer("not-the-command-token-0123456789"))
    assert wrong.status_code == 401, wrong.text
    raw = http.get(bridge.url + "/v1/hermes/model-access", headers=bearer(COMMAND_TOKEN))
    assert raw.status_code == 200 and endpoint.key_id in raw.text
    assert not any(key in raw.text for key in ISSUED), "the list never shows a key"


def test_a_streamed_completion_is_passed_on_chunk_by_chunk_as_the_provider_sends_it(bridge, http, model, stream):
    endpoint = issue(bridge)
    model.chunk_delay = 0.2
    try:
        with model.lock:
            asked_before = len(model.requests)
        began = time.monotonic()
        response, lines = streamed(http, endpoint)
    finally:
        model.chunk_delay = 0.0
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream"), response.headers
    assert lines and lines[-1][1] == "[DONE]", lines[-3:]
    deltas, usage = content_of(lines)
    assert len(deltas) >= 5, "the answer came in %d content chunks: %s" % (len(deltas), deltas)
    assert "".join(piece for _, piece in deltas) == ANSWER
    # Passed on as it came: the first content chunk reached Timmy long before the provider wrote its
    # last chunk (it waits 0.2 s between chunks), and the chunks arrived spread over that time.
    with model.lock:
        assert len(model.requests) == asked_before + 1, "one request reached the provider"
        finished = model.answered[-1]
        request, headers = model.requests[-1], model.headers[-1]
    assert deltas[0][0] < finished - 1.0, "first chunk %.2f s, provider done %.2f s after the start" % (
        deltas[0][0] - began, finished - began)
    assert deltas[-1][0] - deltas[0][0] >= 0.6, [round(t - began, 2) for t, _ in deltas]
    # The provider got Timmy's request, Allegro's key as its bearer (never the scoped key), and the ask
    # for usage in the last chunk.
    assert request["model"] == MODEL and request["messages"] == MESSAGES and request["stream"] is True
    assert request.get("stream_options") == {"include_usage": True}, request
    assert headers.get("authorization") == "Bearer " + PROVIDER_KEY
    assert endpoint.key not in json.dumps(headers) and endpoint.key not in json.dumps(request)
    # Its usage, counted and on the stream.
    assert usage is not None and usage["completion_tokens"] == 7, usage
    (record,) = usage_records(stream, endpoint.key_id, 1)
    assert record["key_id"] == endpoint.key_id and record["model"] == MODEL and record.get("stream") is True, record
    assert record["usage"] == {"input_tokens": usage["prompt_tokens"], "output_tokens": 7,
                               "total_tokens": usage["total_tokens"]}, record
    assert isinstance(record["duration_ms"], int) and isinstance(record["first_byte_ms"], int), record
    assert record["first_byte_ms"] <= record["duration_ms"] - 1000, "the bridge timed its first byte early: %s" % record
    listed = keys(bridge)[endpoint.key_id]
    assert (listed.requests, listed.input_tokens, listed.output_tokens) == (1, usage["prompt_tokens"], 7), listed


def test_a_whole_completion_and_the_openai_client_work_with_the_scoped_key(bridge, http, model, stream):
    openai = pytest.importorskip("openai")
    endpoint = issue(bridge)
    whole = http.post(endpoint.base_url + "/chat/completions", json={"model": MODEL, "messages": MESSAGES},
                      headers=bearer(endpoint.key))
    assert whole.status_code == 200, whole.text
    assert whole.headers["content-type"].startswith("application/json")
    answer = whole.json()
    assert answer["choices"][0]["message"]["content"] == ANSWER and answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"] == {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}

    # The openai package, as any OpenAI client: base_url and the scoped key, nothing else.
    def keep_headers(response: httpx.Response) -> None:
        SEEN.append((response.status_code, dict(response.headers), ""))

    with httpx.Client(trust_env=False, timeout=30, event_hooks={"response": [keep_headers]}) as transport:
        client = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.key, max_retries=0, http_client=transport)
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES)
        SEEN.append((200, {}, completion.model_dump_json()))
        assert completion.choices[0].message.content == ANSWER
        assert completion.usage is not None and completion.usage.completion_tokens == 7
        pieces, chunks = [], 0
        for chunk in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            SEEN.append((200, {}, chunk.model_dump_json()))
            chunks += 1
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        assert "".join(pieces) == ANSWER and len(pieces) >= 5 and chunks > len(pieces), (pieces, chunks)
        assert [item.id for item in client.models.list()] == [MODEL]
        with pytest.raises(openai.PermissionDeniedError) as other:
            client.chat.completions.create(model=OTHER_MODEL, messages=MESSAGES)
        assert other.value.status_code == 403 and other.value.code == "model_not_allowed", other.value
        revoked_client = openai.OpenAI(base_url=endpoint.base_url, api_key="allegro-mk-" + "0" * 48, max_retries=0,
                                       http_client=transport)
        with pytest.raises(openai.AuthenticationError) as unknown:
            revoked_client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert unknown.value.status_code == 401, unknown.value
    records = usage_records(stream, endpoint.key_id, 3)
    assert [record.get("stream") for record in records] == [False, False, True], records
    assert records[0]["usage"] == {"input_tokens": 10, "output_tokens": 7, "total_tokens": 17}, records
    listed = keys(bridge)[endpoint.key_id]
    assert listed.requests == 3 and listed.output_tokens == 21, listed
    assert listed.input_tokens == sum(record["usage"]["input_tokens"] for record in records), (listed, records)


def test_another_model_is_403_and_unknown_revoked_or_expired_keys_are_401(bridge, http, model):
    endpoint = issue(bridge)
    url = endpoint.base_url + "/chat/completions"
    body = {"model": MODEL, "messages": MESSAGES}
    with model.lock:
        asked_before = len(model.requests)

    # The key's model only, though the bridge offers the other too.
    other = http.post(url, json=dict(body, model=OTHER_MODEL), headers=bearer(endpoint.key))
    openai_error(other, 403, "model_not_allowed")
    assert other.json()["error"]["type"] == "permission_error"
    # No key, a key the bridge never issued, Allegro's own provider key: not keys here.
    assert http.post(url, json=body).status_code == 401
    for wrong in ("allegro-mk-" + "0" * 48, PROVIDER_KEY, COMMAND_TOKEN):
        openai_error(http.post(url, json=body, headers=bearer(wrong)), 401, "invalid_api_key")
    assert http.get(endpoint.base_url + "/models", headers=bearer("nope")).status_code == 401

    # Revoked: refused at once; listed as revoked; revoking again is fine, an unknown key is 404.
    assert http.post(url, json=body, headers=bearer(endpoint.key)).status_code == 200
    ask(bridge, bridge.client().revoke_model_access(endpoint.key_id))
    message = openai_error(http.post(url, json=body, headers=bearer(endpoint.key)), 401, "invalid_api_key")
    assert "revoked" in message, message
    openai_error(http.get(endpoint.base_url + "/models", headers=bearer(endpoint.key)), 401, "invalid_api_key")
    ask(bridge, bridge.client().revoke_model_access(endpoint.key_id))
    with pytest.raises(HermesSessionError) as unknown:
        ask(bridge, bridge.client().revoke_model_access("mk_0000000000000000"))
    assert unknown.value.status == 404, unknown.value

    # Expired: works until expires_at, refused after.
    short = issue(bridge, ttl_ms=1000)
    assert http.post(url, json=body, headers=bearer(short.key)).status_code == 200
    deadline = time.monotonic() + 5
    while datetime.now(timezone.utc) < short.expires_at + timedelta(milliseconds=1100) and time.monotonic() < deadline:
        time.sleep(0.1)
    message = openai_error(http.post(url, json=body, headers=bearer(short.key)), 401, "invalid_api_key")
    assert "expired" in message, message

    listed = keys(bridge)
    assert (listed[endpoint.key_id].state, listed[endpoint.key_id].requests) == ("revoked", 1), listed[endpoint.key_id]
    assert (listed[short.key_id].state, listed[short.key_id].requests) == ("expired", 1), listed[short.key_id]
    with model.lock:
        assert len(model.requests) == asked_before + 2, "only the two allowed requests reached the provider"


def test_a_provider_error_is_passed_back_with_allegros_key_redacted(bridge, http, model, stream):
    endpoint = issue(bridge)
    model.fail_status, model.fail_message = 400, "Bad request for key %s (Bearer %s)" % (PROVIDER_KEY, PROVIDER_KEY)
    try:
        refused = http.post(endpoint.base_url + "/chat/completions", json={"model": MODEL, "messages": MESSAGES},
                            headers=bearer(endpoint.key))
        refused_stream, lines = streamed(http, endpoint)
    finally:
        model.fail_status, model.fail_message = None, "the fake model is failing on purpose"
    for response in (refused, refused_stream):
        assert response.status_code == 400, response.status_code
        assert PROVIDER_KEY not in response.text and "[redacted]" in response.text, response.text
    with model.lock:
        assert model.headers[-1].get("authorization") == "Bearer " + PROVIDER_KEY


def test_the_provider_refusing_allegros_key_is_a_502_that_does_not_blame_timmys_key(bridge, http, model, stream):
    endpoint = issue(bridge)
    model.fail_status, model.fail_message = 401, "Incorrect API key provided: %s" % PROVIDER_KEY
    try:
        refused = http.post(endpoint.base_url + "/chat/completions", json={"model": MODEL, "messages": MESSAGES},
                            headers=bearer(endpoint.key))
    finally:
        model.fail_status, model.fail_message = None, "the fake model is failing on purpose"
    message = openai_error(refused, 502, "upstream_auth_failed")
    assert "Timmy's key is fine" in message, message
    assert PROVIDER_KEY not in refused.text, refused.text
    # Timmy's key still works once the provider takes Allegro's again.
    assert http.post(endpoint.base_url + "/chat/completions", json={"model": MODEL, "messages": MESSAGES},
                     headers=bearer(endpoint.key)).status_code == 200


def test_allegros_provider_key_reached_the_provider_only(bridge, http, model, relay, stream, root):
    # Some traffic of this test's own, so it holds alone too.
    endpoint = issue(bridge)
    assert streamed(http, endpoint)[0].status_code == 200
    assert http.post(endpoint.base_url + "/chat/completions", json={"model": MODEL, "messages": MESSAGES},
                     headers=bearer(endpoint.key)).status_code == 200
    usage_records(stream, endpoint.key_id, 2)

    # The provider received it as its bearer, on every request.
    with model.lock:
        received = [headers.get("authorization") for headers in model.headers]
    assert received and set(received) == {"Bearer " + PROVIDER_KEY}, set(received)
    # No answer Timmy's clients got holds it (nor its end, in case of a cut-off echo).
    assert len(SEEN) >= 10
    for status, headers, text in SEEN:
        shown = json.dumps(headers) + text
        assert PROVIDER_KEY not in shown and PROVIDER_KEY[-16:] not in shown, (status, headers, text[:400])
    # No log line: the bridge's, the relay's.
    logs = {bridge.log_path: bridge.output(), relay.log_path: relay.log_path.read_text(errors="replace")}
    for path, text in logs.items():
        assert text, "%s is empty" % path
        assert PROVIDER_KEY not in text and PROVIDER_KEY[-16:] not in text, \
            [line for line in text.splitlines() if PROVIDER_KEY[-16:] in line]
        assert not any(key in text for key in ISSUED), "a scoped key is in %s" % path
    assert "model_answered" in logs[bridge.log_path]
    # No record on the stream: as Timmy's collector read them, and as `allegro tail` reads the relay.
    events = stream.snapshot()
    assert any(event.kind == "allegro.model_usage" for event in events)
    for event in events:
        shown = event.kind + event.session + event.payload.decode("utf-8", "replace")
        assert PROVIDER_KEY not in shown and not any(key in shown for key in ISSUED), (event.kind, event.session)
    tailed = json.dumps(read_relay(relay, idle_ms=500, timeout=30))
    assert "allegro.model_usage" in tailed and PROVIDER_KEY not in tailed and not any(key in tailed for key in ISSUED)
    # The bridge keeps neither Allegro's key nor a scoped key in its files (scoped keys: SHA-256 only).
    for path in sorted(bridge.root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            assert PROVIDER_KEY.encode() not in data, path
            assert not any(key.encode() in data for key in ISSUED), "a scoped key is stored in %s" % path
