"""A stand-in for Telegram's Bot API `sendMessage`, on loopback, for the notifier's end-to-end tests (stdlib only).

It answers `POST {base_url}/bot{TOKEN}/sendMessage` as Telegram documents it
(https://core.telegram.org/bots/api#sendmessage, #making-requests, #formatting-options):

- the parameters come as JSON (`application/json`), as a form (`application/x-www-form-urlencoded`) or in
  the query string; `chat_id` is an integer or a string, `text` the message, `parse_mode` `HTML` or absent;
- success is 200 `{"ok":true,"result":{"message_id":N,"date":...,"chat":{"id":...},"text":...}}` where the
  result's text is the text after entity parsing (tags gone, entities decoded), as Telegram returns it;
- a failure is `{"ok":false,"error_code":CODE,"description":"..."}`: a wrong token 401 `Unauthorized`, an
  unknown method or path 404 `Not Found`, an unknown chat 400 `Bad Request: chat not found`, no chat
  400 `Bad Request: chat_id is empty`, no text 400 `Bad Request: message text is empty`, HTML it cannot
  parse 400 `Bad Request: can't parse entities: ...`, a text of more than 4096 characters after entity
  parsing (code points) 400 `Bad Request: message is too long`, a 429 adds
  `"parameters":{"retry_after":SECONDS}`.

HTML is checked roughly as Telegram does, and a little more strictly: only the tags Telegram supports
(`b`/`strong`, `i`/`em`, `u`/`ins`, `s`/`strike`/`del`, `code`, `pre`, `a`, `span class="tg-spoiler"`,
`tg-spoiler`, `blockquote`, `tg-emoji`), each closed in order; a `<` that starts no such tag is an error;
the only entities are `&lt;` `&gt;` `&amp;` `&quot;` and numeric ones, and (stricter than Telegram,
which passes an unknown `&...` through as text) a `&` that starts none of them is an error too, so text
the sender forgot to escape is caught. `>` alone is text, as in Telegram.

The server can be scripted: `fail_next(n, status, ...)` (and the shorthands `too_many_requests_next`,
`server_error_next`), `refuse_html_next(n)` (the next n requests with parse_mode HTML get 400 can't
parse entities), `down_for(seconds, closed=False)` (every request answered 503 for that long, or with
`closed=True` the port closed, connections refused, and reopened on the same port afterwards).

Every request is recorded as a `Call` (arrival time on time.monotonic(), path, token, method, the
parsed parameters, the status and answer given) in `calls`; `sent()` is the accepted sendMessage calls
in order, `wait_for(predicate)` waits for the calls to satisfy something. Binds 127.0.0.1 only.
"""

import html
import json
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple, Union

from fake_http import TrackedHandler

MAX_TEXT = 4096

# Tags Telegram's HTML parse mode supports (synonyms included); a `span` only with class="tg-spoiler".
TAGS = frozenset({"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "a", "span",
                  "tg-spoiler", "blockquote", "tg-emoji"})
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot)|#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6}));")
_TAG_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*")
_ATTRIBUTE = re.compile(r"""\s*([a-zA-Z][a-zA-Z0-9-]*)\s*(?:=\s*("[^"]*"|'[^']*'|[^\s"'>]+))?""")


class HTMLRefused(ValueError):
    """Text Telegram's HTML parser would refuse; the message is the part after `can't parse entities: `."""


def _offset(text: str, index: int) -> int:
    """The UTF-8 byte offset of text[index], as Telegram names positions."""
    return len(text[:index].encode("utf-8", "surrogatepass"))


