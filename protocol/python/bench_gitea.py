"""The Gitea bridge's latencies and costs (issue 18), against the fake Gitea of the tests.

    .venv/bin/python protocol/python/bench_gitea.py --allegro .build/release/allegro \
        [--only poll,webhook,pr,comment,scale] [--checks on,off] [--json] [--keep]

Each scenario starts its own fake Gitea (tests/fake_gitea.py, in this process), relay (`allegro
relay`, loopback, a temporary data directory, no alerts or daily report) and bridge (`allegro
bridge`, its Gitea duty as tests/test_gitea_e2e.py runs it, default triage), and reads the stream
with a plain collector in this process: not live, so it gets a record once the relay has fsync'd it,
as Timmy's durable collector does. Every time is time.monotonic() in this process: the fake stamps
each request when it arrives (`at`) and when it has answered it (`answered`), each webhook delivery
when queued, sent and answered; the collector stamps each record when it arrives.

1. poll: the bridge polls every `--poll-seconds`; `--poll-issues` issues, each created a random
   0 ... interval after the previous one's record arrived: create -> record at the collector, and
   which poll found it. Expected: uniform over the interval, plus one poll's time.
2. webhook: a webhook of the repository to the bridge (`gitea.webhook_secret`), polls an hour
   apart; `--webhook-issues` issues, each once what the previous one set off is done: create ->
   record, broken down at the delivery (sent, answered by the bridge) and the relay's ingest; the
   deliveries and Gitea requests each issue set off (its triage included).
3. pr: `--prs` branches, each with Timmy's create_pr approval (ssh-keygen; signed before timing);
   GiteaBridge.create_pr: call -> the fake gets POST /pulls, call -> return, Gitea requests.
4. comment: `--comments` comment_on_issue calls, distinct operation ids, one issue each (three
   comments on it already): call -> the fake gets POST .../comments, call -> return, requests.
5. scale: `--scale-repos` repositories of `--scale-issues` issues (and three comments) each, made one
   to two hours ago by the fake's clock: inside the bridge's backfill (3 h), outside its overlap. The
   first poll round (all backfill) and `--scale-rounds` steady rounds with no change: wall time from
   the round's first request to its last answer (the first: also to its last record at the
   collector), the fake's own time in it (sum of answered - at), requests by operation.

`--fake-nagle off` (the default, and how tests/fake_http.py runs the fakes): the fake's sockets set
TCP_NODELAY, as Go's net/http (so Gitea) does. `--fake-nagle on` shows what Python's http.server
does by default: its answers (headers and body: two writes) then often wait about 40 ms for the
client's delayed ACK, which is the fake's time, not the bridge's nor Gitea's.

`--checks on,off`: the fake checks each of its answers against Gitea's swagger (jsonschema) or not
(FakeGitea(check_responses=False)); the webhook, pr, comment and scale scenarios run once per mode,
the poll scenario once, unchecked (against 30 s it does not matter). The fake's time is not Gitea's.
"""

import argparse
import asyncio
import inspect
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "tests"))

from allegro_client import Collector, TelemetryEvent  # noqa: E402
from conftest import Relay  # noqa: E402
from fake_gitea import FakeGitea, Request  # noqa: E402
from fake_http import TrackedHandler  # noqa: E402
from stream_watcher import StreamWatcher  # noqa: E402
from test_gitea_e2e import (ALEXANDER, ALEXANDER_TOKEN, BOT, BOT_TOKEN, REPO, STATUSES, TIMMY_TOKEN,  # noqa: E402
                            BridgeProcess, approve, timmy_signer)

WEBHOOK_SECRET = "bench-webhook-secret-5d1e"
LONG_POLL_MS = 3_600_000            # polls an hour apart: none during a scenario that does not want them
SCENARIOS = ("poll", "webhook", "pr", "comment", "scale")


def log(message: str) -> None:
    """Progress, on stderr (stdout is the report)."""
    print("bench_gitea: " + message, file=sys.stderr, flush=True)


# -- numbers ---------------------------------------------------------------------------------------

def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(values: Sequence[Optional[float]]) -> Dict[str, Any]:
    """count, p50, p99, max and mean of the values given (None ones left out)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"count": 0}
    return {"count": len(present), "p50": percentile(present, 0.5), "p99": percentile(present, 0.99),
            "max": max(present), "mean": statistics.mean(present)}


def ms(start: Optional[float], end: Optional[float]) -> Optional[float]:
    """Milliseconds from one monotonic time to another; None if either is unknown."""
    return None if start is None or end is None else (end - start) * 1000


def fmt(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else "%.*f" % (digits, value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def stat_row(label: str, values: Sequence[Optional[float]]) -> List[str]:
    s = summary(values)
    return [label, str(s["count"])] + [fmt(s.get(key)) for key in ("p50", "p99", "max", "mean")]


STAT_HEADERS = ("", "n", "p50 ms", "p99 ms", "max ms", "mean ms")


def operations(requests: Sequence[Request]) -> Counter:
    """Requests counted by the spec's operation id (method and path when it has none)."""
    return Counter(r.operation or "%s %s" % (r.method, r.path) for r in requests)


