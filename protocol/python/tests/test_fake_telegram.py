"""The fake Bot API (tests/fake_telegram.py) answers as Telegram documents: success and error shapes,
the token, the chat, the length limit after entity parsing, HTML checking, and its script (429 with
retry_after, 5xx, refusing HTML, down with 503 or a closed port)."""

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, Optional, Tuple

import pytest

from fake_telegram import FakeTelegram, HTMLRefused, parse_html

TOKEN = "123:ABC"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram(token=TOKEN, chats=(42, "@allegro_alerts"))
    yield fake
    fake.close()


def post(fake: FakeTelegram, params: Dict[str, Any], token: str = TOKEN, method: str = "sendMessage",
         form: bool = False) -> Tuple[int, Dict[str, Any]]:
    if form:
        data, kind = urllib.parse.urlencode(params).encode(), "application/x-www-form-urlencoded"
    else:
        data, kind = json.dumps(params).encode(), "application/json"
    request = urllib.request.Request("%s/bot%s/%s" % (fake.base_url, token, method), data=data,
                                     headers={"Content-Type": kind}, method="POST")
    try:
        with OPENER.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_message_is_accepted_with_telegrams_answer_and_recorded():
    with FakeTelegram(token=TOKEN) as fake:
        status, answer = post(fake, {"chat_id": 42, "text": "<b>disk</b> 1 &lt; 2 &amp; 3", "parse_mode": "HTML"})
        assert status == 200 and answer["ok"] is True
        result = answer["result"]
        assert result["message_id"] == 1 and result["chat"]["id"] == 42 and isinstance(result["date"], int)
        assert result["text"] == "disk 1 < 2 & 3"
        status, answer = post(fake, {"chat_id": "42", "text": "plain <b> & text"}, form=True)
        assert status == 200 and answer["result"]["message_id"] == 2 and answer["result"]["text"] == "plain <b> & text"
        first, second = fake.calls
        assert first.path == "/bot123:ABC/sendMessage" and first.token == TOKEN and first.method == "sendMessage"
        assert first.params == {"chat_id": 42, "text": "<b>disk</b> 1 &lt; 2 &amp; 3", "parse_mode": "HTML"}
        assert first.shown == "disk 1 < 2 & 3" and first.parse_mode == "HTML" and first.ok
        assert second.parse_mode is None and second.chat_id == "42" and second.shown == "plain <b> & text"
        assert first.at <= second.at <= time.monotonic()
        assert [call.text for call in fake.sent()] == ["<b>disk</b> 1 &lt; 2 &amp; 3", "plain <b> & text"]


@pytest.mark.parametrize("params,token,method,expected", [
    ({"chat_id": 42, "text": "x"}, "123:WRONG", "sendMessage", (401, "Unauthorized")),
    ({"chat_id": 42, "text": "x"}, TOKEN, "sendNothing", (404, "Not Found")),
    ({"chat_id": 7, "text": "x"}, TOKEN, "sendMessage", (400, "Bad Request: chat not found")),
    ({"text": "x"}, TOKEN, "sendMessage", (400, "Bad Request: chat_id is empty")),
    ({"chat_id": 42}, TOKEN, "sendMessage", (400, "Bad Request: message text is empty")),
    ({"chat_id": 42, "text": "<b></b>", "parse_mode": "HTML"}, TOKEN, "sendMessage",
     (400, "Bad Request: message text is empty")),
    ({"chat_id": 42, "text": "x", "parse_mode": "XML"}, TOKEN, "sendMessage", (400, "Bad Request: unsupported parse_mode")),
    ({"chat_id": 42, "text": "x" * 4097}, TOKEN, "sendMessage", (400, "Bad Request: message is too long")),
    ({"chat_id": 42, "text": "<b>1 < 2</b>", "parse_mode": "HTML"}, TOKEN, "sendMessage",
     (400, "Bad Request: can't parse entities: Can't find end of the tag starting at byte offset 5")),
])
def test_errors_have_telegrams_codes_and_descriptions(telegram: FakeTelegram, params: Dict[str, Any], token: str,
                                                      method: str, expected: Tuple[int, str]):
    status, answer = post(telegram, params, token=token, method=method)
    assert (status, answer["description"]) == expected
    assert answer == {"ok": False, "error_code": status, "description": expected[1]}
    assert telegram.calls[-1].status == status and not telegram.sent()


