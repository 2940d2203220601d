"""allegro_client.timmy.GiteaBridge against a tiny stand-in for the bridge's command API
(protocol/GITEA.md): what it sends (path, bearer token, since, exact body keys, operation ids), how it
reads the answers into `Issue`s, paging, and the error paths: refusals are GiteaBridgeError at once,
an unreachable or unavailable bridge is asked again with the same operation id (bounded), a command
whose answer does not come in time is not asked again. The real bridge is in test_gitea_e2e.py."""

import asyncio
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Dict, List, Tuple, Union

import pytest

from allegro_client import GiteaBridge as ExportedGiteaBridge
from allegro_client.timmy import GiteaBridge, GiteaBridgeError, Issue, IssueComment

TOKEN = "command-token-0123456789"
REPO = "timmy/allegro"


@dataclass
class Seen:
    """One request the stand-in received."""

    method: str
    path: str
    query: Dict[str, str]
    headers: Dict[str, str]
    body: Any


# An answer: (status, JSON value or raw bytes), "drop" (close unanswered), "hang" (never answer),
# or raw bytes (the whole HTTP answer as written).
Answer = Union[Tuple[int, Any], str, bytes]


@dataclass
class CommandAPI:
    """The command API's stand-in: `answer(seen)` decides each answer; `seen` lists every request."""

    answer: Callable[[Seen], Answer]
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
                        json.loads(raw) if raw else None)
            self.seen.append(seen)
            answer = self.answer(seen)
            if answer == "drop":
                return
            if answer == "hang":
                await reader.read()           # until the client gives up and closes
                return
            if isinstance(answer, bytes):
                writer.write(answer)
            else:
                assert isinstance(answer, tuple), answer
                status, value = answer
                data = value if isinstance(value, bytes) else json.dumps(value).encode()
                writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                             % (status, len(data)) + data)
            await writer.drain()
        finally:
            writer.close()


def run(answer: Callable[[Seen], Answer], scenario: Callable[[GiteaBridge, CommandAPI], Awaitable[None]],
        **options: Any) -> CommandAPI:
    """Serves the stand-in on loopback and runs `scenario(client, api)` against it."""
    api = CommandAPI(answer)

    async def main() -> None:
        server = await asyncio.start_server(api.serve, "127.0.0.1", 0)
        api.port = server.sockets[0].getsockname()[1]
        settings: Dict[str, Any] = {"timeout": 5.0, "retry_delay": 0.01}
        settings.update(options)
        try:
            await scenario(GiteaBridge("127.0.0.1:%d" % api.port, TOKEN, **settings), api)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), 60))
    return api


def payload(number: int, updated_at: str, **extra: Any) -> Dict[str, Any]:
    """A record payload as the bridge writes one."""
    item: Dict[str, Any] = {"repo": REPO, "number": number, "title": "Issue %d" % number, "state": "open",
                            "labels": [], "user": "alexander", "updated_at": updated_at, "created_at": updated_at,
                            "html_url": "http://gitea.test/%s/issues/%d" % (REPO, number), "body": "Body %d" % number,
                            "comments": 0}
    item.update(extra)
    return item


# -- what is sent, what is read ------------------------------------------------------------------


def test_poll_issues_sends_the_token_and_since_in_utc_and_reads_the_issues_and_pulls():
    answer = {"issues": [
        payload(3, "2026-12-03T10:00:00Z", labels=["bug", "status/triage"]),
        payload(4, "2026-12-03T12:00:01+02:00", title="A pull", merged=False, state="closed",
                closed_at="2026-12-03T12:00:01+02:00", comments=2),
    ]}

    async def scenario(gitea: GiteaBridge, api: CommandAPI) -> None:
        since = datetime(2026, 12, 3, 11, 0, 0, 250000, tzinfo=timezone(timedelta(hours=1)))
        issues = await gitea.poll_issues(REPO, since)
        assert [(i.number, i.kind) for i in issues] == [(3, "issue"), (4, "pull")]
        first, pull = issues
        assert first.labels == ["bug", "status/triage"] and first.status == "triage" and first.merged is None
        assert first.updated_at == datetime(2026, 12, 3, 10, 0, 0, tzinfo=timezone.utc)
        assert first.title == "Issue 3" and first.user == "alexander" and first.body == "Body 3" and first.state == "open"
        assert first.html_url.endswith("/issues/3") and first.comments == [] and first.repo == REPO
        assert pull.merged is False and pull.state == "closed" and pull.comment_count == 2 and pull.status is None
        assert pull.updated_at == datetime(2026, 12, 3, 10, 0, 1, tzinfo=timezone.utc) == pull.closed_at

    api = run(lambda seen: (200, answer), scenario)
    [seen] = api.seen
    assert (seen.method, seen.path) == ("GET", "/v1/gitea/timmy/allegro/issues")
    assert seen.headers["authorization"] == "Bearer " + TOKEN
    assert seen.query["since"] == "2026-12-03T10:00:00.250Z"
    assert seen.body is None


