"""The Hermes plugin's costs: what a hook call costs the agent's thread, and hook-to-collector lag.

    python3 protocol/python/bench_hermes.py --allegro .build/release/allegro [--calls 5000] [--sessions 10]

1. Cost per hook call: the plugin registered in this process (as Hermes does), sending to a real
   relay, each observer hook called `--calls` times with arguments the size of a real session's
   (the sender thread runs meanwhile, as it does in Hermes). Reported per hook: mean, p50, p99
   microseconds of the call itself. Turn end (`on_session_end`) is reported apart: it waits for
   the relay's acknowledgement by design (the flush).
2. Lag: `--sessions` real `hermes chat -q` sessions (the `hermes` beside this Python, the fake model
   of tests/fake_model.py, one tool call each) through a real relay; two collectors subscribed
   while they run, one live (records as the relay accepts them) and one durable (records once
   fsync'd, what Timmy's named collector gets). Lag = collector receive time - the event's time
   (taken in the hook). Also the hook-to-relay hop (relay ingest time - event time).
"""

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "tests"))


def percentile(values: List[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def start_relay(binary: str, data: Path, *extra: str) -> Tuple[subprocess.Popen, str]:
    log = data.parent / "relay.log"
    process = subprocess.Popen([binary, "relay", "--listen", "127.0.0.1:0", "--http", "off", "--data", str(data)]
                               + list(extra), stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if "event=listening" in line:
                address = [part for part in line.split() if part.startswith("address=")][0].split("=", 1)[1]
                return process, address
        time.sleep(0.01)
    process.kill()
    raise RuntimeError("the relay did not start: " + log.read_text())


# -- a minimal collector (PROTOCOL.md sections 3 and 5), receive times taken on arrival ---------

class LagCollector(threading.Thread):
    def __init__(self, address: str, live: bool) -> None:
        super().__init__(daemon=True)
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = b"bench-lag-live" if live else b"bench-lag-durable"
        hello = b"ALGR" + struct.pack("<HHBB", 1, 1, 2, 0) + bytes([len(client)]) + client + struct.pack("<H", 0)
        subscribe = struct.pack("<BBHQI", 1, 1 if live else 0, 0, 0, 1 << 30) + b"\x00"
        self.sock.sendall(self._frame(0x01, hello) + self._frame(0x20, subscribe))
        self.records: List[Tuple[int, int, int, str]] = []   # (received ns, event ns, ingest ns, kind)
        self.buffer = bytearray()
        self.stop = False

    @staticmethod
    def _frame(frame_type: int, body: bytes) -> bytes:
        return struct.pack("<IB", len(body) + 1, frame_type) + body

    def run(self) -> None:
        while not self.stop:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                return
            received = time.time_ns()
            if not data:
                return
            self.buffer += data
            while len(self.buffer) >= 5:
                (length,) = struct.unpack_from("<I", self.buffer)
                if len(self.buffer) < 4 + length:
                    break
                frame_type, body = self.buffer[4], bytes(self.buffer[5:4 + length])
                del self.buffer[:4 + length]
                if frame_type == 0x22:       # DELIVER
                    (count,) = struct.unpack_from("<I", body)
                    offset = 4
                    for _ in range(count):
                        _, ingest, _, event, payload_length, p, s, k, c = struct.unpack_from("<QQQQIBBBB", body, offset)
                        offset += 40
                        kind = body[offset + p + s:offset + p + s + k].decode()
                        offset += p + s + k + c + payload_length
                        self.records.append((received, event, ingest, kind))
                elif frame_type == 0x30:     # PING
                    self.sock.sendall(self._frame(0x31, body))
                elif frame_type == 0x3F:
                    print("collector: relay error", body[4:].decode(errors="replace"), file=sys.stderr)
                    return


# -- 1. cost per hook call -----------------------------------------------------------------------

def hook_arguments() -> List[Tuple[str, Dict[str, Any]]]:
    session, turn = "20261203_063743_d74072", "20261203_063743_d74072:task:turn"
    system = "You are Hermes Agent, an intelligent AI assistant. " * 110          # about 5.7 KB
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Read notes.txt"}]
    tools = [{"type": "function", "function": {"name": "tool_%d" % i, "description": "d" * 400,
                                               "parameters": {"type": "object", "properties": {
                                                   "path": {"type": "string", "description": "p" * 200}}}}}
             for i in range(20)]
    request = {"method": "POST", "body": {"model": "fake-model", "messages": messages, "tools": tools, "stream": True}}
    history = messages * 3
    usage = {"input_tokens": 1187, "output_tokens": 7, "cache_read_tokens": 0, "cache_write_tokens": 0,
             "reasoning_tokens": 0, "prompt_tokens": 1187, "total_tokens": 1194}
    common = dict(task_id="task", turn_id=turn, session_id=session)
    api = dict(common, api_request_id=turn + ":api:1", platform="cli", model="fake-model", provider="custom",
               base_url="http://127.0.0.1:1/v1", api_mode="chat_completions", api_call_count=1)
    return [
        ("on_session_start", dict(session_id=session, model="fake-model", platform="cli")),
        ("pre_llm_call", dict(common, user_message="Read notes.txt", conversation_history=history, is_first_turn=True,
                              model="fake-model", platform="cli", sender_id="")),
        ("pre_api_request", dict(api, user_message="Read notes.txt", conversation_history=history,
                                 request_messages=history, message_count=2, tool_count=20, approx_input_tokens=1500,
                                 request_char_count=6000, max_tokens=None, started_at=1.0, middleware_trace=[],
                                 request=request)),
        ("post_api_request", dict(api, api_duration=0.4, started_at=1.0, ended_at=1.4, finish_reason="tool_calls",
                                  message_count=2, response_model="fake-model",
                                  response={"model": "fake-model", "finish_reason": "tool_calls",
                                            "assistant_message": {"role": "assistant", "content": "",
                                                                  "tool_calls": [{"id": "call_1", "type": "function",
                                                                                  "function": {"name": "read_file",
                                                                                               "arguments": "{}"}}]},
                                            "usage": usage},
                                  usage=usage, assistant_message=object(), assistant_content_chars=0,
                                  assistant_tool_call_count=1)),
        ("pre_tool_call", dict(common, tool_name="read_file", args={"path": "/tmp/work/notes.txt"},
                               tool_call_id="call_1", api_request_id=turn + ":api:1", middleware_trace=[])),
        ("post_tool_call", dict(common, tool_name="read_file", args={"path": "/tmp/work/notes.txt"},
                                result='{"content": "1|hello from the notes file\\n", "total_lines": 1}',
                                tool_call_id="call_1", api_request_id=turn + ":api:1", duration_ms=12, status="ok",
                                error_type=None, error_message=None, middleware_trace=[])),
        ("post_llm_call", dict(common, user_message="Read notes.txt", assistant_response="All done.",
                               conversation_history=history, model="fake-model", platform="cli")),
    ]


def bench_hooks(binary: str, work: Path, calls: int) -> None:
    relay, address = start_relay(binary, work / "hooks" / "data")
    try:
        os.environ["ALLEGRO_RELAYS"] = address
        os.environ["ALLEGRO_PRODUCER_ID"] = "bench-hooks"
        from allegro_client import hermes_plugin

        class Context:
            hooks: Dict[str, Any] = {}

            def register_hook(self, name: str, callback: Any) -> None:
                self.hooks[name] = callback

        context = Context()
        hermes_plugin.register(context)
        target = hermes_plugin.producer()
        target.emit({"warm": True})
        target.flush(10)
        sparse_calls = min(calls, 500)
        print("cost per hook call (µs), plugin sending to a real relay meanwhile: %d calls back to back (queued,"
              " batched by the sender thread), and %d calls 2 ms apart (as in a session: each sent at once from"
              " the hook, one send() call)" % (calls, sparse_calls))
        print("| hook | event bytes | back to back: mean | p50 | p99 | 2 ms apart: mean | p50 | p99 |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for hook, kwargs in hook_arguments():
            callback = context.hooks[hook]
            size = len(json.dumps(hermes_plugin.event_records(hook, kwargs)[0][2], default=repr))
            row = []
            for count, gap in ((calls, 0.0), (sparse_calls, 0.002)):
                times = []
                for _ in range(count):
                    if gap:
                        time.sleep(gap)
                    started = time.perf_counter_ns()
                    callback(**kwargs)
                    times.append((time.perf_counter_ns() - started) / 1000)
                target.flush(30)
                row += [statistics.mean(times), percentile(times, 0.5), percentile(times, 0.99)]
            print("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |" % tuple([hook, size] + row))
        turn_end = context.hooks["on_session_end"]
        times = []
        tool_call = hook_arguments()[4][1]
        for _ in range(200):
            time.sleep(0.02)                 # turns end seconds apart: the relay's disk is idle
            context.hooks["pre_tool_call"](**tool_call)
            started = time.perf_counter_ns()
            turn_end(session_id="s", completed=True, interrupted=False, model="fake-model", platform="cli")
            times.append((time.perf_counter_ns() - started) / 1000)
        print("turn end (on_session_end after one event, 20 ms apart; waits for the relay's ACK, i.e. its fsync):"
              " mean %.0f µs, p50 %.0f µs, p99 %.0f µs" % (statistics.mean(times), percentile(times, 0.5),
                                                           percentile(times, 0.99)))
        print("plugin stats:", hermes_plugin.stats())
        target.close(10)
    finally:
        relay.terminate()
        relay.wait(20)


# -- 2. hook-to-collector lag for real sessions --------------------------------------------------

def bench_lag(binary: str, work: Path, sessions: int) -> None:
    from fake_model import FakeModel
    from hermes_support import HERMES, hermes_env, make_home

    if not HERMES.exists():
        print("lag: skipped, no hermes beside %s" % sys.executable)
        return
    relay, address = start_relay(binary, work / "lag" / "data")
    live, durable = LagCollector(address, True), LagCollector(address, False)
    live.start()
    durable.start()
    (work / "w").mkdir()
    (work / "w" / "notes.txt").write_text("hello from the notes file\n")
    model = FakeModel(tool_path=str(work / "w" / "notes.txt"))
    try:
        time.sleep(0.3)
        home = make_home(work, model.base_url)
        for index in range(sessions):
            env = hermes_env(home, [address], "bench-hermes-%d" % index)
            result = subprocess.run([str(HERMES), "chat", "-Q", "-t", "file", "-q", "Read notes.txt"], env=env,
                                    cwd=str(work / "w"), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                    timeout=120)
            if result.returncode != 0:
                print("session %d failed: %s" % (index, result.stderr[-2000:]))
        time.sleep(1.0)
        print("hook-to-collector lag, %d real `hermes chat -q` sessions (%d events):" % (sessions, len(live.records)))
        print("| path | p50 ms | p99 ms | max ms |")
        print("| --- | --- | --- | --- |")
        hop = [(ingest - event) / 1e6 for _, event, ingest, _ in live.records]
        print("| hook to relay ingest | %.3f | %.3f | %.3f |" % (percentile(hop, 0.5), percentile(hop, 0.99), max(hop)))
        slowest = sorted(live.records, key=lambda r: r[2] - r[1])[-8:]
        print("slowest hook-to-ingest:", ", ".join("%s %.2f ms" % (r[3], (r[2] - r[1]) / 1e6) for r in slowest))
        for name, collector in (("live collector", live), ("durable collector (fsync'd)", durable)):
            lags = [(received - event) / 1e6 for received, event, _, _ in collector.records]
            print("| hook to %s | %.3f | %.3f | %.3f |" % (name, percentile(lags, 0.5), percentile(lags, 0.99),
                                                         max(lags)))
    finally:
        live.stop = durable.stop = True
        model.close()
        relay.terminate()
        relay.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allegro", default=os.environ.get("ALLEGRO_BIN", ".build/release/allegro"))
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        work = Path(root)
        (work / "hooks").mkdir()
        (work / "lag").mkdir()
        bench_hooks(args.allegro, work, args.calls)
        bench_lag(args.allegro, work, args.sessions)


if __name__ == "__main__":
    main()
