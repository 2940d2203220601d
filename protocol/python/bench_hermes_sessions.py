"""run_session's overhead over Hermes itself, and the model endpoint's added latency to first token (issue 21).

    .venv/bin/python protocol/python/bench_hermes_sessions.py --allegro .build/release/allegro \
        [--sessions 20] [--requests 200] [--tool-rounds 0] [--smoke] [--keep]

(protocol/python/bench_hermes.py is the plugin's bench of issue 14: hook cost and hook-to-collector lag.)

What runs, on loopback, as tests/test_hermes_sessions_e2e.py runs it: the fake model of
tests/fake_model.py (in a process of its own, so neither the bench's clients nor the bridge share
its interpreter), a relay, the real `hermes gateway run` (hermes-agent 0.19.0, its API server, the
Allegro plugin loaded and sending to the relay, a temporary HERMES_HOME whose model is the fake),
and the real `allegro bridge` with its `hermes:` duty (api_url: the gateway; provider_url: the fake
model, so provide_model_access forwards to it).

1. Sessions (`--sessions` rounds, plus one warm-up round not counted). Each round runs the same kind
   of prompt twice, A then B:
   A. directly against the gateway, as the bridge does it: POST /v1/runs, its SSE
      GET /v1/runs/{id}/events read to the stream's end (Hermes closes it right after run.completed),
      then GET /v1/runs/{id} (the session id);
   B. through Timmy's API on the bridge: POST /v1/hermes/sessions, then
      GET /v1/hermes/sessions/{id}?wait_ms=60000 until the session has ended.
   End-to-end time of each (from sending the first request to having the last answer), and B - A
   paired per round. With `--tool-rounds 0` (the default) the fake model answers the agent's first
   call at once with the final answer (no tool call); with 1, one read_file round first.
2. Model access (`--requests` rounds, plus 3 warm-up rounds not counted): a streaming chat
   completion (`stream: true`, one user message, no tools), A directly to the fake model, B through
   the bridge's /v1/model/chat/completions with a scoped key from provide_model_access. Time from
   sending the request to the first `data:` line whose delta has content (the fake's second chunk:
   its first carries only the role), and to `data: [DONE]`; B - A paired per round. Each request is
   made on a new connection (http.client, no keep-alive on either side: the fake model closes
   every streamed answer's connection, so it could not be kept alive for A), `--gap-ms` apart.

Times are time.perf_counter() in this process. Every HTTP request is http.client on a new
connection, no proxies. The load average is read at the start and at the end. `--smoke`: 2
sessions and 5 requests, no timing claims, exit status 1 if anything failed. Everything started is
stopped by its process (group) id.
"""

import argparse
import http.client
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple, cast

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "tests"))

from conftest import Relay  # noqa: E402
from fake_model import MODEL  # noqa: E402
from hermes_support import HERMES  # noqa: E402
from test_hermes_sessions_e2e import (API_KEY, COMMAND_TOKEN, Gateway, HermesBridgeProcess,  # noqa: E402
                                      stop_group)

FINAL_TEXT = "All done: the notes say hello."
PROVIDER_KEY = "bench-provider-key-" + secrets.token_hex(8)
ENDED = ("completed", "failed", "interrupted")
WARMUP_SESSIONS = 1
WARMUP_REQUESTS = 3


def log(message: str) -> None:
    """Progress, on stderr (stdout is the report)."""
    print("bench_hermes_sessions: " + message, file=sys.stderr, flush=True)


# -- numbers ---------------------------------------------------------------------------------------

def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def fmt(value: float) -> str:
    return "%.2f" % value if abs(value) < 10 else "%.1f" % value


def stat_row(label: str, values: Sequence[float]) -> str:
    if not values:
        return "| %s | 0 | - | - | - | - | - |" % label
    return "| %s | %d | %s | %s | %s | %s | %s |" % (
        label, len(values), fmt(percentile(values, 0.5)), fmt(percentile(values, 0.99)), fmt(max(values)),
        fmt(min(values)), fmt(statistics.mean(values)))


TABLE_HEAD = "| ms | n | p50 | p99 | max | min | mean |\n| --- | --- | --- | --- | --- | --- | --- |"