def per_command(counters: Sequence[Counter]) -> str:
    """Mean requests per command, by operation: "issueGetComments 1, issueCreateComment 1"."""
    total: Counter = Counter()
    for counter in counters:
        total.update(counter)
    count = max(len(counters), 1)
    return ", ".join("%s %s" % (name, fmt(n / count, 2).rstrip("0").rstrip(".")) for name, n in sorted(total.items()))


# -- the fake's records ------------------------------------------------------------------------------

def answered(request: Request) -> Optional[float]:
    """When the fake finished answering (None: not yet, or a fake that does not stamp it)."""
    return getattr(request, "answered", 0.0) or None


def stamp(delivery: Any, name: str) -> Optional[float]:
    """A delivery's time `name` (queued_at, sent_at, answered_at); None when not (yet) stamped."""
    return getattr(delivery, name, 0.0) or None


def fake_supports(option: str) -> bool:
    """Whether this fake_gitea.py's FakeGitea takes the constructor option."""
    return option in inspect.signature(FakeGitea.__init__).parameters


def deliveries(fake: FakeGitea) -> List[Any]:
    """The fake's webhook deliveries so far ([] with a fake that has none)."""
    return list(getattr(fake, "deliveries", []))


def in_flight(fake: FakeGitea) -> bool:
    """A request not yet answered, or a delivery not yet answered."""
    busy = any(r.status == 0 and not r.dropped for r in fake.calls()[-50:])
    return busy or any(stamp(d, "answered_at") is None for d in deliveries(fake)[-50:])


def list_request(request: Request, repo: str, first_page: bool = False) -> bool:
    """Whether `request` lists `repo`'s issues (its first page)."""
    return (request.operation == "issueListIssues" and request.path.endswith("/repos/%s/issues" % repo)
            and (not first_page or request.query.get("page", "1") == "1"))


# -- the stream ------------------------------------------------------------------------------------

class TimedWatcher(StreamWatcher):
    """A plain collector of the relay (not durable, not live: it gets a record once the relay has
    fsync'd it) that keeps each gitea.* and allegro.* record with its arrival (time.monotonic()) and
    the wall clock's offset from it then (to place the relay's ingest time, taken on the wall clock,
    which may drift from the monotonic clock: on the reference machine by 0.5 %, with steps)."""

    def __init__(self, address: str) -> None:
        self.arrivals: List[Tuple[float, TelemetryEvent, int]] = []
        self.arrived = threading.Condition()
        super().__init__(address, kinds=("gitea.", "allegro."))

    async def _collect(self) -> None:
        def on_state(collector: Collector, state: str, detail: str) -> None:
            if state == "connected":
                self.connected.set()

        collector = Collector(self.address, start="earliest", max_backoff=0.5, on_state=on_state)
        try:
            async for item in collector:
                if isinstance(item, TelemetryEvent) and item.kind.startswith(self.kinds):
                    now, offset = time.monotonic(), time.time_ns() - time.monotonic_ns()
                    with self.arrived:
                        self.arrivals.append((now, item, offset))
                        self.arrived.notify_all()
        finally:
            await collector.close(5)

    def find(self, kind: str, session: str, after: float) -> Optional[Tuple[float, TelemetryEvent, int]]:
        """The first record of `kind` and `session` that arrived after `after`: (arrival, record, offset)."""
        with self.arrived:
            return next((a for a in self.arrivals if a[0] >= after and a[1].kind == kind and a[1].session == session),
                        None)

    def of_session(self, session: str, after: float) -> List[TelemetryEvent]:
        """The records of `session` that arrived after `after`, in stream order."""
        with self.arrived:
            return [e for at, e, _ in self.arrivals if at >= after and e.session == session]

    def count(self, prefix: str = "gitea.") -> int:
        with self.arrived:
            return sum(1 for _, e, _ in self.arrivals if e.kind.startswith(prefix))

    def nap(self, seconds: float) -> None:
        """Waits for the next record, at most `seconds`."""
        with self.arrived:
            self.arrived.wait(seconds)


def ingest_monotonic(event: TelemetryEvent, offset_ns: int) -> float:
    """The relay's ingest time of a record, on this process's monotonic clock (the wall clock
    `offset_ns` ahead of it, as measured when the record arrived)."""
    return (event.ingest_ns - offset_ns) / 1e9


# -- the processes ---------------------------------------------------------------------------------

@dataclass
class Context:
    binary: str
    root: Path
    args: argparse.Namespace


@dataclass
class Stack:
    fake: FakeGitea
    relay: Relay
    watcher: TimedWatcher
    bridge: BridgeProcess
    repos: Sequence[str]


