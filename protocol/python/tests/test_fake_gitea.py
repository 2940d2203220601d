"""The fake Gitea (tests/fake_gitea.py) holds its client to Gitea 1.26.3's swagger.v1.json and answers
as Gitea does: the request checks (unknown paths and methods, undeclared or mistyped query parameters,
bodies against their schemas), the answers checked against the spec, pagination headers, a pull
request as an issue, 409 on a duplicate pull, merging, labels, branches, forbidden endpoints, the
misbehaviour knobs, and the webhooks it sends as Gitea does (headers, signature, payload structs, order,
hold and release, redelivery). No Allegro binary is needed."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from fake_gitea import FakeGitea, iter_links, parse_rfc3339

TOKEN = "allegro-token"
TIMMY = "timmy-token"
REPO = "timmy/home"


@pytest.fixture
def gitea() -> Iterator[FakeGitea]:
    fake = FakeGitea(users={"allegro": TOKEN, "timmy": TIMMY}, repos=[REPO])
    yield fake
    fake.close()


class Answer:
    def __init__(self, status: int, headers: http.client.HTTPMessage, data: bytes) -> None:
        self.status, self.headers, self.data = status, headers, data

    @property
    def json(self) -> Any:
        return json.loads(self.data) if self.data else None

    @property
    def message(self) -> str:
        return str((self.json or {}).get("message", ""))

    def links(self) -> Dict[str, str]:
        return dict(iter_links(self.headers.get("Link") or ""))


def api(fake: FakeGitea, method: str, path: str, body: Any = None, token: Optional[str] = TOKEN,
        query: Optional[List[Tuple[str, str]]] = None, raw: Optional[bytes] = None,
        content_type: str = "application/json", scheme: str = "token", timeout: float = 10) -> Answer:
    """One request to the fake on its own connection; `path` is under /api/v1 unless it starts with //."""
    target = path[1:] if path.startswith("//") else "/api/v1" + path
    if query:
        target += "?" + urllib.parse.urlencode(query)
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = "%s %s" % (scheme, token)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if data is not None:
        headers["Content-Type"] = content_type
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=timeout)
    try:
        connection.request(method, target, body=data, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def numbers(answer: Answer) -> List[int]:
    return [item["number"] for item in answer.json]


# -- the request checks ----------------------------------------------------------------------------

def test_the_token_names_the_user_and_a_wrong_or_missing_one_is_401(gitea: FakeGitea) -> None:
    me = api(gitea, "GET", "/user")
    assert me.status == 200 and me.json["login"] == "allegro" and me.json["is_admin"] is False
    assert api(gitea, "GET", "/user", token=TIMMY, scheme="Bearer").json["login"] == "timmy"
    assert api(gitea, "GET", "/user", token="wrong").status == 401
    missing = api(gitea, "GET", "/user", token=None)
    assert missing.status == 401 and missing.message
    assert gitea.violations == [] and gitea.response_violations == []


def test_an_unknown_path_or_method_is_refused_and_recorded(gitea: FakeGitea) -> None:
    unknown = api(gitea, "GET", "/repos/timmy/home/issuez")
    assert unknown.status == 400 and unknown.message.startswith("fake gitea: no path of the spec matches")
    outside = api(gitea, "GET", "//api/v2/user")
    assert outside.status == 400 and "base path" in outside.message
    wrong_method = api(gitea, "PUT", "/user", body={})
    assert wrong_method.status == 400 and "PUT is not an operation of /user" in wrong_method.message
    assert [v.path for v in gitea.violations] == ["/api/v1/repos/timmy/home/issuez", "/api/v2/user", "/api/v1/user"]
    assert gitea.response_violations == []


def test_an_undeclared_query_parameter_is_refused(gitea: FakeGitea) -> None:
    gitea.create_issue(REPO, "one")
    refused = api(gitea, "GET", "/repos/timmy/home/issues", query=[("state", "all"), ("per_page", "50")])
    assert refused.status == 400 and "query parameter per_page is not declared" in refused.message
    # One issue's comments are not paged in Gitea: the spec declares neither page nor limit there.
    paged = api(gitea, "GET", "/repos/timmy/home/issues/1/comments", query=[("page", "1"), ("limit", "50")])
    assert paged.status == 400 and "page is not declared" in paged.message
    assert api(gitea, "GET", "/repos/timmy/home/issues/1/comments").status == 200
    # A token in the query is deprecated in the spec: the header it is.
    assert api(gitea, "GET", "/user", query=[("token", TOKEN)]).status == 400
    assert len(gitea.violations) == 3


@pytest.mark.parametrize("name,value,why", [
    ("state", "opened", "is not one of"),
    ("page", "two", "is not an integer"),
    ("since", "2026-12-03 10:00:00", "is not an RFC 3339 date-time"),
    ("since", "yesterday", "is not an RFC 3339 date-time"),
    ("type", "prs", "is not one of"),
])
def test_a_mistyped_query_parameter_is_refused(gitea: FakeGitea, name: str, value: str, why: str) -> None:
    answer = api(gitea, "GET", "/repos/timmy/home/issues", query=[(name, value)])
    assert answer.status == 400 and why in answer.message
    assert len(gitea.violations) == 1 and gitea.violations[0].operation == "issueListIssues"


def test_minimum_and_repeated_query_parameters(gitea: FakeGitea) -> None:
    assert api(gitea, "GET", "/repos/timmy/home/pulls", query=[("page", "0")]).status == 400   # minimum: 1
    assert api(gitea, "GET", "/repos/timmy/home/issues", query=[("state", "open"), ("state", "all")]).status == 400
    assert api(gitea, "GET", "/repos/timmy/home/pulls", query=[("labels", "1"), ("labels", "2")]).status == 200
    assert api(gitea, "GET", "/repos/timmy/home/issues", query=[("since", "2026-12-03T10:00:00+01:00")]).status == 200
    assert len(gitea.violations) == 2


def test_a_body_against_its_schema(gitea: FakeGitea) -> None:
    gitea.create_issue(REPO, "one")
    path = "/repos/timmy/home/issues/1/comments"
    wrong_type = api(gitea, "POST", path, body={"body": 5})
    assert wrong_type.status == 400 and "body: body: 5 is not of type 'string'" in wrong_type.message
    missing = api(gitea, "POST", path, body={})
    assert missing.status == 400 and "'body' is a required property" in missing.message
    misspelt = api(gitea, "POST", path, body={"body": "hello", "bodyy": "x"})
    assert misspelt.status == 400 and "'bodyy' was unexpected" in misspelt.message
    as_form = api(gitea, "POST", path, raw=b"body=hello", content_type="application/x-www-form-urlencoded")
    assert as_form.status == 400 and "Content-Type application/json" in as_form.message
    not_json = api(gitea, "POST", path, raw=b"{body: hello}")
    assert not_json.status == 400 and "not JSON" in not_json.message
    on_a_get = api(gitea, "GET", "/repos/timmy/home/issues/1", body={"x": 1})
    assert on_a_get.status == 400 and "takes no body" in on_a_get.message
    bad_state = api(gitea, "PATCH", "/repos/timmy/home/issues/1", body={"state": True})
    assert bad_state.status == 400
    bad_due = api(gitea, "PATCH", "/repos/timmy/home/issues/1", body={"due_date": "tomorrow"})
    assert bad_due.status == 400 and "date-time" in bad_due.message
    no_do = api(gitea, "POST", "/repos/timmy/home/pulls/1/merge")
    assert no_do.status == 400 and "'do' is a required property" in no_do.message
    assert gitea.comments(REPO, 1) == [] and len(gitea.violations) == 9
    assert api(gitea, "POST", path, body={"body": "hello"}).status == 201
    assert len(gitea.violations) == 9


def test_a_path_parameter_of_the_wrong_type_is_refused(gitea: FakeGitea) -> None:
    assert api(gitea, "GET", "/repos/timmy/home/issues/first").status == 400
    assert "path parameter index" in gitea.violations[0].reason


def test_every_request_is_recorded(gitea: FakeGitea) -> None:
    gitea.create_issue(REPO, "one")
    before = time.monotonic()
    api(gitea, "POST", "/repos/timmy/home/issues/1/comments", body={"body": "hi"}, query=None)
    api(gitea, "GET", "/repos/timmy/home/issues", query=[("state", "all"), ("limit", "5")])
    posted, listed = gitea.requests[-2:]
    assert posted.method == "POST" and posted.path == "/api/v1/repos/timmy/home/issues/1/comments"
    assert posted.body == {"body": "hi"} and posted.status == 201 and posted.user == "allegro"
    assert posted.headers["Authorization"] == "token " + TOKEN and posted.operation == "issueCreateComment"
    assert listed.query == {"state": "all", "limit": "5"} and listed.body is None
    assert before <= posted.at <= listed.at <= time.monotonic()
    assert [r.operation for r in gitea.calls(method="GET")] == ["issueListIssues"]


# -- answers checked against the spec --------------------------------------------------------------

def tour(fake: FakeGitea) -> None:
    """Every modelled operation once, as a client following the spec would call them."""
    fake.add_branch(REPO, "allegro/issue-1")
    fake.add_label(REPO, "bug", "#ee0701")
    fake.create_issue(REPO, "Broken", "it breaks", user="timmy", labels=["bug"])
    calls: List[Tuple[str, str, Any, Optional[List[Tuple[str, str]]]]] = [
        ("GET", "/user", None, None),
        ("GET", "/repos/timmy/home", None, None),
        ("POST", "/repos/timmy/home/labels", {"name": "status/working", "color": "00aabb", "exclusive": True}, None),
        ("POST", "/repos/timmy/home/issues", {"title": "Made by the API", "body": "text", "labels": [1]}, None),
        ("GET", "/repos/timmy/home/issues", None, [("state", "all"), ("since", "2020-01-01T00:00:00Z")]),
        ("GET", "/repos/timmy/home/issues/1", None, None),
        ("PATCH", "/repos/timmy/home/issues/2", {"title": "Renamed", "body": "new"}, None),
        ("POST", "/repos/timmy/home/issues/1/comments", {"body": "On it"}, None),
        ("GET", "/repos/timmy/home/issues/1/comments", None, [("since", "2020-01-01T00:00:00Z")]),
        ("GET", "/repos/timmy/home/issues/comments", None, [("page", "1"), ("limit", "50")]),
        ("GET", "/repos/timmy/home/issues/comments/1", None, None),
        ("PATCH", "/repos/timmy/home/issues/comments/1", {"body": "On it, edited"}, None),
        ("GET", "/repos/timmy/home/labels", None, [("limit", "50")]),
        ("GET", "/repos/timmy/home/issues/1/labels", None, None),
        ("POST", "/repos/timmy/home/issues/1/labels", {"labels": [2]}, None),
        ("PUT", "/repos/timmy/home/issues/1/labels", {"labels": ["bug", "status/working"]}, None),
        ("DELETE", "/repos/timmy/home/issues/1/labels/2", None, None),
        ("DELETE", "/repos/timmy/home/issues/2/labels", None, None),
        ("GET", "/repos/timmy/home/branches", None, None),
        ("GET", "/repos/timmy/home/branches/allegro%2Fissue-1", None, None),
        ("POST", "/repos/timmy/home/pulls", {"head": "allegro/issue-1", "base": "main", "title": "Fix", "body": "Fixes #1"}, None),
        ("GET", "/repos/timmy/home/pulls", None, [("state", "open"), ("sort", "recentupdate")]),
        ("GET", "/repos/timmy/home/pulls/3", None, None),
        ("GET", "/repos/timmy/home/pulls/main/allegro%2Fissue-1", None, None),
        ("PATCH", "/repos/timmy/home/pulls/3", {"body": "Fixes #1 (edited)"}, None),
        ("GET", "/repos/timmy/home/pulls/3/merge", None, None),
        ("POST", "/repos/timmy/home/pulls/3/merge", {"do": "squash", "delete_branch_after_merge": True}, None),
        ("GET", "/repos/timmy/home/pulls/3/merge", None, None),
        ("PATCH", "/repos/timmy/home/issues/1", {"state": "closed"}, None),
        ("DELETE", "/repos/timmy/home/issues/comments/1", None, None),
    ]
    for method, path, body, query in calls:
        answer = api(fake, method, path, body=body, query=query)
        assert answer.status < 500 and answer.status != 400, (method, path, answer.status, answer.data[:300])


def test_every_answer_of_a_tour_validates_against_the_spec(gitea: FakeGitea) -> None:
    tour(gitea)
    gitea.assert_clean()
    statuses = [(r.operation, r.status) for r in gitea.requests]
    assert ("issueEditIssue", 201) in statuses and ("repoMergePullRequest", 200) in statuses
    assert ("repoPullRequestIsMerged", 404) in statuses and ("repoPullRequestIsMerged", 204) in statuses
    assert ("issueRemoveLabel", 204) in statuses and ("issueDeleteComment", 204) in statuses


def test_an_answer_against_the_spec_is_a_fault_of_the_fake(gitea: FakeGitea, monkeypatch: pytest.MonkeyPatch) -> None:
    gitea.create_issue(REPO, "one")
    original = gitea._issue_json

    def broken(issue: Any, viewer: Any) -> Dict[str, Any]:
        shown = original(issue, viewer)
        shown["number"] = str(shown["number"])
        shown["closed_at"] = "yesterday"
        return shown

    monkeypatch.setattr(gitea, "_issue_json", broken)
    answer = api(gitea, "GET", "/repos/timmy/home/issues/1")
    assert answer.status == 500 and "violates the spec" in answer.message
    reasons = " | ".join(v.reason for v in gitea.response_violations)
    assert "number: '1' is not of type 'integer'" in reasons and "closed_at" in reasons
    assert gitea.violations == []
    with pytest.raises(AssertionError, match="answer against the spec"):
        gitea.assert_clean()


def test_an_undeclared_success_status_is_caught(gitea: FakeGitea) -> None:
    operation = gitea.spec.operations["issueEditIssue"]
    assert gitea.spec.check_response(operation, 201, json.dumps(gitea.create_issue(REPO, "x")).encode()) == []
    assert "200 is not a status the spec declares" in gitea.spec.check_response(operation, 200, b"{}")[0]
    merge = gitea.spec.operations["repoMergePullRequest"]
    assert gitea.spec.check_response(merge, 200, b"") == []
    assert gitea.spec.check_response(merge, 200, b"{}") != []                 # `empty` means empty
    assert gitea.spec.check_response(merge, 405, b'{"message":"","url":"x"}') == []


def test_times_are_written_as_go_writes_them() -> None:
    with FakeGitea(users={"allegro": TOKEN}, repos=[REPO], tz=timezone(timedelta(hours=2))) as fake:
        shown = fake.create_issue(REPO, "one")
        assert shown["created_at"].endswith("+02:00") and parse_rfc3339(shown["created_at"]) is not None
        fake.assert_clean()
    with FakeGitea(users={"allegro": TOKEN}, repos=[REPO]) as fake:
        fake.create_issue(REPO, "one")
        shown = api(fake, "GET", "/repos/timmy/home/issues/1").json
        assert shown["updated_at"].endswith("Z") and "." not in shown["updated_at"]
        assert shown["closed_at"] is None and shown["pull_request"] is None and shown["assignees"] is None


# -- pagination ------------------------------------------------------------------------------------

def test_pages_carry_gitea_link_and_total_count_headers(gitea: FakeGitea) -> None:
    for n in range(7):
        gitea.create_issue(REPO, "issue %d" % (n + 1))
        gitea.advance(1)
    gitea.max_page_size = 3
    first = api(gitea, "GET", "/repos/timmy/home/issues", query=[("state", "all"), ("limit", "50")])
    assert first.status == 200 and first.headers["X-Total-Count"] == "7" and numbers(first) == [7, 6, 5]
    base = gitea.base_url + "/api/v1/repos/timmy/home/issues"
    assert first.headers["Link"] == ('<%s?limit=50&page=2&state=all>; rel="next",<%s?limit=50&page=3&state=all>; rel="last"'
                                     % (base, base))
    second = api(gitea, "GET", "/repos/timmy/home/issues", query=[("state", "all"), ("limit", "50"), ("page", "2")])
    assert numbers(second) == [4, 3, 2]
    assert {rel: parse_qs_page(url) for rel, url in second.links().items()} == {"next": 3, "last": 3, "first": 1, "prev": 1}
    third = api(gitea, "GET", "/repos/timmy/home/issues", query=[("state", "all"), ("limit", "50"), ("page", "3")])
    assert numbers(third) == [1] and {rel: parse_qs_page(url) for rel, url in third.links().items()} == {"first": 1, "prev": 2}
    # A page past the end is empty; Gitea's paginator takes it for the last page.
    past = api(gitea, "GET", "/repos/timmy/home/issues", query=[("state", "all"), ("limit", "50"), ("page", "9")])
    assert past.json == [] and {rel: parse_qs_page(url) for rel, url in past.links().items()} == {"first": 1, "prev": 2}
    gitea.assert_clean()


def parse_qs_page(url: str) -> int:
    return int(urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["page"][0])


def test_following_next_links_reads_every_issue_once(gitea: FakeGitea) -> None:
    for n in range(11):
        gitea.create_issue(REPO, "issue %d" % (n + 1))
    gitea.max_page_size = 4
    seen: List[int] = []
    url = "/repos/timmy/home/issues?state=all&limit=4&page=1"
    while url:
        split = urllib.parse.urlsplit(url)
        answer = api(gitea, "GET", split.path.replace("/api/v1", "", 1),
                     query=urllib.parse.parse_qsl(split.query))
        seen += numbers(answer)
        url = answer.links().get("next", "")
    assert sorted(seen) == list(range(1, 12)) and len(seen) == 11
    gitea.assert_clean()


def test_link_urls_keep_the_query_escaped_as_go_escapes_it(gitea: FakeGitea) -> None:
    for n in range(3):
        gitea.create_issue(REPO, "issue %d" % n)
    since = "2020-01-01T10:00:00+01:00"
    answer = api(gitea, "GET", "/repos/timmy/home/issues", query=[("since", since), ("limit", "1"), ("labels", "a b")])
    assert answer.status == 200 and len(answer.json) == 1
    assert "?labels=a+b&limit=1&page=2&since=2020-01-01T10%3A00%3A00%2B01%3A00>" in answer.links()["next"] + ">"
    split = urllib.parse.urlsplit(answer.links()["next"])
    assert dict(urllib.parse.parse_qsl(split.query))["since"] == since


def test_page_size_defaults_to_30_and_an_empty_list_has_no_link(gitea: FakeGitea) -> None:
    empty = api(gitea, "GET", "/repos/timmy/home/issues")
    assert empty.json == [] and empty.headers["X-Total-Count"] == "0" and "Link" not in empty.headers
    for n in range(31):
        gitea.create_issue(REPO, "issue %d" % n)
    page = api(gitea, "GET", "/repos/timmy/home/issues")
    assert len(page.json) == 30 and set(page.links()) == {"next", "last"}


def test_the_comment_feed_and_labels_count_but_link_no_next_page(gitea: FakeGitea) -> None:
    gitea.create_issue(REPO, "one")
    for n in range(5):
        gitea.comment(REPO, 1, "comment %d" % n, user="timmy")
        gitea.add_label(REPO, "label-%d" % n)
    feed = api(gitea, "GET", "/repos/timmy/home/issues/comments", query=[("limit", "2")])
    assert [c["body"] for c in feed.json] == ["comment 0", "comment 1"]
    assert feed.headers["X-Total-Count"] == "5" and "Link" not in feed.headers
    labels = api(gitea, "GET", "/repos/timmy/home/labels", query=[("limit", "2"), ("page", "3")])
    assert [l["name"] for l in labels.json] == ["label-4"] and labels.headers["X-Total-Count"] == "5"
    assert "Link" not in labels.headers
    one = api(gitea, "GET", "/repos/timmy/home/issues/1/comments")
    assert len(one.json) == 5 and one.headers["X-Total-Count"] == "5" and "Link" not in one.headers


# -- issues, since and labels ----------------------------------------------------------------------

def test_since_compares_updated_at_inclusive_in_whole_seconds(gitea: FakeGitea) -> None:
    gitea.create_issue(REPO, "old")
    gitea.create_issue(REPO, "touched later")
    gitea.advance(60)
    mark = gitea.rfc3339(gitea.now())
    gitea.comment(REPO, 2, "new comment", user="timmy")
    changed = api(gitea, "GET", "/repos/timmy/home/issues", query=[("state", "all"), ("since", mark)])
    assert numbers(changed) == [2] and changed.json[0]["updated_at"] == mark and changed.json[0]["comments"] == 1
    feed = api(gitea, "GET", "/repos/timmy/home/issues/comments", query=[("since", mark)])
    assert [c["body"] for c in feed.json] == ["new comment"]
    before = api(gitea, "GET", "/repos/timmy/home/issues", query=[("state", "all"), ("before", gitea.rfc3339(gitea.now() - 1))])
    assert numbers(before) == [1]
    gitea.advance(60)
    gitea.edit_comment(REPO, feed.json[0]["id"], "edited")       # a comment's edit moves only the comment
    later = gitea.rfc3339(gitea.now())
    assert numbers(api(gitea, "GET", "/repos/timmy/home/issues", query=[("state", "all"), ("since", later)])) == []
    assert len(api(gitea, "GET", "/repos/timmy/home/issues/comments", query=[("since", later)]).json) == 1


def test_state_defaults_to_open_for_issues(gitea: FakeGitea) -> None:
    gitea.create_issue(REPO, "open")
    gitea.create_issue(REPO, "closed")
    gitea.close_issue(REPO, 2)
    assert numbers(api(gitea, "GET", "/repos/timmy/home/issues")) == [1]
    assert numbers(api(gitea, "GET", "/repos/timmy/home/issues", query=[("state", "closed")])) == [2]
    assert numbers(api(gitea, "GET", "/repos/timmy/home/issues", query=[("state", "all")])) == [2, 1]


def test_labels_filter_needs_every_known_label_and_drops_unknown_names(gitea: FakeGitea) -> None:
    gitea.add_label(REPO, "bug")
    gitea.add_label(REPO, "allegro")
    gitea.create_issue(REPO, "bug only", labels=["bug"])
    gitea.create_issue(REPO, "both", labels=["bug", "allegro"])
    gitea.create_issue(REPO, "none")

    def listed(labels: str) -> List[int]:
        return numbers(api(gitea, "GET", "/repos/timmy/home/issues", query=[("labels", labels)]))

    assert listed("bug") == [2, 1]
    assert listed("bug,allegro") == [2]
    assert listed("bug,nosuch") == [2, 1]
    assert listed("nosuch") == [3, 2, 1]            # no known label: no filter at all, as in Gitea
    assert listed("Bug") == [3, 2, 1]               # names match exactly


def test_editing_an_issue_answers_201_and_moves_updated_at(gitea: FakeGitea) -> None:
    created = gitea.create_issue(REPO, "one", "body")
    gitea.advance(5)
    closed = api(gitea, "PATCH", "/repos/timmy/home/issues/1", body={"state": "closed", "title": "One"})
    assert closed.status == 201 and closed.json["state"] == "closed" and closed.json["title"] == "One"
    assert closed.json["closed_at"] == closed.json["updated_at"] != created["updated_at"]
    assert api(gitea, "PATCH", "/repos/timmy/home/issues/1", body={"state": "reopened"}).status == 412
    reopened = api(gitea, "PATCH", "/repos/timmy/home/issues/1", body={"state": "open"})
    assert reopened.json["state"] == "open" and reopened.json["closed_at"] is None
    assert api(gitea, "GET", "/repos/timmy/home/issues/9").status == 404
    assert api(gitea, "GET", "/repos/timmy/nothing/issues").status == 404
    gitea.assert_clean()


def test_issue_labels_by_id_or_name_with_exclusive_scopes(gitea: FakeGitea) -> None:
    bug = gitea.add_label(REPO, "bug")
    working = gitea.add_label(REPO, "status/working", exclusive=True)
    done = gitea.add_label(REPO, "status/done", exclusive=True)
    gitea.create_issue(REPO, "one")
    added = api(gitea, "POST", "/repos/timmy/home/issues/1/labels", body={"labels": [bug["id"], working["id"], 999]})
    assert added.status == 200 and [l["name"] for l in added.json] == ["bug", "status/working"]
    moved = api(gitea, "POST", "/repos/timmy/home/issues/1/labels", body={"labels": ["status/done"]})
    assert [l["name"] for l in moved.json] == ["bug", "status/done"]      # one per exclusive scope
    assert api(gitea, "POST", "/repos/timmy/home/issues/1/labels", body={"labels": [1, "bug"]}).status == 400
    assert api(gitea, "POST", "/repos/timmy/home/issues/1/labels", body={"labels": [True]}).status == 400
    replaced = api(gitea, "PUT", "/repos/timmy/home/issues/1/labels", body={"labels": ["status/working"]})
    assert [l["name"] for l in replaced.json] == ["status/working"]
    assert api(gitea, "DELETE", "/repos/timmy/home/issues/1/labels/%d" % done["id"]).status == 204   # not on it
    assert api(gitea, "DELETE", "/repos/timmy/home/issues/1/labels/999").status == 422
    assert api(gitea, "DELETE", "/repos/timmy/home/issues/1/labels/%d" % working["id"]).status == 204
    assert gitea.issue(REPO, 1)["labels"] == []
    shown = api(gitea, "GET", "/repos/timmy/home/labels").json
    assert [l["name"] for l in shown] == ["bug", "status/done", "status/working"] and shown[0]["color"] == "ee0701"
    gitea.assert_clean()


# -- pull requests ---------------------------------------------------------------------------------

def test_a_pull_request_is_an_issue(gitea: FakeGitea) -> None:
    gitea.create_issue(REPO, "Broken", user="timmy")
    gitea.add_branch(REPO, "allegro/issue-1")
    made = api(gitea, "POST", "/repos/timmy/home/pulls",
               body={"head": "allegro/issue-1", "base": "main", "title": "Fix the thing", "body": "Fixes #1"})
    assert made.status == 201 and made.json["number"] == 2 and made.json["user"]["login"] == "allegro"
    assert made.json["head"]["ref"] == "allegro/issue-1" and made.json["base"]["ref"] == "main"
    assert made.json["head"]["sha"] == gitea.branches(REPO)["allegro/issue-1"].sha
    assert made.json["url"] == made.json["html_url"] == gitea.base_url + "/timmy/home/pulls/2"
    everything = api(gitea, "GET", "/repos/timmy/home/issues", query=[("state", "all")]).json
    assert [(i["number"], i["pull_request"] is not None) for i in everything] == [(2, True), (1, False)]
    meta = everything[0]["pull_request"]
    assert meta == {"merged": False, "merged_at": None, "draft": False, "html_url": made.json["html_url"]}
    assert numbers(api(gitea, "GET", "/repos/timmy/home/issues", query=[("type", "issues")])) == [1]
    assert numbers(api(gitea, "GET", "/repos/timmy/home/issues", query=[("type", "pulls")])) == [2]
    as_issue = api(gitea, "GET", "/repos/timmy/home/issues/2").json
    assert as_issue["html_url"].endswith("/pulls/2") and as_issue["url"].endswith("/api/v1/repos/timmy/home/issues/2")
    assert api(gitea, "GET", "/repos/timmy/home/pulls/1").status == 404      # an issue is no pull request
    said = api(gitea, "POST", "/repos/timmy/home/issues/2/comments", body={"body": "Review me"}).json
    assert said["pull_request_url"].endswith("/pulls/2") and said["issue_url"] == ""
    assert api(gitea, "GET", "/repos/timmy/home/pulls/2").json["comments"] == 1
    gitea.assert_clean()


def test_pull_and_issue_ids_are_separate_sequences(gitea: FakeGitea) -> None:
    gitea.create_issue(REPO, "one")
    gitea.create_issue(REPO, "two")
    gitea.add_branch(REPO, "feature")
    pull = gitea.create_pull(REPO, "feature", title="three")
    assert pull["number"] == 3 and pull["id"] == 1 and gitea.issue(REPO, 3)["id"] == 3


def test_a_second_pull_for_the_same_head_and_base_is_409(gitea: FakeGitea) -> None:
    gitea.add_branch(REPO, "feature")
    body = {"head": "feature", "base": "main", "title": "Feature"}
    assert api(gitea, "POST", "/repos/timmy/home/pulls", body=body).status == 201
    again = api(gitea, "POST", "/repos/timmy/home/pulls", body=dict(body, title="Feature again"))
    assert again.status == 409
    assert again.message.startswith("pull request already exists for these targets [id: 1, issue_id: 1,")
    assert "head_branch: feature, base_branch: main]" in again.message
    assert len(gitea.pulls(REPO)) == 1
    gitea.close_issue(REPO, 1)                       # a closed one does not block a new one
    assert api(gitea, "POST", "/repos/timmy/home/pulls", body=body).json["number"] == 2
    found = api(gitea, "GET", "/repos/timmy/home/pulls/main/feature")
    assert found.status == 200 and found.json["number"] == 1        # any state; the oldest
    assert api(gitea, "GET", "/repos/timmy/home/pulls/main/nosuch").status == 404
    gitea.assert_clean()


def test_creating_a_pull_refuses_as_gitea_does(gitea: FakeGitea) -> None:
    gitea.add_branch(REPO, "feature")
    path = "/repos/timmy/home/pulls"
    assert api(gitea, "POST", path, body={"head": "feature", "base": "main"}).message == "[Title]: Required"
    assert api(gitea, "POST", path, body={"head": "main", "base": "main", "title": "x"}).status == 422
    assert api(gitea, "POST", path, body={"head": "nosuch", "base": "main", "title": "x"}).status == 404
    assert api(gitea, "POST", path, body={"head": "stranger:feature", "base": "main", "title": "x"}).status == 404
    assert api(gitea, "POST", path, body={"head": "timmy:feature", "base": "main", "title": "x"}).status == 201
    gitea.assert_clean()


def test_merging_marks_the_pull_merged_and_closes_it(gitea: FakeGitea) -> None:
    gitea.add_branch(REPO, "feature")
    pull = gitea.create_pull(REPO, "feature", title="Feature", user="allegro")
    main_before = gitea.branches(REPO)["main"].sha
    gitea.advance(3)
    stale = api(gitea, "POST", "/repos/timmy/home/pulls/1/merge", body={"do": "merge", "head_commit_id": "0" * 40})
    assert stale.status == 409 and stale.message == "head out of date"
    merged = api(gitea, "POST", "/repos/timmy/home/pulls/1/merge",
                 body={"do": "merge", "head_commit_id": pull["head"]["sha"], "delete_branch_after_merge": True})
    assert merged.status == 200 and merged.data == b""
    shown = api(gitea, "GET", "/repos/timmy/home/pulls/1").json
    assert shown["merged"] is True and shown["state"] == "closed" and shown["merged_by"]["login"] == "allegro"
    assert shown["merged_at"] == shown["closed_at"] == shown["updated_at"] and shown["merge_commit_sha"]
    assert shown["head"]["sha"] == pull["head"]["sha"] and shown["head"]["ref"] == "refs/pull/1/head"
    assert gitea.branches(REPO)["main"].sha == shown["merge_commit_sha"] != main_before
    assert "feature" not in gitea.branches(REPO)
    as_issue = api(gitea, "GET", "/repos/timmy/home/issues/1").json
    assert as_issue["state"] == "closed" and as_issue["pull_request"]["merged"] is True
    assert as_issue["pull_request"]["merged_at"] == shown["merged_at"]
    again = api(gitea, "POST", "/repos/timmy/home/pulls/1/merge", body={"do": "merge"})
    assert again.status == 405 and again.message == ""
    assert api(gitea, "GET", "/repos/timmy/home/pulls/1/merge").status == 204
    assert api(gitea, "PATCH", "/repos/timmy/home/issues/1", body={"state": "open"}).status == 412
    gitea.assert_clean()


def test_merge_refusals(gitea: FakeGitea) -> None:
    for name in ("closed", "wip", "conflict", "manual"):
        gitea.add_branch(REPO, name)
    gitea.create_pull(REPO, "closed")
    gitea.close_issue(REPO, 1)
    gitea.create_pull(REPO, "wip", title="WIP: not yet")
    gitea.create_pull(REPO, "conflict")
    gitea.set_mergeable(REPO, 3, False)
    gitea.create_pull(REPO, "manual")

    def merge(number: int, style: str = "merge") -> Answer:
        return api(gitea, "POST", "/repos/timmy/home/pulls/%d/merge" % number, body={"do": style})

    assert merge(1).status == 404
    assert (merge(2).status, merge(2).message) == (405, "Work in progress PRs cannot be merged")
    assert api(gitea, "GET", "/repos/timmy/home/pulls/2").json["draft"] is True
    assert (merge(3).status, merge(3).message) == (405, "Please try again later")
    assert merge(4, "manually-merged").status == 405
    assert merge(4, "rebase").status == 200
    assert merge(99).status == 404
    gitea.assert_clean()


def test_the_pulls_list_without_state_lists_every_state(gitea: FakeGitea) -> None:
    for name in ("a", "b", "c"):
        gitea.add_branch(REPO, name)
        gitea.create_pull(REPO, name, title=name)
        gitea.advance(1)
    gitea.close_issue(REPO, 1)
    gitea.merge_pull(REPO, 2)
    assert numbers(api(gitea, "GET", "/repos/timmy/home/pulls")) == [3, 2, 1]
    assert numbers(api(gitea, "GET", "/repos/timmy/home/pulls", query=[("state", "open")])) == [3]
    assert numbers(api(gitea, "GET", "/repos/timmy/home/pulls", query=[("state", "closed"), ("sort", "oldest")])) == [1, 2]
    gitea.assert_clean()


# -- branches --------------------------------------------------------------------------------------

def test_branches_are_listed_and_found_with_the_slash_encoded(gitea: FakeGitea) -> None:
    gitea.advance(1)
    gitea.add_branch(REPO, "allegro/issue-7", protected=True)
    listed = api(gitea, "GET", "/repos/timmy/home/branches")
    assert [b["name"] for b in listed.json] == ["allegro/issue-7", "main"]       # newest commit first
    assert listed.headers["X-Total-Count"] == "2"
    one = api(gitea, "GET", "/repos/timmy/home/branches/allegro%2Fissue-7")
    assert one.status == 200 and one.json["protected"] is True and one.json["commit"]["id"]
    assert api(gitea, "GET", "/repos/timmy/home/branches/nosuch").status == 404
    assert api(gitea, "GET", "/repos/timmy/home").json["default_branch"] == "main"
    gitea.assert_clean()
    # The spec's {branch} is one path segment: a raw slash is a path the spec does not have.
    assert api(gitea, "GET", "/repos/timmy/home/branches/allegro/issue-7").status == 400


# -- forbidden and unmodelled ----------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("GET", "/repos/timmy/home/contents/README.md"),
    ("POST", "/repos/timmy/home/contents"),
    ("PUT", "/repos/timmy/home/contents/notes.txt"),
    ("GET", "/repos/timmy/home/git/refs/heads/main"),
    ("GET", "/repos/timmy/home/git/trees/main"),
    ("GET", "/repos/timmy/home/raw/README.md"),
    ("GET", "/repos/timmy/home/archive/main.zip"),
    ("GET", "/repos/timmy/home/media/logo.png"),
    ("POST", "/repos/timmy/home/diffpatch"),
    ("GET", "/repos/timmy/home/commits"),
    ("GET", "/repos/timmy/home/compare/main...feature"),
    ("GET", "/repos/timmy/home/pulls/1.diff"),
    ("GET", "/repos/timmy/home/pulls/1/files"),
    ("POST", "/repos/timmy/home/pulls/1/update"),
    ("POST", "/repos/timmy/home/branches"),
    ("DELETE", "/repos/timmy/home/branches/main"),
    ("POST", "/repos/timmy/home/tags"),
    ("POST", "/repos/timmy/home/wiki/new"),
])
def test_contents_and_git_data_are_forbidden_and_recorded(gitea: FakeGitea, method: str, path: str) -> None:
    answer = api(gitea, method, path, body={} if method in ("POST", "PUT") else None)
    assert answer.status == 403 and "must not touch repository contents or git data" in answer.message
    assert [r.path for r in gitea.forbidden] == ["/api/v1" + path]
    assert gitea.violations == [] and gitea.response_violations == []
    with pytest.raises(AssertionError, match="forbidden"):
        gitea.assert_clean()


