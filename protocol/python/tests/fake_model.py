"""A small OpenAI-compatible chat-completions server for the Hermes end-to-end tests (stdlib only).

It answers `POST /v1/chat/completions` by streaming SSE chunks, deciding from the request itself (not
from a call counter, so auxiliary calls Hermes may make cannot shift the script):

- the conversation's last message is a tool result and fewer than `tool_rounds` tool calls were made
  since the last user message: call the tool again;
- otherwise, when the last message is the user's: call the tool (`read_file` on `tool_path`);
- otherwise: a final answer, `final_text`.

`filler_bytes` pads every assistant message with that much text, so a conversation's history grows
fast. `fail_status` makes every completion fail with that HTTP status (an `api_request_error` for
Hermes; `fail_message` is its message). `hold_call=N` holds the Nth completion until `release` is set
(`held` is set when it arrives), so a test can act while Hermes waits for the model. `GET /v1/models`
lists the one model. Every completion request body is kept in `requests` and its headers (names in
lower case) in `headers`, other paths in `other_paths`; `answered` keeps the monotonic time each
completion's answer was written to the end. A streamed answer's content goes in chunks of
`chunk_bytes`, with `chunk_delay` seconds between two chunks (to see a proxy pass them on as they
come). Binds 127.0.0.1 only.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

MODEL = "fake-model"


class FakeModel:
    def __init__(self, *, tool_path: str, tool_rounds: int = 1, final_text: str = "All done: the notes say hello.",
                 filler_bytes: int = 0, fail_status: Optional[int] = None, hold_call: Optional[int] = None,
                 hold_timeout: float = 60.0, fail_message: str = "the fake model is failing on purpose",
                 chunk_bytes: int = 4096, chunk_delay: float = 0.0) -> None:
        self.tool_path = tool_path
        self.tool_rounds = tool_rounds
        self.final_text = final_text
        self.filler_bytes = filler_bytes
        self.fail_status = fail_status
        self.fail_message = fail_message
        self.chunk_bytes = max(1, chunk_bytes)
        self.chunk_delay = chunk_delay
        self.requests: List[Dict[str, Any]] = []
        self.headers: List[Dict[str, str]] = []
        self.answered: List[float] = []
        self.other_paths: List[str] = []
        self.hold_call = hold_call
        self.hold_timeout = hold_timeout
        self.held = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.calls = 0
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = "http://127.0.0.1:%d/v1" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="fake-model", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    # -- the script -------------------------------------------------------------------------

    def _reply(self, body: Dict[str, Any]) -> Dict[str, Any]:
        """{"content": str, "tool_call": (name, arguments) or None} for one request."""
        messages = body.get("messages") or []
        rounds = 0
        for message in reversed(messages):
            role = message.get("role")
            if role == "user":
                break
            if role == "assistant" and message.get("tool_calls"):
                rounds += 1
        last = messages[-1].get("role") if messages else "user"
        filler = ("lorem ipsum " * (self.filler_bytes // 12 + 1))[:self.filler_bytes]
        tool_names = {((t or {}).get("function") or {}).get("name") for t in body.get("tools") or []}
        if last in ("user", "tool") and rounds < self.tool_rounds and "read_file" in tool_names:
            return {"content": filler, "tool_call": ("read_file", {"path": self.tool_path})}
        return {"content": self.final_text + ((" " + filler) if filler else ""), "tool_call": None}

    def _handler(self) -> type:
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _json(self, status: int, value: Any) -> None:
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [
                        {"id": MODEL, "object": "model", "created": 0, "owned_by": "test", "context_length": 131072}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    with model.lock:
                        model.other_paths.append(self.path)
                    self._json(404, {"error": {"message": "not found"}})
                    return
                with model.lock:
                    model.requests.append(body)
                    model.headers.append({name.lower(): value for name, value in self.headers.items()})
                    model.calls += 1
                    number = model.calls
                if number == model.hold_call:
                    model.held.set()
                    model.release.wait(model.hold_timeout)
                if model.fail_status is not None:
                    self._json(model.fail_status, {"error": {"message": model.fail_message,
                                                             "type": "invalid_request_error", "code": "fake_failure"}})
                    return
                reply = model._reply(body)
                if body.get("stream"):
                    self._stream(number, body, reply)
                else:
                    self._whole(number, reply)
                with model.lock:
                    model.answered.append(time.monotonic())

            def _chunk(self, number: int, delta: Dict[str, Any], finish: Optional[str] = None,
                       usage: Optional[Dict[str, int]] = None) -> bytes:
                value: Dict[str, Any] = {"id": "chatcmpl-%d" % number, "object": "chat.completion.chunk",
                                         "created": int(time.time()), "model": MODEL,
                                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                if usage is not None:
                    value["usage"] = usage
                    value["choices"] = []
                return b"data: " + json.dumps(value).encode() + b"\n\n"

            def _stream(self, number: int, body: Dict[str, Any], reply: Dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                chunks = [self._chunk(number, {"role": "assistant", "content": ""})]
                content = reply["content"]
                size = model.chunk_bytes
                for start in range(0, len(content), size):
                    chunks.append(self._chunk(number, {"content": content[start:start + size]}))
                if reply["tool_call"] is not None:
                    name, arguments = reply["tool_call"]
                    call = {"index": 0, "id": "call_%d" % number, "type": "function",
                            "function": {"name": name, "arguments": json.dumps(arguments)}}
                    chunks.append(self._chunk(number, {"tool_calls": [call]}))
                    chunks.append(self._chunk(number, {}, "tool_calls"))
                else:
                    chunks.append(self._chunk(number, {}, "stop"))
                prompt = sum(len(json.dumps(m)) for m in body.get("messages") or []) // 4
                chunks.append(self._chunk(number, {}, None, {"prompt_tokens": prompt, "completion_tokens": 7,
                                                             "total_tokens": prompt + 7}))
                chunks.append(b"data: [DONE]\n\n")
                for index, chunk in enumerate(chunks):
                    if index and model.chunk_delay > 0:
                        time.sleep(model.chunk_delay)
                    self.wfile.write(chunk)
                    self.wfile.flush()
                self.close_connection = True

            def _whole(self, number: int, reply: Dict[str, Any]) -> None:
                message: Dict[str, Any] = {"role": "assistant", "content": reply["content"]}
                finish = "stop"
                if reply["tool_call"] is not None:
                    name, arguments = reply["tool_call"]
                    message["tool_calls"] = [{"id": "call_%d" % number, "type": "function",
                                              "function": {"name": name, "arguments": json.dumps(arguments)}}]
                    finish = "tool_calls"
                self._json(200, {"id": "chatcmpl-%d" % number, "object": "chat.completion", "created": int(time.time()),
                                 "model": MODEL, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                                 "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}})

        return Handler