def fake_sockets(nagle: bool) -> None:
    """TCP_NODELAY on the fake's connections (Go's net/http sets it, so Gitea has it) unless `nagle`."""
    TrackedHandler.disable_nagle_algorithm = not nagle


def make_fake(repos: Sequence[str], checks: bool) -> FakeGitea:
    """The tests' fake Gitea: the bot, Timmy, a person; `repos` with Timmy's status labels."""
    options: Dict[str, Any] = {} if checks else {"check_responses": False}
    fake = FakeGitea(users={BOT: BOT_TOKEN, "timmy": TIMMY_TOKEN, ALEXANDER: ALEXANDER_TOKEN}, repos=repos, **options)
    for repo in repos:
        for status in STATUSES:
            fake.add_label(repo, "status/" + status, color="0075ca", exclusive=True)
        fake.add_label(repo, "bug", color="d73a4a")
    return fake


class BridgeDied(RuntimeError):
    pass


def check(bridge: BridgeProcess) -> None:
    if bridge.died():
        raise BridgeDied("the bridge exited with %s; its output ends:\n%s" % (
            bridge.process.returncode if bridge.process else "?", bridge.output()[-3000:]))


def wait_until(stack: Stack, condition: Callable[[], Any], timeout: float, what: str) -> None:
    """Waits for `condition`; fails if the bridge dies or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        check(stack.bridge)
        if time.monotonic() > deadline:
            raise TimeoutError("%s: not within %g s" % (what, timeout))
        stack.watcher.nap(0.02)


def settle(stack: Stack, quiet: float, timeout: float = 30.0) -> None:
    """Waits until the fake has had no new request or delivery for `quiet` s and none is in flight."""
    deadline, last, since = time.monotonic() + timeout, (-1, -1), time.monotonic()
    while time.monotonic() < deadline:
        check(stack.bridge)
        state = (len(stack.fake.calls()), len(deliveries(stack.fake)))
        if state != last or in_flight(stack.fake):
            last, since = state, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.02)
    log("the fake did not settle within %g s (going on)" % timeout)


def polls_finished(fake: FakeGitea, repo: str) -> int:
    """How many polls of `repo` have read its comment feed (the last read of a poll) and been answered."""
    return sum(1 for r in fake.calls("issueGetRepoComments") if r.path.endswith("/repos/%s/issues/comments" % repo)
               and r.status)


@contextmanager
def running(ctx: Context, name: str, checks: bool, repos: Sequence[str], settings: Dict[str, Any],
            setup: Optional[Callable[[FakeGitea], None]] = None, env: Optional[Dict[str, str]] = None) -> Iterator[Stack]:
    """A fake Gitea (made ready by `setup`), a relay, the collector and a bridge with `settings`
    (keys with their section); all stopped, in reverse order, at the end."""
    root = ctx.root / name
    root.mkdir(parents=True)
    with ExitStack() as exits:
        fake = make_fake(repos, checks)
        exits.callback(fake.close)
        if setup is not None:
            setup(fake)
        relay = Relay(ctx.binary, root / "relay", extra=["--set", "daily_report_at=off"])
        exits.callback(relay.stop)
        watcher = TimedWatcher(relay.address)
        exits.callback(watcher.stop)
        if not watcher.connected.wait(10):
            raise RuntimeError("the collector did not connect to the relay")
        values = {"gitea.repos": ",".join(repos)}
        values.update(settings)
        bridge = BridgeProcess(ctx.binary, root / "bridge", relay, fake, **{k.replace(".", "__"): v for k, v in values.items()})
        bridge.env.update(env or {})
        exits.callback(bridge.stop)
        bridge.start()
        stack = Stack(fake, relay, watcher, bridge, repos)
        wait_until(stack, lambda: all(polls_finished(fake, repo) >= 1 for repo in repos), 120, "the first poll")
        yield stack


def trace(stack: Stack, requests: Sequence[Request], since: float, title: str) -> None:
    """With --trace: the fake's request log, on stderr (ms from `since`, ms the fake took to answer)."""
    log("%s: the fake's requests (ms from the start, ms to answer):" % title)
    for r in requests:
        log("  +%8.1f %6s  %s" % ((r.at - since) * 1000, fmt(ms(r.at, answered(r))), r))


def bridge_lines(stack: Stack, *events: str) -> List[str]:
    """The bridge's log lines that name one of `events`."""
    return [line for line in stack.bridge.output().splitlines() if any(e in line for e in events)]


def warnings(stack: Stack) -> List[str]:
    """The bridge's warnings and errors so far (the first 20)."""
    return bridge_lines(stack, "level=warning", "level=error")[:20]


def warnings_note(result: Dict[str, Any]) -> List[str]:
    """A paragraph naming the bridge's warnings, if it logged any."""
    lines = result.get("bridge_warnings") or []
    return ["The bridge logged %d warnings or errors: %s" % (len(lines), "; ".join("`%s`" % l for l in lines[:5]))] if lines else []


# -- 1. issue opened -> record, by polling -----------------------------------------------------------