def test_an_operation_the_fake_does_not_model_is_501_and_recorded(gitea: FakeGitea) -> None:
    answer = api(gitea, "GET", "/repos/timmy/home/milestones")
    assert answer.status == 501 and "issueGetMilestonesList" in answer.message
    gitea.create_issue(REPO, "one")
    assignees = api(gitea, "PATCH", "/repos/timmy/home/issues/1", body={"assignees": ["timmy"]})
    assert assignees.status == 501
    assert len(gitea.unimplemented) == 2 and gitea.violations == []


# -- misbehaviour ----------------------------------------------------------------------------------

def test_fail_next_refuses_without_applying(gitea: FakeGitea) -> None:
    gitea.create_issue(REPO, "one")
    gitea.fail_next(2, status=503)
    first = api(gitea, "POST", "/repos/timmy/home/issues/1/comments", body={"body": "lost"})
    second = api(gitea, "GET", "/repos/timmy/home/issues/1")
    third = api(gitea, "GET", "/repos/timmy/home/issues/1")
    assert (first.status, second.status, third.status) == (503, 503, 200)
    assert gitea.comments(REPO, 1) == []
    gitea.fail_next(1, method="POST", path=r"/comments$")        # only matching requests count
    assert api(gitea, "GET", "/repos/timmy/home/issues/1").status == 200
    assert api(gitea, "POST", "/repos/timmy/home/issues/1/comments", body={"body": "x"}).status == 500
    assert api(gitea, "POST", "/repos/timmy/home/issues/1/comments", body={"body": "x"}).status == 201
    gitea.assert_clean()