def test_poll_issues_pages_through_a_full_answer_and_gives_each_issue_once_in_its_latest_state():
    # The cache: 250 issues, two changes a second; #7 changes while the pages are read.
    start = datetime(2026, 12, 3, 8, 0, 0, tzinfo=timezone.utc)
    cache = {n: start + timedelta(seconds=n // 2) for n in range(1, 251)}

    def stamp(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    asked = [0]

    def answer(seen: Seen) -> Answer:
        since = datetime.fromisoformat(seen.query["since"].replace("Z", "+00:00"))
        limit = int(seen.query["limit"])
        asked[0] += 1
        if asked[0] == 2:
            cache[7] = start + timedelta(hours=1)
        rows = sorted((moment, number) for number, moment in cache.items() if moment >= since)[:limit]
        return 200, {"issues": [payload(number, stamp(moment)) for moment, number in rows]}

    async def scenario(gitea: GiteaBridge, api: CommandAPI) -> None:
        issues = await gitea.poll_issues(REPO, start)
        assert sorted(i.number for i in issues) == list(range(1, 251))
        assert [i.number for i in issues][-1] == 7 and issues[-1].updated_at == start + timedelta(hours=1)
        assert issues == sorted(issues, key=lambda i: (i.updated_at, i.number))
        limited = await gitea.poll_issues(REPO, start, limit=5)
        assert [i.number for i in limited] == [1, 2, 3, 4, 5]

    api = run(answer, scenario)
    assert len(api.seen) >= 4 and all(int(s.query["limit"]) <= 100 for s in api.seen[:-1])
    assert api.seen[-1].query["limit"] == "5"


def test_a_full_page_of_one_instant_is_asked_again_as_a_bigger_page():
    moment = "2026-12-03T09:00:00Z"
    everything = [payload(n, moment) for n in range(1, 151)]

    def answer(seen: Seen) -> Answer:
        return 200, {"issues": everything[:int(seen.query["limit"])]}

    async def scenario(gitea: GiteaBridge, api: CommandAPI) -> None:
        issues = await gitea.poll_issues(REPO, None)
        assert [i.number for i in issues] == list(range(1, 151))

    api = run(answer, scenario)
    assert [s.query.get("limit") for s in api.seen] == ["100", "100", "1000"]
    assert "since" not in api.seen[0].query


def test_get_issue_details_reads_the_comments():
    details = payload(5, "2026-12-03T10:00:00Z", kind="issue", comments=2, comment_list=[
        {"id": 11, "user": "alexander", "body": "Any news?", "updated_at": "2026-12-03T09:00:00Z",
         "html_url": "http://gitea.test/timmy/allegro/issues/5#issuecomment-11"},
        {"id": 12, "user": "allegro-bot", "body": "On it.\n\n<!-- allegro-op: plan-5 -->",
         "updated_at": "2026-12-03T10:00:00Z", "html_url": ""},
    ])

    async def scenario(gitea: GiteaBridge, api: CommandAPI) -> None:
        issue = await gitea.get_issue_details(REPO, 5)
        assert issue.number == 5 and issue.kind == "issue" and issue.comment_count == 2
        assert issue.comments == [
            IssueComment(11, "alexander", "Any news?", datetime(2026, 12, 3, 9, tzinfo=timezone.utc),
                         "http://gitea.test/timmy/allegro/issues/5#issuecomment-11"),
            IssueComment(12, "allegro-bot", "On it.\n\n<!-- allegro-op: plan-5 -->",
                         datetime(2026, 12, 3, 10, tzinfo=timezone.utc), ""),
        ]

    api = run(lambda seen: (200, details), scenario)
    assert [(s.method, s.path) for s in api.seen] == [("GET", "/v1/gitea/timmy/allegro/issues/5")]


def test_a_comment_sends_exactly_operation_id_and_body_and_a_new_id_each_time_when_none_is_given():
    async def scenario(gitea: GiteaBridge, api: CommandAPI) -> None:
        result = await gitea.comment_on_issue(REPO, 9, "Fixes #2, the café way", operation_id="plan-9.ack:1")
        assert result == {"comment_id": 41, "html_url": "http://gitea.test/c/41", "written": "now"}
        await gitea.comment_on_issue(REPO, 9, "Again")
        await gitea.comment_on_issue(REPO, 9, "Again")

    api = run(lambda seen: (200, {"comment_id": 41, "html_url": "http://gitea.test/c/41", "written": "now"}), scenario)
    assert [(s.method, s.path) for s in api.seen] == [("POST", "/v1/gitea/timmy/allegro/issues/9/comments")] * 3
    assert api.seen[0].body == {"operation_id": "plan-9.ack:1", "body": "Fixes #2, the café way"}
    assert api.seen[0].headers["content-type"] == "application/json"
    generated = [s.body["operation_id"] for s in api.seen[1:]]
    assert generated[0] != generated[1]
    assert all(re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", op) for op in generated), generated


def test_update_status_puts_exactly_operation_id_and_status():
    async def scenario(gitea: GiteaBridge, api: CommandAPI) -> None:
        result = await gitea.update_status(REPO, 3, "in-progress", operation_id="status-3")
        assert result["label"] == "status/in-progress" and result["removed"] == ["status/triage"]

    api = run(lambda seen: (200, {"status": "in-progress", "label": "status/in-progress",
                                  "removed": ["status/triage"]}), scenario)
    [seen] = api.seen
    assert (seen.method, seen.path, seen.body) == ("PUT", "/v1/gitea/timmy/allegro/issues/3/status",
                                                   {"operation_id": "status-3", "status": "in-progress"})


def test_a_chunked_answer_is_read():
    data = json.dumps({"issues": [payload(1, "2026-12-03T10:00:00Z")]}).encode()
    middle = len(data) // 2
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
           % (middle, data[:middle], len(data) - middle, data[middle:]))

    async def scenario(gitea: GiteaBridge, api: CommandAPI) -> None:
        assert [i.number for i in await gitea.poll_issues(REPO, None)] == [1]

    run(lambda seen: raw, scenario)


# -- wrong arguments ---------------------------------------------------------------------------------


def test_wrong_arguments_are_value_errors_before_anything_is_sent():
    async def scenario(gitea: GiteaBridge, api: CommandAPI) -> None:
        with pytest.raises(ValueError, match="naive"):
            await gitea.poll_issues(REPO, datetime(2026, 12, 3, 10, 0, 0))
        for repo in ("timmy", "timmy/allegro/x", "timmy/../x", "../allegro", "timmy/al legro", ""):
            with pytest.raises(ValueError, match="owner/name"):
                await gitea.comment_on_issue(repo, 1, "x")
        for number in (0, -1, True, "3"):
            with pytest.raises(ValueError, match="issue"):
                await gitea.update_status(REPO, number, "done")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="limit"):
            await gitea.poll_issues(REPO, None, limit=0)

    api = run(lambda seen: (200, {}), scenario)
    assert api.seen == []
    for address in ("https://vps1:7402", "vps1:port", "ftp://x:1"):
        with pytest.raises(ValueError, match="bridge address"):
            GiteaBridge(address, TOKEN)
    with pytest.raises(ValueError, match="token"):
        GiteaBridge("127.0.0.1:7402", "")
    assert ExportedGiteaBridge is GiteaBridge


# -- refusals and failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("status, reason", [
    (400, "body: unknown key"),
    (401, "Timmy's command API asks for its token: Authorization: Bearer TOKEN"),
    (404, "timmy/other is not one of the repositories this bridge serves (gitea.repos)"),
    (409, "operation_id op-1 was used for status on timmy/allegro#3 or with another body"),
    (413, "the body is larger than 131072 bytes"),
    (500, "cannot read the bridge's cache"),
])
def test_a_refusal_is_a_gitea_bridge_error_with_its_status_and_reason_and_is_not_asked_again(status, reason):
    async def scenario(gitea: GiteaBridge, api: CommandAPI) -> None:
        with pytest.raises(GiteaBridgeError) as caught:
            await gitea.comment_on_issue(REPO, 3, "x", operation_id="op-1")
        assert (caught.value.status, caught.value.reason, caught.value.operation_id) == (status, reason, "op-1")
        assert reason in str(caught.value) and str(status) in str(caught.value)
        with pytest.raises(GiteaBridgeError) as read:
            await gitea.poll_issues(REPO, None)
        assert (read.value.status, read.value.operation_id) == (status, None)

    api = run(lambda seen: (status, {"error": reason}), scenario)
    assert len(api.seen) == 2


