"""The Gitea bridge end to end: tests/fake_gitea.py as Gitea (checked against Gitea's swagger), the real
relay and the real `allegro bridge` ($ALLEGRO_BIN) as processes, a plain collector of the relay reading
what the bridge publishes, and Timmy's side, allegro_client.timmy.GiteaBridge, on the command API.

What is checked is what the bridge promises (protocol/GITEA.md, config/README.md "Gitea"): each change
one record, published once across a kill -9 and nothing lost; triage of new issues only (status label
and a receipt Report), never of the first poll's look back; commands done once per operation id, also
when Gitea loses the answer to a write; one status label; details with comments; issues since from the
cache while Gitea is slow; reads retried after a 500 or a 429; no start with the sovereign's token; the
command API's token and strict bodies. No request of any test may touch a forbidden endpoint or stray
from the spec (the `gitea` fixture checks the fake at the end of each test). The bridge polls every
second (its least poll interval); timings are only ever checked as lower bounds."""

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from allegro_client import Collector, TelemetryEvent
from allegro_client.messages import AllegroReport, parse_markdown
from allegro_client.approval import Approval
from allegro_client.timmy import GiteaBridge, GiteaBridgeError, Issue, read_approval
from bridge_run import BridgeRun
from conftest import Relay
from fake_gitea import FakeGitea
from stream_watcher import StreamWatcher

pytestmark = pytest.mark.skipif(not os.environ.get("ALLEGRO_BIN"),
                                reason="ALLEGRO_BIN is not set (the allegro binary with `allegro bridge`)")

REPO = "timmy/allegro"
BOT, BOT_TOKEN = "allegro-bot", "bot-token-5e1f0a9c"
TIMMY_TOKEN = "timmy-token-77aa01"
ALEXANDER, ALEXANDER_TOKEN = "alexander", "alexander-token-3c3c"
COMMAND_TOKEN = "timmy-command-token-0123456789"
STATUSES = ("triage", "in-progress", "blocked", "review", "done")
POLL_MS = 1000                     # the bridge's least gitea.poll_interval_ms
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- Gitea, the relay, the stream ----------------------------------------------------------------------


@pytest.fixture
def gitea() -> Iterator[FakeGitea]:
    """The fake Gitea: the bridge's bot, Timmy, a person, one repository with Timmy's status labels."""
    fake = FakeGitea(users={BOT: BOT_TOKEN, "timmy": TIMMY_TOKEN, ALEXANDER: ALEXANDER_TOKEN}, repos=[REPO])
    for status in STATUSES:
        fake.add_label(REPO, "status/" + status, color="0075ca", exclusive=True)
    fake.add_label(REPO, "bug", color="d73a4a")
    try:
        yield fake
        fake.assert_clean()
    finally:
        fake.close()


@pytest.fixture
def relay(binary: str, tmp_path: Path) -> Iterator[Relay]:
    """The relay, with no daily report or alerts of its own on the stream."""
    running = Relay(binary, tmp_path / "relay", extra=["--set", "daily_report_at=off"])
    yield running
    running.stop()


class GiteaWatcher(StreamWatcher):
    """A plain (not durable) `StreamWatcher` of the gitea.* and allegro.report records."""

    def __init__(self, address: str) -> None:
        super().__init__(address, kinds=("gitea.", "allegro.report"))

    def records(self, kind: str = "gitea.") -> List[Tuple[str, str, Dict[str, Any]]]:
        """(kind, session, payload) of the records whose kind starts with `kind`, in stream order."""
        events = self.snapshot()
        return [(e.kind, e.session, json.loads(e.payload)) for e in events if e.kind.startswith(kind)]

    def reports(self) -> List[Tuple[str, AllegroReport]]:
        events = self.snapshot()
        return [(e.session, AllegroReport.from_json(e.payload)) for e in events if e.kind == "allegro.report"]



@pytest.fixture
def stream(relay: Relay) -> Iterator[GiteaWatcher]:
    watcher = GiteaWatcher(relay.address)
    yield watcher
    watcher.stop()


def change_key(kind: str, session: str, payload: Dict[str, Any]) -> Tuple[str, str, int, str]:
    """What makes a record one change: (kind, session, comment id or issue number, updated_at). Two
    comments of one issue may share a second, hence the id."""
    return kind, session, int(payload.get("id", payload["number"])), payload["updated_at"]


def duplicates(records: List[Tuple[str, str, Dict[str, Any]]]) -> List[Tuple[str, str, int, str]]:
    """Changes published more than once: the same item with the same content (two versions of an
    item may share an updated_at, Gitea's times being whole seconds; they differ in what changed)."""
    seen: Dict[Tuple[Tuple[str, str, int, str], str], int] = {}
    for record in records:
        key = (change_key(*record), json.dumps(record[2], sort_keys=True))
        seen[key] = seen.get(key, 0) + 1
    return [key[0] for key, count in seen.items() if count > 1]


# -- the bridge as a process ------------------------------------------------------------------------


def bridge_env(gitea_token: str, command_token: Optional[str] = COMMAND_TOKEN) -> Dict[str, str]:
    """The environment without any ALLEGRO_ setting or proxy of the test's own, with the tokens."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("ALLEGRO_") and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", ALLEGRO_GITEA_TOKEN=gitea_token)
    if command_token is not None:
        env["ALLEGRO_GITEA_COMMAND_TOKEN"] = command_token
    return env


class BridgeProcess(BridgeRun):
    """A running `allegro bridge` with its Gitea duty: settings as `--set KEY=VALUE` (keys with their
    section: gitea.poll_interval_ms); `kill()` (SIGKILL) and `start()` again keep its data directory.
    Each run's output goes to a file of its own; `address` is the HTTP port this run bound."""

    def __init__(self, binary: str, root: Path, relay: Relay, fake: FakeGitea, *, token: str = BOT_TOKEN,
                 **settings: Any) -> None:
        self.binary, self.root = binary, root
        root.mkdir(parents=True, exist_ok=True)
        values: Dict[str, Any] = {"gitea.url": fake.base_url, "gitea.repos": REPO, "gitea.poll_interval_ms": POLL_MS,
                                  "bridge.relay": relay.address, "bridge.http": "127.0.0.1:0",
                                  "bridge.data_dir": str(root / "data"), "bridge.relay_down_ms": 0}
        values.update({key.replace("__", "."): value for key, value in settings.items()})
        self.settings = {key: str(value) for key, value in values.items()}
        self.env = bridge_env(token)
        self.runs: List[Path] = []
        super().__init__()
        self.address = ""

    def command(self) -> List[str]:
        command = [self.binary, "bridge"]
        for key, value in self.settings.items():
            command += ["--set", "%s=%s" % (key, value)]
        return command

    def launch(self) -> "subprocess.Popen[bytes]":
        self.stopping = False
        path = self.root / ("bridge-%d.log" % (len(self.runs) + 1))
        self.runs.append(path)
        with open(path, "wb") as log:
            self.process = subprocess.Popen(self.command(), env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)
        return self.process

    def start(self) -> "BridgeProcess":
        process = self.launch()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            match = re.search(r"http_listening\b.*?\baddress=(\S+)", self.run_output())
            if match:
                self.address = match.group(1).strip('"')
                break
            if process.poll() is not None:
                raise RuntimeError("the bridge exited with %s:\n%s" % (process.returncode, self.run_output()))
            time.sleep(0.02)
        else:
            raise RuntimeError("the bridge did not log http_listening:\n" + self.run_output())
        while time.monotonic() < deadline:
            if self.health()[0] == 200:
                return self
            time.sleep(0.05)
        raise RuntimeError("the bridge's /health never answered 200: %r\n%s" % (self.health(), self.run_output()))

    def run_output(self) -> str:
        return self.runs[-1].read_text(errors="replace")

    def output(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.runs)

    def health(self) -> Tuple[int, Dict[str, Any]]:
        status, data = http(self.address, "GET", "/health", token=None)
        return status, data if isinstance(data, dict) else {}

    def client(self, **options: Any) -> GiteaBridge:
        return GiteaBridge(self.address, COMMAND_TOKEN, **options)