def test_rate_limit_next_answers_429_with_retry_after(gitea: FakeGitea) -> None:
    gitea.rate_limit_next(1, retry_after=7)
    limited = api(gitea, "GET", "/user")
    assert limited.status == 429 and limited.headers["Retry-After"] == "7" and "message" in limited.json
    assert api(gitea, "GET", "/user").status == 200
    gitea.assert_clean()


def test_slow_next_applies_at_once_and_answers_late(gitea: FakeGitea) -> None:
    gitea.create_issue(REPO, "one")
    gitea.slow_next(1, 0.6)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        api(gitea, "POST", "/repos/timmy/home/issues/1/comments", body={"body": "slow"}, timeout=0.2)
    assert [c["body"] for c in gitea.comments(REPO, 1)] == ["slow"]      # applied though the client gave up
    time.sleep(0.6)
    answer = api(gitea, "GET", "/user")
    assert answer.status == 200 and time.monotonic() - started < 5


def test_drop_after_write_applies_then_closes_without_an_answer(gitea: FakeGitea) -> None:
    gitea.create_issue(REPO, "one")
    gitea.drop_after_write_next(1)
    assert api(gitea, "GET", "/repos/timmy/home/issues/1").status == 200     # reads are not dropped
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        api(gitea, "POST", "/repos/timmy/home/issues/1/comments", body={"body": "did it land?"})
    assert [c["body"] for c in gitea.comments(REPO, 1)] == ["did it land?"]
    dropped = gitea.calls("issueCreateComment")[0]
    assert dropped.dropped and dropped.status == 0
    assert api(gitea, "POST", "/repos/timmy/home/issues/1/comments", body={"body": "again"}).status == 201
    gitea.assert_clean()