def test_a_503_is_asked_again_with_the_same_operation_id_until_it_is_done():
    answers: List[Answer] = [(503, {"error": "Gitea is unavailable: HTTP 502"}), "drop",
               (503, {"error": "Gitea is unavailable"}), (200, {"comment_id": 7, "html_url": "", "written": "found"})]

    async def scenario(gitea: GiteaBridge, api: CommandAPI) -> None:
        result = await gitea.comment_on_issue(REPO, 3, "Retry me")
        assert result["comment_id"] == 7

    api = run(lambda seen: answers.pop(0), scenario)
    assert len(api.seen) == 4
    assert len({s.body["operation_id"] for s in api.seen}) == 1
    assert all(s.body == api.seen[0].body for s in api.seen)


def test_retries_are_bounded_and_the_last_error_is_raised_with_the_operation_id():
    async def scenario(gitea: GiteaBridge, api: CommandAPI) -> None:
        with pytest.raises(GiteaBridgeError) as caught:
            await gitea.update_status(REPO, 3, "done", operation_id="status-3-done")
        assert caught.value.status == 503 and caught.value.operation_id == "status-3-done"
        assert "unavailable" in caught.value.reason

    api = run(lambda seen: (503, {"error": "Gitea is unavailable: no answer"}), scenario, attempts=3)
    assert len(api.seen) == 3


