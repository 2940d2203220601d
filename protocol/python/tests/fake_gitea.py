"""An in-memory Gitea (v1.26.3) REST API on loopback, for the Gitea bridge's end-to-end tests
(standard library plus jsonschema).

The fake holds its client to Gitea's own API description, swagger.v1.json (Swagger 2.0, v1.26.3;
found through $GITEA_SWAGGER, tests/gitea/swagger.v1.json or /work/shared/gitea/swagger.v1.json):

- every request must name a path of the spec (under /api/v1) with that method; its query
  parameters must be ones the operation declares, of the declared type, enum, minimum and format
  (date-time is RFC 3339 as Go's time.Parse reads it); a body must be JSON (Content-Type
  application/json) and valid against the operation's body schema, `$ref`s resolved into the
  definitions and checked with Draft 4 (Swagger 2.0's schema dialect), and, stricter than the spec,
  without properties the definition does not name (Gitea would silently ignore a misspelt field).
  A request that fails is answered 400 `{"message": "fake gitea: <why>"}` and recorded in
  `violations`. Asking for a token in the query (`?token=`, `?access_token=`, deprecated in the
  spec) or `sudo` is a violation too;
- every answer the fake gives is checked against the operation's response for that status: a 2xx
  body against its schema (every property the definition names must be present unless Gitea's Go
  struct has `omitempty`, no others, null only where Gitea's Go struct holds a pointer or a nil
  slice: see NULLABLE), an empty response must be empty, an error body must be Gitea's APIError.
  A 2xx status the operation does not declare, or an error status neither declared nor one of
  GENERIC_ERROR_STATUSES, is a fault of the fake: it is recorded in `response_violations` and the
  client gets a 500 saying so;
- repository contents and git data (contents, git/*, raw, archive, media, diffpatch, commit lists,
  compare, diffs and files of pulls, pull update, tags, wiki, branch and release writes, forks and
  mirrors: FORBIDDEN) are answered 403 and recorded in `forbidden`;
- operations of the spec the fake does not model are answered 501 and recorded in `unimplemented`.

Authentication is `Authorization: token TOKEN` (or `Bearer TOKEN`); a token maps to a user. A
missing or unknown token is 401 (stricter than Gitea, which lets anonymous readers see public
repositories). Every authenticated user may read and write every repository. A request is checked in
this order: base path, forbidden paths, path and method, token, parameters and body.

Behaviour modelled on Gitea's source (routers/api/v1/repo, services/convert, models/issues):

- Lists: `page` from 1 (0 or less is 1), `limit` 0 or less is `default_page_size` (Gitea's
  DEFAULT_PAGING_NUM, 30) and is capped at `max_page_size` (MAX_RESPONSE_ITEMS, 50). Issues, pulls
  and branches answer `X-Total-Count` and a `Link` header written as Gitea's genAPILinks does:
  `<{ROOT_URL}{path}?{query with page replaced, keys sorted}>; rel="next"`, then "last", "first",
  "prev", joined by "," without a space; "next"/"last" only when there is a next page,
  "first"/"prev" only when the page is not the first (a page past the end counts as the last one).
  The repository's comment feed (issues/comments) and labels answer X-Total-Count but no Link
  (ListRepoIssueComments and ListLabels never set one); the comments of one issue are not paged
  at all (the spec declares neither page nor limit there) and answer only X-Total-Count.
- Issues list newest first (created desc, id desc). `state` defaults to open. `labels` is a comma
  separated list of label names; an issue must carry every named label that exists; names that do
  not exist are dropped, and when none exists there is no label filter at all (all issues come
  back). `since`/`before` compare `updated_at` (inclusive, whole seconds, as Gitea stores them).
  `type` is issues or pulls; `q` is a case-insensitive substring of title, body or comments (Gitea
  uses its indexer); `created_by`/`assigned_by`/`mentioned_by` name a user (unknown: 404);
  `milestones` match nothing the fake has and are dropped, as Gitea drops unknown ones.
- A pull request is an issue: one index sequence per repository, it lists among the issues with a
  `pull_request` object (merged, merged_at, draft, html_url), its comments and labels are the
  issue's. Its own `id` (pull_request table) differs from the issue's `id`.
- GET pulls with no `state` lists every state (models/issues/pull_list.go filters only for "open"
  or "closed", whatever the spec's `default: open` says); `sort` as Gitea's applySorts; `labels`
  (repeated) matches any; `poster` unknown is 400.
- POST pulls: head, base and title are required (binding, 422 "[Head]: Required"); head == base is
  422; a head or base branch the repository lacks is 404 (`user:branch` heads only for the owner:
  the fake has no forks); an open, unmerged pull request for the same head and base is 409
  "pull request already exists for these targets [...]". GET pulls/{base}/{head} finds one of any
  state (the oldest when several: Gitea's query has no order).
- POST pulls/{index}/merge: 200 with an empty body; already merged 405 (message ""); closed 404;
  a title starting "WIP:" or "[WIP]" 405; `mergeable` off 405 "Please try again later"; a
  `head_commit_id` other than the head's 409 "head out of date"; manually-merged 405 unless the
  repository allows it. Merging marks the pull merged (merged_at, merged_by, merge_commit_sha),
  closes it, adds the merge commit to the base branch, and with delete_branch_after_merge deletes
  the head branch (not the default, not a protected one, not one another open pull uses).
- PATCH issues/{index} answers 201 (Gitea's TODO "should be 200"); `state` other than open or
  closed is 412 "unknown state: ..."; changing the state of a merged pull is 412.
- Issue labels: POST adds, PUT replaces, both take label ids (numbers) or names (strings), not
  mixed (400); unknown ones are dropped; answer the issue's labels sorted by name. Exclusive labels
  (`scope/name`, exclusive) keep one per scope. DELETE labels/{id}: unknown label 422, a label the
  issue lacks 204.
- `updated_at` of an issue moves on every change to it (title, body, state, labels, a new comment,
  a merge, a push to the head of an open pull); editing a comment moves only the comment's, and
  deleting one moves nothing. Times are whole seconds, written as Go writes them (RFC 3339, "Z" in
  UTC, or with `tz=` another offset such as "+02:00"); users Gitea shows to an anonymous reader
  (posters, owners) have a placeholder e-mail, is_admin false and last_login 0001-01-01T00:00:00Z.
- Other writes: POST issues (201), POST labels (201, color normalized to six lowercase hex digits
  without "#", a bad color 422), comment GET/PATCH/DELETE by id.

Test helpers act as a person on the web would (no request recorded): `add_user`, `add_repo`,
`add_branch`, `push`, `delete_branch`, `add_label`, `create_issue`, `comment`, `edit_comment`,
`close_issue`, `reopen_issue`, `edit_issue`, `label_issue`, `create_pull`, `merge_pull`,
`set_mergeable` (those that change an issue, a comment or a branch send webhooks, as the doer
`user`: by default the poster for creations and edits, the repository's owner otherwise);
`advance(seconds)` moves the fake's clock. State reads `issue`, `issues`,
`comments`, `pulls`, `pull`, `labels` and `repo` answer the JSON the API would; `branches` the
`Branch` records (name, sha, commit time, protected).

Misbehaviour on demand (each takes an optional `method` and a `path` regular expression searched in
the path after /api/v1, so that only matching requests count; requests refused by the checks above
never count): `fail_next(n, status=500)`, `rate_limit_next(n, retry_after=2)` (429 with
Retry-After), `slow_next(n, seconds)` (answered after a delay, the work done first),
`drop_after_write_next(n)` (the next n POST/PATCH/PUT/DELETE are applied, then the connection is
closed without an answer). `max_page_size` and `default_page_size` are attributes.

Webhooks, as Gitea 1.26 sends them (services/webhook: notifier.go, deliver.go; modules/structs/hook.go;
modules/webhook/type.go): `add_webhook(url, secret, repo=None)` (None: every repository, as a system
webhook). Each change made by a helper or through the API queues, for every matching webhook, a
delivery whose body is fixed when the change is made (Gitea stores the payload with the hook task)
and written as Go's json.MarshalIndent writes it (two-space indent, UTF-8, `<`, `>`, `&` escaped as
\u003c, \u003e, \u0026). One background thread sends them in order, one at a time, after the
change (asynchronously, as Gitea's queue does): POST, `Content-Type: application/json`,
`X-Gitea-Delivery` (a UUID), `X-Gitea-Event` (HookEventType.Event(): "issues" also for issue_label,
"issue_comment" for comments on issues and pulls, "pull_request" also for pull_request_label and
pull_request_sync), `X-Gitea-Event-Type` (the precise type), `X-Gitea-Signature` (hex HMAC-SHA256
of the body with the hook's secret, empty without one), `X-Gitea-Hook-Installation-Target-Type`
("repository", or "system" for repo None), the X-Gogs-* and X-GitHub-* copies, `X-Hub-Signature`
(sha1=...) and `X-Hub-Signature-256` (sha256=...). No retry (Gitea has none): an attempt that fails
is recorded as such. Payloads are Gitea's structs, with the JSON the API answers (the same
converters): IssuePayload (action, number, changes when edited, issue, repository, sender,
commit_id), IssueCommentPayload (action, issue, pull_request for a comment on a pull, comment,
changes when edited, repository, sender, is_pull), PullRequestPayload (action, number, changes,
pull_request, requested_reviewer, repository, sender, commit_id, review), PushPayload, CreatePayload,
DeletePayload. What sends what:

- issue opened, edited (title, body: one delivery each, `changes.title/body.from`), closed,
  reopened: `issues`; for a pull request the same actions are `pull_request` (PullRequestPayload);
- labels changed (added, replaced, one removed): `issue_label` / `pull_request_label`,
  label_updated; all cleared (DELETE .../labels): label_cleared;
- comment created, edited (`changes.body.from`), deleted: `issue_comment`, or on a pull
  `pull_request_comment`;
- pull request opened, merged (action closed, `merged` true), base changed (edited,
  `changes.ref.from`); a push to the head of open pulls: `push`, then `pull_request_sync`
  (synchronized) for each; a new branch: `create` then `push`; a deleted branch (also after a merge
  with delete_branch_after_merge): `delete`.

Only changes that change something send a delivery (Gitea notifies some no-op edits too). Not
modelled: the push of a merge commit to the base branch, assignees, milestones, reviews.
`deliveries` records every delivery (`Delivery`: id, event, event type, body, headers sent, status
and body answered, error, queued_at/sent_at/answered_at monotonic times); `hold_deliveries()` /
`release_deliveries()` queue without sending until released; `redeliver(id)` sends a delivery's
body again as Gitea's "Redeliver" does, under a new id (`same_id=True`: under the same id, as a
retrying proxy would); `wait_for_deliveries()` waits until every queued one is answered. A hook
added with another secret than the receiver's sends deliveries with a wrong signature.

Every request is recorded in `requests` (a `Request`: time.monotonic() when it arrived and when its
answer was written, method, path, query, JSON body, headers, user, operation, status).
`assert_clean()` raises when anything was refused, forbidden, unimplemented or answered against the
spec. `FakeGitea(check_responses=False)` skips checking the fake's own answers against the spec
(requests are still checked): for benchmarks only, where the schema checks of large answers would
dominate the fake's time; tests keep the default. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import hmac
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import (Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Mapping, Optional, Pattern, Sequence, Set,
                    Tuple, Union)

import jsonschema

from fake_http import TrackedHandler

# -- the spec ---------------------------------------------------------------------------------------

SPEC_CANDIDATES = [
    os.environ.get("GITEA_SWAGGER", ""),
    str(Path(__file__).resolve().parent / "gitea" / "swagger.v1.json"),
    "/work/shared/gitea/swagger.v1.json",
]

# Error statuses any operation may answer though the spec does not list them for it: 400 (the fake's
# own refusals, Gitea's bad requests), 401 (token), 403 (forbidden paths, permissions), 404 (an
# unknown repository: Gitea's repoAssignment middleware), 405, 409, 412, 422 (binding errors),
# 429 and 5xx (injected), 501 (not modelled).
GENERIC_ERROR_STATUSES = frozenset({400, 401, 403, 404, 405, 409, 412, 422, 429, 500, 501, 502, 503, 504})

# Properties Gitea writes as null when unset (Go pointers and nil slices without omitempty); the spec
# cannot say so (Swagger 2.0 has no nullable), so answers may carry null exactly here.
NULLABLE: Dict[str, Tuple[str, ...]] = {
    "Issue": ("milestone", "assignee", "assignees", "closed_at", "due_date", "pull_request"),
    "PullRequestMeta": ("merged_at",),
    "PullRequest": ("milestone", "assignee", "assignees", "requested_reviewers", "requested_reviewers_teams",
                    "merged_at", "merge_commit_sha", "merged_by", "due_date", "closed_at"),
    "PRBranchInfo": ("repo",),
    "PayloadCommit": ("added", "removed", "modified"),
    "PayloadCommitVerification": ("signer",),
    "Milestone": ("closed_at", "due_on"),
}

# Properties with `omitempty` in Gitea's Go structs: absent when empty. Every other property of these
# definitions is always present in Gitea's answers, so the fake must write it too.
OMITEMPTY: Dict[str, Tuple[str, ...]] = {
    "Repository": ("parent", "permissions", "internal_tracker", "external_tracker", "external_wiki", "repo_transfer"),
    "PullRequest": ("review_comments", "additions", "deletions", "changed_files"),
}
RENDERED = ("User", "Repository", "Permission", "InternalTracker", "RepositoryMeta", "Label", "Issue",
            "PullRequestMeta", "Comment", "PullRequest", "PRBranchInfo", "Branch", "PayloadCommit", "PayloadUser",
            "PayloadCommitVerification")

# Paths (after /api/v1) that read or write repository contents or git data; (methods or None for any).
_REPO = r"^/repos/[^/]+/[^/]+"
FORBIDDEN: List[Tuple[Optional[FrozenSet[str]], Pattern[str]]] = [
    (None, re.compile(_REPO + r"/(contents|contents-ext|file-contents)(/|$)")),
    (None, re.compile(_REPO + r"/git(/|$)")),
    (None, re.compile(_REPO + r"/(raw|archive|media|editorconfig)(/|$)")),
    (None, re.compile(_REPO + r"/diffpatch$")),
    (None, re.compile(_REPO + r"/commits$")),
    (None, re.compile(_REPO + r"/compare/")),
    (None, re.compile(_REPO + r"/pulls/[^/]+\.(diff|patch)$")),
    (None, re.compile(_REPO + r"/pulls/[^/]+/(files|commits|update)$")),
    (None, re.compile(_REPO + r"/(tags|tag_protections|wiki|push_mirrors|push_mirrors-sync|mirror-sync|merge-upstream)(/|$)")),
    (frozenset({"POST", "PUT", "PATCH", "DELETE"}), re.compile(_REPO + r"/(branches|releases|forks|branch_protections)(/|$)")),
]

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})

# X-Gitea-Event for each X-Gitea-Event-Type: Gitea's HookEventType.Event() (modules/webhook/type.go).
HOOK_EVENTS: Dict[str, str] = {
    "create": "create", "delete": "delete", "fork": "fork", "push": "push",
    "issues": "issues", "issue_assign": "issues", "issue_label": "issues", "issue_milestone": "issues",
    "issue_comment": "issue_comment", "pull_request_comment": "issue_comment",
    "pull_request": "pull_request", "pull_request_assign": "pull_request", "pull_request_label": "pull_request",
    "pull_request_milestone": "pull_request", "pull_request_sync": "pull_request",
    "pull_request_review_request": "pull_request",
    "pull_request_review_approved": "pull_request_approved", "pull_request_review_rejected": "pull_request_rejected",
    "pull_request_review_comment": "pull_request_comment",
    "wiki": "wiki", "repository": "repository", "release": "release",
}
ZERO_SHA = "0" * 40
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_GO_INT = re.compile(r"^[+-]?[0-9]+$")
_GO_BOOL = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
            "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def parse_rfc3339(text: str) -> Optional[datetime]:
    """The moment `text` names, read as Go's time.Parse(time.RFC3339, ...) reads it; None if it cannot."""
    if not _RFC3339.match(text):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or parse_rfc3339(value) is not None