def bench_poll(ctx: Context) -> Dict[str, Any]:
    """Issues created at random moments; the bridge polls every --poll-seconds."""
    args = ctx.args
    interval = args.poll_seconds
    checks = not fake_supports("check_responses")
    rng = random.Random(args.seed)
    samples: List[Dict[str, Any]] = []
    with running(ctx, "poll", checks, [REPO], {"gitea.poll_interval_ms": int(interval * 1000)}) as stack:
        for index in range(args.poll_issues):
            time.sleep(rng.uniform(0, interval))
            created = time.monotonic()
            number = stack.fake.create_issue(REPO, "Bench poll %d" % index, body="Seen at random.", user=ALEXANDER)["number"]
            session = "%s#%d" % (REPO, number)
            wait_until(stack, lambda: stack.watcher.find("gitea.issue", session, created), 2 * interval + 60,
                       "the record of " + session)
            arrival, event, offset = stack.watcher.find("gitea.issue", session, created) or (0.0, None, 0)
            lists = [r for r in stack.fake.calls("issueListIssues") if created <= r.at <= arrival]
            found_by = lists[-1] if lists else None
            samples.append({"issue": number, "latency_ms": ms(created, arrival),
                            "to_poll_ms": ms(created, found_by.at if found_by else None),
                            "poll_to_record_ms": ms(found_by.at if found_by else None, arrival),
                            "ingest_to_record_ms": ms(ingest_monotonic(event, offset), arrival) if event else None})
            log("poll: issue %d after %.0f ms" % (number, samples[-1]["latency_ms"]))
        odd = warnings(stack)
    return {"interval_s": interval, "fake_checks": checks, "samples": samples, "bridge_warnings": odd,
            "latency": summary([s["latency_ms"] for s in samples]),
            "poll_to_record": summary([s["poll_to_record_ms"] for s in samples])}


def report_poll(result: Dict[str, Any]) -> str:
    interval, samples = result["interval_s"], result["samples"]
    poll = result["poll_to_record"]
    rows = [[s["issue"], fmt(s["latency_ms"], 0), fmt(s["to_poll_ms"], 0), fmt(s["poll_to_record_ms"]),
             fmt(s["ingest_to_record_ms"])] for s in samples]
    lat = result["latency"]
    return "\n\n".join([
        "### Issue opened -> record at the collector, by polling (every %g s, fake checks %s)" % (
            interval, "on" if result["fake_checks"] else "off"),
        table(("issue", "create -> record ms", "create -> the poll that found it ms", "that poll -> record ms",
               "relay ingest -> record ms"), rows),
        "p50 %s ms, max %s ms, mean %s ms (n=%d). Expected: uniform over 0 ... %g s (p50 about %.0f ms, max below "
        "%.0f ms) plus one poll's time, here p50 %s ms, max %s ms from the poll's list request to the record." % (
            fmt(lat.get("p50"), 0), fmt(lat.get("max"), 0), fmt(lat.get("mean"), 0), lat["count"], interval,
            interval * 500 + (poll.get("p50") or 0), interval * 1000 + (poll.get("max") or 0),
            fmt(poll.get("p50")), fmt(poll.get("max")))] + warnings_note(result))


# -- 2. issue opened -> record, by webhook -----------------------------------------------------------

def bench_webhook(ctx: Context, checks: bool) -> Dict[str, Any]:
    """Issues one after another, each announced by a webhook delivery; polls an hour apart."""
    args = ctx.args
    if not hasattr(FakeGitea, "add_webhook"):
        return {"skipped": "this fake_gitea.py has no add_webhook"}
    settings = {"gitea.poll_interval_ms": LONG_POLL_MS}
    env = {"ALLEGRO_GITEA_WEBHOOK_SECRET": WEBHOOK_SECRET}
    samples: List[Dict[str, Any]] = []
    with running(ctx, "webhook-" + ("checked" if checks else "unchecked"), checks, [REPO], settings, env=env) as stack:
        fake = stack.fake
        fake.add_webhook("http://%s/v1/gitea/webhook" % stack.bridge.address, WEBHOOK_SECRET, repo=REPO)
        for index in range(args.webhook_issues):
            settle(stack, args.quiet)
            first_request, first_delivery = len(fake.calls()), len(deliveries(fake))
            created = time.monotonic()
            number = fake.create_issue(REPO, "Bench webhook %d" % index, body="Announced.", user=ALEXANDER)["number"]
            session = "%s#%d" % (REPO, number)
            wait_until(stack, lambda: stack.watcher.find("gitea.issue", session, created), 60, "the record of " + session)
            settle(stack, args.quiet)
            arrival, event, offset = stack.watcher.find("gitea.issue", session, created) or (0.0, None, 0)
            sample = webhook_sample(number, created, arrival, event, offset, deliveries(fake)[first_delivery:],
                                    fake.calls()[first_request:])
            sample.update(stream_against_gitea(stack, number, created))
            samples.append(sample)
            if args.trace and index < 2:
                trace(stack, fake.calls()[first_request:], created, "webhook issue %d" % number)
        odd = warnings(stack)
    return {"fake_checks": checks, "samples": samples, "bridge_warnings": odd}