def parse_html(text: str) -> str:
    """The text Telegram shows for `text` sent with parse_mode HTML (tags gone, entities decoded);
    HTMLRefused when Telegram would answer 400 can't parse entities."""
    shown: List[str] = []
    open_tags: List[Tuple[str, int]] = []
    index = 0
    while index < len(text):
        character = text[index]
        if character == "&":
            match = _ENTITY.match(text, index)
            if match is None:
                raise HTMLRefused("Unsupported HTML entity at byte offset %d" % _offset(text, index))
            named, decimal, hexadecimal = match.groups()
            if named:
                shown.append(NAMED_ENTITIES[named])
            else:
                code = int(decimal) if decimal else int(hexadecimal, 16)
                if not 0 < code <= 0x10FFFF or 0xD800 <= code < 0xE000:
                    raise HTMLRefused("Invalid character entity at byte offset %d" % _offset(text, index))
                shown.append(chr(code))
            index = match.end()
            continue
        if character != "<":
            shown.append(character)
            index += 1
            continue
        end = _tag_end(text, index)
        if end < 0:
            raise HTMLRefused("Can't find end of the tag starting at byte offset %d" % _offset(text, index))
        inside = text[index + 1:end]
        if inside.startswith("/"):
            name = inside[1:].strip().lower()
            if not open_tags:
                raise HTMLRefused("Unexpected end tag at byte offset %d" % _offset(text, index))
            expected, _ = open_tags.pop()
            if name != expected:
                raise HTMLRefused('Unmatched end tag at byte offset %d, expected "</%s>", found "</%s>"'
                                  % (_offset(text, index), expected, name))
        else:
            match = _TAG_NAME.match(inside)
            name = match.group(0).lower() if match else ""
            if name not in TAGS:
                raise HTMLRefused('Unsupported start tag "%s" at byte offset %d' % (name, _offset(text, index)))
            attributes = _attributes(inside[len(name):])
            if attributes is None:
                raise HTMLRefused('Can\'t parse attributes of tag "%s" at byte offset %d' % (name, _offset(text, index)))
            if name == "span" and attributes.get("class") != "tg-spoiler":
                raise HTMLRefused('Tag "span" must have class "tg-spoiler" at byte offset %d' % _offset(text, index))
            open_tags.append((name, index))
        index = end + 1
    if open_tags:
        name, _ = open_tags[-1]
        raise HTMLRefused('Can\'t find end tag corresponding to start tag "%s"' % name)
    return "".join(shown)


def _tag_end(text: str, start: int) -> int:
    """The index of the `>` closing the tag that starts at text[start] (quotes respected), or -1."""
    quote = ""
    for index in range(start + 1, len(text)):
        character = text[index]
        if quote:
            if character == quote:
                quote = ""
        elif character in "\"'":
            quote = character
        elif character == ">":
            return index
        elif character == "<":
            return -1
    return -1


def _attributes(rest: str) -> Optional[Dict[str, str]]:
    found: Dict[str, str] = {}
    position = 0
    while position < len(rest):
        if rest[position:].strip() == "":
            break
        match = _ATTRIBUTE.match(rest, position)
        if match is None or match.end() == position:
            return None
        value = match.group(2) or ""
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        found[match.group(1).lower()] = html.unescape(value)
        position = match.end()
    return found


def shown_text(text: str, parse_mode: Optional[str]) -> str:
    """What a chat shows for a message: HTML parsed for parse_mode HTML, else the text as is.
    Text that does not parse is returned as is (for looking at a refused call)."""
    if (parse_mode or "").lower() != "html":
        return text
    try:
        return parse_html(text)
    except HTMLRefused:
        return text


@dataclass
class Call:
    """One request as the fake saw and answered it."""

    at: float                           # time.monotonic() when it arrived
    http_method: str
    path: str
    token: Optional[str]                # from /bot{TOKEN}/...; None when the path has no token part
    method: Optional[str]               # the Bot API method (sendMessage)
    params: Optional[Dict[str, Any]]    # the parsed parameters (None: the body could not be read)
    status: int = 0
    answer: Dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.answer.get("ok"))

    @property
    def text(self) -> str:
        value = (self.params or {}).get("text")
        return value if isinstance(value, str) else ""

    @property
    def parse_mode(self) -> Optional[str]:
        value = (self.params or {}).get("parse_mode")
        return value if isinstance(value, str) and value else None

    @property
    def chat_id(self) -> Any:
        return (self.params or {}).get("chat_id")

    @property
    def shown(self) -> str:
        """The text as the chat shows it (tags gone and entities decoded when sent as HTML)."""
        return shown_text(self.text, self.parse_mode)

    @property
    def description(self) -> str:
        return str(self.answer.get("description", ""))


@dataclass
class _Scripted:
    count: int
    status: int
    description: str
    retry_after: Optional[int] = None
    html_only: bool = False