@FORMATS.checks("int64")
def _is_int64(value: object) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or -(2 ** 63) <= value < 2 ** 63


@FORMATS.checks("int32")
def _is_int32(value: object) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or -(2 ** 31) <= value < 2 ** 31


@dataclass(frozen=True)
class Operation:
    """One operation of the spec: a method on a path template."""

    method: str
    template: str
    operation_id: str
    parameters: Tuple[Dict[str, Any], ...]
    responses: Dict[str, Dict[str, Any]]   # status -> response object, with "x-ref" naming a shared one
    consumes: Tuple[str, ...]

    def __str__(self) -> str:
        return "%s %s (%s)" % (self.method, self.template, self.operation_id)


@dataclass
class _Route:
    template: str
    regex: Pattern[str]
    names: List[str]                   # parameter names, in the order of the regex's groups
    literal: int                       # characters outside parameters: more is more specific
    operations: Dict[str, Operation]


class GiteaSpec:
    """swagger.v1.json, readied for checking requests and answers."""

    def __init__(self, path: Optional[str] = None) -> None:
        candidates = [path] if path else [c for c in SPEC_CANDIDATES if c]
        found = next((c for c in candidates if Path(c).is_file()), None)
        if found is None:
            raise FileNotFoundError("Gitea's swagger.v1.json not found (tried %s); set GITEA_SWAGGER" % candidates)
        self.path = found
        self.document: Dict[str, Any] = json.loads(Path(found).read_text())
        self.base_path: str = self.document["basePath"]
        self.version: str = self.document["info"]["version"]
        definitions = self.document["definitions"]
        self.request_definitions = _strict(definitions)
        self.response_definitions = _complete(_nullable(_strict(definitions)))
        self.operations: Dict[str, Operation] = {}
        self._routes: List[_Route] = []
        global_consumes = tuple(self.document.get("consumes", ()))
        for template, item in self.document["paths"].items():
            shared = item.get("parameters", [])
            regex, names, literal = _template_regex(template)
            route = _Route(template, regex, names, literal, {})
            for method, raw in item.items():
                if method == "parameters":
                    continue
                responses: Dict[str, Dict[str, Any]] = {}
                for status, response in raw.get("responses", {}).items():
                    if "$ref" in response:
                        name = response["$ref"].rsplit("/", 1)[-1]
                        response = dict(self.document["responses"][name], **{"x-ref": name})
                    responses[status] = response
                operation = Operation(method.upper(), template, raw["operationId"],
                                      tuple(shared) + tuple(raw.get("parameters", ())), responses,
                                      tuple(raw.get("consumes", global_consumes)))
                route.operations[operation.method] = operation
                self.operations[operation.operation_id] = operation
            self._routes.append(route)
        self._routes.sort(key=lambda r: (-r.literal, len(r.names)))
        self._validators: Dict[Tuple[str, str], jsonschema.Draft4Validator] = {}
        self._lock = threading.Lock()

    # -- requests -------------------------------------------------------------------------------

    def match(self, method: str, path: str) -> Tuple[Optional[Operation], Dict[str, str], str]:
        """The operation for `method` on `path` (percent-encoded, after the base path), its path
        parameters (decoded), or None and why not. Literal segments win over parameters."""
        matched: List[Tuple[_Route, Dict[str, str]]] = []
        for route in self._routes:
            found = route.regex.match(path)
            if found:
                matched.append((route, {n: urllib.parse.unquote(v) for n, v in zip(route.names, found.groups())}))
        if not matched:
            return None, {}, "no path of the spec matches %s" % path
        for route, params in matched:
            if method in route.operations:
                return route.operations[method], params, ""
        return None, {}, "%s is not an operation of %s (it has %s)" % (
            method, matched[0][0].template, ", ".join(sorted(matched[0][0].operations)))

    def check_request(self, operation: Operation, path_params: Mapping[str, str], query: Mapping[str, List[str]],
                      content_type: str, raw_body: bytes) -> Tuple[List[str], Any]:
        """What is wrong with a request for `operation` (nothing: []), and its JSON body (or None)."""
        problems: List[str] = []
        declared = {p["name"]: p for p in operation.parameters}
        for name, value in path_params.items():
            parameter = declared.get(name)
            if parameter is not None:
                problems += ["path parameter %s: %s" % (name, p) for p in _check_simple(parameter, [value])]
        query_declared = {n: p for n, p in declared.items() if p.get("in") == "query"}
        for name, values in query.items():
            if name in ("token", "access_token"):
                problems.append("query parameter %s: authenticating in the query is deprecated in the spec "
                                "(securityDefinitions); send Authorization: token ..." % name)
            elif name == "sudo":
                problems.append("query parameter sudo: the bridge must act as itself")
            elif name not in query_declared:
                problems.append("query parameter %s is not declared for %s (declared: %s)" % (
                    name, operation, ", ".join(sorted(query_declared)) or "none"))
            else:
                problems += ["query parameter %s: %s" % (name, p) for p in _check_simple(query_declared[name], values)]
        for name, parameter in query_declared.items():
            if parameter.get("required") and name not in query:
                problems.append("query parameter %s is required" % name)
        body_parameter = next((p for p in operation.parameters if p.get("in") == "body"), None)
        takes_form = any(p.get("in") == "formData" for p in operation.parameters)
        body: Any = None
        if raw_body:
            if body_parameter is None and not takes_form:
                problems.append("%s takes no body, but %d bytes came" % (operation, len(raw_body)))
                return problems, None
            if takes_form:
                return problems, None
            media = content_type.split(";")[0].strip().lower()
            if media != "application/json":
                problems.append("the body must be sent as Content-Type application/json (the spec's consumes: %s), "
                                "not %r" % (", ".join(operation.consumes), content_type))
            try:
                body = json.loads(raw_body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as error:
                problems.append("the body is not JSON: %s" % error)
                return problems, None
        elif body_parameter is not None and body_parameter.get("required"):
            problems.append("%s requires a body" % operation)
        if body_parameter is not None:
            # No body binds as `{}` in Gitea: required properties must still be there.
            problems += ["body: %s" % p for p in self.validate(body_parameter["schema"], {} if body is None else body,
                                                                   answer=False)]
        return problems, body

    # -- answers --------------------------------------------------------------------------------

    def check_response(self, operation: Optional[Operation], status: int, body: Optional[bytes]) -> List[str]:
        """What is wrong with answering `status` and `body` to a request for `operation`."""
        declared = operation.responses.get(str(status)) if operation else None
        where = str(operation) if operation else "a request outside the spec"
        if declared is None:
            if 200 <= status < 300:
                return ["%d is not a status the spec declares for %s (declared: %s)" % (
                    status, where, ", ".join(sorted(operation.responses)) if operation else "none")]
            if status not in GENERIC_ERROR_STATUSES:
                return ["%d is neither declared for %s nor a generic error status" % (status, where)]
            return self._check_error_body(status, body)
        schema = declared.get("schema")
        if schema is None:
            if 200 <= status < 300:
                return [] if not body else ["%d of %s is an empty response, but a body came" % (status, where)]
            return self._check_error_body(status, body)
        if not body:
            return ["%d of %s must carry a body (schema %s)" % (status, where, json.dumps(schema))]
        try:
            value = json.loads(body)
        except ValueError as error:
            return ["%d of %s is not JSON: %s" % (status, where, error)]
        return ["%d of %s: %s" % (status, where, p) for p in self.validate(schema, value, answer=True)]

    def _check_error_body(self, status: int, body: Optional[bytes]) -> List[str]:
        if not body:
            return []
        try:
            value = json.loads(body)
        except ValueError as error:
            return ["the %d body is not JSON: %s" % (status, error)]
        return ["the %d body: %s" % (status, p)
                for p in self.validate({"$ref": "#/definitions/APIError"}, value, answer=True)]

    def validate(self, schema: Dict[str, Any], value: Any, answer: bool) -> List[str]:
        """Draft 4 errors of `value` against `schema` ($refs into the request's or the answer's
        definitions), at most five, each with where it is."""
        key = ("answer" if answer else "request", json.dumps(schema, sort_keys=True))
        with self._lock:
            validator = self._validators.get(key)
            if validator is None:
                definitions = self.response_definitions if answer else self.request_definitions
                validator = jsonschema.Draft4Validator({"definitions": definitions, "allOf": [schema]},
                                                       format_checker=FORMATS)
                self._validators[key] = validator
        errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
        return ["%s: %s" % ("/".join(str(p) for p in error.absolute_path) or "(top)", _short(error.message))
                for error in _leaves(errors)[:5]]


def _leaves(errors: Iterable[jsonschema.ValidationError]) -> List[jsonschema.ValidationError]:
    """The most specific errors (allOf and anyOf wrap the interesting ones)."""
    found: List[jsonschema.ValidationError] = []
    for error in errors:
        if error.validator == "allOf" and error.context:
            found += _leaves(error.context)
        else:
            found.append(error)
    return found


def _short(text: str) -> str:
    return text if len(text) <= 300 else text[:300] + "..."


def _template_regex(template: str) -> Tuple[Pattern[str], List[str], int]:
    names: List[str] = []
    parts: List[str] = []
    literal = 0
    for segment in template.split("/"):
        pieces = re.split(r"(\{[^}]+\})", segment)
        params = [p for p in pieces if p.startswith("{")]
        regex = ""
        for piece in pieces:
            if piece.startswith("{"):
                names.append(piece[1:-1])
                regex += "([^/]+)" if len(params) == 1 else "([^/]+?)"
            else:
                regex += re.escape(piece)
                literal += len(piece)
        parts.append(regex)
    return re.compile("^" + "/".join(parts) + "$"), names, literal


def _check_simple(parameter: Dict[str, Any], values: List[str]) -> List[str]:
    """A query or path parameter's values against its declared type, enum, bounds and format."""
    kind = parameter.get("type", "string")
    if kind == "array":
        if parameter.get("collectionFormat", "csv") != "multi":
            if len(values) > 1:
                return ["given %d times; it is one comma separated value" % len(values)]
            values = values[0].split(",") if values[0] else []
        item = dict(parameter.get("items", {}))
        return [p for value in values for p in _check_simple(item, [value])]
    if len(values) > 1:
        return ["given %d times; it takes one value" % len(values)]
    value = values[0]
    problems: List[str] = []
    number: Optional[float] = None
    if kind == "integer":
        if not _GO_INT.match(value):
            return ["%r is not an integer" % value]
        number = int(value)
        if not -(2 ** 63) <= number < 2 ** 63:
            return ["%s is out of int64" % value]
    elif kind == "number":
        try:
            number = float(value)
        except ValueError:
            return ["%r is not a number" % value]
    elif kind == "boolean":
        if value not in _GO_BOOL:
            return ["%r is not a boolean" % value]
    elif parameter.get("format") == "date-time" and parse_rfc3339(value) is None:
        problems.append("%r is not an RFC 3339 date-time (as 2026-12-03T10:00:00Z)" % value)
    if "enum" in parameter and value not in [str(e) for e in parameter["enum"]]:
        problems.append("%r is not one of %s" % (value, ", ".join(str(e) for e in parameter["enum"])))
    if number is not None and "minimum" in parameter and number < parameter["minimum"]:
        problems.append("%s is below the minimum %s" % (value, parameter["minimum"]))
    if number is not None and "maximum" in parameter and number > parameter["maximum"]:
        problems.append("%s is above the maximum %s" % (value, parameter["maximum"]))
    return problems


def _strict(definitions: Dict[str, Any]) -> Dict[str, Any]:
    """The definitions with no properties beyond those they name."""
    result = copy.deepcopy(definitions)
    for definition in result.values():
        if definition.get("type") == "object" and "properties" in definition and "additionalProperties" not in definition:
            definition["additionalProperties"] = False
    return result


def _nullable(definitions: Dict[str, Any]) -> Dict[str, Any]:
    for name, properties in NULLABLE.items():
        for prop in properties:
            schema = definitions[name]["properties"][prop]
            definitions[name]["properties"][prop] = {"anyOf": [schema, {"type": "null"}]}
    return definitions


def _complete(definitions: Dict[str, Any]) -> Dict[str, Any]:
    for name in RENDERED:
        optional = set(OMITEMPTY.get(name, ()))
        definitions[name]["required"] = sorted(p for p in definitions[name]["properties"] if p not in optional)
    return definitions


_SPEC: Optional[GiteaSpec] = None
_SPEC_LOCK = threading.Lock()


def load_spec() -> GiteaSpec:
    """The spec, read once per process."""
    global _SPEC
    with _SPEC_LOCK:
        if _SPEC is None:
            _SPEC = GiteaSpec()
        return _SPEC


# -- what happened ----------------------------------------------------------------------------------

@dataclass
class Request:
    """One request as the fake saw it and what it answered."""

    at: float                                  # time.monotonic() when it arrived
    method: str
    path: str                                  # as sent, percent-encoded, with /api/v1
    query: Dict[str, str]                      # first value of each parameter (what Gitea reads)
    query_lists: Dict[str, List[str]]          # every value
    body: Any                                  # the JSON body, None when there was none (or not JSON)
    headers: Dict[str, str]
    raw_body: bytes = b""
    user: Optional[str] = None                 # the login the token belongs to
    operation: Optional[str] = None            # the spec's operationId
    status: int = 0                            # 0: no answer (dropped, or still being answered)
    dropped: bool = False
    answer: Any = None                         # the JSON answered, if any
    answered: float = 0.0                      # time.monotonic() when the answer was written (0: none)

    def __str__(self) -> str:
        query = ("?" + urllib.parse.urlencode(self.query_lists, doseq=True)) if self.query_lists else ""
        return "%s %s%s -> %s" % (self.method, self.path, query, "dropped" if self.dropped else self.status)


@dataclass
class Violation:
    """A request (or, in response_violations, an answer) that broke the spec or a rule of the fake."""

    at: float
    method: str
    path: str
    operation: Optional[str]
    reason: str

    def __str__(self) -> str:
        return "%s %s: %s" % (self.method, self.path, self.reason)


@dataclass
class Webhook:
    """A Gitea webhook of type gitea: POST, content type application/json, every event, for one
    repository ("owner/name") or, with repo None, for every repository (a system webhook)."""

    id: int
    url: str
    secret: str
    repo: Optional[str] = None
    active: bool = True

    @property
    def target_type(self) -> str:
        """X-Gitea-Hook-Installation-Target-Type."""
        return "repository" if self.repo else "system"

    def matches(self, repo: str) -> bool:
        return self.active and (self.repo is None or self.repo.lower() == repo.lower())


@dataclass
class Delivery:
    """One hook task: a payload for one webhook, sent once (`redeliver` makes another)."""

    id: str                                    # X-Gitea-Delivery, a UUID
    hook: Webhook
    event: str                                 # X-Gitea-Event
    event_type: str                            # X-Gitea-Event-Type
    body: bytes                                # the JSON sent, fixed when the change was made
    queued_at: float                           # time.monotonic() when the change queued it
    replay_of: Optional[str] = None            # the delivery it redelivers
    headers: Dict[str, str] = field(default_factory=dict)   # as sent (signed with the hook's secret then)
    sent_at: float = 0.0                       # time.monotonic() when the POST began (0: not yet)
    answered_at: float = 0.0                   # when the answer was read or the attempt failed (0: not yet)
    status: int = 0                            # the status answered; 0: none (not yet, or failed)
    response: bytes = b""                      # the body answered
    error: str = ""                            # why no answer came (refused, timed out)

    @property
    def payload(self) -> Dict[str, Any]:
        return json.loads(self.body)

    @property
    def action(self) -> str:
        return str(self.payload.get("action", ""))

    @property
    def done(self) -> bool:
        return self.answered_at > 0

    def __str__(self) -> str:
        return "%s %s/%s %s -> %s" % (self.id, self.event, self.event_type, self.action or "-",
                                      self.status if self.done and not self.error else self.error or "pending")


def go_json(value: Any) -> bytes:
    """`value` as Gitea's json.MarshalIndent(v, "", "  ") writes a payload: two-space indent, UTF-8,
    and <, >, &, U+2028, U+2029 escaped as Go escapes them (they can only occur inside strings)."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode("utf-8")


def signature(secret: str, body: bytes, digest: Any = hashlib.sha256) -> str:
    """Gitea's signature of a delivery: the hex HMAC of the body (empty without a secret)."""
    return hmac.new(secret.encode(), body, digest).hexdigest() if secret else ""


# -- the model --------------------------------------------------------------------------------------

@dataclass
class User:
    id: int
    login: str
    token: Optional[str]
    is_admin: bool
    created: int
    full_name: str = ""


@dataclass
class Label:
    id: int
    name: str
    color: str            # six lowercase hex digits, no "#"
    description: str = ""
    exclusive: bool = False
    archived: bool = False

    @property
    def scope(self) -> str:
        """Gitea's ExclusiveScope: the part before the last "/" of an exclusive label, else ""."""
        index = self.name.rfind("/")
        if not self.exclusive or index <= 0 or index == len(self.name) - 1:
            return ""
        return self.name[:index]


@dataclass
class Branch:
    name: str
    sha: str
    committed: int
    message: str
    author: str
    protected: bool = False


@dataclass
class Comment:
    id: int
    issue: "Issue"
    user: User
    body: str
    created: int
    updated: int


@dataclass
class Pull:
    id: int
    head: str
    base: str
    head_sha: str
    merge_base: str
    merged: bool = False
    merged_at: int = 0
    merged_by: Optional[User] = None
    merge_commit_sha: str = ""
    mergeable: bool = True


@dataclass
class Issue:
    id: int
    repo: "Repo"
    number: int
    user: User
    title: str
    body: str
    created: int
    updated: int
    closed: bool = False
    closed_at: int = 0
    labels: Set[int] = field(default_factory=set)
    comments: List[Comment] = field(default_factory=list)
    pull: Optional[Pull] = None
    ref: str = ""
    content_version: int = 0

    @property
    def is_pull(self) -> bool:
        return self.pull is not None

    def is_wip(self) -> bool:
        """Gitea's IsWorkInProgress with the default WORK_IN_PROGRESS_PREFIXES."""
        title = self.title.upper()
        return title.startswith("WIP:") or title.startswith("[WIP]")


@dataclass
class Repo:
    id: int
    owner: User
    name: str
    default_branch: str
    created: int
    updated: int
    description: str = ""
    allow_manual_merge: bool = False
    branches: Dict[str, Branch] = field(default_factory=dict)
    labels: Dict[int, Label] = field(default_factory=dict)
    issues: Dict[int, Issue] = field(default_factory=dict)
    next_number: int = 1

    @property
    def full_name(self) -> str:
        return "%s/%s" % (self.owner.login, self.name)


class _Refuse(Exception):
    """An error answer, as Gitea's ctx.APIError writes it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Reply:
    status: int
    body: Any = None              # JSON-able; None: empty body
    headers: Dict[str, str] = field(default_factory=dict)


@dataclass
class _Call:
    operation: Operation
    params: Dict[str, str]
    query: Dict[str, str]
    raw_path: str
    raw_query: str
    body: Any
    user: User


@dataclass
class _Knob:
    kind: str                     # fail, rate_limit, slow, drop
    count: int
    status: int = 500
    seconds: float = 0.0
    message: str = ""
    method: Optional[str] = None
    path: Optional[Pattern[str]] = None

    def matches(self, method: str, path: str) -> bool:
        if self.kind == "drop" and method not in WRITE_METHODS:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or self.path.search(path) is not None


@dataclass
class _Outcome:
    status: int
    body: bytes
    headers: Dict[str, str]
    delay: float = 0.0
    drop: bool = False
    record: Optional[Request] = None


UserSpec = Union[Tuple[str, str], Tuple[str, str, bool]]


# -- the server -------------------------------------------------------------------------------------

class FakeGitea:
    """A loopback Gitea. `users` maps logins to tokens (or is a list of (login, token[, is_admin]));
    `repos` names repositories ("owner/name", default branch main). `base_url` is the server's
    root (the client appends /api/v1). `check_responses=False` skips checking the fake's answers
    against the spec (requests are still checked): for benchmarks only."""

    def __init__(self, users: Union[Mapping[str, str], Iterable[UserSpec], None] = None,
                 repos: Iterable[str] = (), tz: tzinfo = timezone.utc, spec: Optional[GiteaSpec] = None,
                 check_responses: bool = True) -> None:
        self.spec = spec or load_spec()
        self.tz = tz
        self.check_responses = check_responses
        self.webhooks: List[Webhook] = []
        self.deliveries: List[Delivery] = []
        self.delivery_timeout = 5.0             # Gitea's [webhook] DELIVER_TIMEOUT
        self._pending: List[Delivery] = []
        self._held = False
        self._closing = False
        self._sender: Optional[threading.Thread] = None
        self.default_page_size = 30
        self.max_page_size = 50
        self.requests: List[Request] = []
        self.violations: List[Violation] = []
        self.response_violations: List[Violation] = []
        self.forbidden: List[Request] = []
        self.unimplemented: List[Violation] = []
        self.users: Dict[str, User] = {}
        self.repos: Dict[str, Repo] = {}
        self._ids: Dict[str, int] = {}
        self._clock_offset = 0.0
        self._knobs: List[_Knob] = []
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._connections: Set[socket.socket] = set()
        items: Iterable[Any] = users.items() if isinstance(users, Mapping) else (users or ())
        for entry in items:
            self.add_user(*entry)
        for name in repos:
            self.add_repo(name)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-gitea", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    @property
    def app_url(self) -> str:
        """Gitea's ROOT_URL (with the trailing slash Gitea keeps)."""
        return self.base_url + "/"

    def close(self) -> None:
        """Stops the server and the delivery thread (deliveries not yet sent are not sent)."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
            sender = self._sender
        if sender is not None:
            sender.join(self.delivery_timeout + 5)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "FakeGitea":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- clock and ids ----------------------------------------------------------------------------

    def now(self) -> int:
        """The fake's time in whole Unix seconds (Gitea keeps timestamps in seconds)."""
        return int(time.time() + self._clock_offset)

    def advance(self, seconds: float) -> None:
        """Moves the fake's clock forward, so that later changes carry later timestamps."""
        with self._lock:
            self._clock_offset += seconds

    def _next_id(self, kind: str) -> int:
        self._ids[kind] = self._ids.get(kind, 0) + 1
        return self._ids[kind]

    def _sha(self, *parts: object) -> str:
        return hashlib.sha1(("/".join(str(p) for p in parts) + "/%d" % self._next_id("sha")).encode()).hexdigest()

    def rfc3339(self, unix: int) -> str:
        """A time as Gitea (Go's encoding/json) writes it: RFC 3339, "Z" for UTC."""
        moment = datetime.fromtimestamp(unix, self.tz)
        text = moment.strftime("%Y-%m-%dT%H:%M:%S")
        offset = moment.utcoffset() or timedelta(0)
        if offset == timedelta(0):
            return text + "Z"
        minutes = int(abs(offset.total_seconds())) // 60
        return "%s%s%02d:%02d" % (text, "+" if offset > timedelta(0) else "-", minutes // 60, minutes % 60)

    # -- people on the web (state changes without requests) ---------------------------------------

    def add_user(self, login: str, token: Optional[str] = None, is_admin: bool = False) -> User:
        with self._lock:
            user = self.users.get(login)
            if user is None:
                user = User(self._next_id("user"), login, token, is_admin, self.now())
                self.users[login] = user
            else:
                user.token, user.is_admin = token if token is not None else user.token, is_admin or user.is_admin
            return user

    def add_repo(self, full_name: str, default_branch: str = "main", description: str = "") -> Repo:
        owner_login, name = full_name.split("/", 1)
        with self._lock:
            owner = self.users.get(owner_login) or self.add_user(owner_login)
            now = self.now()
            repo = Repo(self._next_id("repo"), owner, name, default_branch, now, now, description)
            self.repos[full_name] = repo
            self._add_branch(repo, default_branch, "Initial commit", owner.login)
            return repo

    def add_branch(self, repo: str, name: str, protected: bool = False, message: Optional[str] = None,
                   author: Optional[str] = None) -> Branch:
        """A branch as if pushed with git (one new commit): webhooks `create`, then `push`."""
        with self._lock:
            target = self._repo(repo)
            pusher = self._person(author, target)
            branch = self._add_branch(target, name, message or "Work on %s" % name, author or target.owner.login)
            branch.protected = protected
            self._hook_create(target, branch, pusher)
            self._hook_push(target, branch, ZERO_SHA, pusher)
            return branch

    def _add_branch(self, repo: Repo, name: str, message: str, author: str) -> Branch:
        branch = Branch(name, self._sha(repo.full_name, name), self.now(), message, author)
        repo.branches[name] = branch
        self._changed.notify_all()
        return branch

    def push(self, repo: str, branch: str, message: str = "More work", user: Optional[str] = None) -> Branch:
        """A new commit on an existing branch; open pulls from it follow (webhooks `push`, then
        `pull_request_sync` for each such pull)."""
        with self._lock:
            target = self._repo(repo)
            pusher = self._person(user, target)
            current = target.branches[branch]
            before = current.sha
            current.sha, current.committed, current.message = self._sha(repo, branch), self.now(), message
            synced: List[Issue] = []
            for issue in target.issues.values():
                if issue.pull and not issue.pull.merged and issue.pull.head == branch and not issue.closed:
                    issue.pull.head_sha = current.sha
                    issue.updated = self.now()
                    synced.append(issue)
            self._hook_push(target, current, before, pusher)
            for issue in synced:
                self._hook_issue(issue, "synchronized", pusher, event="pull_request_sync")
            self._changed.notify_all()
            return current

    def delete_branch(self, repo: str, branch: str, user: Optional[str] = None) -> None:
        with self._lock:
            target = self._repo(repo)
            del target.branches[branch]
            self._hook_delete(target, branch, self._person(user, target))
            self._changed.notify_all()

    def add_label(self, repo: str, name: str, color: str = "ee0701", description: str = "",
                  exclusive: bool = False) -> Dict[str, Any]:
        with self._lock:
            target = self._repo(repo)
            label = Label(self._next_id("label"), name, _normalize_color(color), description, exclusive)
            target.labels[label.id] = label
            self._changed.notify_all()
            return self._label_json(target, label)

    def create_issue(self, repo: str, title: str, body: str = "", user: Optional[str] = None,
                     labels: Sequence[Union[str, int]] = ()) -> Dict[str, Any]:
        with self._lock:
            target = self._repo(repo)
            issue = self._new_issue(target, self._person(user, target), title, body)
            self._set_labels(issue, self._labels_named(target, labels), replace=True, touch=False)
            self._hook_issue(issue, "opened", issue.user)
            self._changed.notify_all()
            return self._issue_json(issue, None)

    def comment(self, repo: str, number: int, body: str, user: Optional[str] = None) -> Dict[str, Any]:
        with self._lock:
            target = self._repo(repo)
            issue = self._issue(target, number)
            made = self._new_comment(issue, self._person(user, target), body)
            self._hook_comment(made, "created", made.user)
            self._changed.notify_all()
            return self._comment_json(made)

    def edit_comment(self, repo: str, comment_id: int, body: str, user: Optional[str] = None) -> Dict[str, Any]:
        with self._lock:
            target = self._repo(repo)
            made = self._comment(target, comment_id)
            self._edit_comment(made, body, self._person(user, target) if user else made.user)
            self._changed.notify_all()
            return self._comment_json(made)

    def edit_issue(self, repo: str, number: int, title: Optional[str] = None, body: Optional[str] = None,
                   user: Optional[str] = None) -> Dict[str, Any]:
        """Title and body as given (None: unchanged); each change its own `edited` delivery."""
        with self._lock:
            target = self._repo(repo)
            issue = self._issue(target, number)
            doer = self._person(user, target) if user else issue.user
            if title is not None:
                self._edit_title(issue, title, doer)
            if body is not None:
                self._edit_body(issue, body, doer)
            self._changed.notify_all()
            return self._issue_json(issue, None)

    def close_issue(self, repo: str, number: int, user: Optional[str] = None) -> Dict[str, Any]:
        with self._lock:
            target = self._repo(repo)
            issue = self._issue(target, number)
            if self._set_state(issue, closed=True):
                self._hook_issue(issue, "closed", self._person(user, target))
            self._changed.notify_all()
            return self._issue_json(issue, None)

    def reopen_issue(self, repo: str, number: int, user: Optional[str] = None) -> Dict[str, Any]:
        with self._lock:
            target = self._repo(repo)
            issue = self._issue(target, number)
            if self._set_state(issue, closed=False):
                self._hook_issue(issue, "reopened", self._person(user, target))
            self._changed.notify_all()
            return self._issue_json(issue, None)

    def label_issue(self, repo: str, number: int, labels: Sequence[Union[str, int]], replace: bool = False,
                    user: Optional[str] = None) -> List[str]:
        """Adds (or with replace, sets) labels by name or id; answers the issue's label names."""
        with self._lock:
            target = self._repo(repo)
            issue = self._issue(target, number)
            if self._set_labels(issue, self._labels_named(target, labels), replace=replace):
                self._hook_issue(issue, "label_updated", self._person(user, target), labels=True)
            self._changed.notify_all()
            return [target.labels[i].name for i in self._sorted_labels(issue)]

    def create_pull(self, repo: str, head: str, base: Optional[str] = None, title: str = "",
                    body: str = "", user: Optional[str] = None) -> Dict[str, Any]:
        with self._lock:
            target = self._repo(repo)
            issue = self._new_pull(target, self._person(user, target), head, base or target.default_branch,
                                   title or "Merge %s" % head, body, [])
            self._hook_issue(issue, "opened", issue.user)
            self._changed.notify_all()
            return self._pull_json(issue, None)

    def merge_pull(self, repo: str, number: int, user: Optional[str] = None) -> Dict[str, Any]:
        with self._lock:
            target = self._repo(repo)
            issue = self._issue(target, number)
            self._merge(target, issue, self._person(user, target), "merge", None, False)
            self._changed.notify_all()
            return self._pull_json(issue, None)

    def set_mergeable(self, repo: str, number: int, mergeable: bool) -> None:
        """A pull Gitea found conflicting (False) cannot be merged until set back."""
        with self._lock:
            pull = self._issue(self._repo(repo), number).pull
            assert pull is not None, "#%d is not a pull request" % number
            pull.mergeable = mergeable

    def _person(self, login: Optional[str], repo: Repo) -> User:
        return self.users.get(login) or self.add_user(login) if login else repo.owner

    # -- state, as the API shows it to an admin ----------------------------------------------------

    def repo(self, repo: str) -> Dict[str, Any]:
        with self._lock:
            return self._repo_json(self._repo(repo), None)

    def issue(self, repo: str, number: int) -> Dict[str, Any]:
        with self._lock:
            return self._issue_json(self._issue(self._repo(repo), number), None)

    def issues(self, repo: str) -> List[Dict[str, Any]]:
        """Every issue and pull request, by number."""
        with self._lock:
            target = self._repo(repo)
            return [self._issue_json(target.issues[n], None) for n in sorted(target.issues)]

    def comments(self, repo: str, number: int) -> List[Dict[str, Any]]:
        with self._lock:
            return [self._comment_json(c) for c in self._issue(self._repo(repo), number).comments]

    def pulls(self, repo: str) -> List[Dict[str, Any]]:
        """Every pull request, by number."""
        with self._lock:
            target = self._repo(repo)
            return [self._pull_json(target.issues[n], None) for n in sorted(target.issues) if target.issues[n].is_pull]

    def pull(self, repo: str, number: int) -> Dict[str, Any]:
        with self._lock:
            return self._pull_json(self._issue(self._repo(repo), number), None)

    def labels(self, repo: str) -> List[Dict[str, Any]]:
        with self._lock:
            target = self._repo(repo)
            return [self._label_json(target, label) for label in sorted(target.labels.values(), key=lambda l: (l.name, l.id))]

    def branches(self, repo: str) -> Dict[str, Branch]:
        with self._lock:
            return dict(self._repo(repo).branches)

    # -- what happened ----------------------------------------------------------------------------

    def calls(self, operation_id: Optional[str] = None, method: Optional[str] = None) -> List[Request]:
        """The requests for an operation (spec operationId) or with a method, in order of arrival."""
        with self._lock:
            return [r for r in self.requests if (operation_id is None or r.operation == operation_id)
                    and (method is None or r.method == method.upper())]

    def writes(self) -> List[Request]:
        return [r for r in self.calls() if r.method in WRITE_METHODS]

    def wait_for(self, predicate: Callable[["FakeGitea"], bool], timeout: float = 30.0) -> bool:
        """Waits until predicate(fake) holds (checked on every request and change); False after timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.1))
            return True

    def problems(self) -> List[str]:
        with self._lock:
            return (["spec violation: %s" % v for v in self.violations]
                    + ["answer against the spec: %s" % v for v in self.response_violations]
                    + ["forbidden: %s" % r for r in self.forbidden]
                    + ["not modelled by the fake: %s" % v for v in self.unimplemented])

    def assert_clean(self) -> None:
        """Raises AssertionError naming every refused, forbidden, unmodelled or misanswered request."""
        problems = self.problems()
        assert not problems, "fake Gitea saw:\n  " + "\n  ".join(problems)

    # -- misbehaviour -----------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 500, message: str = "", method: Optional[str] = None,
                  path: Optional[str] = None) -> None:
        """The next `count` (matching) requests are answered `status` with an APIError body and not
        applied. Gitea hides a 500's message from non-admins, hence "" by default."""
        self._add_knob(_Knob("fail", count, status=status, message=message, method=method,
                             path=re.compile(path) if path else None))

    def rate_limit_next(self, count: int = 1, retry_after: int = 2, method: Optional[str] = None,
                        path: Optional[str] = None) -> None:
        """The next `count` (matching) requests are answered 429 with `Retry-After: retry_after`."""
        self._add_knob(_Knob("rate_limit", count, status=429, seconds=retry_after, message="rate limit exceeded",
                             method=method, path=re.compile(path) if path else None))

    def slow_next(self, count: int, seconds: float, method: Optional[str] = None, path: Optional[str] = None) -> None:
        """The next `count` (matching) requests are handled at once but answered `seconds` later."""
        self._add_knob(_Knob("slow", count, seconds=seconds, method=method, path=re.compile(path) if path else None))

    def drop_after_write_next(self, count: int = 1, method: Optional[str] = None, path: Optional[str] = None) -> None:
        """The next `count` (matching) writes are applied, then the connection is closed unanswered."""
        self._add_knob(_Knob("drop", count, method=method, path=re.compile(path) if path else None))

    def _add_knob(self, knob: _Knob) -> None:
        with self._lock:
            self._knobs.append(knob)

    def _take_knob(self, kinds: Tuple[str, ...], method: str, path: str) -> Optional[_Knob]:
        for knob in self._knobs:
            if knob.kind in kinds and knob.matches(method, path):
                knob.count -= 1
                if knob.count <= 0:
                    self._knobs.remove(knob)
                return knob
        return None

    # -- webhooks ---------------------------------------------------------------------------------

    def add_webhook(self, url: str, secret: str, repo: Optional[str] = None) -> Webhook:
        """A webhook (type gitea, application/json, every event) of `repo`, or with None of every
        repository; changes from now on are delivered to `url`, signed with `secret`."""
        with self._changed:
            if repo is not None:
                repo = self._repo(repo).full_name
            hook = Webhook(self._next_id("hook"), url, secret, repo)
            self.webhooks.append(hook)
            return hook

    def hold_deliveries(self) -> None:
        """Deliveries are queued but not sent until `release_deliveries()`."""
        with self._changed:
            self._held = True

    def release_deliveries(self) -> None:
        """Sends what was held, in order."""
        with self._changed:
            self._held = False
            self._changed.notify_all()

    def redeliver(self, delivery_id: str, same_id: bool = False) -> Delivery:
        """Sends a delivery's body again, queued after the others. As Gitea's "Redeliver"
        (ReplayHookTask): a new hook task with a new id; `same_id=True` keeps the id, as a proxy
        or client retrying the same request would."""
        with self._changed:
            original = next((d for d in self.deliveries if d.id == delivery_id), None)
            if original is None:
                raise KeyError("no delivery %s" % delivery_id)
            again = Delivery(original.id if same_id else str(uuid.uuid4()), original.hook, original.event,
                             original.event_type, original.body, time.monotonic(), replay_of=original.id)
            self._enqueue(again)
            return again

    def wait_for_deliveries(self, timeout: float = 30.0) -> bool:
        """Waits until every delivery queued so far was answered (or failed); False after timeout."""
        with self._changed:
            queued = list(self.deliveries)
        return self.wait_for(lambda fake: all(d.done for d in queued), timeout)

    def _queue_hook(self, repo: Repo, event_type: str, build: Callable[[], Dict[str, Any]]) -> None:
        """PrepareWebhooks: a delivery of the payload `build` makes now, for each webhook of `repo`.
        The caller holds the lock (the payload is the state of the change just made)."""
        hooks = [hook for hook in self.webhooks if hook.matches(repo.full_name)]
        if not hooks:
            return
        body = go_json(build())
        queued = time.monotonic()
        for hook in hooks:
            self._enqueue(Delivery(str(uuid.uuid4()), hook, HOOK_EVENTS[event_type], event_type, body, queued))

    def _enqueue(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self._pending.append(delivery)
        if self._sender is None and not self._closing:
            self._sender = threading.Thread(target=self._send_deliveries, name="fake-gitea-webhooks", daemon=True)
            self._sender.start()
        self._changed.notify_all()

    def _hook_issue(self, issue: Issue, action: str, sender: User, changes: Optional[Dict[str, Any]] = None,
                    labels: bool = False, event: Optional[str] = None) -> None:
        """An IssuePayload (`issues`, with labels `issue_label`), or for a pull request a
        PullRequestPayload (`pull_request`, `pull_request_label`)."""
        repo = issue.repo

        def build() -> Dict[str, Any]:
            payload: Dict[str, Any] = {"action": action, "number": issue.number}
            if changes:
                payload["changes"] = changes
            if issue.is_pull:
                payload.update(pull_request=self._pull_json(issue, None), requested_reviewer=None,
                               repository=self._repo_json(repo, sender), sender=self._user_json(sender), commit_id="",
                               review=None)
            else:
                payload.update(issue=self._issue_json(issue, sender), repository=self._repo_json(repo, sender),
                               sender=self._user_json(sender), commit_id="")
            return payload

        if event is None and issue.is_pull:
            event = "pull_request_label" if labels else "pull_request"
        elif event is None:
            event = "issue_label" if labels else "issues"
        self._queue_hook(repo, event, build)

    def _hook_comment(self, made: Comment, action: str, sender: User, changes: Optional[Dict[str, Any]] = None) -> None:
        """An IssueCommentPayload: `issue_comment`, or on a pull request `pull_request_comment`."""
        issue = made.issue

        def build() -> Dict[str, Any]:
            payload: Dict[str, Any] = {"action": action, "issue": self._issue_json(issue, sender)}
            if issue.is_pull:
                payload["pull_request"] = self._pull_json(issue, None)
            payload["comment"] = self._comment_json(made)
            if changes:
                payload["changes"] = changes
            payload.update(repository=self._repo_json(issue.repo, sender), sender=self._user_json(sender),
                           is_pull=issue.is_pull)
            return payload

        self._queue_hook(issue.repo, "pull_request_comment" if issue.is_pull else "issue_comment", build)

    def _hook_push(self, repo: Repo, branch: Branch, before: str, pusher: User) -> None:
        """A PushPayload of one commit (a new branch: before is all zeros, compare_url the root)."""

        def build() -> Dict[str, Any]:
            commit = self._branch_json(repo, branch)["commit"]
            commit.update(added=[], removed=[], modified=[])
            compare = "" if before == ZERO_SHA else "%s/compare/%s...%s" % (repo.full_name, before, branch.sha)
            return {"ref": "refs/heads/" + branch.name, "before": before, "after": branch.sha,
                    "compare_url": self.app_url + compare, "commits": [commit], "total_commits": 1,
                    "head_commit": commit, "repository": self._repo_json(repo, pusher),
                    "pusher": self._user_json(pusher), "sender": self._user_json(pusher)}

        self._queue_hook(repo, "push", build)

    def _hook_create(self, repo: Repo, branch: Branch, pusher: User) -> None:
        self._queue_hook(repo, "create", lambda: {
            "sha": branch.sha, "ref": branch.name, "ref_type": "branch", "repository": self._repo_json(repo, pusher),
            "sender": self._user_json(pusher)})

    def _hook_delete(self, repo: Repo, name: str, pusher: User) -> None:
        self._queue_hook(repo, "delete", lambda: {
            "ref": name, "ref_type": "branch", "pusher_type": "user", "repository": self._repo_json(repo, pusher),
            "sender": self._user_json(pusher)})

    def _send_deliveries(self) -> None:
        """The delivery thread: one delivery at a time, in the order they were queued."""
        while True:
            with self._changed:
                while not self._closing and (self._held or not self._pending):
                    self._changed.wait(0.5)
                if self._closing:
                    return
                delivery = self._pending.pop(0)
                delivery.headers = self._delivery_headers(delivery)
                delivery.sent_at = time.monotonic()
            status, response, error = self._post(delivery.hook.url, delivery.headers, delivery.body)
            with self._changed:
                delivery.status, delivery.response, delivery.error = status, response, error
                delivery.answered_at = time.monotonic()
                self._changed.notify_all()

    @staticmethod
    def _delivery_headers(delivery: Delivery) -> Dict[str, str]:
        """services/webhook/deliver.go addDefaultHeaders, signed with the hook's secret of now; Go's
        http.Client adds User-Agent and Accept-Encoding."""
        secret, body = delivery.hook.secret, delivery.body
        sha256, sha1 = signature(secret, body), signature(secret, body, hashlib.sha1)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)),
                   "User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}
        for prefix in ("X-Gitea-", "X-Gogs-", "X-GitHub-"):
            headers[prefix + "Delivery"] = delivery.id
            headers[prefix + "Event"] = delivery.event
            headers[prefix + "Event-Type"] = delivery.event_type
        headers["X-Gitea-Signature"] = headers["X-Gogs-Signature"] = sha256
        headers["X-Gitea-Hook-Installation-Target-Type"] = delivery.hook.target_type
        headers["X-GitHub-Hook-Installation-Target-Type"] = delivery.hook.target_type
        headers["X-Hub-Signature"] = "sha1=" + sha1
        headers["X-Hub-Signature-256"] = "sha256=" + sha256
        return dict(sorted(headers.items()))             # Go writes header fields sorted by name

    def _post(self, url: str, headers: Mapping[str, str], body: bytes) -> Tuple[int, bytes, str]:
        """One POST: (status, body answered, "") or (0, b"", why it failed)."""
        target = urllib.parse.urlsplit(url)
        if target.scheme != "http" or not target.hostname:
            return 0, b"", "the fake delivers to http:// URLs only: %s" % url
        connection = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=self.delivery_timeout)
        try:
            connection.putrequest("POST", (target.path or "/") + ("?" + target.query if target.query else ""),
                                  skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders(body)
            response = connection.getresponse()
            data = response.read()
            if (response.getheader("Content-Encoding") or "").lower() == "gzip":
                data = gzip.decompress(data)
            return response.status, data, ""
        except (OSError, http.client.HTTPException) as error:
            return 0, b"", "Delivery: %s" % (error or type(error).__name__)
        finally:
            connection.close()

    # -- answering --------------------------------------------------------------------------------

    def _handler_class(self) -> type:
        fake = self

        class Handler(TrackedHandler):
            server_version = "fake-gitea/1.26.3"
            connections = fake._connections
            connections_lock = fake._lock

            def _any(self) -> None:
                raw = self._read_body()
                if raw is None:
                    return
                outcome = fake._process(self.command, self.path, {k: v for k, v in self.headers.items()}, raw)
                if outcome.delay > 0:
                    time.sleep(outcome.delay)
                if outcome.drop:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                try:
                    self.send_response(outcome.status)
                    for name, value in outcome.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(outcome.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(outcome.body)
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True
                    return
                if outcome.record is not None:
                    with fake._changed:
                        outcome.record.answered = time.monotonic()
                        fake._changed.notify_all()

            def _read_body(self) -> Optional[bytes]:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks: List[bytes] = []
                    while True:
                        size_line = self.rfile.readline()
                        if not size_line:
                            self.close_connection = True
                            return None
                        size = int(size_line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length > 0 else b""

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

        return Handler

    def _process(self, method: str, target: str, headers: Dict[str, str], raw_body: bytes) -> _Outcome:
        split = urllib.parse.urlsplit(target)
        raw_path, raw_query = split.path, split.query
        query_lists = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        body: Any = None
        if raw_body:
            try:
                body = json.loads(raw_body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                body = None
        record = Request(time.monotonic(), method, raw_path, {k: v[0] for k, v in query_lists.items()},
                         query_lists, body, headers, raw_body)
        with self._changed:
            self.requests.append(record)
            self._changed.notify_all()

        def refuse(status: int, message: str, kind: Optional[List[Violation]] = None) -> _Outcome:
            if kind is not None:
                with self._lock:
                    kind.append(Violation(record.at, method, raw_path, record.operation, message))
            return self._finish(record, None, _Reply(status, {"message": "fake gitea: " + message}))

        base = self.spec.base_path
        if not (raw_path == base or raw_path.startswith(base + "/")):
            return refuse(400, "%s is not under the API's base path %s" % (raw_path, base), self.violations)
        path = raw_path[len(base):] or "/"
        for methods, pattern in FORBIDDEN:
            if (methods is None or method in methods) and pattern.search(path):
                with self._lock:
                    self.forbidden.append(record)
                return self._finish(record, None, _Reply(403, {"message": "fake gitea: the bridge must not touch "
                                                                          "repository contents or git data (%s)" % path}))
        operation, params, why = self.spec.match(method, path)
        if operation is None:
            return refuse(400, why, self.violations)
        record.operation = operation.operation_id
        user = self._authenticate(headers)
        if user is None:
            return self._finish(record, operation, _Reply(401, {"message": "invalid username, password or token",
                                                                "url": self.app_url + "api/swagger"}))
        record.user = user.login
        problems, body = self.spec.check_request(operation, params, query_lists, content_type, raw_body)
        if problems:
            return refuse(400, "; ".join(problems), self.violations)
        handler = getattr(self, "_op_" + operation.operation_id, None)
        if handler is None:
            return refuse(501, "%s is not modelled by the fake" % operation, self.unimplemented)
        call = _Call(operation, params, record.query, raw_path, raw_query, body, user)
        with self._changed:
            refusal = self._take_knob(("fail", "rate_limit"), method, path)
            slow = self._take_knob(("slow",), method, path)
            drop = refusal is None and self._take_knob(("drop",), method, path) is not None
            if refusal is not None:
                reply = _Reply(refusal.status, {"message": refusal.message, "url": self.app_url + "api/swagger"})
                if refusal.kind == "rate_limit":
                    reply.headers["Retry-After"] = str(int(refusal.seconds))
            else:
                try:
                    reply = handler(call)
                except _Refuse as error:
                    reply = _Reply(error.status, {"message": error.message, "url": self.app_url + "api/swagger"})
                except _Unmodelled as error:
                    self.unimplemented.append(Violation(record.at, method, raw_path, operation.operation_id, str(error)))
                    reply = _Reply(501, {"message": "fake gitea: " + str(error)})
            self._changed.notify_all()
        outcome = self._finish(record, operation, reply, drop)
        outcome.delay = slow.seconds if slow else 0.0
        return outcome

    def _finish(self, record: Request, operation: Optional[Operation], reply: _Reply, drop: bool = False) -> _Outcome:
        """Checks the answer against the spec (a fault of the fake becomes a 500) and records it."""
        data = b"" if reply.body is None else json.dumps(reply.body).encode()
        problems = self.spec.check_response(operation, reply.status, data) if self.check_responses else []
        if problems:
            with self._lock:
                self.response_violations += [Violation(record.at, record.method, record.path, record.operation, p)
                                             for p in problems]
            reply = _Reply(500, {"message": "fake gitea: the fake's answer violates the spec: " + "; ".join(problems)})
            data = json.dumps(reply.body).encode()
        headers = dict(reply.headers)
        if data:
            headers["Content-Type"] = "application/json;charset=utf-8"
        with self._changed:
            record.status, record.answer, record.dropped = (0 if drop else reply.status), reply.body, drop
            self._changed.notify_all()
        return _Outcome(reply.status, data, headers, drop=drop, record=record)

    def _authenticate(self, headers: Mapping[str, str]) -> Optional[User]:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token.strip():
            return None
        with self._lock:
            return next((u for u in self.users.values() if u.token and u.token == token.strip()), None)

    # -- lookups ----------------------------------------------------------------------------------

    def _repo(self, full_name: str) -> Repo:
        repo = self.repos.get(full_name)
        if repo is None:
            lowered = full_name.lower()    # Gitea finds owners and repositories case-insensitively
            repo = next((r for n, r in self.repos.items() if n.lower() == lowered), None)
        if repo is None:
            raise _Refuse(404, "not found")
        return repo

    def _call_repo(self, call: _Call) -> Repo:
        return self._repo("%s/%s" % (call.params["owner"], call.params["repo"]))

    def _issue(self, repo: Repo, number: int) -> Issue:
        issue = repo.issues.get(int(number))
        if issue is None:
            raise _Refuse(404, "not found")
        return issue

    def _pull_issue(self, repo: Repo, number: int) -> Issue:
        issue = repo.issues.get(int(number))
        if issue is None or issue.pull is None:
            raise _Refuse(404, "not found")
        return issue

    def _comment(self, repo: Repo, comment_id: int) -> Comment:
        for issue in repo.issues.values():
            for made in issue.comments:
                if made.id == int(comment_id):
                    return made
        raise _Refuse(404, "not found")

    def _user_named(self, login: str) -> User:
        user = self.users.get(login) or next((u for n, u in self.users.items() if n.lower() == login.lower()), None)
        if user is None:
            raise _Refuse(404, "user does not exist [uid: 0, name: %s]" % login)
        return user

    def _labels_named(self, repo: Repo, wanted: Sequence[Union[str, int]]) -> List[Label]:
        found: List[Label] = []
        for item in wanted:
            match = next((l for l in repo.labels.values() if (l.id == item if isinstance(item, int) else l.name == item)), None)
            if match is None and not isinstance(item, int):
                raise KeyError("no label %r in %s" % (item, repo.full_name))
            if match is not None:
                found.append(match)
        return found

    # -- changes ----------------------------------------------------------------------------------

    def _new_issue(self, repo: Repo, user: User, title: str, body: str) -> Issue:
        now = self.now()
        issue = Issue(self._next_id("issue"), repo, repo.next_number, user, title, body, now, now)
        repo.issues[issue.number] = issue
        repo.next_number += 1
        return issue

    def _new_comment(self, issue: Issue, user: User, body: str) -> Comment:
        now = self.now()
        made = Comment(self._next_id("comment"), issue, user, body, now, now)
        issue.comments.append(made)
        issue.updated = now
        return made

    def _set_state(self, issue: Issue, closed: bool) -> bool:
        """Closes or reopens; whether that changed anything."""
        if issue.closed == closed:
            return False
        issue.closed = closed
        issue.closed_at = self.now() if closed else 0
        issue.updated = self.now()
        return True

    def _edit_title(self, issue: Issue, title: str, doer: User) -> None:
        if title and title != issue.title:
            old, issue.title, issue.updated = issue.title, title, self.now()
            self._hook_issue(issue, "edited", doer, changes={"title": {"from": old}})

    def _edit_body(self, issue: Issue, body: str, doer: User) -> None:
        if body != issue.body:
            old, issue.body, issue.updated = issue.body, body, self.now()
            issue.content_version += 1
            self._hook_issue(issue, "edited", doer, changes={"body": {"from": old}})

    def _edit_comment(self, made: Comment, body: str, doer: User) -> None:
        if body != made.body:
            old, made.body, made.updated = made.body, body, self.now()
            self._hook_comment(made, "edited", doer, changes={"body": {"from": old}})

    def _set_labels(self, issue: Issue, labels: Sequence[Label], replace: bool, touch: bool = True) -> bool:
        """Adds (or replaces with) labels, one per exclusive scope as Gitea keeps them; whether
        the issue's labels changed."""
        repo = issue.repo
        before = set(issue.labels)
        if replace:
            kept: List[Label] = []
            for index, label in enumerate(labels):       # RemoveDuplicateExclusiveLabels: the last one wins
                if label.scope and any(other.scope == label.scope for other in labels[index + 1:]):
                    continue
                kept.append(label)
            issue.labels = {label.id for label in kept}
        else:
            for label in labels:
                if label.scope:
                    issue.labels = {i for i in issue.labels if i not in repo.labels or repo.labels[i].scope != label.scope}
                issue.labels.add(label.id)
        if touch and issue.labels != before:
            issue.updated = self.now()
        return issue.labels != before

    def _sorted_labels(self, issue: Issue) -> List[int]:
        repo = issue.repo
        return sorted((i for i in issue.labels if i in repo.labels), key=lambda i: (repo.labels[i].name, i))

    def _new_pull(self, repo: Repo, user: User, head: str, base: str, title: str, body: str,
                  label_ids: Sequence[int]) -> Issue:
        head_branch = head
        if ":" in head:
            parts = head.split(":")
            if len(parts) != 2 or parts[0].lower() != repo.owner.login.lower():
                raise _Refuse(404, "not found")        # the fake has no forks
            head_branch = parts[1]
        if head_branch not in repo.branches or base not in repo.branches:
            raise _Refuse(404, "not found")
        for other in repo.issues.values():
            pull = other.pull
            if pull and not pull.merged and not other.closed and pull.head == head_branch and pull.base == base:
                raise _Refuse(409, "pull request already exists for these targets [id: %d, issue_id: %d, head_repo_id: "
                                   "%d, base_repo_id: %d, head_branch: %s, base_branch: %s]"
                              % (pull.id, other.number, repo.id, repo.id, pull.head, pull.base))
        issue = self._new_issue(repo, user, title, body)
        issue.pull = Pull(self._next_id("pull"), head_branch, base, repo.branches[head_branch].sha,
                          repo.branches[base].sha)
        issue.labels = {i for i in label_ids if i in repo.labels}
        return issue

    def _merge(self, repo: Repo, issue: Issue, user: User, style: str, head_commit: Optional[str],
               delete_branch: bool) -> None:
        pull = issue.pull
        if pull is None:
            raise _Refuse(404, "not found")
        if pull.merged:
            raise _Refuse(405, "")
        if issue.closed:
            raise _Refuse(404, "not found")
        if issue.is_wip():
            raise _Refuse(405, "Work in progress PRs cannot be merged")
        if not pull.mergeable:
            raise _Refuse(405, "Please try again later")
        if style == "manually-merged" and not repo.allow_manual_merge:
            raise _Refuse(405, "%s is not allowed an allowed merge style for this repository" % style)
        head = repo.branches.get(pull.head)
        head_sha = head.sha if head else pull.head_sha
        if head_commit and head_commit != head_sha:
            raise _Refuse(409, "head out of date")
        now = self.now()
        pull.head_sha = head_sha
        pull.merged, pull.merged_at, pull.merged_by = True, now, user
        pull.merge_commit_sha = self._sha(repo.full_name, "merge", issue.number)
        base = repo.branches.get(pull.base)
        if base is not None:
            base.sha, base.committed, base.author = pull.merge_commit_sha, now, user.login
            base.message = "Merge pull request '%s' (#%d) from %s into %s" % (issue.title, issue.number, pull.head, pull.base)
        self._set_state(issue, closed=True)
        issue.updated = now
        self._hook_issue(issue, "closed", user)          # MergePullRequest: action closed, merged true
        if delete_branch and head is not None and head.name != repo.default_branch and not head.protected:
            still_used = any(o.pull and not o.pull.merged and not o.closed and o.pull.head == head.name
                             for o in repo.issues.values())
            if not still_used:
                del repo.branches[head.name]
                self._hook_delete(repo, head.name, user)

    # -- operations: the user and the repository ---------------------------------------------------

    def _op_userGetCurrent(self, call: _Call) -> _Reply:
        return _Reply(200, self._user_json(call.user, call.user))

    def _op_repoGet(self, call: _Call) -> _Reply:
        return _Reply(200, self._repo_json(self._call_repo(call), call.user))

    # -- operations: issues -------------------------------------------------------------------------

    def _op_issueListIssues(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        q = call.query
        issues = list(repo.issues.values())
        state = q.get("state", "")
        if state != "all":
            issues = [i for i in issues if i.closed == (state == "closed")]
        names = q.get("labels", "").split(",")
        label_ids = [l.id for l in repo.labels.values() if l.name in names]
        if label_ids:
            issues = [i for i in issues if all(label in i.labels for label in label_ids)]
        if q.get("type") in ("issues", "pulls"):
            issues = [i for i in issues if i.is_pull == (q["type"] == "pulls")]
        keyword = q.get("q", "").strip().lower()
        if keyword and "\0" not in keyword:
            issues = [i for i in issues if keyword in i.title.lower() or keyword in i.body.lower()
                      or any(keyword in c.body.lower() for c in i.comments)]
        since, before = self._form_time(q, "since"), self._form_time(q, "before")
        if since:
            issues = [i for i in issues if i.updated >= since]
        if before:
            issues = [i for i in issues if i.updated <= before]
        if q.get("created_by"):
            poster = self._user_named(q["created_by"])
            issues = [i for i in issues if i.user.id == poster.id]
        if q.get("assigned_by"):
            self._user_named(q["assigned_by"])
            issues = []                                        # the fake has no assignees
        if q.get("mentioned_by"):
            mentioned = self._user_named(q["mentioned_by"])
            pattern = re.compile(r"(^|[^\w.])@%s\b" % re.escape(mentioned.login), re.IGNORECASE)
            issues = [i for i in issues if pattern.search(i.body) or any(pattern.search(c.body) for c in i.comments)]
        issues.sort(key=lambda i: (i.created, i.id), reverse=True)
        page, headers = self._paginate(call, issues, link=True)
        return _Reply(200, [self._issue_json(i, call.user) for i in page], headers)

    def _op_issueGetIssue(self, call: _Call) -> _Reply:
        return _Reply(200, self._issue_json(self._issue(self._call_repo(call), int(call.params["index"])), call.user))

    def _op_issueCreateIssue(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        form = call.body or {}
        if not form.get("title"):
            raise _Refuse(422, "[Title]: Required")
        self._refuse_unmodelled(form, assignees=[], assignee="", milestone=0, due_date=None)
        issue = self._new_issue(repo, call.user, form["title"], form.get("body", ""))
        issue.ref = form.get("ref", "")
        issue.labels = {i for i in form.get("labels") or [] if i in repo.labels}
        self._hook_issue(issue, "opened", call.user)
        if form.get("closed") and self._set_state(issue, closed=True):
            self._hook_issue(issue, "closed", call.user)
        return _Reply(201, self._issue_json(issue, call.user))

    def _op_issueEditIssue(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        issue = self._issue(repo, int(call.params["index"]))
        form = call.body or {}
        self._refuse_unmodelled(form, assignees=[], assignee="", milestone=0, due_date=None, unset_due_date=False)
        if "content_version" in form and form["content_version"] != issue.content_version:
            raise _Unmodelled("content_version conflicts are not modelled")
        if form.get("title"):
            self._edit_title(issue, form["title"], call.user)
        if form.get("body") is not None:
            self._edit_body(issue, form["body"], call.user)
        if form.get("ref") is not None and form["ref"] != issue.ref:
            issue.ref, issue.updated = form["ref"], self.now()
        if form.get("state") is not None:
            if issue.pull and issue.pull.merged:
                raise _Refuse(412, "cannot change state of this pull request, it was already merged")
            if form["state"] not in ("open", "closed"):
                raise _Refuse(412, "unknown state: %s" % form["state"])
            if self._set_state(issue, closed=form["state"] == "closed"):
                self._hook_issue(issue, "closed" if issue.closed else "reopened", call.user)
        return _Reply(201, self._issue_json(issue, call.user))

    # -- operations: comments -----------------------------------------------------------------------

    def _op_issueGetComments(self, call: _Call) -> _Reply:
        issue = self._issue(self._call_repo(call), int(call.params["index"]))
        comments = self._since_before(call, issue.comments)
        return _Reply(200, [self._comment_json(c) for c in comments], {"X-Total-Count": str(len(comments)),
                                                                       "Access-Control-Expose-Headers": "X-Total-Count"})

    def _op_issueGetRepoComments(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        comments = [c for issue in repo.issues.values() for c in issue.comments]
        comments = self._since_before(call, sorted(comments, key=lambda c: (c.created, c.id)))
        page, headers = self._paginate(call, comments, link=False)   # Gitea writes no Link here
        return _Reply(200, [self._comment_json(c) for c in page], headers)

    def _op_issueCreateComment(self, call: _Call) -> _Reply:
        issue = self._issue(self._call_repo(call), int(call.params["index"]))
        made = self._new_comment(issue, call.user, call.body["body"])
        self._hook_comment(made, "created", call.user)
        return _Reply(201, self._comment_json(made))

    def _op_issueGetComment(self, call: _Call) -> _Reply:
        return _Reply(200, self._comment_json(self._comment(self._call_repo(call), int(call.params["id"]))))

    def _op_issueEditComment(self, call: _Call) -> _Reply:
        made = self._comment(self._call_repo(call), int(call.params["id"]))
        self._edit_comment(made, call.body["body"], call.user)
        return _Reply(200, self._comment_json(made))

    def _op_issueDeleteComment(self, call: _Call) -> _Reply:
        made = self._comment(self._call_repo(call), int(call.params["id"]))
        made.issue.comments.remove(made)
        self._hook_comment(made, "deleted", call.user)
        return _Reply(204)

    # -- operations: labels -------------------------------------------------------------------------

    def _op_issueListLabels(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        labels = sorted(repo.labels.values(), key=lambda l: (l.name, l.id))
        page, headers = self._paginate(call, labels, link=False)     # Gitea writes no Link here
        return _Reply(200, [self._label_json(repo, l) for l in page], headers)

    def _op_issueCreateLabel(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        form = call.body
        try:
            color = _normalize_color(form["color"])
        except ValueError as error:
            raise _Refuse(422, str(error))
        label = Label(self._next_id("label"), form["name"], color, form.get("description", ""),
                      bool(form.get("exclusive")), bool(form.get("is_archived")))
        repo.labels[label.id] = label
        return _Reply(201, self._label_json(repo, label))

    def _op_issueGetLabels(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        issue = self._issue(repo, int(call.params["index"]))
        return _Reply(200, [self._label_json(repo, repo.labels[i]) for i in self._sorted_labels(issue)])

    def _issue_labels_form(self, call: _Call) -> Tuple[Repo, Issue, List[Label]]:
        repo = self._call_repo(call)
        issue = self._issue(repo, int(call.params["index"]))
        items = (call.body or {}).get("labels") or []
        ids = [int(i) for i in items if isinstance(i, (int, float)) and not isinstance(i, bool)]
        names = [i for i in items if isinstance(i, str)]
        if len(ids) + len(names) != len(items):
            raise _Refuse(400, "a label must be an integer or a string")
        if ids and names:
            raise _Refuse(400, "labels should be an array of strings or integers")
        wanted = [repo.labels[i] for i in ids if i in repo.labels] + [l for l in repo.labels.values() if l.name in names]
        return repo, issue, wanted

    def _op_issueAddLabel(self, call: _Call) -> _Reply:
        repo, issue, wanted = self._issue_labels_form(call)
        if self._set_labels(issue, wanted, replace=False):
            self._hook_issue(issue, "label_updated", call.user, labels=True)
        return _Reply(200, [self._label_json(repo, repo.labels[i]) for i in self._sorted_labels(issue)])

    def _op_issueReplaceLabels(self, call: _Call) -> _Reply:
        repo, issue, wanted = self._issue_labels_form(call)
        if self._set_labels(issue, wanted, replace=True):
            self._hook_issue(issue, "label_updated", call.user, labels=True)
        return _Reply(200, [self._label_json(repo, repo.labels[i]) for i in self._sorted_labels(issue)])

    def _op_issueClearLabels(self, call: _Call) -> _Reply:
        issue = self._issue(self._call_repo(call), int(call.params["index"]))
        if self._set_labels(issue, [], replace=True):
            self._hook_issue(issue, "label_cleared", call.user, labels=True)
        return _Reply(204)

    def _op_issueRemoveLabel(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        issue = self._issue(repo, int(call.params["index"]))
        label_id = int(call.params["id"])
        if not any(label_id in r.labels for r in self.repos.values()):
            raise _Refuse(422, "label does not exist [label_id: %d]" % label_id)
        if label_id in issue.labels:
            issue.labels.discard(label_id)
            issue.updated = self.now()
            self._hook_issue(issue, "label_updated", call.user, labels=True)
        return _Reply(204)

    # -- operations: pull requests ------------------------------------------------------------------

    def _op_repoListPullRequests(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        q = call.query
        pulls = [i for i in repo.issues.values() if i.is_pull]
        if q.get("state") in ("open", "closed"):      # no state (or "all"): every pull request
            pulls = [i for i in pulls if i.closed == (q["state"] == "closed")]
        if q.get("base_branch"):
            pulls = [i for i in pulls if i.pull is not None and i.pull.base == q["base_branch"]]
        wanted = [int(v) for v in self._query_lists(call).get("labels", [])]
        if wanted:
            pulls = [i for i in pulls if i.labels & set(wanted)]
        if int(q.get("milestone") or 0) > 0:
            pulls = []                                  # the fake has no milestones
        if q.get("poster"):
            try:
                poster = self._user_named(q["poster"])
            except _Refuse as error:
                raise _Refuse(400, error.message)
            pulls = [i for i in pulls if i.user.id == poster.id]
        pulls = _sort_issues(pulls, q.get("sort", ""))
        page, headers = self._paginate(call, pulls, link=True)
        return _Reply(200, [self._pull_json(i, call.user) for i in page], headers)

    def _op_repoCreatePullRequest(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        form = call.body or {}
        for key in ("head", "base", "title"):
            if not form.get(key):
                raise _Refuse(422, "[%s]: Required" % key.capitalize())
        if form["head"] == form["base"]:
            raise _Refuse(422, "Invalid PullRequest: There are no changes between the head and the base")
        self._refuse_unmodelled(form, assignees=[], assignee="", milestone=0, due_date=None, reviewers=[],
                                team_reviewers=[])
        issue = self._new_pull(repo, call.user, form["head"], form["base"], form["title"], form.get("body", ""),
                               form.get("labels") or [])
        self._hook_issue(issue, "opened", call.user)
        return _Reply(201, self._pull_json(issue, call.user))

    def _op_repoGetPullRequest(self, call: _Call) -> _Reply:
        return _Reply(200, self._pull_json(self._pull_issue(self._call_repo(call), int(call.params["index"])), call.user))

    def _op_repoGetPullRequestByBaseHead(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        head = call.params["head"]
        if ":" in head:
            owner, _, head = head.partition(":")
            if "/" in owner:
                owner, _, name = owner.partition("/")
                self._repo("%s/%s" % (owner, name))
            if owner.lower() != repo.owner.login.lower():
                raise _Refuse(404, "not found")
        found = sorted((i for i in repo.issues.values()
                        if i.pull is not None and i.pull.base == call.params["base"] and i.pull.head == head),
                       key=lambda i: i.pull.id if i.pull else 0)
        if not found:
            raise _Refuse(404, "not found")
        return _Reply(200, self._pull_json(found[0], call.user))

    def _op_repoEditPullRequest(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        issue = self._pull_issue(repo, int(call.params["index"]))
        form = call.body or {}
        self._refuse_unmodelled(form, assignees=[], assignee="", milestone=0, due_date=None, unset_due_date=False,
                                allow_maintainer_edit=None)
        if form.get("title"):
            self._edit_title(issue, form["title"], call.user)
        if form.get("body") is not None:
            self._edit_body(issue, form["body"], call.user)
        if form.get("labels") is not None:
            if self._set_labels(issue, [repo.labels[i] for i in form["labels"] if i in repo.labels], replace=True):
                self._hook_issue(issue, "label_updated", call.user, labels=True)
        if form.get("state") is not None:
            if issue.pull is not None and issue.pull.merged:
                raise _Refuse(412, "cannot change state of this pull request, it was already merged")
            if form["state"] not in ("open", "closed"):
                raise _Refuse(412, "unknown state: %s" % form["state"])
            if self._set_state(issue, closed=form["state"] == "closed"):
                self._hook_issue(issue, "closed" if issue.closed else "reopened", call.user)
        if form.get("base") and issue.pull is not None and form["base"] != issue.pull.base and not issue.pull.merged:
            if form["base"] not in repo.branches:
                raise _Refuse(404, "new base '%s' not exist" % form["base"])
            old, issue.pull.base, issue.updated = issue.pull.base, form["base"], self.now()
            self._hook_issue(issue, "edited", call.user, changes={"ref": {"from": old}})
        return _Reply(201, self._pull_json(issue, call.user))

    def _op_repoPullRequestIsMerged(self, call: _Call) -> _Reply:
        issue = self._pull_issue(self._call_repo(call), int(call.params["index"]))
        if issue.pull is not None and issue.pull.merged:
            return _Reply(204)
        raise _Refuse(404, "not found")

    def _op_repoMergePullRequest(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        issue = self._pull_issue(repo, int(call.params["index"]))
        form = call.body or {}
        self._merge(repo, issue, call.user, form.get("do") or "merge", form.get("head_commit_id"),
                    bool(form.get("delete_branch_after_merge")))
        return _Reply(200)

    # -- operations: branches -----------------------------------------------------------------------

    def _op_repoListBranches(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        branches = sorted(repo.branches.values(), key=lambda b: (-b.committed, b.name))
        page, headers = self._paginate(call, branches, link=True)
        return _Reply(200, [self._branch_json(repo, b) for b in page], headers)

    def _op_repoGetBranch(self, call: _Call) -> _Reply:
        repo = self._call_repo(call)
        branch = repo.branches.get(call.params["branch"])
        if branch is None:
            raise _Refuse(404, "not found")
        return _Reply(200, self._branch_json(repo, branch))

    # -- helpers of the operations -----------------------------------------------------------------

    def _refuse_unmodelled(self, form: Mapping[str, Any], **empty: Any) -> None:
        """Fields the fake does not model may only come with their empty value."""
        for key, nothing in empty.items():
            if key in form and form[key] not in (nothing, None) and form[key] != [] and form[key] != "":
                raise _Unmodelled("%s is not modelled by the fake" % key)

    def _query_lists(self, call: _Call) -> Dict[str, List[str]]:
        return urllib.parse.parse_qs(call.raw_query, keep_blank_values=True)

    @staticmethod
    def _form_time(query: Mapping[str, str], name: str) -> int:
        value = query.get(name, "").strip()
        moment = parse_rfc3339(value) if value else None
        return int(moment.timestamp()) if moment else 0

    def _since_before(self, call: _Call, comments: List[Comment]) -> List[Comment]:
        since, before = self._form_time(call.query, "since"), self._form_time(call.query, "before")
        return [c for c in comments if (not since or c.updated >= since) and (not before or c.updated <= before)]

    def _paginate(self, call: _Call, items: List[Any], link: bool) -> Tuple[List[Any], Dict[str, str]]:
        """One page of `items` as Gitea's GetListOptions cuts it, with X-Total-Count and (for the
        lists where Gitea sets one) the Link header."""
        page = _form_int(call.query, "page")
        limit = _form_int(call.query, "limit")
        size = self.default_page_size if limit <= 0 else min(limit, self.max_page_size)
        first = (max(page, 1) - 1) * size
        headers = {"X-Total-Count": str(len(items))}
        exposed = ["X-Total-Count"]
        if link:
            value = self._link_header(call, len(items), size, page)
            if value:
                headers["Link"] = value
                exposed.insert(0, "Link")
        headers["Access-Control-Expose-Headers"] = ", ".join(exposed)
        return items[first:first + size], headers

    def _link_header(self, call: _Call, total: int, size: int, page: int) -> str:
        """services/context/api.go genAPILinks with modules/paginator."""
        total_pages = (total + size - 1) // size
        current = max(min(page, total_pages), 1)
        has_next = current * size < total
        values = urllib.parse.parse_qs(call.raw_query, keep_blank_values=True)

        def url(to: int) -> str:
            query = dict(values)
            query["page"] = [str(to)]
            encoded = "&".join("%s=%s" % (urllib.parse.quote_plus(k), urllib.parse.quote_plus(v))
                               for k in sorted(query) for v in query[k])
            return "<%s%s?%s>" % (self.app_url, call.raw_path[1:], encoded)

        links: List[str] = []
        if has_next:
            links.append('%s; rel="next"' % url(current + 1))
            links.append('%s; rel="last"' % url(total_pages))
        if current != 1:
            links.append('%s; rel="first"' % url(1))
            links.append('%s; rel="prev"' % url(current - 1))
        return ",".join(links)

    # -- JSON as Gitea writes it (services/convert) --------------------------------------------------

    def _user_json(self, user: User, doer: Optional[User] = None) -> Dict[str, Any]:
        """services/convert ToUser: `doer` is who asks; Gitea passes none for posters and owners, so
        those come as an anonymous reader sees them (placeholder e-mail, no admin flag, no last login)."""
        signed = doer is not None
        authed = doer is not None and (doer.is_admin or doer.id == user.id)
        return {
            "id": user.id, "login": user.login, "login_name": "", "source_id": 0, "full_name": user.full_name,
            "email": "%s@%s" % (user.login.lower(), "example.com" if signed else "noreply.localhost"),
            "avatar_url": "%savatars/%s" % (self.app_url, hashlib.md5(user.login.encode()).hexdigest()),
            "html_url": self.app_url + user.login, "language": "en-US" if authed else "",
            "is_admin": user.is_admin if authed else False,
            "last_login": self.rfc3339(user.created) if authed else GO_ZERO_TIME,
            "created": self.rfc3339(user.created), "restricted": False, "active": authed, "prohibit_login": False,
            "location": "", "website": "", "description": "", "visibility": "public",
            "followers_count": 0, "following_count": 0, "starred_repos_count": 0,
        }

    def _repo_json(self, repo: Repo, viewer: Optional[User]) -> Dict[str, Any]:
        html = self.app_url + repo.full_name
        issues = [i for i in repo.issues.values() if not i.closed]
        admin = viewer is None or viewer.is_admin or viewer.id == repo.owner.id
        return {
            "id": repo.id, "owner": self._user_json(repo.owner), "name": repo.name, "full_name": repo.full_name,
            "description": repo.description, "empty": False, "private": False, "fork": False, "template": False,
            "mirror": False, "size": 0, "language": "", "languages_url": self._api_repo(repo) + "/languages",
            "html_url": html, "url": self._api_repo(repo), "link": "",
            "ssh_url": "git@127.0.0.1:%s.git" % repo.full_name, "clone_url": html + ".git", "original_url": "",
            "website": "", "stars_count": 0, "forks_count": 0, "watchers_count": 1,
            "open_issues_count": sum(1 for i in issues if not i.is_pull),
            "open_pr_counter": sum(1 for i in issues if i.is_pull), "release_counter": 0,
            "default_branch": repo.default_branch, "default_target_branch": repo.default_branch,
            "archived": False, "created_at": self.rfc3339(repo.created), "updated_at": self.rfc3339(repo.updated),
            "archived_at": self.rfc3339(0),
            "permissions": {"admin": admin, "push": True, "pull": True},
            "has_code": True, "has_issues": True,
            "internal_tracker": {"enable_time_tracker": True, "allow_only_contributors_to_track_time": True,
                                 "enable_issue_dependencies": True},
            "has_wiki": True, "has_pull_requests": True, "has_projects": True, "projects_mode": "all",
            "has_releases": True, "has_packages": True, "has_actions": True, "ignore_whitespace_conflicts": False,
            "allow_merge_commits": True, "allow_rebase": True, "allow_rebase_explicit": True, "allow_squash_merge": True,
            "allow_fast_forward_only_merge": True, "allow_rebase_update": True,
            "allow_manual_merge": repo.allow_manual_merge, "autodetect_manual_merge": False,
            "default_delete_branch_after_merge": False, "default_merge_style": "merge",
            "default_allow_maintainer_edit": False, "avatar_url": "", "internal": False, "mirror_interval": "",
            "object_format_name": "sha1", "mirror_updated": GO_ZERO_TIME, "topics": [], "licenses": [],
            "branch_count": len(repo.branches),
        }

    def _api_repo(self, repo: Repo) -> str:
        return "%sapi/v1/repos/%s" % (self.app_url, repo.full_name)

    def _html_issue(self, issue: Issue) -> str:
        return "%s%s/%s/%d" % (self.app_url, issue.repo.full_name, "pulls" if issue.is_pull else "issues", issue.number)

    def _label_json(self, repo: Repo, label: Label) -> Dict[str, Any]:
        return {"id": label.id, "name": label.name, "exclusive": label.exclusive, "is_archived": label.archived,
                "color": label.color, "description": label.description,
                "url": "%s/labels/%d" % (self._api_repo(repo), label.id)}

    def _issue_json(self, issue: Issue, viewer: Optional[User]) -> Dict[str, Any]:
        repo = issue.repo
        pull = issue.pull
        return {
            "id": issue.id, "url": "%s/issues/%d" % (self._api_repo(repo), issue.number),
            "html_url": self._html_issue(issue), "number": issue.number, "user": self._user_json(issue.user),
            "original_author": "", "original_author_id": 0, "title": issue.title, "body": issue.body,
            "ref": issue.ref, "assets": [], "labels": [self._label_json(repo, repo.labels[i]) for i in self._sorted_labels(issue)],
            "milestone": None, "assignee": None, "assignees": None,
            "state": "closed" if issue.closed else "open", "is_locked": False, "comments": len(issue.comments),
            "created_at": self.rfc3339(issue.created), "updated_at": self.rfc3339(issue.updated),
            "closed_at": self.rfc3339(issue.closed_at) if issue.closed_at else None, "due_date": None,
            "time_estimate": 0, "content_version": issue.content_version,
            "pull_request": None if pull is None else {
                "merged": pull.merged, "merged_at": self.rfc3339(pull.merged_at) if pull.merged else None,
                "draft": issue.is_wip(), "html_url": self._html_issue(issue)},
            "repository": {"id": repo.id, "name": repo.name, "owner": repo.owner.login, "full_name": repo.full_name},
            "pin_order": 0,
        }

    def _comment_json(self, made: Comment) -> Dict[str, Any]:
        issue = made.issue
        html = self._html_issue(issue)
        return {
            "id": made.id, "html_url": "%s#issuecomment-%d" % (html, made.id),
            "pull_request_url": html if issue.is_pull else "", "issue_url": "" if issue.is_pull else html,
            "user": self._user_json(made.user), "original_author": "", "original_author_id": 0,
            "body": made.body, "assets": [], "created_at": self.rfc3339(made.created),
            "updated_at": self.rfc3339(made.updated),
        }

    def _pull_json(self, issue: Issue, viewer: Optional[User]) -> Dict[str, Any]:
        pull = issue.pull
        if pull is None:
            raise _Refuse(404, "not found")
        repo = issue.repo
        shown = self._issue_json(issue, viewer)
        html = self._html_issue(issue)
        repo_json = self._repo_json(repo, viewer)
        base = repo.branches.get(pull.base)
        head = repo.branches.get(pull.head)
        return {
            "id": pull.id, "url": html, "number": issue.number, "user": shown["user"], "title": issue.title,
            "body": issue.body, "labels": shown["labels"], "milestone": None, "assignee": None, "assignees": None,
            "requested_reviewers": None, "requested_reviewers_teams": None, "state": shown["state"],
            "draft": issue.is_wip(), "is_locked": False, "comments": len(issue.comments),
            "html_url": html, "diff_url": html + ".diff", "patch_url": html + ".patch",
            "mergeable": pull.mergeable and not issue.is_wip(), "merged": pull.merged,
            "merged_at": self.rfc3339(pull.merged_at) if pull.merged else None,
            "merge_commit_sha": pull.merge_commit_sha if pull.merged else None,
            "merged_by": self._user_json(pull.merged_by, viewer) if pull.merged and pull.merged_by else None,
            "allow_maintainer_edit": False,
            "base": {"label": pull.base, "ref": pull.base, "sha": base.sha if base else "", "repo_id": repo.id,
                     "repo": repo_json},
            "head": {"label": pull.head, "ref": pull.head if head else "refs/pull/%d/head" % issue.number,
                     "sha": head.sha if head else pull.head_sha, "repo_id": repo.id, "repo": repo_json},
            "merge_base": pull.merge_base, "due_date": None, "created_at": shown["created_at"],
            "updated_at": shown["updated_at"], "closed_at": shown["closed_at"], "pin_order": 0,
            "content_version": issue.content_version,
        }

    def _branch_json(self, repo: Repo, branch: Branch) -> Dict[str, Any]:
        person = {"name": branch.author, "email": "%s@example.com" % branch.author.lower(), "username": branch.author}
        return {
            "name": branch.name,
            "commit": {"id": branch.sha, "message": branch.message + "\n",
                       "url": "%s%s/commit/%s" % (self.app_url, repo.full_name, branch.sha),
                       "author": person, "committer": dict(person),
                       "verification": {"verified": False, "reason": "gpg.error.not_signed_commit", "signature": "",
                                        "signer": None, "payload": ""},
                       "timestamp": self.rfc3339(branch.committed), "added": None, "removed": None, "modified": None},
            "protected": branch.protected, "required_approvals": 0, "enable_status_check": False,
            "status_check_contexts": [], "user_can_push": not branch.protected, "user_can_merge": True,
            "effective_branch_protection_name": branch.name if branch.protected else "",
        }


class _Unmodelled(Exception):
    """A request the spec allows that asks for something the fake does not model (answered 501)."""


def _form_int(query: Mapping[str, str], name: str) -> int:
    """Gitea's ctx.FormInt: the first value as an integer, 0 when absent or not one."""
    try:
        return int(query.get(name, "0"))
    except ValueError:
        return 0


def _normalize_color(color: str) -> str:
    """Gitea's label.NormalizeColor, written as the API writes it (no "#")."""
    text = color.strip().lstrip("#")
    if not re.fullmatch(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}", text):
        raise ValueError("invalid color: %s" % color)
    if len(text) == 3:
        text = "".join(c * 2 for c in text)
    return text.lower()


def _sort_issues(issues: List[Issue], sort: str) -> List[Issue]:
    """models/issues applySorts for the sorts the pulls list offers (default: newest first)."""
    if sort == "oldest":
        return sorted(issues, key=lambda i: (i.created, i.id))
    if sort == "recentupdate":
        return sorted(issues, key=lambda i: (i.updated, i.created, i.id), reverse=True)
    if sort == "leastupdate":
        return sorted(issues, key=lambda i: (i.updated, i.created, i.id))
    if sort == "mostcomment":
        return sorted(issues, key=lambda i: (len(i.comments), i.created, i.id), reverse=True)
    if sort == "leastcomment":
        return sorted(issues, key=lambda i: (-len(i.comments), i.created, i.id), reverse=True)
    if sort == "recentclose":
        return sorted(issues, key=lambda i: (i.closed_at, i.created, i.id), reverse=True)
    return sorted(issues, key=lambda i: (i.created, i.id), reverse=True)    # "" and "priority" (all 0)


def iter_links(header: str) -> Iterator[Tuple[str, str]]:
    """(rel, url) of each entry of a Link header."""
    for entry in header.split(","):
        match = re.match(r'\s*<([^>]*)>\s*;\s*rel="([^"]*)"', entry)
        if match:
            yield match.group(2), match.group(1)