def webhook_sample(number: int, created: float, arrival: float, event: Optional[TelemetryEvent], offset: int,
                   sent: Sequence[Any], requests: Sequence[Request]) -> Dict[str, Any]:
    """One issue: its stages from the first delivery it set off, and what it set off."""
    first = sent[0] if sent else None
    ingest = ingest_monotonic(event, offset) if event is not None else None
    sent_at, answered_at = stamp(first, "sent_at"), stamp(first, "answered_at")
    return {"issue": number, "record_ms": ms(created, arrival),
            "create_to_sent_ms": ms(created, sent_at), "sent_to_answered_ms": ms(sent_at, answered_at),
            "answered_to_record_ms": ms(answered_at, arrival), "answered_to_ingest_ms": ms(answered_at, ingest),
            "ingest_to_record_ms": ms(ingest, arrival),
            "deliveries": len(sent),
            "delivery_events": dict(Counter("%s/%s" % (getattr(d, "event_type", "?"), getattr(d, "action", "?"))
                                            for d in sent)),
            "delivery_statuses": dict(Counter(str(getattr(d, "status", "?") or getattr(d, "error", "?"))
                                              for d in sent)),
            "requests": len(requests), "operations": dict(operations(requests)),
            "fake_ms": sum(ms(r.at, answered(r)) or 0 for r in requests) if requests and answered(requests[0]) else None}


def issue_view(issue: Dict[str, Any]) -> Dict[str, Any]:
    """What Timmy sees of an issue, from a record's payload or from Gitea's JSON."""
    labels = sorted(label if isinstance(label, str) else label["name"] for label in issue.get("labels") or [])
    return {"title": issue["title"], "state": issue["state"], "labels": labels, "comments": issue["comments"]}


def stream_against_gitea(stack: Stack, number: int, created: float) -> Dict[str, Any]:
    """The records an issue brought, by kind, and whether its latest record shows the issue as Gitea
    has it now (everything it set off being done)."""
    session = "%s#%d" % (REPO, number)
    events = stack.watcher.of_session(session, created)
    issues = [json.loads(e.payload) for e in events if e.kind == "gitea.issue"]
    stream = issue_view(issues[-1]) if issues else None
    gitea = issue_view(stack.fake.issue(REPO, number))
    return {"records": dict(Counter(e.kind for e in events)), "stale": stream != gitea, "stream_view": stream,
            "gitea_view": gitea}


def report_webhook(result: Dict[str, Any]) -> str:
    if "skipped" in result:
        return "### Issue opened -> record, by webhook\n\nSkipped: %s." % result["skipped"]
    samples = result["samples"]
    stages = [("create -> delivery sent (the fake's queue)", "create_to_sent_ms"),
              ("delivery sent -> answered by the bridge", "sent_to_answered_ms"),
              ("answered -> record at the collector", "answered_to_record_ms"),
              ("  of which answered -> relay ingest", "answered_to_ingest_ms"),
              ("  of which relay ingest -> collector (fsync)", "ingest_to_record_ms"),
              ("**create -> record at the collector**", "record_ms"),
              ("the fake's own time answering the requests it set off", "fake_ms")]
    stale = [s for s in samples if s["stale"]]
    deliveries_total = sum(s["deliveries"] for s in samples)
    requests_total = sum(s["requests"] for s in samples)
    events: Counter = Counter()
    statuses: Counter = Counter()
    for s in samples:
        events.update(s["delivery_events"])
        statuses.update(s["delivery_statuses"])
    return "\n\n".join([
        "### Issue opened -> record at the collector, by webhook (fake checks %s, %d issues)" % (
            "on" if result["fake_checks"] else "off", len(samples)),
        table(STAT_HEADERS, [stat_row(label, [s[key] for s in samples]) for label, key in stages]),
        "Per issue (its triage included): %s deliveries (%s; answered %s), %s Gitea requests: %s. "
        "Requests per delivery: %s." % (
            fmt(deliveries_total / max(len(samples), 1), 2), ", ".join("%s %d" % i for i in sorted(events.items())),
            ", ".join("%s %d" % i for i in sorted(statuses.items())), fmt(requests_total / max(len(samples), 1), 2),
            per_command([Counter(s["operations"]) for s in samples]),
            fmt(requests_total / deliveries_total, 2) if deliveries_total else "-"),
        "Records per issue: %s. Issues whose latest record differs from Gitea once everything settled: %d of %d%s." % (
            per_command([Counter(s["records"]) for s in samples]), len(stale), len(samples),
            " (#%d: the stream says %s, Gitea %s)" % (stale[0]["issue"], stale[0]["stream_view"], stale[0]["gitea_view"])
            if stale else "")] + warnings_note(result))


# -- 3. approval -> pull request ---------------------------------------------------------------------