def test_an_unreachable_bridge_is_asked_a_bounded_number_of_times_then_an_error_with_status_0():
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        gitea = GiteaBridge("http://127.0.0.1:%d" % port, TOKEN, attempts=3, retry_delay=0.01)
        with pytest.raises(GiteaBridgeError) as caught:
            await gitea.comment_on_issue(REPO, 1, "x", operation_id="op-unreachable")
        assert caught.value.status == 0 and caught.value.operation_id == "op-unreachable"
        assert "cannot reach the bridge" in caught.value.reason

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_connection_closed_unanswered_is_asked_again():
    answers: List[Answer] = ["drop", "drop", (200, {"issues": []})]

    async def scenario(gitea: GiteaBridge, api: CommandAPI) -> None:
        assert await gitea.poll_issues(REPO, None) == []

    api = run(lambda seen: answers.pop(0), scenario)
    assert len(api.seen) == 3


def test_a_command_that_gets_no_answer_in_time_is_not_asked_again_but_a_read_is():
    answers: List[Answer] = ["hang", "hang", (200, {"issues": []})]

    async def scenario(gitea: GiteaBridge, api: CommandAPI) -> None:
        with pytest.raises(GiteaBridgeError) as caught:
            await gitea.comment_on_issue(REPO, 1, "slow", operation_id="op-slow")
        assert caught.value.status == 0 and caught.value.operation_id == "op-slow"
        assert "did not answer" in caught.value.reason
        assert len(api.seen) == 1
        assert await gitea.poll_issues(REPO, None) == []

    api = run(lambda seen: answers.pop(0), scenario, timeout=0.3)
    assert [s.method for s in api.seen] == ["POST", "GET", "GET"]


@pytest.mark.parametrize("answer, reason", [
    ((200, b"<html>not json</html>"), "no JSON object"),
    ((200, [1, 2]), "no JSON object"),
    ((200, {"issues": "none"}), "no list of issues"),
    ((200, {"issues": [{"number": 1}]}), "not an issue"),
    ((200, {"issues": [payload(1, "yesterday")]}), "not an issue"),
    (b"garbage\r\n\r\n", "no HTTP status line"),
    ((502, b"Bad gateway"), "HTTP 502"),
])
def test_an_answer_that_cannot_be_read_is_a_gitea_bridge_error(answer, reason):
    async def scenario(gitea: GiteaBridge, api: CommandAPI) -> None:
        with pytest.raises(GiteaBridgeError, match=reason):
            await gitea.poll_issues(REPO, None)

    run(lambda seen: answer, scenario, attempts=2)


def test_issue_from_json_tells_a_pull_by_its_kind_or_its_merged_field():
    assert Issue.from_json(payload(1, "2026-12-03T10:00:00Z")).kind == "issue"
    assert Issue.from_json(payload(1, "2026-12-03T10:00:00Z", merged=True)).kind == "pull"
    assert Issue.from_json(payload(1, "2026-12-03T10:00:00Z", kind="pull")).kind == "pull"
    moment = Issue.from_json(payload(1, "2026-12-03T10:00:00.123456789Z")).updated_at
    assert moment == datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=timezone.utc)
    with pytest.raises(ValueError):
        Issue.from_json(payload(1, "2026-12-03T10:00:00Z", kind="wiki"))