def paired(a: Sequence[Optional[float]], b: Sequence[Optional[float]]) -> List[float]:
    """B - A of each round where both were measured."""
    return [y - x for x, y in zip(a, b) if x is not None and y is not None]


def present(values: Sequence[Optional[float]]) -> List[float]:
    return [v for v in values if v is not None]


# -- HTTP, one new connection per request ---------------------------------------------------------

def split(url: str) -> Tuple[str, int, str]:
    """http://HOST:PORT/PATH -> (HOST, PORT, /PATH)."""
    rest = url.split("://", 1)[1]
    address, _, path = rest.partition("/")
    host, port = address.rsplit(":", 1)
    return host, int(port), "/" + path


def request(host: str, port: int, method: str, path: str, body: Any = None, token: Optional[str] = None,
            timeout: float = 90) -> Tuple[int, Any]:
    """One request on a new connection: (status, the JSON answer or its text)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        text = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(text) if text else None
    except ValueError:
        return response.status, text.decode(errors="replace")


# -- the fake model, in a process of its own -----------------------------------------------------

MODEL_CHILD = r"""
import json, sys, threading, time
sys.path.insert(0, sys.argv[1])
from fake_model import FakeModel

model = FakeModel(tool_path=sys.argv[2], tool_rounds=int(sys.argv[3]))
model.server.handle_error = lambda request, address: None   # a client gone mid-answer: no traceback
calls = open(sys.argv[4], "a", buffering=1)
lock = threading.Lock()
reply = model._reply

def logged(body):
    user = ""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            user = str(message.get("content"))[:120]
            break
    with lock:
        calls.write(json.dumps({"t": time.time(), "tools": bool(body.get("tools")), "user": user,
                                "stream": bool(body.get("stream")), "messages": len(body.get("messages") or [])}) + "\n")
    return reply(body)