class FakeTelegram:
    """A loopback Bot API. `token` is the only bot token it knows, `chats` the chat ids it knows
    (a string id such as "@channel" or an integer); `base_url` is what `bridge.telegram_api` takes."""

    def __init__(self, token: str = "123:ABC", chats: Iterable[Union[int, str]] = (42,),
                 max_text: int = MAX_TEXT) -> None:
        self.token = token
        self.chats: Set[str] = {str(chat) for chat in chats}
        self.max_text = max_text
        self.calls: List[Call] = []
        self._script: List[_Scripted] = []
        self._down_until = 0.0
        self._next_message_id: Dict[str, int] = {}
        self._condition = threading.Condition()
        self._connections: Set[socket.socket] = set()
        self._closed_timer: Optional[threading.Timer] = None
        self._stopped = False
        self.port = 0
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._serve()

    # -- the server ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def _serve(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                  name="fake-telegram", daemon=True)
        thread.start()
        with self._condition:
            self._server, self._thread = server, thread

    def _close_listener(self) -> None:
        with self._condition:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            connections = list(self._connections)
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5)
        for connection in connections:    # keep-alive connections go too: the port is gone
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        with self._condition:
            self._stopped = True
            timer = self._closed_timer
        if timer is not None:
            timer.cancel()
        self._close_listener()

    def __enter__(self) -> "FakeTelegram":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the script ---------------------------------------------------------------------------

    def fail_next(self, count: int, status: int, description: Optional[str] = None,
                  retry_after: Optional[int] = None) -> None:
        """The next `count` requests (after those already scripted) are answered `status` with
        `description` (Telegram's wording for the status by default)."""
        if description is None:
            description = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden: bot was blocked by the user",
                           429: "Too Many Requests: retry after %s" % retry_after, 500: "Internal Server Error",
                           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Error")
        with self._condition:
            self._script.append(_Scripted(count, status, description, retry_after))

    def too_many_requests_next(self, count: int = 1, retry_after: int = 1) -> None:
        self.fail_next(count, 429, retry_after=retry_after)

    def server_error_next(self, count: int = 1, status: int = 500) -> None:
        self.fail_next(count, status)

    def refuse_html_next(self, count: int = 1,
                         reason: str = "Unsupported start tag \"blink\" at byte offset 0") -> None:
        """The next `count` requests with parse_mode HTML are answered 400 can't parse entities
        (requests without parse_mode are answered as usual and do not count)."""
        with self._condition:
            self._script.append(_Scripted(count, 400, "Bad Request: can't parse entities: " + reason, html_only=True))

    def down_for(self, seconds: float, closed: bool = False) -> None:
        """Telegram is down for `seconds` from now: every request is answered 503, or with `closed`
        the port is closed (connections refused) and opened again on the same port afterwards."""
        if not closed:
            with self._condition:
                self._down_until = time.monotonic() + seconds
            return
        self._close_listener()
        timer = threading.Timer(seconds, self._reopen)
        timer.daemon = True
        with self._condition:
            self._closed_timer = timer
        timer.start()

    def _reopen(self) -> None:
        deadline = time.monotonic() + 5
        while True:
            with self._condition:
                if self._stopped:
                    return
            try:
                self._serve()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # -- what happened ------------------------------------------------------------------------

    def all_calls(self) -> List[Call]:
        with self._condition:
            return list(self.calls)

    def sent(self) -> List[Call]:
        """The sendMessage calls Telegram accepted, in order of arrival."""
        return [call for call in self.all_calls() if call.ok and (call.method or "").lower() == "sendmessage"]

    def shown_texts(self) -> List[str]:
        return [call.shown for call in self.sent()]

    def wait_for(self, predicate: Callable[[List[Call]], bool], timeout: float = 30.0) -> bool:
        """Waits until predicate(calls so far) is true; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not predicate(list(self.calls)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(min(left, 0.1))
            return True

    def wait_sent(self, count: int, timeout: float = 30.0) -> bool:
        return self.wait_for(lambda calls: sum(1 for call in calls if call.ok) >= count, timeout)

    # -- answering ------------------------------------------------------------------------------

    def _record(self, call: Call) -> None:
        with self._condition:
            self.calls.append(call)
            self._condition.notify_all()

    def _answer(self, call: Call) -> Tuple[int, Dict[str, Any]]:
        if call.token is None or call.method is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        if call.token != self.token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        if call.method.lower() != "sendmessage":
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        with self._condition:
            if time.monotonic() < self._down_until:
                return 503, {"ok": False, "error_code": 503, "description": "Service Unavailable"}
            params = call.params
            uses_html = params is not None and str(params.get("parse_mode") or "").lower() == "html"
            for scripted in self._script:
                if scripted.html_only and not uses_html:
                    continue
                scripted.count -= 1
                if scripted.count <= 0:
                    self._script.remove(scripted)
                answer: Dict[str, Any] = {"ok": False, "error_code": scripted.status,
                                          "description": scripted.description}
                if scripted.retry_after is not None:
                    answer["parameters"] = {"retry_after": scripted.retry_after}
                return scripted.status, answer
        if params is None:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: can't parse JSON object"}
        return self._send_message(params)

    def _send_message(self, params: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        def bad(description: str) -> Tuple[int, Dict[str, Any]]:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: " + description}

        chat = params.get("chat_id")
        if chat is None or chat == "" or isinstance(chat, (bool, float, list, dict)):
            return bad("chat_id is empty")
        text = params.get("text")
        if not isinstance(text, str) or not text:
            return bad("message text is empty")
        mode = params.get("parse_mode")
        if mode is not None and mode != "" and (not isinstance(mode, str)
                                               or mode.lower() not in ("html", "markdown", "markdownv2")):
            return bad("unsupported parse_mode")
        if str(chat) not in self.chats:
            return bad("chat not found")
        if isinstance(mode, str) and mode.lower() == "html":
            try:
                shown = parse_html(text)
            except HTMLRefused as refused:
                return bad("can't parse entities: " + str(refused))
        else:
            shown = text
        shown = shown.strip()
        if not shown:
            return bad("message text is empty")
        if len(shown) > self.max_text:
            return bad("message is too long")
        with self._condition:
            message_id = self._next_message_id.get(str(chat), 0) + 1
            self._next_message_id[str(chat)] = message_id
        chat_id: Union[int, str] = int(chat) if re.fullmatch(r"-?[0-9]+", str(chat)) else str(chat)
        return 200, {"ok": True, "result": {
            "message_id": message_id,
            "from": {"id": int(self.token.split(":")[0]) if self.token.split(":")[0].isdigit() else 1,
                     "is_bot": True, "first_name": "Allegro", "username": "allegro_fake_bot"},
            "chat": {"id": chat_id, "type": "private", "first_name": "Timmy"},
            "date": int(time.time()),
            "text": shown}}

    @staticmethod
    def _params(handler: BaseHTTPRequestHandler, query: str, body: bytes) -> Optional[Dict[str, Any]]:
        params: Dict[str, Any] = {key: values[-1] for key, values in urllib.parse.parse_qs(query).items()}
        kind = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not body:
            return params
        try:
            if kind == "application/json":
                value = json.loads(body.decode("utf-8"))
                if not isinstance(value, dict):
                    return None
                params.update(value)
            elif kind == "application/x-www-form-urlencoded":
                form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True)
                params.update({key: values[-1] for key, values in form.items()})
            else:
                return None
        except (UnicodeDecodeError, ValueError):
            return None
        return params

    def _handler(self) -> type:
        fake = self

        class Handler(TrackedHandler):
            connections = fake._connections
            connections_lock = fake._condition

            def _handle(self) -> None:
                at = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length > 0 else b""
                parsed = urllib.parse.urlsplit(self.path)
                match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", parsed.path)
                call = Call(at=at, http_method=self.command, path=parsed.path,
                            token=urllib.parse.unquote(match.group(1)) if match else None,
                            method=match.group(2) if match else None,
                            params=FakeTelegram._params(self, parsed.query, body))
                call.status, call.answer = fake._answer(call)
                fake._record(call)
                data = json.dumps(call.answer, ensure_ascii=False).encode("utf-8")
                try:
                    self.send_response(call.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    if call.status == 429 and call.answer.get("parameters"):
                        self.send_header("Retry-After", str(call.answer["parameters"]["retry_after"]))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:            # the client is gone (killed mid-request): it was recorded all the same
                    self.close_connection = True

            do_POST = _handle
            do_GET = _handle

        return Handler