def test_wait_for_sees_requests_as_they_come(gitea: FakeGitea) -> None:
    import threading
    threading.Timer(0.2, lambda: api(gitea, "GET", "/user")).start()
    assert gitea.wait_for(lambda fake: len(fake.calls("userGetCurrent")) == 1, timeout=5)
    assert not gitea.wait_for(lambda fake: len(fake.calls("userGetCurrent")) == 2, timeout=0.2)


# -- webhooks --------------------------------------------------------------------------------------

SECRET = "hook-secret-5150"


@dataclass
class Received:
    path: str
    headers: Dict[str, str]
    body: bytes


class Receiver:
    """A webhook receiver on 127.0.0.1: records each POST and answers 200 `{"ok":true}`, or 401 when
    X-Gitea-Signature is not the body's HMAC with `secret`. Each answer waits `pause` seconds, so
    that deliveries sent side by side would overlap (`most_in_flight`)."""

    def __init__(self, secret: str = SECRET, pause: float = 0.0) -> None:
        self.secret, self.pause = secret, pause
        self.received: List[Received] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                    receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                time.sleep(receiver.pause)
                good = hmac.compare_digest(self.headers.get("X-Gitea-Signature", ""),
                                           hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest())
                answer = b'{"ok":true}' if good else b'{"error":"bad signature"}'
                with receiver.lock:
                    receiver.in_flight -= 1
                self.send_response(200 if good else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def payloads(self) -> List[Dict[str, Any]]:
        return [json.loads(got.body) for got in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def kinds(fake: FakeGitea) -> List[Tuple[str, str, str]]:
    """(X-Gitea-Event, X-Gitea-Event-Type, action) of every delivery, in order."""
    return [(d.event, d.event_type, d.action) for d in fake.deliveries]


def valid(fake: FakeGitea, definition: str, value: Any) -> List[str]:
    """What is wrong with `value` as the spec's `definition`, held as the fake's answers are."""
    return fake.spec.validate({"$ref": "#/definitions/" + definition}, value, answer=True)


def test_a_webhook_delivery_is_signed_and_carries_giteas_headers(gitea: FakeGitea, receiver: Receiver) -> None:
    gitea.add_webhook(receiver.url + "/hook", SECRET, REPO)
    gitea.create_issue(REPO, "Broken <again> & again", user="timmy")
    assert gitea.wait_for_deliveries(10)
    [delivery] = gitea.deliveries
    [got] = receiver.received
    headers = got.headers
    assert got.path == "/hook" and got.body == delivery.body
    assert {k: v for k, v in headers.items() if k != "Host"} == delivery.headers       # Go keeps Host apart
    assert headers["Content-Type"] == "application/json" and headers["Content-Length"] == str(len(got.body))
    assert uuid.UUID(headers["X-Gitea-Delivery"]).version == 4 and headers["X-Gitea-Delivery"] == delivery.id
    assert (headers["X-Gitea-Event"], headers["X-Gitea-Event-Type"]) == ("issues", "issues")
    for prefix in ("X-Gogs-", "X-GitHub-"):
        assert [headers[prefix + n] for n in ("Delivery", "Event", "Event-Type")] == [delivery.id, "issues", "issues"]
    sha256 = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert headers["X-Gitea-Signature"] == headers["X-Gogs-Signature"] == sha256
    assert headers["X-Hub-Signature-256"] == "sha256=" + sha256
    assert headers["X-Hub-Signature"] == "sha1=" + hmac.new(SECRET.encode(), got.body, hashlib.sha1).hexdigest()
    assert headers["X-Gitea-Hook-Installation-Target-Type"] == headers["X-GitHub-Hook-Installation-Target-Type"] == "repository"
    # Written as Go's json.MarshalIndent writes it: two-space indent, HTML characters escaped.
    assert got.body.startswith(b'{\n  "action": "opened",\n  "number": 1,\n  "issue": {\n    "id": 1,')
    assert b"Broken \\u003cagain\\u003e \\u0026 again" in got.body and b"<again>" not in got.body
    assert json.loads(got.body)["issue"]["title"] == "Broken <again> & again"
    assert (delivery.status, delivery.response, delivery.error) == (200, b'{"ok":true}', "")
    assert 0 < delivery.queued_at <= delivery.sent_at <= delivery.answered_at


def test_webhook_payloads_are_giteas_structs_holding_what_the_api_answers(gitea: FakeGitea, receiver: Receiver) -> None:
    gitea.add_webhook(receiver.url, SECRET, REPO)
    gitea.create_issue(REPO, "Broken", "it breaks", user="timmy")
    as_api = api(gitea, "GET", "/repos/timmy/home/issues/1", token=TIMMY).json
    said = gitea.comment(REPO, 1, "Seen it too", user="allegro")
    gitea.add_branch(REPO, "fix")
    gitea.create_pull(REPO, "fix", title="Fix it", body="Refs #1", user="allegro")
    pull_as_api = api(gitea, "GET", "/repos/timmy/home/pulls/2", token=TIMMY).json
    gitea.comment(REPO, 2, "Ready", user="timmy")
    gitea.edit_comment(REPO, said["id"], "Seen it too, twice")
    assert gitea.wait_for_deliveries(10)
    opened, commented, created, pushed, pulled, reviewed, edited = receiver.payloads()

    assert list(opened) == ["action", "number", "issue", "repository", "sender", "commit_id"]
    assert opened["issue"] == as_api and opened["commit_id"] == "" and opened["sender"]["login"] == "timmy"
    assert list(commented) == ["action", "issue", "comment", "repository", "sender", "is_pull"]
    assert commented["comment"] == said and commented["is_pull"] is False and commented["issue"]["comments"] == 1
    assert list(pulled) == ["action", "number", "pull_request", "requested_reviewer", "repository", "sender",
                            "commit_id", "review"]
    assert pulled["pull_request"] == pull_as_api and pulled["requested_reviewer"] is None and pulled["review"] is None
    assert list(reviewed) == ["action", "issue", "pull_request", "comment", "repository", "sender", "is_pull"]
    assert reviewed["is_pull"] is True and reviewed["issue"]["pull_request"]["html_url"].endswith("/pulls/2")
    assert list(edited) == ["action", "issue", "comment", "changes", "repository", "sender", "is_pull"]
    assert edited["changes"] == {"body": {"from": "Seen it too"}} and edited["comment"]["body"] == "Seen it too, twice"
    assert list(created) == ["sha", "ref", "ref_type", "repository", "sender"] and created["ref_type"] == "branch"
    assert pushed["ref"] == "refs/heads/fix" and pushed["before"] == "0" * 40 and pushed["total_commits"] == 1
    for payload in (opened, commented, pulled, reviewed, edited):
        for key, definition in (("issue", "Issue"), ("comment", "Comment"), ("pull_request", "PullRequest"),
                                ("repository", "Repository"), ("sender", "User")):
            if key in payload:
                assert valid(gitea, definition, payload[key]) == [], (payload["action"], key)
    assert valid(gitea, "PayloadCommit", pushed["head_commit"]) == [] and pushed["commits"] == [pushed["head_commit"]]
    assert all(d.status == 200 for d in gitea.deliveries)


def test_each_change_sends_the_webhook_event_gitea_sends(gitea: FakeGitea, receiver: Receiver) -> None:
    everything = gitea.add_webhook(receiver.url, SECRET)                     # every repository
    gitea.add_repo("timmy/other")
    elsewhere = gitea.add_webhook(receiver.url, SECRET, "timmy/other")
    gitea.add_label(REPO, "bug")
    gitea.create_issue(REPO, "one", user="timmy")
    said = gitea.comment(REPO, 1, "first", user="timmy")
    gitea.edit_comment(REPO, said["id"], "first, edited")
    gitea.edit_issue(REPO, 1, title="One", body="text")
    gitea.edit_issue(REPO, 1, title="One")                                   # no change: nothing sent
    gitea.label_issue(REPO, 1, ["bug"])
    gitea.close_issue(REPO, 1)
    gitea.close_issue(REPO, 1)
    gitea.reopen_issue(REPO, 1)
    gitea.add_branch(REPO, "feature")
    gitea.create_pull(REPO, "feature", title="Feature")
    gitea.push(REPO, "feature")
    gitea.label_issue(REPO, 2, ["bug"])
    gitea.comment(REPO, 2, "LGTM", user="timmy")
    gitea.edit_issue(REPO, 2, title="Feature!")
    gitea.merge_pull(REPO, 2, user="allegro")
    gitea.delete_branch(REPO, "feature")
    assert gitea.wait_for_deliveries(10)
    assert kinds(gitea) == [
        ("issues", "issues", "opened"), ("issue_comment", "issue_comment", "created"),
        ("issue_comment", "issue_comment", "edited"), ("issues", "issues", "edited"), ("issues", "issues", "edited"),
        ("issues", "issue_label", "label_updated"), ("issues", "issues", "closed"), ("issues", "issues", "reopened"),
        ("create", "create", ""), ("push", "push", ""), ("pull_request", "pull_request", "opened"),
        ("push", "push", ""), ("pull_request", "pull_request_sync", "synchronized"),
        ("pull_request", "pull_request_label", "label_updated"), ("issue_comment", "pull_request_comment", "created"),
        ("pull_request", "pull_request", "edited"), ("pull_request", "pull_request", "closed"), ("delete", "delete", ""),
    ]
    payloads = [d.payload for d in gitea.deliveries]
    assert [p.get("changes") for p in payloads[3:5]] == [{"title": {"from": "one"}}, {"body": {"from": ""}}]
    assert payloads[15]["changes"] == {"title": {"from": "Feature"}}
    merged = payloads[16]["pull_request"]
    assert merged["merged"] is True and merged["state"] == "closed" and payloads[16]["sender"]["login"] == "allegro"
    assert [l["name"] for l in payloads[5]["issue"]["labels"]] == ["bug"]
    assert all(d.hook is everything for d in gitea.deliveries) and elsewhere.id != everything.id
    assert {d.headers["X-Gitea-Hook-Installation-Target-Type"] for d in gitea.deliveries} == {"system"}
    gitea.create_issue("timmy/other", "there")
    assert gitea.wait_for_deliveries(10)
    assert [d.hook for d in gitea.deliveries[-2:]] == [everything, elsewhere]
    assert gitea.deliveries[-2].body == gitea.deliveries[-1].body and gitea.deliveries[-2].id != gitea.deliveries[-1].id


def test_the_apis_writes_send_webhooks_as_the_user_who_made_them(gitea: FakeGitea, receiver: Receiver) -> None:
    gitea.add_webhook(receiver.url, SECRET, REPO)
    repo = "/repos/timmy/home"
    bug = api(gitea, "POST", repo + "/labels", body={"name": "bug", "color": "ee0701"}).json["id"]
    assert gitea.deliveries == []                                           # a new label is no event
    assert api(gitea, "POST", repo + "/issues", body={"title": "By the API"}).status == 201
    comment_id = api(gitea, "POST", repo + "/issues/1/comments", body={"body": "hi"}).json["id"]
    api(gitea, "PATCH", repo + "/issues/comments/%d" % comment_id, body={"body": "hi, edited"})
    api(gitea, "POST", repo + "/issues/1/labels", body={"labels": [bug]})
    api(gitea, "PUT", repo + "/issues/1/labels", body={"labels": [bug]})     # no change: nothing sent
    api(gitea, "DELETE", repo + "/issues/1/labels/%d" % bug)
    api(gitea, "POST", repo + "/issues/1/labels", body={"labels": ["bug"]})
    api(gitea, "DELETE", repo + "/issues/1/labels")
    api(gitea, "PATCH", repo + "/issues/1", body={"title": "By the API, renamed", "state": "closed"})
    api(gitea, "DELETE", repo + "/issues/comments/%d" % comment_id)
    gitea.add_branch(REPO, "fix", author="allegro")
    api(gitea, "POST", repo + "/pulls", body={"head": "fix", "base": "main", "title": "Fix"})
    api(gitea, "PATCH", repo + "/pulls/2", body={"body": "Refs #1"})
    api(gitea, "POST", repo + "/pulls/2/merge", body={"do": "merge", "delete_branch_after_merge": True})
    assert gitea.wait_for_deliveries(10)
    gitea.assert_clean()
    assert kinds(gitea) == [
        ("issues", "issues", "opened"), ("issue_comment", "issue_comment", "created"),
        ("issue_comment", "issue_comment", "edited"), ("issues", "issue_label", "label_updated"),
        ("issues", "issue_label", "label_updated"), ("issues", "issue_label", "label_updated"),
        ("issues", "issue_label", "label_cleared"), ("issues", "issues", "edited"), ("issues", "issues", "closed"),
        ("issue_comment", "issue_comment", "deleted"), ("create", "create", ""), ("push", "push", ""),
        ("pull_request", "pull_request", "opened"), ("pull_request", "pull_request", "edited"),
        ("pull_request", "pull_request", "closed"), ("delete", "delete", ""),
    ]
    assert {d.payload["sender"]["login"] for d in gitea.deliveries} == {"allegro"}
    deleted = gitea.deliveries[9].payload
    assert deleted["comment"]["id"] == comment_id and deleted["issue"]["comments"] == 0
    assert gitea.deliveries[13].payload["changes"] == {"body": {"from": ""}}
    assert [d.status for d in gitea.deliveries] == [200] * len(gitea.deliveries)


def test_held_webhook_deliveries_keep_the_payload_of_their_change_and_go_out_in_order_when_released(
        gitea: FakeGitea, receiver: Receiver) -> None:
    gitea.add_webhook(receiver.url, SECRET, REPO)
    gitea.hold_deliveries()
    first = gitea.create_issue(REPO, "Draft", user="timmy")
    gitea.advance(1)
    second = gitea.edit_issue(REPO, 1, title="Final")
    assert not gitea.wait_for_deliveries(timeout=0.5)
    assert receiver.received == [] and all(d.sent_at == 0 for d in gitea.deliveries)
    gitea.release_deliveries()
    assert gitea.wait_for_deliveries(10)
    assert [got.headers["X-Gitea-Delivery"] for got in receiver.received] == [d.id for d in gitea.deliveries]
    old, new = receiver.payloads()
    assert (old["issue"]["title"], old["issue"]["updated_at"]) == ("Draft", first["updated_at"])
    assert (new["issue"]["title"], new["issue"]["updated_at"]) == ("Final", second["updated_at"])
    assert first["updated_at"] != second["updated_at"]


def test_webhook_deliveries_go_out_one_at_a_time_in_the_order_of_the_changes(gitea: FakeGitea) -> None:
    slow = Receiver(pause=0.03)
    try:
        gitea.add_webhook(slow.url, SECRET, REPO)
        gitea.create_issue(REPO, "Busy")
        for index in range(8):
            gitea.comment(REPO, 1, "comment %d" % index)
        assert gitea.wait_for_deliveries(20)
        assert [got.headers["X-Gitea-Delivery"] for got in slow.received] == [d.id for d in gitea.deliveries]
        assert [p["comment"]["body"] for p in slow.payloads()[1:]] == ["comment %d" % i for i in range(8)]
        assert slow.most_in_flight == 1
        assert all(a.answered_at <= b.sent_at for a, b in zip(gitea.deliveries, gitea.deliveries[1:]))
    finally:
        slow.close()


def test_redeliver_sends_a_webhook_body_again_under_a_new_id_or_the_same_one(gitea: FakeGitea, receiver: Receiver) -> None:
    gitea.add_webhook(receiver.url, SECRET, REPO)
    gitea.create_issue(REPO, "Once")
    assert gitea.wait_for_deliveries(10)
    [original] = gitea.deliveries
    replayed = gitea.redeliver(original.id)
    repeated = gitea.redeliver(original.id, same_id=True)
    assert gitea.wait_for_deliveries(10)
    assert gitea.deliveries == [original, replayed, repeated]
    assert replayed.id != original.id and uuid.UUID(replayed.id) and repeated.id == original.id
    assert replayed.replay_of == repeated.replay_of == original.id
    assert [got.body for got in receiver.received] == [original.body] * 3
    assert [got.headers["X-Gitea-Delivery"] for got in receiver.received] == [original.id, replayed.id, original.id]
    with pytest.raises(KeyError):
        gitea.redeliver("no-such-delivery")


def test_a_webhook_with_another_secret_or_none_sends_a_signature_the_receiver_refuses(
        gitea: FakeGitea, receiver: Receiver) -> None:
    gitea.add_webhook(receiver.url, "not-" + SECRET, REPO)
    gitea.add_webhook(receiver.url, "", REPO)
    gitea.create_issue(REPO, "Signed wrongly")
    assert gitea.wait_for_deliveries(10)
    wrong, unsigned = gitea.deliveries
    assert (wrong.status, wrong.response) == (401, b'{"error":"bad signature"}')
    assert wrong.headers["X-Gitea-Signature"] == hmac.new(b"not-" + SECRET.encode(), wrong.body, hashlib.sha256).hexdigest()
    assert unsigned.status == 401 and unsigned.headers["X-Gitea-Signature"] == ""
    assert (unsigned.headers["X-Hub-Signature-256"], unsigned.headers["X-Hub-Signature"]) == ("sha256=", "sha1=")


def test_a_webhook_delivery_that_cannot_be_made_is_recorded_and_the_next_one_goes_out(
        gitea: FakeGitea, receiver: Receiver) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    gitea.add_webhook("http://127.0.0.1:%d/hook" % port, SECRET, REPO)
    gitea.add_webhook(receiver.url, SECRET, REPO)
    gitea.create_issue(REPO, "Anyone there?")
    assert gitea.wait_for_deliveries(10)
    failed, made = gitea.deliveries
    assert failed.status == 0 and failed.error.startswith("Delivery: ") and failed.done
    assert made.status == 200 and len(receiver.received) == 1


def test_close_stops_the_webhook_delivery_thread_and_sends_nothing_more(receiver: Receiver) -> None:
    fake = FakeGitea(users={"allegro": TOKEN}, repos=[REPO])
    fake.add_webhook(receiver.url, SECRET, REPO)
    fake.create_issue(REPO, "Before")
    assert fake.wait_for_deliveries(10)
    sender = fake._sender
    assert sender is not None and sender.is_alive()
    fake.hold_deliveries()
    fake.create_issue(REPO, "Held when closed")
    fake.close()
    assert not sender.is_alive()
    fake.release_deliveries()
    assert not fake.wait_for_deliveries(timeout=0.3) and len(receiver.received) == 1


def test_each_request_records_when_its_answer_was_written(gitea: FakeGitea) -> None:
    gitea.create_issue(REPO, "one")
    before = time.monotonic()
    api(gitea, "GET", "/repos/timmy/home/issues/1")
    gitea.drop_after_write_next(1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        api(gitea, "POST", "/repos/timmy/home/issues/1/comments", body={"body": "lost"})
    answered, dropped = gitea.requests[-2:]
    assert before <= answered.at <= answered.answered <= time.monotonic()
    assert dropped.dropped and dropped.answered == 0


def test_check_responses_off_skips_only_the_checks_of_the_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeGitea(users={"allegro": TOKEN}, repos=[REPO], check_responses=False) as fake:
        fake.create_issue(REPO, "one")
        original = fake._issue_json

        def broken(issue: Any, viewer: Any) -> Dict[str, Any]:
            return dict(original(issue, viewer), number="1")

        monkeypatch.setattr(fake, "_issue_json", broken)
        answer = api(fake, "GET", "/repos/timmy/home/issues/1")
        assert answer.status == 200 and answer.json["number"] == "1" and fake.response_violations == []
        assert api(fake, "GET", "/repos/timmy/home/issues", query=[("per_page", "5")]).status == 400
        assert len(fake.violations) == 1