model._reply = logged
print(model.port, flush=True)
sys.stdin.read()            # until the bench closes our stdin (or goes away)
model.close()
"""


class ModelProcess:
    """tests/fake_model.py's FakeModel in a child process (its own process group); every completion
    request it gets is logged to `calls_path` (one JSON line)."""

    def __init__(self, root: Path, tool_path: Path, tool_rounds: int) -> None:
        self.calls_path = root / "model-calls.jsonl"
        self.log_path = root / "model.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", MODEL_CHILD, str(HERE / "tests"), str(tool_path), str(tool_rounds), str(self.calls_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True)
        line = cast(IO[bytes], self.process.stdout).readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError("the fake model did not start: %s" % self.log_path.read_text(errors="replace")[-2000:])
        self.port = int(line)
        self.base_url = "http://127.0.0.1:%d/v1" % self.port

    def calls(self) -> List[Dict[str, Any]]:
        if not self.calls_path.exists():
            return []
        return [json.loads(line) for line in self.calls_path.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        stop_group(cast("subprocess.Popen[bytes]", self.process))
        self._log.close()


# -- 1. sessions -----------------------------------------------------------------------------------

@dataclass
class SessionSample:
    total_ms: Optional[float] = None
    ok: bool = False
    error: str = ""
    parts: Dict[str, float] = field(default_factory=dict)   # A: ms from the start to each step
    bridge_duration_ms: Optional[float] = None               # B: the session's duration_ms, waited_ms
    bridge_waited_ms: Optional[float] = None
    gets: int = 0                                            # B: GETs with wait_ms


def session_direct(gateway_url: str, prompt: str) -> SessionSample:
    """A: what the bridge does, without the bridge."""
    host, port, _ = split(gateway_url)
    sample = SessionSample()
    started = time.perf_counter()

    def mark(name: str) -> None:
        sample.parts[name] = (time.perf_counter() - started) * 1000

    status, answer = request(host, port, "POST", "/v1/runs", {"input": prompt}, API_KEY)
    mark("started")
    if status not in (200, 202) or not isinstance(answer, dict) or not answer.get("run_id"):
        sample.error = "POST /v1/runs answered %s %r" % (status, answer)
        return sample
    run_id = str(answer["run_id"])
    connection = http.client.HTTPConnection(host, port, timeout=90)
    completed: Optional[Dict[str, Any]] = None
    try:
        connection.request("GET", "/v1/runs/%s/events" % run_id,
                           headers={"Authorization": "Bearer " + API_KEY, "Accept": "text/event-stream"})
        response = connection.getresponse()
        if response.status != 200:
            sample.error = "GET events answered %d" % response.status
            return sample
        data: List[bytes] = []
        while True:
            line = response.readline()
            if not line:
                break
            line = line.rstrip(b"\r\n")
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
            elif not line and data:
                event = json.loads(b"\n".join(data))
                data = []
                if event.get("event") in ("run.completed", "run.failed", "run.cancelled"):
                    completed = event
                    mark("run_event")
    finally:
        connection.close()
    mark("stream_end")
    status, run = request(host, port, "GET", "/v1/runs/%s" % run_id, token=API_KEY)
    sample.total_ms = (time.perf_counter() - started) * 1000
    if completed is None or completed.get("event") != "run.completed":
        sample.error = "the run ended with %r" % (completed,)
    elif completed.get("output") != FINAL_TEXT:
        sample.error = "the answer was %r" % completed.get("output")
    elif status != 200 or not isinstance(run, dict) or run.get("status") != "completed" or not run.get("session_id"):
        sample.error = "GET /v1/runs/{id} answered %s %r" % (status, run)
    else:
        sample.ok = True
    return sample


def session_bridge(bridge_url: str, prompt: str, operation: str) -> SessionSample:
    """B: Timmy's run_session, as HermesBridge.run_session makes it (raw)."""
    host, port, _ = split(bridge_url)
    sample = SessionSample()
    started = time.perf_counter()
    status, session = request(host, port, "POST", "/v1/hermes/sessions",
                              {"operation_id": operation, "prompt": prompt, "model": ""}, COMMAND_TOKEN)
    if status != 200 or not isinstance(session, dict):
        sample.error = "POST /v1/hermes/sessions answered %s %r" % (status, session)
        return sample
    while session.get("state") not in ENDED:
        status, session = request(host, port, "GET", "/v1/hermes/sessions/%s?wait_ms=60000" % operation,
                                  token=COMMAND_TOKEN)
        sample.gets += 1
        if status != 200 or not isinstance(session, dict):
            sample.error = "GET /v1/hermes/sessions/{id} answered %s %r" % (status, session)
            return sample
        if sample.gets > 10:
            sample.error = "still %s after 10 minutes" % session.get("state")
            return sample
    sample.total_ms = (time.perf_counter() - started) * 1000
    sample.bridge_duration_ms = session.get("duration_ms")
    sample.bridge_waited_ms = session.get("waited_ms")
    if session.get("state") != "completed":
        sample.error = "the session ended %s: %s" % (session.get("state"), session.get("error"))
    elif session.get("answer") != FINAL_TEXT:
        sample.error = "the answer was %r" % session.get("answer")
    elif not session.get("session_id") or not session.get("run_id"):
        sample.error = "no session or run id: %r" % session
    else:
        sample.ok = True
    return sample


# -- 2. model access -------------------------------------------------------------------------------

@dataclass
class StreamSample:
    first_ms: Optional[float] = None
    done_ms: Optional[float] = None
    ok: bool = False
    error: str = ""


def first_token(url: str, key: str, body: bytes) -> StreamSample:
    """One streamed chat completion on a new connection: ms to the first content chunk and to [DONE]."""
    host, port, path = split(url)
    sample = StreamSample()
    text: List[str] = []
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers={
            "Authorization": "Bearer " + key, "Content-Type": "application/json", "Accept": "text/event-stream"})
        response = connection.getresponse()
        if response.status != 200:
            sample.error = "answered %d: %r" % (response.status, response.read()[:300])
            return sample
        while True:
            line = response.readline()
            if not line:
                break
            if not line.startswith(b"data:"):
                continue
            value = line[5:].strip()
            if value == b"[DONE]":
                sample.done_ms = (time.perf_counter() - started) * 1000
                break
            chunk = json.loads(value)
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    if sample.first_ms is None:
                        sample.first_ms = (time.perf_counter() - started) * 1000
                    text.append(content)
    except (OSError, http.client.HTTPException, ValueError) as error:
        sample.error = "%s: %s" % (type(error).__name__, error)
        return sample
    finally:
        connection.close()
    if sample.done_ms is None:
        sample.error = "no data: [DONE]"
    elif "".join(text) != FINAL_TEXT:
        sample.error = "the answer was %r" % "".join(text)
    else:
        sample.ok = True
    return sample