def bench_pr(ctx: Context, checks: bool) -> Dict[str, Any]:
    """create_pr with Timmy's approvals, signed before timing."""
    args = ctx.args
    if shutil.which("ssh-keygen") is None:
        return {"skipped": "no ssh-keygen"}
    key, signers = timmy_signer(ctx.root / ("timmy-" + ("checked" if checks else "unchecked")))
    made: List[Tuple[str, Any]] = []

    def setup(fake: FakeGitea) -> None:
        for index in range(args.prs):
            branch = fake.add_branch(REPO, "bench-pr-%02d" % index)
            out = ctx.root / ("approval-%s-%d" % ("on" if checks else "off", index))
            made.append((branch.name, approve(key, out, "create_pr", "--head", branch.name, "--head-sha", branch.sha,
                                              "--base", "main")))

    settings = {"gitea.poll_interval_ms": LONG_POLL_MS, "gitea.allowed_signers": str(signers)}
    with running(ctx, "pr-" + ("checked" if checks else "unchecked"), checks, [REPO], settings, setup=setup) as stack:
        settle(stack, args.quiet)

        def call(index: int) -> Any:
            branch, approval = made[index]
            return stack.bridge.client().create_pr(REPO, branch, "Bench PR %d" % index, "Refs #1, bench work.",
                                                   approval, operation_id="bench-pr-%d" % index)

        samples = time_commands(stack, len(made), call, "repoCreatePullRequest")
        if args.trace:
            trace(stack, stack.fake.calls()[samples[0]["first_request"]:samples[0]["last_request"]],
                  samples[0]["started"], "create_pr 0")
        odd = warnings(stack)
    return {"fake_checks": checks, "samples": samples, "bridge_warnings": odd}


def time_commands(stack: Stack, count: int, call: Callable[[int], Any], write: str) -> List[Dict[str, Any]]:
    """Calls `call(i)` (a coroutine of GiteaBridge) one after another in one event loop; each
    sample: call -> the fake gets the `write` operation, call -> return, the requests in between."""
    timings: List[Tuple[float, float, int, int, Any]] = []

    async def drive() -> None:
        for index in range(count):
            first = len(stack.fake.calls())
            started = time.monotonic()
            answer = await call(index)
            ended = time.monotonic()
            timings.append((started, ended, first, len(stack.fake.calls()), answer))

    asyncio.run(drive())
    samples = []
    for started, ended, first, last, answer in timings:
        requests = [r for r in stack.fake.calls()[first:last] if r.at <= ended]
        writes = [r for r in requests if r.operation == write]
        samples.append({"started": started, "first_request": first, "last_request": last,
                        "to_write_ms": ms(started, writes[0].at if writes else None),
                        "to_write_answered_ms": ms(started, answered(writes[0]) if writes else None),
                        "return_ms": ms(started, ended), "requests": len(requests),
                        "operations": dict(operations(requests)), "written": answer.get("written"),
                        "fake_ms": sum(ms(r.at, answered(r)) or 0 for r in requests) if requests and answered(requests[0]) else None})
    return samples


def report_command(title: str, write: str, result: Dict[str, Any]) -> str:
    if "skipped" in result:
        return "### %s\n\nSkipped: %s." % (title, result["skipped"])
    samples = result["samples"]
    rows = [stat_row("call -> the fake gets %s" % write, [s["to_write_ms"] for s in samples]),
            stat_row("call -> the fake has answered it", [s["to_write_answered_ms"] for s in samples]),
            stat_row("**call -> return**", [s["return_ms"] for s in samples]),
            stat_row("the fake's own time answering the requests", [s["fake_ms"] for s in samples])]
    return "\n\n".join([
        "### %s (fake checks %s, %d commands)" % (title, "on" if result["fake_checks"] else "off", len(samples)),
        table(STAT_HEADERS, rows),
        "Gitea requests per command: %s (%s); outcomes: %s." % (
            fmt(statistics.mean(s["requests"] for s in samples), 2), per_command([Counter(s["operations"]) for s in samples]),
            ", ".join("%s %d" % i for i in sorted(Counter(str(s["written"]) for s in samples).items())))]
        + warnings_note(result))


# -- 4. comment command -> comment -------------------------------------------------------------------

def bench_comment(ctx: Context, checks: bool) -> Dict[str, Any]:
    """comment_on_issue, one issue per command, distinct operation ids."""
    args = ctx.args
    numbers: List[int] = []

    def setup(fake: FakeGitea) -> None:
        for index in range(args.comments):
            number = fake.create_issue(REPO, "Bench comment target %d" % index, body="Discuss.", user=ALEXANDER)["number"]
            for said in ("First look.", "Seen again on vps2.", "Any news?"):
                fake.comment(REPO, number, said, user=ALEXANDER)
            numbers.append(number)

    settings = {"gitea.poll_interval_ms": LONG_POLL_MS}
    with running(ctx, "comment-" + ("checked" if checks else "unchecked"), checks, [REPO], settings, setup=setup) as stack:
        settle(stack, args.quiet)

        def call(index: int) -> Any:
            return stack.bridge.client().comment_on_issue(REPO, numbers[index], "Looking into it (%d)." % index,
                                                          operation_id="bench-comment-%d" % index)

        samples = time_commands(stack, len(numbers), call, "issueCreateComment")
        if args.trace:
            trace(stack, stack.fake.calls()[samples[0]["first_request"]:samples[0]["last_request"]],
                  samples[0]["started"], "comment 0")
        odd = warnings(stack)
    return {"fake_checks": checks, "samples": samples, "bridge_warnings": odd}