def test_the_length_limit_counts_the_text_after_entity_parsing(telegram: FakeTelegram):
    assert post(telegram, {"chat_id": 42, "text": "<b>" + "&amp;" * 4096 + "</b>", "parse_mode": "HTML"})[0] == 200
    assert post(telegram, {"chat_id": "@allegro_alerts", "text": "\U0001F504" * 4096})[0] == 200
    assert post(telegram, {"chat_id": 42, "text": "&amp;" * 4097, "parse_mode": "HTML"})[1]["description"] == \
        "Bad Request: message is too long"


@pytest.mark.parametrize("text,shown", [
    ("<b>bold</b> <i>it</i> <u>u</u> <s>s</s> <code>c</code> <pre>p</pre>", "bold it u s c p"),
    ('<a href="https://example.org/?a=1&amp;b=2">link</a>', "link"),
    ("<strong>a</strong><em>b</em><ins>c</ins><del>d</del><strike>e</strike>", "abcde"),
    ('<pre><code class="language-python">x = 1</code></pre>', "x = 1"),
    ('<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler><blockquote>q</blockquote>', "stq"),
    ("&lt;&gt;&amp;&quot; &#65;&#x42; 2 > 1", "<>&\" AB 2 > 1"),
    ("<b>nested <i>fine</i></b>", "nested fine"),
])
def test_telegram_html_that_parses(text: str, shown: str):
    assert parse_html(text) == shown


@pytest.mark.parametrize("text,reason", [
    ("<blink>x</blink>", 'Unsupported start tag "blink" at byte offset 0'),
    ("é<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
    ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
    ("x</b>", "Unexpected end tag at byte offset 1"),
    ("<b>x<b", "Can't find end of the tag starting at byte offset 4"),
    ("a & b", "Unsupported HTML entity at byte offset 2"),
    ("&nbsp;", "Unsupported HTML entity at byte offset 0"),
    ("&#0;", "Invalid character entity at byte offset 0"),
    ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
])
def test_telegram_html_that_is_refused(text: str, reason: str):
    with pytest.raises(HTMLRefused) as refused:
        parse_html(text)
    assert str(refused.value) == reason


def test_the_script_answers_429_with_retry_after_then_5xx_then_refuses_html_only(telegram: FakeTelegram):
    telegram.too_many_requests_next(1, retry_after=3)
    telegram.server_error_next(2, status=502)
    telegram.refuse_html_next(1)
    status, answer = post(telegram, {"chat_id": 42, "text": "a"})
    assert status == 429 and answer == {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 3",
                                        "parameters": {"retry_after": 3}}
    assert [post(telegram, {"chat_id": 42, "text": "a"})[0] for _ in range(2)] == [502, 502]
    assert post(telegram, {"chat_id": 42, "text": "plain is not refused"})[0] == 200
    status, answer = post(telegram, {"chat_id": 42, "text": "<b>fine</b>", "parse_mode": "HTML"})
    assert status == 400 and answer["description"].startswith("Bad Request: can't parse entities: ")
    assert post(telegram, {"chat_id": 42, "text": "<b>fine</b>", "parse_mode": "HTML"})[0] == 200
    assert [call.status for call in telegram.calls] == [429, 502, 502, 200, 400, 200]


def test_down_answers_503_for_a_while(telegram: FakeTelegram):
    telegram.down_for(0.5)
    assert post(telegram, {"chat_id": 42, "text": "a"}) == \
        (503, {"ok": False, "error_code": 503, "description": "Service Unavailable"})
    time.sleep(0.6)
    assert post(telegram, {"chat_id": 42, "text": "a"})[0] == 200


def refused(port: int) -> Optional[bool]:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


def test_down_closed_refuses_connections_then_listens_on_the_same_port(telegram: FakeTelegram):
    port = telegram.port
    assert post(telegram, {"chat_id": 42, "text": "before"})[0] == 200
    telegram.down_for(0.8, closed=True)
    assert refused(port)
    assert telegram.wait_for(lambda calls: False, timeout=1.0) is False     # waits out the outage
    deadline = time.monotonic() + 5
    while refused(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert telegram.port == port and post(telegram, {"chat_id": 42, "text": "after"})[0] == 200
    assert [call.shown for call in telegram.sent()] == ["before", "after"]


def test_wait_for_sees_calls_from_other_threads(telegram: FakeTelegram):
    import threading
    threading.Timer(0.2, lambda: post(telegram, {"chat_id": 42, "text": "later"})).start()
    assert telegram.wait_sent(1, timeout=10)
    assert telegram.shown_texts() == ["later"]