# -- the run ---------------------------------------------------------------------------------------

def build_note(binary: str) -> str:
    """The binary's modification time and the repository's HEAD (and whether Sources differ from it)."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(binary)))
    root = HERE.parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "Sources", "Package.swift"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "release binary of %s" % when
    return "release binary of %s, HEAD `%s`%s" % (when, head, " (Sources differ from HEAD)" if dirty else "")


def hermes_version() -> str:
    try:
        from importlib.metadata import version
        return "hermes-agent " + version("hermes-agent")
    except Exception:  # noqa: BLE001 - only a label
        return "hermes-agent (version unknown)"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--allegro", default=os.environ.get("ALLEGRO_BIN", ".build/release/allegro"))
    parser.add_argument("--sessions", type=int, default=20, help="session rounds (A and B each), after one warm-up")
    parser.add_argument("--requests", type=int, default=200, help="model request rounds (A and B each), after 3 warm-up")
    parser.add_argument("--tool-rounds", type=int, choices=(0, 1), default=0,
                        help="0: the fake model answers at once; 1: one read_file round first")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="pause between two model requests")
    parser.add_argument("--smoke", action="store_true", help="2 sessions, 5 requests, no timing claims; exit 1 on any failure")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    if args.smoke:
        args.sessions, args.requests = 2, 5
    if args.sessions < 1 or args.requests < 1:
        parser.error("--sessions and --requests: at least 1")
    return args


def command_line(args: argparse.Namespace) -> str:
    shown = [".venv/bin/python", "protocol/python/bench_hermes_sessions.py", "--allegro", args.allegro_shown]
    if args.smoke:
        return " ".join(shown + ["--smoke"])
    if args.sessions != 20:
        shown += ["--sessions", str(args.sessions)]
    if args.requests != 200:
        shown += ["--requests", str(args.requests)]
    if args.tool_rounds:
        shown += ["--tool-rounds", str(args.tool_rounds)]
    if args.gap_ms != 20.0:
        shown += ["--gap-ms", "%g" % args.gap_ms]
    return " ".join(shown)


def main() -> int:
    args = parse_args()
    args.allegro_shown = args.allegro
    binary = os.path.abspath(args.allegro)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        sys.exit("bench_hermes_sessions: no allegro binary at %s (build it, or give --allegro PATH)" % binary)
    if not HERMES.exists():
        sys.exit("bench_hermes_sessions: no hermes beside %s (scripts/test installs hermes-agent==0.19.0 into .venv)"
                 % sys.executable)
    started_at = time.gmtime()
    load_start = os.getloadavg()
    log("load average at start: %.2f %.2f %.2f" % load_start)
    root = Path(tempfile.mkdtemp(prefix="bench-hermes-sessions-"))
    failures: List[str] = []
    a_sessions: List[SessionSample] = []
    b_sessions: List[SessionSample] = []
    a_streams: List[StreamSample] = []
    b_streams: List[StreamSample] = []
    calls_per_session: Dict[str, List[int]] = {"A": [], "B": []}
    try:
        with ExitStack() as exits:
            work = root / "work"
            work.mkdir(parents=True)
            model = ModelProcess(root, work / "notes.txt", args.tool_rounds)
            exits.callback(model.stop)
            (root / "relay").mkdir()
            relay = Relay(binary, root / "relay" / "data", extra=["--set", "daily_report_at=off"])
            exits.callback(relay.stop)
            log("starting hermes gateway run ...")
            gateway = Gateway(root, cast(Any, model), relay).start()
            exits.callback(gateway.stop)
            bridge = HermesBridgeProcess(binary, root / "bridge", relay, gateway, provider_url=model.base_url,
                                         provider_models=[MODEL])
            bridge.env["ALLEGRO_HERMES_PROVIDER_KEY"] = PROVIDER_KEY
            bridge.start()
            exits.callback(lambda: stop_group(cast("subprocess.Popen[bytes]", bridge.process)))
            log("gateway %s, bridge %s, fake model %s" % (gateway.url, bridge.url, model.base_url))

            # 1. sessions, A then B each round.
            tag = secrets.token_hex(3)
            for number in range(-WARMUP_SESSIONS, args.sessions):
                label = "warm-up" if number < 0 else str(number + 1)
                for side in ("A", "B"):
                    prompt = "Say hello. #bench-%s-%s-%s" % (tag, side.lower(), label)
                    before = len(model.calls())
                    if side == "A":
                        sample = session_direct(gateway.url, prompt)
                    else:
                        sample = session_bridge(bridge.url, prompt, "bench-%s-%s" % (tag, label))
                    after = model.calls()[before:]
                    if not sample.ok:
                        failures.append("session %s %s: %s" % (side, label, sample.error))
                    if number >= 0:
                        (a_sessions if side == "A" else b_sessions).append(sample)
                        calls_per_session[side].append(len(after))
                log("session round %s: A %s ms, B %s ms" % (label, fmt(a_sessions[-1].total_ms or -1) if number >= 0 else "-",
                                                             fmt(b_sessions[-1].total_ms or -1) if number >= 0 else "-"))
                if bridge.died() or gateway.process is None or gateway.process.poll() is not None:
                    raise RuntimeError("the bridge or the gateway exited; bridge log:\n" + bridge.output()[-3000:])

            # 2. model access: a scoped key, then A, B each round.
            status, endpoint = request(*split(bridge.url)[:2], "POST", "/v1/hermes/model-access",
                                       {"model": MODEL, "ttl_ms": ""}, COMMAND_TOKEN)
            if status != 200 or not isinstance(endpoint, dict) or not endpoint.get("key"):
                raise RuntimeError("provide_model_access answered %s %r" % (status, endpoint))
            if not str(endpoint.get("base_url", "")).endswith("/v1/model"):
                failures.append("provide_model_access gave base_url %r" % endpoint.get("base_url"))
            # The base URL the bridge hands out is built from bridge.http (here 127.0.0.1:0, a port
            # picked at start), so the bench reaches the endpoint at the address the bridge logged.
            direct_url = model.base_url + "/chat/completions"
            bridge_model_url = bridge.url + "/v1/model/chat/completions"
            for number in range(-WARMUP_REQUESTS, args.requests):
                for side in ("A", "B"):
                    body = json.dumps({"model": MODEL, "stream": True, "messages": [
                        {"role": "user", "content": "Say hello. #m-%s-%d" % (side.lower(), number)}]}).encode()
                    stream = (first_token(direct_url, "test-key", body) if side == "A"
                              else first_token(bridge_model_url, str(endpoint["key"]), body))
                    if not stream.ok:
                        failures.append("model %s %d: %s" % (side, number, stream.error))
                    if number >= 0:
                        (a_streams if side == "A" else b_streams).append(stream)
                    time.sleep(args.gap_ms / 1000)
                if number >= 0 and (number + 1) % 50 == 0:
                    log("model rounds: %d" % (number + 1))
            if bridge.died():
                raise RuntimeError("the bridge exited; its log:\n" + bridge.output()[-3000:])
            _, keys = request(*split(bridge.url)[:2], "GET", "/v1/hermes/model-access", token=COMMAND_TOKEN)
            counted = next((k for k in (keys or {}).get("keys", []) if k.get("key_id") == endpoint.get("key_id")), {})
            expected = args.requests + WARMUP_REQUESTS
            if counted.get("requests") != expected:
                failures.append("the key counted %r requests, not %d" % (counted.get("requests"), expected))
    finally:
        load_end = os.getloadavg()
        if args.keep:
            log("kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)

    report(args, started_at, load_start, load_end, binary, a_sessions, b_sessions, a_streams, b_streams,
           calls_per_session, failures)
    return 1 if failures else 0


def report(args: argparse.Namespace, started_at: time.struct_time, load_start: Tuple[float, float, float],
           load_end: Tuple[float, float, float], binary: str, a_sessions: List[SessionSample],
           b_sessions: List[SessionSample], a_streams: List[StreamSample], b_streams: List[StreamSample],
           calls_per_session: Dict[str, List[int]], failures: List[str]) -> None:
    date = time.strftime("%Y-%m-%d %H:%M UTC", started_at)
    out: List[str] = []
    out.append("## Hermes sessions and model access (issue 21; %s)%s\n" % (date, " — smoke" if args.smoke else ""))
    out.append("    " + command_line(args) + "\n")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?") \
        if os.path.exists("/proc/cpuinfo") else "?"
    prompt_kind = ("the fake model answers the agent's first call at once with the final answer (no tool call)"
                   if args.tool_rounds == 0 else "one read_file tool round, then the final answer")
    out.append(
        "`protocol/python/bench_hermes_sessions.py`, %s; %s (`hermes gateway run`, its API server, the Allegro "
        "plugin sending to a relay); the fake model of `tests/fake_model.py` in a process of its own: %s. "
        "Loopback, %d cores (%s, kernel %s), load average %.2f / %.2f / %.2f at the start, %.2f / %.2f / %.2f at the "
        "end. Rounds interleaved A, B, A, B ... after %d warm-up round(s) of sessions and %d of requests, not counted. "
        "Every request on a new connection (http.client), for A and B alike.%s\n" % (
            build_note(binary), hermes_version(), prompt_kind, os.cpu_count() or 0, cpu, platform.release(),
            *load_start, *load_end, WARMUP_SESSIONS, WARMUP_REQUESTS,
            " Smoke run: the figures below are not timing claims." if args.smoke else ""))

    a_total = [s.total_ms for s in a_sessions]
    b_total = [s.total_ms for s in b_sessions]
    out.append("**run_session against Hermes directly**, end to end, %d sessions each:\n" % len(a_sessions))
    out.append(TABLE_HEAD)
    out.append(stat_row("A: Hermes directly (POST /v1/runs, its events to the end, GET /v1/runs/{id})", present(a_total)))
    out.append(stat_row("B: the bridge (POST /v1/hermes/sessions, GET ...?wait_ms=60000 until ended)", present(b_total)))
    out.append(stat_row("**B - A, paired per round**", paired(a_total, b_total)))
    out.append(stat_row("B: the bridge's own duration_ms (its run's start to its end)",
                        present([s.bridge_duration_ms for s in b_sessions])))
    out.append(stat_row("B minus its duration_ms (Timmy's two calls, the queue, the wake-up)",
                        [s.total_ms - s.bridge_duration_ms for s in b_sessions
                         if s.total_ms is not None and s.bridge_duration_ms is not None]))
    for name, label in (("started", "A: POST /v1/runs answered"), ("run_event", "A: run.completed arrived"),
                        ("stream_end", "A: the event stream ended")):
        out.append(stat_row(label, [s.parts[name] for s in a_sessions if name in s.parts]))
    out.append("")

    a_first = [s.first_ms for s in a_streams]
    b_first = [s.first_ms for s in b_streams]
    a_done = [s.done_ms for s in a_streams]
    b_done = [s.done_ms for s in b_streams]
    out.append("**Model access, time to the first token**, streamed chat completion, %d requests each:\n" % len(a_streams))
    out.append(TABLE_HEAD)
    out.append(stat_row("A: the fake model directly, to the first content chunk", present(a_first)))
    out.append(stat_row("B: the bridge's /v1/model (scoped key), to the first content chunk", present(b_first)))
    out.append(stat_row("**B - A, paired per round, first token**", paired(a_first, b_first)))
    out.append(stat_row("A: to `data: [DONE]`", present(a_done)))
    out.append(stat_row("B: to `data: [DONE]`", present(b_done)))
    out.append(stat_row("B - A, paired, to `[DONE]`", paired(a_done, b_done)))
    out.append("")

    if not args.smoke:
        out.append(reading(a_sessions, b_sessions, a_streams, b_streams, calls_per_session))
    out.append("Model calls per session (the fake's log): A %s, B %s." % (
        "/".join(str(n) for n in sorted(set(calls_per_session["A"]))) or "-",
        "/".join(str(n) for n in sorted(set(calls_per_session["B"]))) or "-"))
    b_gets = sorted(set(s.gets for s in b_sessions))
    out.append("GETs with wait_ms per B session: %s." % ("/".join(str(n) for n in b_gets) or "-"))
    if failures:
        out.append("\n**Failures (%d)**:\n" % len(failures) + "\n".join("- " + f for f in failures[:20]))
    else:
        out.append("\nFailures: none (every session completed with the fake's answer, every stream carried the whole "
                   "answer and `[DONE]`, the key counted every request).")
    print("\n".join(out), flush=True)


def reading(a_sessions: List[SessionSample], b_sessions: List[SessionSample], a_streams: List[StreamSample],
            b_streams: List[StreamSample], calls_per_session: Dict[str, List[int]]) -> str:
    """The reading: what the bridge does that A does not, with this run's figures."""
    a_total = [s.total_ms for s in a_sessions]
    diff = paired(a_total, [s.total_ms for s in b_sessions])
    durations = present([s.bridge_duration_ms for s in b_sessions])
    outside = [s.total_ms - s.bridge_duration_ms for s in b_sessions
               if s.total_ms is not None and s.bridge_duration_ms is not None]
    first = paired([s.first_ms for s in a_streams], [s.first_ms for s in b_streams])
    a_first = present([s.first_ms for s in a_streams])
    lines = ["What B adds, read from `HermesSessions.swift`, `HermesAPIClient.swift`, `HermesRoutes.swift` and "
             "`ModelProxy.swift` (not changed here):", ""]
    if diff and durations and outside:
        lines.append(
            "- **Sessions**: B - A p50 %s ms, mean %s ms, on sessions whose own time is Hermes' (A p50 %s ms with a "
            "model that answers in about 1 ms; %s model call(s) per session). Inside the bridge, its run (POST "
            "/v1/runs; a GET /v1/runs/{id} at once for the session id, which A does not make; the SSE events read "
            "byte by byte, one JSONSerialization per event; GET /v1/runs/{id} after the stream ends) took p50 %s ms "
            "(`duration_ms`, whole ms): level with A, so the extra status call (made while Hermes runs; its events "
            "wait in Hermes' queue meanwhile) and the SSE parsing cost nothing this run can see. The difference is "
            "outside the run: B minus `duration_ms` is mean %s ms (min %s, max %s): Timmy's POST and GET to the "
            "bridge (a new connection each), the queue's `pump()` starting the run in a new Task, the answer's "
            "JSON, and the rounding of `duration_ms` to whole ms. The GET that waits is woken when the session "
            "ends (`HermesSessions.wait`, a continuation per waiter; an earlier build looked every 25 ms and "
            "added 12 ms on average). Against sessions "
            "that last seconds to minutes it is noise. The tail of B - A (p99 %s ms, min %s ms) is Hermes' own spread "
            "from run to run, not the bridge's: A alone ranged %s to %s ms, the bridge's `duration_ms` %s to %s ms." % (
                fmt(percentile(diff, 0.5)), fmt(statistics.mean(diff)), fmt(percentile(present(a_total), 0.5)),
                "/".join(str(n) for n in sorted(set(calls_per_session["A"] + calls_per_session["B"]))) or "?",
                fmt(percentile(durations, 0.5)), fmt(statistics.mean(outside)), fmt(min(outside)), fmt(max(outside)),
                fmt(percentile(diff, 0.99)), fmt(min(diff)), fmt(min(present(a_total))), fmt(max(present(a_total))),
                fmt(min(durations)), fmt(max(durations))))
    if first and a_first:
        lines.append(
            "- **Model access**: B - A at the first token p50 %s ms, p99 %s ms, max %s ms (A, the fake itself: p50 "
            "%s ms). Per request the bridge accepts the connection (Hummingbird), checks the key (its SHA-256, a "
            "SQLite read of `bridge.sqlite`), parses and re-serializes the body (adding "
            "`stream_options.include_usage`), opens a new connection to the provider (the fake closes every "
            "streamed answer's connection, so AsyncHTTPClient cannot reuse one; a real provider over a kept-alive "
            "TLS connection would change this part), and passes each chunk on as it arrives (chunked encoding), "
            "scanning it for the usage line. Counting the usage (a SQLite write and an `allegro.model_usage` record "
            "for the relay) comes after the last chunk, outside both timings. Not broken down further (no "
            "profile)." % (fmt(percentile(first, 0.5)), fmt(percentile(first, 0.99)), fmt(max(first)),
                           fmt(percentile(a_first, 0.5))))
    lines.append("- Percentiles are nearest rank: with %d sessions the p99 is the max, so the session p99s are the "
                 "worst of a small sample." % len(diff))
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