# -- 5. 1,000 issues in 10 repositories --------------------------------------------------------------

def bench_scale(ctx: Context, checks: bool) -> Dict[str, Any]:
    """The first poll round (all backfill) and steady rounds, over many repositories."""
    args = ctx.args
    repos = ["bench/repo-%02d" % i for i in range(args.scale_repos)]
    items = args.scale_repos * (args.scale_issues + 3)

    def setup(fake: FakeGitea) -> None:
        step = 3600.0 / max(args.scale_repos * args.scale_issues, 1)
        moved = -7200.0                       # two hours ago ... one hour ago, by the fake's clock
        fake.advance(moved)
        for repo in repos:
            numbers = [fake.create_issue(repo, "Issue %d of %s" % (i, repo), body="Found by the bench. " * 10,
                                         user=ALEXANDER)["number"] for i in range(args.scale_issues)]
            for number in numbers[:3]:
                fake.comment(repo, number, "A comment on #%d." % number, user=ALEXANDER)
            fake.advance(step * args.scale_issues)
            moved += step * args.scale_issues
        fake.advance(-moved)

    settings = {"gitea.poll_interval_ms": args.scale_interval_ms, "gitea.backfill_ms": 3 * 3_600_000}
    with running(ctx, "scale-" + ("checked" if checks else "unchecked"), checks, repos, settings, setup=setup) as stack:
        wait_until(stack, lambda: stack.watcher.count() >= items, 600, "%d records" % items)
        rounds_wanted = 1 + args.scale_rounds
        wait_until(stack, lambda: len(round_starts(stack.fake, repos[0])) > rounds_wanted,
                   rounds_wanted * args.scale_interval_ms / 1000 + 600, "%d poll rounds" % rounds_wanted)
        settle(stack, 0.2)
        requests = stack.fake.calls()
        starts = round_starts(stack.fake, repos[0])
        with stack.watcher.arrived:
            arrivals = [at for at, e, _ in stack.watcher.arrivals if e.kind.startswith("gitea.")]
        rounds = []
        for number in range(rounds_wanted):
            chunk = requests[starts[number]:starts[number + 1]]
            rounds.append(round_figures(chunk, arrivals if number == 0 else []))
            if args.trace and number < 2:
                trace(stack, chunk, chunk[0].at, "scale round %d" % (number + 1))
        odd = warnings(stack)
    return {"fake_checks": checks, "repos": len(repos), "issues": args.scale_repos * args.scale_issues,
            "records": items, "interval_ms": args.scale_interval_ms, "rounds": rounds, "bridge_warnings": odd}


def round_starts(fake: FakeGitea, repo: str) -> List[int]:
    """Indexes in the fake's requests of each poll round's start (the first repository's first list)."""
    return [i for i, r in enumerate(fake.calls()) if list_request(r, repo, first_page=True)]


def round_figures(requests: Sequence[Request], arrivals: Sequence[float]) -> Dict[str, Any]:
    """One poll round's wall time, the fake's time in it, its requests by operation; with
    `arrivals`, when the first and last record came (ms from the round's start)."""
    start = requests[0].at
    ends = [answered(r) or r.at for r in requests]
    fake_time = sum(ms(r.at, answered(r)) or 0 for r in requests) if answered(requests[0]) else None
    gaps = [(ms(ends[i - 1], requests[i].at) or 0.0, str(requests[i - 1])) for i in range(1, len(requests))]
    figures = {"requests": len(requests), "operations": dict(operations(requests)),
               "wall_ms": ms(start, max(ends)), "fake_ms": fake_time,
               "largest_gap": max(gaps) if gaps else (0.0, ""),
               "slowest": sorted(((ms(r.at, answered(r)) or 0, str(r)) for r in requests), reverse=True)[:3]}
    if arrivals:
        figures["first_record_ms"] = ms(start, min(arrivals))
        figures["last_record_ms"] = ms(start, max(arrivals))
    return figures