RUNNING: List[BridgeProcess] = []


@pytest.fixture
def bridges(binary: str, tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    """bridges(relay, gitea, **settings) starts a bridge (gitea__triage_status="" sets
    gitea.triage_status; `env` adds to its environment); all are stopped at the end."""
    started: List[BridgeProcess] = []

    def start(relay: Relay, fake: FakeGitea, name: str = "bridge", env: Optional[Dict[str, str]] = None,
              **settings: Any) -> BridgeProcess:
        bridge = BridgeProcess(binary, tmp_path / name, relay, fake, **settings)
        bridge.env.update(env or {})
        started.append(bridge)
        RUNNING.append(bridge)
        return bridge.start()

    yield start
    for bridge in started:
        bridge.stop()
        RUNNING.remove(bridge)


def check_bridges() -> None:
    for bridge in RUNNING:
        if bridge.died():
            assert bridge.process is not None
            raise AssertionError("the bridge exited with %s; its output:\n%s"
                                 % (bridge.process.returncode, bridge.output()[-4000:]))


def wait_until(condition: Callable[[], Any], timeout: float = 15) -> bool:
    """Waits for `condition` (polled); False after `timeout` seconds; fails at once if a bridge died."""
    deadline = time.monotonic() + timeout
    while not condition():
        check_bridges()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def list_calls(fake: FakeGitea) -> int:
    """How many times the bridge has listed the repository's issues (once a poll)."""
    return len(fake.calls("issueListIssues"))


def wait_polls(fake: FakeGitea, polls: int = 1, timeout: float = 30) -> None:
    """Waits until the bridge has begun `polls` more polls and finished the one before the last."""
    target = list_calls(fake) + polls + 1
    assert wait_until(lambda: list_calls(fake) >= target, timeout), "the bridge stopped polling"


def http(address: str, method: str, path: str, body: Any = None, token: Optional[str] = COMMAND_TOKEN,
         raw: Optional[bytes] = None) -> Tuple[int, Any]:
    """One request to the bridge's HTTP port: (status, JSON answer)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request("http://%s%s" % (address, path), data=data, method=method)
    if token is not None:
        request.add_header("Authorization", "Bearer " + token)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(request, timeout=30) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    except OSError as error:
        return 0, str(error)
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def ask(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 120))


def issue_records(stream: GiteaWatcher, number: int) -> List[Dict[str, Any]]:
    return [payload for kind, session, payload in stream.records("gitea.issue") if session == "%s#%d" % (REPO, number)]


def labels(fake: FakeGitea, number: int) -> List[str]:
    return sorted(label["name"] for label in fake.issue(REPO, number)["labels"])


MARKER = re.compile(r"<!-- allegro-op: ([A-Za-z0-9_.:-]+) -->")


def labelled_within_its_second(gitea: FakeGitea, stream: "GiteaWatcher", title: str) -> Tuple[Dict[str, Any], int]:
    """A new issue, once its record is on the stream, labelled `bug` within the second of that
    version (the fake's clock held there), so its updated_at stays the same."""
    created = gitea.create_issue(REPO, title, user=ALEXANDER)
    number = created["number"]
    assert wait_until(lambda: issue_records(stream, number))
    second = int(datetime.fromisoformat(created["updated_at"].replace("Z", "+00:00")).timestamp())
    gitea.advance(second - gitea.now())
    gitea.label_issue(REPO, number, ["bug"])
    assert gitea.issue(REPO, number)["updated_at"] == created["updated_at"]
    return created, number


# -- records on the stream ---------------------------------------------------------------------------


def test_each_change_to_an_issue_reaches_a_plain_collector_exactly_once(gitea, relay, stream, bridges):
    bridge = bridges(relay, gitea, gitea__triage_status="", gitea__triage_receipt="false")
    wait_polls(gitea)

    created = gitea.create_issue(REPO, "The relay drops frames", body="Seen on vps1.", user=ALEXANDER)
    number = created["number"]
    assert wait_until(lambda: len(issue_records(stream, number)) >= 1), bridge.output()
    gitea.advance(1)            # Gitea keeps whole seconds: each change gets an updated_at of its own
    comment = gitea.comment(REPO, number, "Also on vps2.", user=ALEXANDER)
    assert wait_until(lambda: len(stream.records("gitea.comment")) >= 1 and len(issue_records(stream, number)) >= 2)
    gitea.advance(1)
    edited = gitea.edit_issue(REPO, number, title="The relay drops frames under load")
    assert wait_until(lambda: len(issue_records(stream, number)) >= 3)
    wait_polls(gitea, 3)        # further polls see the same updated_at again: nothing more

    records = stream.records()
    assert duplicates(records) == []
    issues = issue_records(stream, number)
    assert [(p["title"], p["comments"]) for p in issues] == [
        ("The relay drops frames", 0), ("The relay drops frames", 1), ("The relay drops frames under load", 1)]
    assert issues[0]["updated_at"] == created["updated_at"] and issues[-1]["updated_at"] == edited["updated_at"]
    first = issues[0]
    assert (first["repo"], first["number"], first["state"], first["user"], first["body"], first["labels"]) == (
        REPO, number, "open", ALEXANDER, "Seen on vps1.", [])
    assert first["html_url"] == created["html_url"] and first["created_at"] == created["created_at"]
    [(kind, session, said)] = stream.records("gitea.comment")
    assert session == "%s#%d" % (REPO, number)
    assert (said["id"], said["number"], said["body"], said["user"], said["updated_at"]) == (
        comment["id"], number, "Also on vps2.", ALEXANDER, comment["updated_at"])
    assert len(records) == 4, records
    assert gitea.writes() == []                         # triage is off: the bridge only read


def test_a_change_within_the_second_of_the_version_already_published_is_published_too(gitea, relay, stream, bridges):
    # Gitea keeps whole seconds, so a change made within the second of the version the bridge has
    # published keeps its updated_at (a label Timmy sets right after a poll, a triage step). The fake's
    # clock is held at that second here; the change must still reach the stream and the cache.
    bridge = bridges(relay, gitea, gitea__triage_status="", gitea__triage_receipt="false")
    wait_polls(gitea)
    created, number = labelled_within_its_second(gitea, stream, "Same second")
    client = bridge.client()

    def labelled() -> bool:
        cached = ask(client.poll_issues(REPO, None))
        return (any(p["labels"] == ["bug"] for p in issue_records(stream, number))
                and [i.labels for i in cached if i.number == number] == [["bug"]])

    assert wait_until(labelled, timeout=8), ("the label never reached Timmy", issue_records(stream, number),
                                             ask(client.poll_issues(REPO, None)))
    assert duplicates(stream.records()) == []


def test_the_backfill_issue_is_published_but_not_triaged_and_a_new_issue_is_triaged(gitea, relay, stream, bridges):
    old = gitea.create_issue(REPO, "Opened before the bridge", user=ALEXANDER)["number"]
    bridges(relay, gitea)
    assert wait_until(lambda: issue_records(stream, old))
    wait_polls(gitea)

    new = gitea.create_issue(REPO, "Opened while the bridge watches", user=ALEXANDER)["number"]
    assert wait_until(lambda: labels(gitea, new) == ["status/triage"] and len(gitea.comments(REPO, new)) == 1)
    assert wait_until(lambda: issue_records(stream, new))
    wait_polls(gitea, 2)

    assert labels(gitea, old) == [] and gitea.comments(REPO, old) == []
    assert issue_records(stream, old) and all(p["labels"] == [] for p in issue_records(stream, old))
    assert labels(gitea, new) == ["status/triage"]
    [receipt] = gitea.comments(REPO, new)
    assert receipt["user"]["login"] == BOT
    assert MARKER.findall(receipt["body"]) == ["triage-receipt:timmy:allegro:%d" % new]
    report = parse_markdown(MARKER.sub("", receipt["body"]).rstrip() + "\n")
    assert isinstance(report, AllegroReport) and report.task == "Triage of %s#%d" % (REPO, new)
    assert "status/triage" in report.results
    # Each triage step is a command, reported on the stream once.
    tasks = sorted(report.task for session, report in stream.reports() if session == "%s#%d" % (REPO, new))
    assert tasks == ["Gitea comment on %s#%d" % (REPO, new), "Gitea status on %s#%d" % (REPO, new)]
    assert all(session != "%s#%d" % (REPO, old) for session, _ in stream.reports())
    assert duplicates(stream.records()) == []


# -- Timmy's commands --------------------------------------------------------------------------------


def test_a_comment_asked_twice_with_one_operation_id_is_posted_once(gitea, relay, stream, bridges):
    number = gitea.create_issue(REPO, "Plan the release", user=ALEXANDER)["number"]
    bridge = bridges(relay, gitea)
    client = bridge.client()
    text = "Fixes #2 and closes timmy/allegro#3 once the relay is green."

    first = ask(client.comment_on_issue(REPO, number, text, operation_id="plan-release-ack"))
    again = ask(client.comment_on_issue(REPO, number, text, operation_id="plan-release-ack"))

    [posted] = gitea.comments(REPO, number)
    assert first["written"] == "now" and first["comment_id"] == posted["id"] and first["html_url"] == posted["html_url"]
    assert again["repeated"] is True and again["comment_id"] == posted["id"]
    assert posted["user"]["login"] == BOT
    assert posted["body"].startswith("Refs #2 and Refs timmy/allegro#3 once the relay is green.")
    assert MARKER.findall(posted["body"]) == ["plan-release-ack"]
    assert len(gitea.calls("issueCreateComment")) == 1
    # The same id for another command, or another body, is refused.
    with pytest.raises(GiteaBridgeError) as caught:
        ask(client.comment_on_issue(REPO, number, "Something else", operation_id="plan-release-ack"))
    assert caught.value.status == 409
    with pytest.raises(GiteaBridgeError) as caught:
        ask(client.update_status(REPO, number, "done", operation_id="plan-release-ack"))
    assert caught.value.status == 409
    assert len(gitea.comments(REPO, number)) == 1 and labels(gitea, number) == []
    # The outcome is a Report on the stream, once.
    assert wait_until(lambda: stream.reports())
    wait_polls(gitea)
    [(session, report)] = stream.reports()
    assert session == "%s#%d" % (REPO, number) and report.task == "Gitea comment on %s#%d" % (REPO, number)
    assert report.status == "complete" and report.artifacts == (posted["html_url"],)


def test_a_comment_whose_answer_gitea_lost_is_looked_for_before_it_is_tried_again(gitea, relay, bridges):
    number = gitea.create_issue(REPO, "Flaky network", user=ALEXANDER)["number"]
    bridge = bridges(relay, gitea)
    gitea.drop_after_write_next(1, method="POST", path=r"/issues/\d+/comments$")

    result = ask(bridge.client().comment_on_issue(REPO, number, "Noted.", operation_id="flaky-ack"))

    [posted] = gitea.comments(REPO, number)
    assert result["written"] == "found after a lost answer" and result["comment_id"] == posted["id"]
    assert MARKER.findall(posted["body"]) == ["flaky-ack"]
    assert len(gitea.calls("issueCreateComment")) == 1
    lists = gitea.calls("issueGetComments")
    assert len(lists) == 2, "the bridge looks before writing, and again after the lost answer"


def test_a_command_asked_again_while_its_first_call_is_still_running_is_done_once(gitea, relay, bridges):
    # Timmy's client gave up waiting (or lost the connection) and asks again with the same id while the
    # bridge is still at the first call: Gitea is slow to list the comments the first call looks at.
    number = gitea.create_issue(REPO, "Slow Gitea", user=ALEXANDER)["number"]
    bridge = bridges(relay, gitea)
    gitea.slow_next(1, 3.0, method="GET", path=r"/issues/%d/comments$" % number)

    async def both() -> List[Any]:
        client = bridge.client(attempts=1)
        first = asyncio.ensure_future(client.comment_on_issue(REPO, number, "Once.", operation_id="slow-once"))
        await asyncio.sleep(0.8)
        second = await asyncio.gather(client.comment_on_issue(REPO, number, "Once.", operation_id="slow-once"),
                                      return_exceptions=True)
        return [await asyncio.gather(first, return_exceptions=True), second]

    outcomes = ask(both())
    time.sleep(0.5)
    bodies = [c["body"] for c in gitea.comments(REPO, number)]
    assert len(bodies) == 1, "one operation id, %d comments: %s; answers %s" % (len(bodies), bodies, outcomes)


def test_two_bridges_that_both_looked_before_either_wrote_leave_one_comment_and_name_their_duty_epoch(
        gitea, relay, bridges):
    # A failover partition: two hosts both hold the `gitea` duty (epochs 16 and 33), each with its own
    # data directory and journal, and Timmy's one command reaches both. Gitea is slow to list the
    # issue's comments the first two times, so both bridges look, find no copy, and write.
    number = gitea.create_issue(REPO, "Partitioned", user=ALEXANDER)["number"]
    holders = [bridges(relay, gitea, name="host-%d" % epoch, gitea__triage_status="", gitea__triage_receipt="false",
                       env={"ALLEGRO_DUTY": "gitea", "ALLEGRO_DUTY_EPOCH": str(epoch)}) for epoch in (16, 33)]
    looks = r"/issues/%d/comments$" % number
    gitea.slow_next(2, 2.0, method="GET", path=looks)
    text = "Both hosts think they hold the duty."

    calls = [Call(holder.client(attempts=1).comment_on_issue(REPO, number, text, operation_id="partitioned-ack"))
             for holder in holders]
    for call in calls:
        call.join()
    assert [call.error for call in calls] == [None, None], [call.error for call in calls]
    answers = [call.result for call in calls]

    posts = writes_to(gitea, "POST", r"/issues/%d/comments" % number)
    deletes = writes_to(gitea, "DELETE", r"/issues/comments/\d+")
    assert len(posts) == 2 and len(deletes) == 1, ("the race did not happen", [str(w) for w in gitea.writes()])
    first_looks = [c for c in gitea.calls(method="GET") if re.search(looks, c.path)][:2]
    assert all(look.at < min(post.at for post in posts) for look in first_looks), "a bridge looked after a write"
    made = sorted(post.answer["id"] for post in posts)
    [kept] = [c for c in gitea.comments(REPO, number) if MARKER.findall(c["body"]) == ["partitioned-ack"]]
    assert len(gitea.comments(REPO, number)) == 1 and kept["id"] == made[0], (made, gitea.comments(REPO, number))
    assert deletes[0].path.endswith("/issues/comments/%d" % made[1])
    assert all(answer["comment_id"] == kept["id"] and answer["html_url"] == kept["html_url"] for answer in answers), answers
    assert sorted(answer["written"] for answer in answers) == ["found (a second copy was removed)", "now"], answers
    assert [answer["duty_epoch"] for answer in answers] == [16, 33], answers
    [removed_by] = [holder for holder, answer in zip(holders, answers) if answer["written"] != "now"]
    assert "gitea_comment_twice" in removed_by.output()
    assert all("gitea_comment_twice" not in holder.output() for holder in holders if holder is not removed_by)


def test_update_status_leaves_exactly_one_status_label(gitea, relay, bridges):
    number = gitea.create_issue(REPO, "Triage me", user=ALEXANDER, labels=["bug", "status/triage"])["number"]
    bridge = bridges(relay, gitea)
    client = bridge.client()

    moved = ask(client.update_status(REPO, number, "in-progress", operation_id="start-%d" % number))
    assert labels(gitea, number) == ["bug", "status/in-progress"]
    assert (moved["status"], moved["label"], moved["removed"]) == ("in-progress", "status/in-progress", ["status/triage"])
    review = ask(client.update_status(REPO, number, "review"))
    assert labels(gitea, number) == ["bug", "status/review"] and review["removed"] == ["status/in-progress"]
    writes = len(gitea.writes())
    repeated = ask(client.update_status(REPO, number, "in-progress", operation_id="start-%d" % number))
    assert repeated["repeated"] is True and labels(gitea, number) == ["bug", "status/review"]
    again = ask(client.update_status(REPO, number, "review"))         # a new id, the status it has: no write
    assert again["removed"] == [] and len(gitea.writes()) == writes
    assert all(not re.search(r"/labels/%d$" % label["id"], w.path) for w in gitea.writes()
               for label in gitea.labels(REPO) if label["name"] == "bug")
    # Statuses are Timmy's list, and the labels must exist.
    with pytest.raises(GiteaBridgeError) as caught:
        ask(client.update_status(REPO, number, "wontfix"))
    assert caught.value.status == 400 and "status" in caught.value.reason


def test_a_status_whose_label_the_repository_lacks_is_refused_and_nothing_is_written(gitea, relay, bridges):
    number = gitea.create_issue(REPO, "Blocked?", user=ALEXANDER, labels=["status/triage"])["number"]
    bridge = bridges(relay, gitea, gitea__statuses="triage,blocked,parked")
    with pytest.raises(GiteaBridgeError) as caught:
        ask(bridge.client().update_status(REPO, number, "parked"))
    assert caught.value.status == 409 and "status/parked" in caught.value.reason
    assert labels(gitea, number) == ["status/triage"] and gitea.writes() == []


def test_get_issue_details_returns_the_comments(gitea, relay, bridges):
    number = gitea.create_issue(REPO, "Details", body="What happened.", user=ALEXANDER, labels=["bug"])["number"]
    first = gitea.comment(REPO, number, "First look.", user=ALEXANDER)
    gitea.advance(1)
    second = gitea.comment(REPO, number, "Second look.", user="timmy")
    gitea.add_branch(REPO, "fix-relay")
    pull = gitea.create_pull(REPO, "fix-relay", title="Fix the relay", body="Refs #%d" % number, user=ALEXANDER)
    bridge = bridges(relay, gitea)
    client = bridge.client()

    issue = ask(client.get_issue_details(REPO, number))
    assert isinstance(issue, Issue)
    assert (issue.number, issue.kind, issue.title, issue.body, issue.labels, issue.user, issue.state) == (
        number, "issue", "Details", "What happened.", ["bug"], ALEXANDER, "open")
    assert issue.comment_count == 2
    assert [(c.id, c.user, c.body, c.html_url) for c in issue.comments] == [
        (first["id"], ALEXANDER, "First look.", first["html_url"]), (second["id"], "timmy", "Second look.", second["html_url"])]
    assert issue.comments[1].updated_at == datetime.fromisoformat(second["updated_at"].replace("Z", "+00:00"))
    assert issue.updated_at == datetime.fromisoformat(gitea.issue(REPO, number)["updated_at"].replace("Z", "+00:00"))
    shown = ask(client.get_issue_details(REPO, pull["number"]))
    assert (shown.kind, shown.merged, shown.title, shown.comments) == ("pull", False, "Fix the relay", [])
    with pytest.raises(GiteaBridgeError) as caught:
        ask(client.get_issue_details(REPO, 99))
    assert caught.value.status == 404
    with pytest.raises(GiteaBridgeError) as caught:
        ask(client.get_issue_details("timmy/elsewhere", 1))
    assert caught.value.status == 404 and "gitea.repos" in caught.value.reason


# -- reads -------------------------------------------------------------------------------------------


def test_poll_issues_since_answers_from_the_cache_also_while_gitea_is_slow(gitea, relay, bridges):
    older = gitea.create_issue(REPO, "Older", user=ALEXANDER)
    gitea.advance(10)
    newer = gitea.create_issue(REPO, "Newer", user=ALEXANDER)
    bridge = bridges(relay, gitea)
    client = bridge.client()
    assert wait_until(lambda: len(ask(client.poll_issues(REPO, None))) == 2)

    def moment(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    everything = ask(client.poll_issues(REPO, moment(older["updated_at"]) - timedelta(seconds=1)))
    assert [(i.number, i.title, i.kind) for i in everything] == [(older["number"], "Older", "issue"),
                                                                  (newer["number"], "Newer", "issue")]
    since_newer = ask(client.poll_issues(REPO, moment(newer["updated_at"])))
    assert [i.number for i in since_newer] == [newer["number"]]
    assert ask(client.poll_issues(REPO, moment(newer["updated_at"]) + timedelta(seconds=1))) == []

    # Gitea now takes 5 s to answer the bridge's next list of issues: the bridge's poll waits on it,
    # Timmy's read does not.
    gitea.slow_next(1, 5.0, method="GET", path=r"/issues$")
    stalled = list_calls(gitea) + 1
    assert wait_until(lambda: list_calls(gitea) >= stalled)
    reads_before = len(gitea.calls(method="GET"))
    during = ask(client.poll_issues(REPO, moment(older["updated_at"])))
    assert list_calls(gitea) == stalled, "the poll went on: Gitea was not slow when Timmy asked"
    assert [i.number for i in during] == [older["number"], newer["number"]]
    assert len(gitea.calls(method="GET")) == reads_before, "answering Timmy asked Gitea"
    assert wait_until(lambda: list_calls(gitea) > stalled, timeout=30), "the bridge never polled again"


def test_a_500_or_a_429_from_gitea_on_a_read_is_retried(gitea, relay, stream, bridges):
    number = gitea.create_issue(REPO, "Before", user=ALEXANDER)["number"]
    bridge = bridges(relay, gitea, gitea__triage_status="", gitea__triage_receipt="false")
    assert wait_until(lambda: issue_records(stream, number))
    gitea.fail_next(2, status=500, method="GET", path=r"/issues$")
    gitea.rate_limit_next(1, retry_after=1, method="GET", path=r"/issues/comments$")
    later = gitea.create_issue(REPO, "After a bad patch of Gitea", user=ALEXANDER)["number"]
    gitea.comment(REPO, later, "Still there?", user=ALEXANDER)

    assert wait_until(lambda: issue_records(stream, later) and stream.records("gitea.comment"))
    lists = gitea.calls("issueListIssues")
    failed = [i for i, call in enumerate(lists) if call.status == 500]
    assert len(failed) == 2 and failed[1] == failed[0] + 1 and lists[failed[1] + 1].status == 200
    feed = gitea.calls("issueGetRepoComments")
    limited = next(i for i, call in enumerate(feed) if call.status == 429)
    assert feed[limited + 1].status == 200 and feed[limited + 1].at - feed[limited].at >= 1 - 0.05, \
        "asked again before Retry-After"
    # Details are read from Gitea too, retried the same way.
    gitea.fail_next(1, status=500, method="GET", path=r"/issues/%d$" % later)
    gitea.rate_limit_next(1, retry_after=1, method="GET", path=r"/issues/%d/comments$" % later)
    details = ask(bridge.client().get_issue_details(REPO, later))
    assert [c.body for c in details.comments] == ["Still there?"]
    wait_polls(gitea, 2)
    assert duplicates(stream.records()) == []


# -- who the bridge is ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sovereign, token", [(None, TIMMY_TOKEN), (ALEXANDER, ALEXANDER_TOKEN)])
def test_the_bridge_refuses_to_start_with_the_sovereigns_token(gitea, relay, binary, tmp_path, sovereign, token):
    settings = {} if sovereign is None else {"gitea.sovereign_login": sovereign.upper()}
    bridge = BridgeProcess(binary, tmp_path / "bridge", relay, gitea, token=token, **settings)
    process = bridge.launch()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("the bridge ran with the sovereign's token:\n" + bridge.output())
    output = bridge.output()
    assert process.returncode != 0, output
    assert "gitea.sovereign_login" in output, output
    assert token not in output
    assert gitea.writes() == [] and [call.operation for call in gitea.calls()] == ["userGetCurrent"]


# -- crashes -------------------------------------------------------------------------------------------


def test_a_bridge_killed_with_sigkill_and_restarted_publishes_nothing_twice_and_loses_nothing(
        gitea, relay, stream, bridges):
    before = gitea.create_issue(REPO, "Backfill", user=ALEXANDER)["number"]
    bridge = bridges(relay, gitea)
    assert wait_until(lambda: issue_records(stream, before))
    wait_polls(gitea)

    def burst(label: str, count: int) -> List[int]:
        numbers = []
        for index in range(count):
            number = gitea.create_issue(REPO, "%s %d" % (label, index), user=ALEXANDER)["number"]
            gitea.comment(REPO, number, "Details of %s %d" % (label, index), user=ALEXANDER)
            numbers.append(number)
        gitea.comment(REPO, before, "More on the backfill (%s)" % label, user=ALEXANDER)
        return numbers

    created = burst("first", 4)
    # Killed while it triages and publishes the first burst.
    assert wait_until(lambda: gitea.writes())
    bridge.kill()
    gitea.advance(1)
    created += burst("while down", 3)
    bridge.start()
    wait_polls(gitea)
    gitea.advance(1)
    created += burst("after the restart", 2)
    time.sleep(0.7)
    bridge.kill()
    bridge.start()

    def everything_published() -> bool:
        shown = {change_key(*record) for record in stream.records()}
        for number in created + [before]:
            issue = gitea.issue(REPO, number)
            if ("gitea.issue", "%s#%d" % (REPO, number), number, issue["updated_at"]) not in shown:
                return False
            for comment in gitea.comments(REPO, number):
                if ("gitea.comment", "%s#%d" % (REPO, number), comment["id"], comment["updated_at"]) not in shown:
                    return False
        return True

    assert wait_until(everything_published, timeout=30), bridge.output()[-3000:]
    wait_polls(gitea, 2)
    assert everything_published()
    records = stream.records()
    assert duplicates(records) == [], duplicates(records)
    for number in created:
        receipts = [c for c in gitea.comments(REPO, number) if c["user"]["login"] == BOT]
        assert len(receipts) <= 1 and all(MARKER.findall(c["body"]) == ["triage-receipt:timmy:allegro:%d" % number]
                                          for c in receipts), receipts
        assert [label for label in labels(gitea, number) if label.startswith("status/")] in ([], ["status/triage"])
    assert labels(gitea, before) == [] and all(c["user"]["login"] == ALEXANDER for c in gitea.comments(REPO, before))
    # Each triage command is reported once, whatever the kills.
    tasks = [(session, report.task) for session, report in stream.reports()]
    assert len(tasks) == len(set(tasks)), tasks


def test_new_issues_whose_triage_a_kill_interrupted_are_triaged_after_the_restart(gitea, relay, bridges):
    bridge = bridges(relay, gitea)
    wait_polls(gitea)
    # Gitea is slow to list the labels, the first thing a triage reads: the bridge is killed while it
    # triages the first of three new issues it has just published.
    gitea.slow_next(1, 5.0, method="GET", path=r"/labels$")
    asked = len(gitea.calls("issueListLabels"))
    numbers = [gitea.create_issue(REPO, "New %d" % index, user=ALEXANDER)["number"] for index in range(3)]
    assert wait_until(lambda: len(gitea.calls("issueListLabels")) > asked)
    bridge.kill()
    bridge.start()

    def triaged(number: int) -> bool:
        return labels(gitea, number) == ["status/triage"] and len(gitea.comments(REPO, number)) == 1

    assert wait_until(lambda: all(triaged(number) for number in numbers), timeout=10), (
        [(number, labels(gitea, number), len(gitea.comments(REPO, number))) for number in numbers],
        bridge.output()[-3000:])
    wait_polls(gitea, 2)
    for number in numbers:
        [receipt] = gitea.comments(REPO, number)
        assert MARKER.findall(receipt["body"]) == ["triage-receipt:timmy:allegro:%d" % number]


# -- the command API's door --------------------------------------------------------------------------


def test_the_command_api_refuses_a_missing_or_wrong_token_and_unknown_keys(gitea, relay, bridges):
    number = gitea.create_issue(REPO, "Door", user=ALEXANDER)["number"]
    bridge = bridges(relay, gitea)
    base = "/v1/gitea/%s/issues" % REPO
    comment = "%s/%d/comments" % (base, number)
    status = "%s/%d/status" % (base, number)
    good = {"operation_id": "door-1", "body": "Hello."}

    for token in (None, "", "wrong-token-0123456789", COMMAND_TOKEN + "x", COMMAND_TOKEN[:-1]):
        for method, path, body in (("GET", base, None), ("GET", "%s/%d" % (base, number), None),
                                   ("POST", comment, good), ("PUT", status, {"operation_id": "door-2", "status": "done"})):
            answered, data = http(bridge.address, method, path, body, token=token)
            assert answered == 401 and "Bearer" in data["error"], (token, method, path, answered, data)
    with pytest.raises(GiteaBridgeError) as caught:
        ask(GiteaBridge(bridge.address, "wrong-token-0123456789").poll_issues(REPO, None))
    assert caught.value.status == 401

    refused: List[Tuple[str, str, Any, str]] = [
        ("POST", comment, {"operation_id": "door-3", "body": "Hi.", "close": "true"}, "close: unknown key"),
        ("POST", comment, {"operation_id": "door-3", "body": "Hi.", "labels": []}, "labels: unknown key"),
        ("POST", comment, {"operation_id": "door-3"}, "body: missing"),
        ("POST", comment, {"operation_id": 3, "body": "Hi."}, "operation_id: missing, or not a string"),
        ("POST", comment, {"operation_id": "door 3", "body": "Hi."}, "operation_id"),
        ("POST", comment, {"operation_id": "door-3", "body": ""}, "body"),
        ("POST", comment, [good], "one JSON object"),
        ("PUT", status, {"operation_id": "door-4", "status": "done", "label": "status/done"}, "label: unknown key"),
        ("PUT", status, {"operation_id": "door-4", "status": "finished"}, "status"),
        ("GET", base + "?limit=0", None, "limit"),
        ("GET", base + "?since=yesterday", None, "since"),
        ("GET", base + "/0", None, "issue number"),
    ]
    for method, path, body, reason in refused:
        answered, data = http(bridge.address, method, path, body)
        assert answered == 400 and reason in data["error"], (method, path, body, answered, data)
    answered, data = http(bridge.address, "POST", comment, raw=b"{not json")
    assert answered == 400, data
    answered, data = http(bridge.address, "POST", "/v1/gitea/timmy/elsewhere/issues/1/comments", good)
    assert answered == 404 and "gitea.repos" in data["error"]
    assert gitea.writes() == [] and gitea.comments(REPO, number) == []
    output = bridge.output()
    assert COMMAND_TOKEN not in output and BOT_TOKEN not in output


# -- gated commands: Timmy's signed approvals ---------------------------------------------------------


def timmy_signer(directory: Path) -> Tuple[Path, Path]:
    """Timmy's Ed25519 key (made with ssh-keygen) and an allowed_signers file trusting it for approvals."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "timmy_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key), "-C", "timmy"], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)
    kind, blob = Path(str(key) + ".pub").read_text().split()[:2]
    signers = directory / "allowed_signers"
    signers.write_text('timmy namespaces="allegro-approval" %s %s\n' % (kind, blob))
    return key, signers


def approve(key: Path, out: Path, action: str, *args: str) -> Any:
    """An approval as Timmy makes one: allegro-approve --out DIR, read back with read_approval."""
    subprocess.run([sys.executable, "-m", "allegro_client.approval", "--action", action, "--repo", REPO,
                    "--key", str(key), "--out", str(out)] + list(args), check=True, stdin=subprocess.DEVNULL,
                   capture_output=True)
    return read_approval(out / "statement.txt", out / "statement.txt.sig")


def writes_to(fake: FakeGitea, method: str, pattern: str) -> List[Any]:
    """The fake's write requests with `method` whose path (after the repository) matches `pattern`."""
    prefix = "/api/v1/repos/%s" % REPO
    return [r for r in fake.writes() if r.method == method and r.path.startswith(prefix)
            and re.fullmatch(pattern, r.path[len(prefix):])]


def test_create_pr_merge_pr_and_close_issue_with_timmys_approvals(gitea, relay, bridges, tmp_path):
    key, signers = timmy_signer(tmp_path / "timmy")
    number = gitea.create_issue(REPO, "Relay drops records", user=ALEXANDER)["number"]
    branch = gitea.add_branch(REPO, "fix-relay")
    bridge = bridges(relay, gitea, gitea__allowed_signers=signers)
    client = bridge.client()

    made = approve(key, tmp_path / "a-pr", "create_pr", "--head", "fix-relay", "--head-sha", branch.sha, "--base", "main")
    assert isinstance(made, Approval)
    created = ask(client.create_pr(REPO, "fix-relay", "Fix the relay", "fixes #%d" % number, made,
                                   operation_id="pr-fix-relay"))
    [pull] = gitea.pulls(REPO)
    assert created["pull"] == pull["number"] and created["head_sha"] == branch.sha
    assert (pull["head"]["ref"], pull["base"]["ref"], pull["title"]) == ("fix-relay", "main", "Fix the relay")
    assert "Refs #%d" % number in pull["body"] and "fixes" not in pull["body"].lower()
    assert len(writes_to(gitea, "POST", r"/pulls")) == 1

    made = approve(key, tmp_path / "a-merge", "merge_pr", "--pull", str(pull["number"]), "--head", "fix-relay",
                   "--head-sha", branch.sha, "--base", "main")
    merged = ask(client.merge_pr(REPO, pull["number"], made, operation_id="merge-fix-relay"))
    assert merged["merged"] is True and gitea.pull(REPO, pull["number"])["merged"] is True
    assert len(writes_to(gitea, "POST", r"/pulls/%d/merge" % pull["number"])) == 1
    assert gitea.issue(REPO, number)["state"] == "open", "a merged 'Refs #N' closes nothing"

    made = approve(key, tmp_path / "a-close", "close_issue", "--issue", str(number))
    closed = ask(client.close_issue(REPO, number, made, operation_id="close-relay"))
    assert closed["state"] == "closed" and gitea.issue(REPO, number)["state"] == "closed"
    assert len(writes_to(gitea, "PATCH", r"/issues/%d" % number)) == 1
    again = ask(client.close_issue(REPO, number, made, operation_id="close-relay"))      # the same id: no new write
    assert again.get("repeated") is True and len(writes_to(gitea, "PATCH", r"/issues/%d" % number)) == 1


def test_gated_commands_without_a_valid_approval_are_refused_and_write_nothing(gitea, relay, bridges, tmp_path):
    key, signers = timmy_signer(tmp_path / "timmy")
    number = gitea.create_issue(REPO, "Keep open", user=ALEXANDER)["number"]
    other = gitea.create_issue(REPO, "Another issue", user=ALEXANDER)["number"]
    guarded = gitea.add_branch(REPO, "release", protected=True)
    feature = gitea.add_branch(REPO, "feature-x")
    pull = gitea.create_pull(REPO, "feature-x", title="Feature X", user=ALEXANDER)["number"]
    bridge = bridges(relay, gitea, gitea__allowed_signers=signers)
    client = bridge.client()

    def refused(coroutine: Any, reason: str) -> None:
        with pytest.raises(GiteaBridgeError) as caught:
            ask(coroutine)
        assert caught.value.status == 403 and reason in caught.value.reason, (reason, caught.value)

    close_path = r"/issues/%d" % number
    good = approve(key, tmp_path / "close", "close_issue", "--issue", str(number))
    refused(client.close_issue(REPO, number, Approval(good.statement, "garbage"), operation_id="close-garbage"),
            "BEGIN SSH SIGNATURE")
    refused(client.close_issue(REPO, number, approve(key, tmp_path / "close-other", "close_issue", "--issue", str(other)),
                               operation_id="close-other"), "issue is %d in the statement" % other)
    assert writes_to(gitea, "PATCH", close_path) == [] and gitea.issue(REPO, number)["state"] == "open"
    # Used once, for real; reopened by a person; the same approval under a new operation id is a replay.
    ask(client.close_issue(REPO, number, good, operation_id="close-once"))
    assert len(writes_to(gitea, "PATCH", close_path)) == 1
    gitea.reopen_issue(REPO, number)
    refused(client.close_issue(REPO, number, good, operation_id="close-replayed"), "replay")
    assert len(writes_to(gitea, "PATCH", close_path)) == 1 and gitea.issue(REPO, number)["state"] == "open"

    protected = approve(key, tmp_path / "pr-protected", "create_pr", "--head", "release", "--head-sha", guarded.sha,
                        "--base", "main")
    refused(client.create_pr(REPO, "release", "Release", "", protected, operation_id="pr-protected"),
            "protected branch")
    refused(client.create_pr(REPO, "feature-x", "Feature X", "", Approval(protected.statement, "garbage"),
                             operation_id="pr-garbage"), "BEGIN SSH SIGNATURE")
    assert writes_to(gitea, "POST", r"/pulls") == []

    merge_path = r"/pulls/%d/merge" % pull
    wrong_pull = approve(key, tmp_path / "merge-other", "merge_pr", "--pull", str(pull + 1), "--head", "feature-x",
                         "--head-sha", feature.sha, "--base", "main")
    refused(client.merge_pr(REPO, pull, wrong_pull, operation_id="merge-other"), "pull is %d in the statement" % (pull + 1))
    signed = feature.sha                # push() moves the fake's Branch in place
    stale = approve(key, tmp_path / "merge-stale", "merge_pr", "--pull", str(pull), "--head", "feature-x",
                    "--head-sha", signed, "--base", "main")
    gitea.push(REPO, "feature-x", "Moved after Timmy signed")
    refused(client.merge_pr(REPO, pull, stale, operation_id="merge-stale"), "head_sha is %s in the statement" % signed)
    assert writes_to(gitea, "POST", merge_path) == [] and gitea.pull(REPO, pull)["merged"] is False


# -- gated commands across a kill -9 ----------------------------------------------------------------


class Call:
    """A GiteaBridge call run in a thread of its own, so that the test can kill the bridge while the
    call waits on Gitea; `error` is what it raised (a killed bridge breaks its connection)."""

    def __init__(self, coroutine: Any) -> None:
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self.run, args=(coroutine,), daemon=True)
        self.thread.start()

    def run(self, coroutine: Any) -> None:
        try:
            self.result = ask(coroutine)
        except BaseException as error:       # noqa: B036 - kept for the test to look at
            self.error = error

    def join(self) -> None:
        self.thread.join(60)
        assert not self.thread.is_alive(), "the call never returned"


def gated_reports(stream: GiteaWatcher, kind: str, number: int) -> List[AllegroReport]:
    return [report for session, report in stream.reports()
            if report.task == "Gitea %s on %s#%d" % (kind, REPO, number)]


def test_a_pull_request_created_but_unanswered_when_the_bridge_was_killed_is_found_not_created_again(
        gitea, relay, stream, bridges, tmp_path):
    key, signers = timmy_signer(tmp_path / "timmy")
    branch = gitea.add_branch(REPO, "fix-spill")
    bridge = bridges(relay, gitea, gitea__allowed_signers=signers)
    made = approve(key, tmp_path / "a-pr", "create_pr", "--head", "fix-spill", "--head-sha", branch.sha, "--base", "main")
    # Gitea applies the POST at once and answers ten seconds later: the bridge is killed in between.
    gitea.slow_next(1, 10.0, method="POST", path=r".*/pulls$")
    call = Call(bridge.client().create_pr(REPO, "fix-spill", "Fix the spill", "closes #1", made, operation_id="pr-spill"))
    assert wait_until(lambda: writes_to(gitea, "POST", r"/pulls"))
    bridge.kill()
    call.join()
    assert call.error is not None, call.result
    bridge.start()

    # At its start the bridge finishes the journaled command by looking first: it finds the pull request.
    assert wait_until(lambda: gated_reports(stream, "create_pr", 0)), bridge.output()[-3000:]
    [report] = gated_reports(stream, "create_pr", 0)
    [pull] = gitea.pulls(REPO)
    assert report.status == "complete" and "written: found" in report.results, report
    assert "pull: %d" % pull["number"] in report.results
    again = ask(bridge.client().create_pr(REPO, "fix-spill", "Fix the spill", "closes #1", made, operation_id="pr-spill"))
    assert again["pull"] == pull["number"] and again.get("repeated") is True
    assert len(writes_to(gitea, "POST", r"/pulls")) == 1 and len(gitea.pulls(REPO)) == 1
    assert "Refs #1" in pull["body"]


def test_a_close_journaled_but_not_yet_sent_when_the_bridge_was_killed_is_done_once_after_the_restart(
        gitea, relay, stream, bridges, tmp_path):
    key, signers = timmy_signer(tmp_path / "timmy")
    number = gitea.create_issue(REPO, "Close me", user=ALEXANDER)["number"]
    bridge = bridges(relay, gitea, gitea__allowed_signers=signers, gitea__triage_status="",
                     gitea__triage_receipt="false")
    made = approve(key, tmp_path / "a-close", "close_issue", "--issue", str(number))
    # The look before the write (GET the issue) is slow: the bridge is killed after the journal and the
    # approval's acceptance, before any write reached Gitea.
    issue_path = r".*/issues/%d$" % number
    gitea.slow_next(1, 10.0, method="GET", path=issue_path)
    looks = len([c for c in gitea.calls() if c.method == "GET" and re.fullmatch(issue_path, c.path)])
    call = Call(bridge.client().close_issue(REPO, number, made, operation_id="close-after-crash"))
    assert wait_until(lambda: len([c for c in gitea.calls() if c.method == "GET" and re.fullmatch(issue_path, c.path)]) > looks)
    bridge.kill()
    call.join()
    assert call.error is not None and gitea.writes() == [] and gitea.issue(REPO, number)["state"] == "open"
    bridge.start()

    assert wait_until(lambda: gitea.issue(REPO, number)["state"] == "closed"), bridge.output()[-3000:]
    assert wait_until(lambda: gated_reports(stream, "close_issue", number))
    [report] = gated_reports(stream, "close_issue", number)
    assert report.status == "complete" and "written: now" in report.results, report
    again = ask(bridge.client().close_issue(REPO, number, made, operation_id="close-after-crash"))
    assert again.get("repeated") is True
    assert len(writes_to(gitea, "PATCH", r"/issues/%d" % number)) == 1
    assert "gitea_command_resumed" in bridge.output()


def test_an_approval_that_expired_while_the_bridge_was_down_is_not_executed_after_the_restart(
        gitea, relay, stream, bridges, tmp_path):
    from allegro_client import approval as approvals
    key, signers = timmy_signer(tmp_path / "timmy")
    number = gitea.create_issue(REPO, "Keep me open", user=ALEXANDER)["number"]
    bridge = bridges(relay, gitea, gitea__allowed_signers=signers, gitea__triage_status="",
                     gitea__triage_receipt="false")
    made = approvals.approve("close_issue", REPO, key_path=key, issue=number, valid_for=timedelta(seconds=4))
    not_after = datetime.strptime(approvals.parse_statement(made.statement)["not_after"],
                                  "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    issue_path = r".*/issues/%d$" % number
    gitea.slow_next(1, 10.0, method="GET", path=issue_path)
    call = Call(bridge.client().close_issue(REPO, number, made, operation_id="close-expired"))
    assert wait_until(lambda: any(c.method == "GET" and re.fullmatch(issue_path, c.path) for c in gitea.calls()))
    bridge.kill()
    call.join()
    # Down until the approval has expired (the bridge allows no clock skew past not_after).
    time.sleep(max(0.0, (not_after - datetime.now(timezone.utc)).total_seconds()) + 1.5)
    bridge.start()

    assert wait_until(lambda: gated_reports(stream, "close_issue", number)), bridge.output()[-3000:]
    [report] = gated_reports(stream, "close_issue", number)
    assert report.status == "failed" and "expired" in report.results, report
    with pytest.raises(GiteaBridgeError) as caught:
        ask(bridge.client().close_issue(REPO, number, made, operation_id="close-expired"))
    assert caught.value.status == 409 and "expired" in caught.value.reason, caught.value
    wait_polls(gitea)
    assert gitea.writes() == [] and gitea.issue(REPO, number)["state"] == "open"


# -- webhooks ----------------------------------------------------------------------------------------
# The fake Gitea sends its webhooks as Gitea 1.26 does (tests/fake_gitea.py): signed, one at a time, in
# order, after the change. Where a test must show that the webhook did it, the bridge polls every two
# minutes: only its start poll happens during the test, so what arrives later came by webhook.

WEBHOOK_SECRET = "gitea-webhook-secret-7d2e41"
LONG_POLL_MS = 120000


def webhook_bridge(bridges: Callable[..., BridgeProcess], relay: Relay, fake: FakeGitea, poll_ms: int = LONG_POLL_MS,
                   **settings: Any) -> BridgeProcess:
    """A bridge taking webhooks (gitea.webhook_secret), its start poll done, and the repository's
    webhook pointing at it."""
    bridge = bridges(relay, fake, gitea__webhook_secret=WEBHOOK_SECRET, gitea__poll_interval_ms=poll_ms, **settings)
    assert wait_until(lambda: bridge.health()[1].get("gitea", {}).get("last_poll_millis")), bridge.output()
    fake.add_webhook(webhook_url(bridge), WEBHOOK_SECRET, REPO)
    return bridge


def webhook_url(bridge: BridgeProcess) -> str:
    return "http://%s/v1/gitea/webhook" % bridge.address


def comment_records(stream: GiteaWatcher, number: int) -> List[Dict[str, Any]]:
    return [payload for kind, session, payload in stream.records("gitea.comment") if session == "%s#%d" % (REPO, number)]


def answered(fake: FakeGitea) -> List[Tuple[int, Any]]:
    """(status, JSON answer) of every delivery, once all are answered."""
    assert fake.wait_for_deliveries(30), [str(d) for d in fake.deliveries]
    return [(d.status, json.loads(d.response) if d.response else None) for d in fake.deliveries]


def test_a_new_issue_and_its_comment_reach_timmy_by_webhook_without_a_poll(gitea, relay, stream, bridges):
    # No triage here: its writes come back as webhooks of the issue's own second, which make the
    # bridge poll (the next test).
    bridge = webhook_bridge(bridges, relay, gitea, gitea__triage_status="", gitea__triage_receipt="false")
    polls = list_calls(gitea)

    created = gitea.create_issue(REPO, "Webhooks are quicker", body="Seen on vps1.", user=ALEXANDER)
    number = created["number"]
    gitea.advance(1)
    said = gitea.comment(REPO, number, "Also on vps2.", user=ALEXANDER)

    assert wait_until(lambda: issue_records(stream, number) and comment_records(stream, number)), bridge.output()[-3000:]
    assert all(status == 200 and answer == {"delivery": "accepted"} for status, answer in answered(gitea))
    assert list_calls(gitea) == polls, "the bridge polled: the webhook was not enough"
    first = issue_records(stream, number)[0]
    assert (first["title"], first["body"], first["user"], first["updated_at"]) == (
        "Webhooks are quicker", "Seen on vps1.", ALEXANDER, created["updated_at"])
    assert any((c["id"], c["body"], c["updated_at"]) == (said["id"], "Also on vps2.", said["updated_at"])
               for c in comment_records(stream, number))
    assert gitea.writes() == [] and duplicates(stream.records()) == []


def test_a_new_issue_announced_by_webhook_is_triaged_and_timmys_last_record_shows_its_status(gitea, relay, stream, bridges):
    bridge = webhook_bridge(bridges, relay, gitea)
    created = gitea.create_issue(REPO, "Webhooks are quicker", body="Seen on vps1.", user=ALEXANDER)
    number = created["number"]
    assert wait_until(lambda: issue_records(stream, number)), bridge.output()[-3000:]
    assert wait_until(lambda: labels(gitea, number) == ["status/triage"] and len(gitea.comments(REPO, number)) == 1)
    [receipt] = [c for c in gitea.comments(REPO, number) if c["user"]["login"] == BOT]
    assert MARKER.findall(receipt["body"]) == ["triage-receipt:timmy:allegro:%d" % number]
    assert len(writes_to(gitea, "POST", r"/issues/%d/comments" % number)) == 1
    # The status is set before the receipt that announces it.
    [label_write] = writes_to(gitea, "POST", r"/issues/%d/labels" % number)
    [receipt_write] = writes_to(gitea, "POST", r"/issues/%d/comments" % number)
    assert label_write.at < receipt_write.at
    tasks = ["Gitea comment on %s#%d" % (REPO, number), "Gitea status on %s#%d" % (REPO, number)]
    assert wait_until(lambda: sorted(report.task for _, report in stream.reports()) == tasks), stream.reports()
    # The triage's own writes came back as webhooks too. The label lands in the issue's second (Gitea
    # keeps whole seconds), so which version is newer only a read can tell: that webhook makes the
    # bridge poll at once, and Timmy's last record of the issue shows the label.
    assert {(d.event_type, d.action) for d in gitea.deliveries} >= {("issue_label", "label_updated"),
                                                                    ("issue_comment", "created")}
    assert wait_until(lambda: issue_records(stream, number)[-1]["labels"] == ["status/triage"]), issue_records(stream, number)
    assert duplicates(stream.records()) == []


def test_what_a_webhook_published_is_not_published_again_by_the_polls(gitea, relay, stream, bridges):
    webhook_bridge(bridges, relay, gitea, poll_ms=POLL_MS, gitea__triage_status="", gitea__triage_receipt="false")
    created = gitea.create_issue(REPO, "Once by webhook", user=ALEXANDER)
    number = created["number"]
    gitea.advance(1)
    said = gitea.comment(REPO, number, "A comment, once.", user=ALEXANDER)
    gitea.advance(1)
    gitea.edit_comment(REPO, said["id"], "A comment, once, edited.")
    gitea.advance(1)
    edited = gitea.edit_issue(REPO, number, title="Once by webhook, renamed")
    assert wait_until(lambda: any(p["updated_at"] == edited["updated_at"] for p in issue_records(stream, number))
                      and any(c["body"].endswith("edited.") for c in comment_records(stream, number)))
    assert all(status == 200 for status, _ in answered(gitea))
    wait_polls(gitea, 2)

    assert duplicates(stream.records()) == []
    issues = issue_records(stream, number)
    assert [p["title"] for p in issues][-1] == "Once by webhook, renamed"
    assert [p["updated_at"] for p in issues] == sorted(p["updated_at"] for p in issues)
    assert [c["body"] for c in comment_records(stream, number)] == ["A comment, once.", "A comment, once, edited."]


def test_a_webhook_with_a_wrong_signature_an_unknown_repository_or_a_seen_id_publishes_nothing(gitea, relay, stream, bridges):
    bridge = webhook_bridge(bridges, relay, gitea, gitea__triage_status="", gitea__triage_receipt="false")
    [hook] = gitea.webhooks

    # Signed with another secret: 401, and nothing taken.
    hook.active = False
    forged = gitea.add_webhook(webhook_url(bridge), "not-" + WEBHOOK_SECRET, REPO)
    refused = gitea.create_issue(REPO, "Forged", user=ALEXANDER)["number"]
    [(status, answer)] = answered(gitea)
    assert status == 401 and "X-Gitea-Signature" in answer["error"]
    forged.active, hook.active = False, True
    # A repository the bridge does not serve: 404.
    gitea.add_repo("timmy/elsewhere")
    gitea.add_webhook(webhook_url(bridge), WEBHOOK_SECRET, "timmy/elsewhere")
    gitea.create_issue("timmy/elsewhere", "Not ours", user=ALEXANDER)
    status, answer = answered(gitea)[-1]
    assert status == 404 and "timmy/elsewhere" in answer["error"]
    # A good delivery, then the same id again ("already seen"), then Gitea's Redeliver (a new id).
    taken = gitea.create_issue(REPO, "Genuine", user=ALEXANDER)["number"]
    assert answered(gitea)[-1] == (200, {"delivery": "accepted"})
    genuine = gitea.deliveries[-1]
    assert wait_until(lambda: issue_records(stream, taken))
    gitea.redeliver(genuine.id, same_id=True)
    gitea.redeliver(genuine.id)
    assert [answer for _, answer in answered(gitea)[-2:]] == [{"delivery": "already seen"}, {"delivery": "accepted"}]
    # A later change is published after all of them; what was refused or repeated, never.
    marker = gitea.create_issue(REPO, "Marker", user=ALEXANDER)["number"]
    assert wait_until(lambda: issue_records(stream, marker)), bridge.output()[-3000:]
    assert issue_records(stream, refused) == [] and len(issue_records(stream, taken)) == 1
    assert not any(session.startswith("timmy/elsewhere") for _, session, _ in stream.records())
    assert duplicates(stream.records()) == []


def test_a_late_webhook_of_an_older_version_does_not_make_timmys_last_record_older(gitea, relay, stream, bridges):
    webhook_bridge(bridges, relay, gitea, poll_ms=POLL_MS, gitea__triage_status="", gitea__triage_receipt="false")
    gitea.hold_deliveries()
    number = gitea.create_issue(REPO, "Version 1", user=ALEXANDER)["number"]
    gitea.advance(1)
    gitea.edit_issue(REPO, number, title="Version 2")
    gitea.advance(1)
    newest = gitea.edit_issue(REPO, number, body="Now with a body.")
    # The poll publishes the newest version while Gitea still holds the older ones' deliveries.
    assert wait_until(lambda: any(p["updated_at"] == newest["updated_at"] for p in issue_records(stream, number)))
    gitea.release_deliveries()
    assert [status for status, _ in answered(gitea)] == [200, 200, 200]
    assert [d.payload["issue"]["title"] for d in gitea.deliveries] == ["Version 1", "Version 2", "Version 2"]
    wait_polls(gitea)

    last = issue_records(stream, number)[-1]
    assert (last["title"], last["body"], last["updated_at"]) == ("Version 2", "Now with a body.", newest["updated_at"])
    assert duplicates(stream.records()) == []


def test_a_pull_request_webhook_makes_the_bridge_poll_at_once(gitea, relay, stream, bridges):
    gitea.add_branch(REPO, "fix-relay")
    bridge = webhook_bridge(bridges, relay, gitea, gitea__triage_status="", gitea__triage_receipt="false")
    polls = list_calls(gitea)

    pull = gitea.create_pull(REPO, "fix-relay", title="Fix the relay", body="Refs nothing.", user=ALEXANDER)

    def published() -> bool:
        return any(session == "%s#%d" % (REPO, pull["number"]) for kind, session, _ in stream.records("gitea.pull"))

    assert wait_until(published), bridge.output()[-3000:]
    assert answered(gitea) == [(200, {"delivery": "accepted"})]
    assert gitea.deliveries[0].event_type == "pull_request" and list_calls(gitea) > polls
    [(kind, session, payload)] = stream.records("gitea.pull")
    assert (payload["number"], payload["title"], payload["updated_at"]) == (pull["number"], "Fix the relay",
                                                                            pull["updated_at"])


def test_a_change_within_the_second_of_the_version_a_webhook_published_reaches_timmy_without_waiting_for_a_poll(
        gitea, relay, stream, bridges):
    # Gitea keeps whole seconds: a label set in the second of the version just published (as triage
    # does) keeps its updated_at. Its webhook is the only news until the next poll, two minutes away.
    webhook_bridge(bridges, relay, gitea, gitea__triage_status="", gitea__triage_receipt="false")
    created, number = labelled_within_its_second(gitea, stream, "Same second, by webhook")
    assert answered(gitea)[-1] == (200, {"delivery": "accepted"})

    assert wait_until(lambda: issue_records(stream, number)[-1]["labels"] == ["bug"], timeout=10), (
        "the label never reached Timmy", issue_records(stream, number))
    assert duplicates(stream.records()) == []