def report_scale(result: Dict[str, Any]) -> str:
    rows = []
    for number, r in enumerate(result["rounds"]):
        label = "first (backfill)" if number == 0 else "steady %d" % number
        rows.append([label, r["requests"], fmt(r["wall_ms"]), fmt(r["fake_ms"]),
                     fmt(None if r["fake_ms"] is None else r["wall_ms"] - r["fake_ms"]),
                     fmt(r.get("last_record_ms")), ", ".join("%s %d" % i for i in sorted(r["operations"].items()))])
    first = result["rounds"][0]
    return "\n\n".join([
        "### One poll round over %d repositories, %d issues (%d records), fake checks %s, rounds %d ms apart" % (
            result["repos"], result["issues"], result["records"], "on" if result["fake_checks"] else "off",
            result["interval_ms"]),
        table(("round", "requests", "first request -> last answer ms", "the fake's time ms", "the rest ms",
               "first request -> last record at the collector ms", "requests by operation"), rows),
        "The rest is the bridge's, between an answer and its next request; in the first round the longest such "
        "wait was %s ms, after %s." % (fmt(first["largest_gap"][0]), first["largest_gap"][1])] + warnings_note(result))


# -- the run ---------------------------------------------------------------------------------------

def run(ctx: Context, name: str, checks: bool) -> Tuple[Dict[str, Any], str]:
    """One scenario in one mode: (results, markdown)."""
    if name == "poll":
        result = bench_poll(ctx)
        return result, report_poll(result)
    if name == "webhook":
        result = bench_webhook(ctx, checks)
        return result, report_webhook(result)
    if name == "pr":
        result = bench_pr(ctx, checks)
        return result, report_command("Approval -> pull request created (GiteaBridge.create_pr)", "POST /pulls", result)
    if name == "comment":
        result = bench_comment(ctx, checks)
        return result, report_command("Comment command -> comment on Gitea (GiteaBridge.comment_on_issue)",
                                      "POST .../comments", result)
    result = bench_scale(ctx, checks)
    return result, report_scale(result)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allegro", default=os.environ.get("ALLEGRO_BIN", ".build/release/allegro"))
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated: " + ", ".join(SCENARIOS))
    parser.add_argument("--checks", default="on,off", help="the fake's answer checks, per scenario but poll: on, off")
    parser.add_argument("--poll-seconds", type=float, default=30.0)
    parser.add_argument("--poll-issues", type=int, default=6)
    parser.add_argument("--webhook-issues", type=int, default=50)
    parser.add_argument("--prs", type=int, default=20)
    parser.add_argument("--comments", type=int, default=50)
    parser.add_argument("--scale-repos", type=int, default=10)
    parser.add_argument("--scale-issues", type=int, default=100, help="issues per repository")
    parser.add_argument("--scale-rounds", type=int, default=2, help="steady rounds after the first")
    parser.add_argument("--scale-interval-ms", type=int, default=5000)
    parser.add_argument("--fake-nagle", choices=("off", "on"), default="off",
                        help="off: the fake's sockets set TCP_NODELAY as Gitea's do; on: as the tests run it")
    parser.add_argument("--quiet", type=float, default=0.3, help="seconds without a request that count as settled")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object instead")
    parser.add_argument("--trace", action="store_true", help="the fake's request log of the first samples, on stderr")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error("--only: unknown %s" % ", ".join(sorted(unknown)))
    if args.poll_seconds < 1:
        parser.error("--poll-seconds: at least 1 (the bridge's least gitea.poll_interval_ms)")
    return args


def modes(args: argparse.Namespace) -> List[bool]:
    """The fake's answer checks to run with: True (on), False (off, if this fake can)."""
    wanted = [m.strip() for m in args.checks.split(",") if m.strip()]
    chosen = [m == "on" for m in wanted if m in ("on", "off")]
    if False in chosen and not fake_supports("check_responses"):
        log("this fake_gitea.py cannot turn its answer checks off: running with them on only")
        chosen = [True]
    return list(dict.fromkeys(chosen)) or [True]


def main() -> None:
    args = parse_args()
    binary = os.path.abspath(args.allegro)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        sys.exit("bench_gitea: no allegro binary at %s (build it, or give --allegro PATH)" % binary)
    fake_sockets(args.fake_nagle == "on")
    root = Path(tempfile.mkdtemp(prefix="bench-gitea-"))
    ctx = Context(binary, root, args)
    results: Dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                               "binary": binary, "fake_nagle": args.fake_nagle, "load": os.getloadavg()}
    if not args.json:
        print("## Gitea bridge (`bench_gitea.py`, %s, %s; load average %.2f %.2f %.2f; the fake's sockets %s)\n" % (
            results["started"], binary, *results["load"],
            "with Nagle, as the tests run it" if args.fake_nagle == "on" else "TCP_NODELAY, as Gitea's"), flush=True)
    try:
        for name in [n for n in SCENARIOS if n in args.only.split(",")]:
            for checks in ([False] if name == "poll" else modes(args)):
                log("%s (fake checks %s) ..." % (name, "on" if checks else "off"))
                result, markdown = run(ctx, name, checks)
                results.setdefault(name, []).append(result)
                if not args.json:
                    print(markdown + "\n", flush=True)
    finally:
        if args.keep:
            log("kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
