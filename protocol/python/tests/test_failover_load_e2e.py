"""Failover between Allegro hosts under load, end to end (config/README.md, "Failover between hosts
(`fleet`)"; the issue "Failover between Allegro hosts").

Three hosts on loopback (h1, h2, h3), each a set of real processes from $ALLEGRO_BIN: an `allegro
supervise` running its own relay (no duty: it runs everywhere) and, as the duty `gitea`
({gitea: [h1, h2, h3]}), an `allegro bridge` polling tests/fake_gitea.py as Allegro's bot and taking
Timmy's commands on its HTTP port. One file per host serves all three programs.

Python producers (allegro_client.Producer) list every host's relay and publish records with unique
payload ids, a few hundred a second; Timmy's side is allegro_client.timmy.HermesBridge reading ALL
relays as the durable collector "timmy" (committing what it reads), and GiteaBridge on the command
API of whichever host holds the duty (found on the supervisors' /metrics).

A host that dies is its supervisor killed -9 together with the processes it started (the relay and
the bridge: the supervisor's children found in /proc and in its DATA/children.json, each killed with
its process group). Checks are fast (check_ms 200, failures 3, giveback_ms 1500); times are measured
and printed (`-s`), and bounded only by generous deadlines that guard against a hang.

What must hold: every record a producer got acknowledged reaches Timmy exactly once, across the
kill, the takeover, the give-back (test 1) and a whole fleet down (test 2); Gitea holds exactly one
comment per operation id, whichever bridge was asked and however often."""

import asyncio
import json
import os
import re
import signal
import threading
import time
import urllib.error
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import pytest

from allegro_client import BufferFull, Producer, TelemetryEvent
from allegro_client.timmy import GiteaBridge, GiteaBridgeError, HermesBridge
from fake_gitea import FakeGitea
from test_gitea_e2e import ALEXANDER, ALEXANDER_TOKEN, BOT, BOT_TOKEN, COMMAND_TOKEN, MARKER, REPO, STATUSES, \
    TIMMY_TOKEN, Call, ask
from test_supervisor_e2e import FAST, OPENER, TOLERANCE, Supervisor, Supervisors, alive, free_port, proc_stat, \
    process_group

pytestmark = pytest.mark.skipif(not os.environ.get("ALLEGRO_BIN"),
                                reason="ALLEGRO_BIN is not set (the allegro binary with `allegro supervise`)")

HOSTS = ("h1", "h2", "h3")
DUTIES = {"gitea": list(HOSTS)}
CHECK_MS, FAILURES, GIVEBACK_MS = 200, 3, 1500
HANG_GUARD = 15.0           # seconds: a takeover or a give-back not seen by then is a hang, not a slow run
RATE = 150                  # records a second, per producer


# -- small things -------------------------------------------------------------------------------------


def wait_for(condition: Callable[[], Any], timeout: float, what: str, seen: Callable[[], str],
             interval: float = 0.02) -> Any:
    """The condition's first truthy value; AssertionError naming `what` and showing `seen()` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("%s: not within %.0f s\n%s" % (what, timeout, seen()))
        time.sleep(interval)


def start_ticks(pid: int) -> Optional[int]:
    """The process's start time in clock ticks (/proc/PID/stat field 22), as children.json keeps it."""
    fields = proc_stat(pid)
    return int(fields[19]) if fields is not None else None


def parent(pid: int) -> Optional[int]:
    fields = proc_stat(pid)
    return int(fields[1]) if fields is not None else None


def children_of(pid: int) -> Set[int]:
    """The live processes whose parent is `pid` (from /proc/*/stat: this kernel has no
    /proc/PID/task/TID/children)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent(int(entry.name)) == pid and alive(int(entry.name)):
            found.add(int(entry.name))
    return found


def op_comments(gitea: FakeGitea, number: int) -> Dict[str, List[int]]:
    """The ids of the issue's comments carrying each operation's marker."""
    found: Dict[str, List[int]] = {}
    for comment in gitea.comments(REPO, number):
        for operation in MARKER.findall(comment["body"]):
            found.setdefault(operation, []).append(int(comment["id"]))
    return found


# -- the hosts ----------------------------------------------------------------------------------------


class Host:
    """One host's ports, directories and configuration file, and its supervisor runs."""

    def __init__(self, name: str, root: Path) -> None:
        self.name, self.root = name, root
        self.supervisor_port, self.relay_port, self.relay_http_port, self.bridge_port = (free_port() for _ in range(4))
        self.config = root.parent / (name + ".yaml")
        self.supervisor: Optional[Supervisor] = None
        self.runs: List[Supervisor] = []

    @property
    def supervisor_address(self) -> str:
        return "127.0.0.1:%d" % self.supervisor_port

    @property
    def relay(self) -> str:
        return "127.0.0.1:%d" % self.relay_port

    @property
    def relay_http(self) -> str:
        return "127.0.0.1:%d" % self.relay_http_port

    @property
    def bridge(self) -> str:
        return "127.0.0.1:%d" % self.bridge_port

    @property
    def sup(self) -> Supervisor:
        assert self.supervisor is not None, "%s is not running" % self.name
        return self.supervisor

    def write_config(self, peers: Sequence["Host"], gitea: FakeGitea) -> None:
        config = str(self.config)
        document = {
            # The relay.
            "listen": self.relay, "http": self.relay_http, "data_dir": str(self.root / "relay"),
            "alert_interval_ms": 0, "daily_report_at": "off", "heartbeat_ms": 1000, "idle_timeout_ms": 3000,
            # The bridge: its Gitea duty, no Telegram notifier.
            "bridge": {"http": self.bridge, "data_dir": str(self.root / "bridge"), "relay_down_ms": 0},
            "gitea": {"url": gitea.base_url, "repos": [REPO], "poll_interval_ms": 1000, "triage_status": "",
                      "triage_receipt": False},
            # The supervisor, reporting to its own relay.
            "supervisor": dict(FAST, http=self.supervisor_address, data_dir=str(self.root / "supervisor"),
                               relay=self.relay),
            "fleet": {"host": self.name,
                      "peers": [{"name": peer.name, "url": "http://" + peer.supervisor_address} for peer in peers],
                      "duties": DUTIES, "check_ms": CHECK_MS, "failures": FAILURES, "giveback_ms": GIVEBACK_MS},
            "services": [
                {"name": "relay", "command": ["allegro", "relay", "--config", config], "stop_grace_ms": 5000,
                 "probe": {"http": "http://%s/health" % self.relay_http, "interval_ms": 200, "timeout_ms": 1000,
                           "failures": 5, "grace_ms": 10000}},
                {"name": "bridge", "command": ["allegro", "bridge", "--config", config], "duty": "gitea",
                 "stop_grace_ms": 3000,
                 "environment": {"ALLEGRO_GITEA_TOKEN": BOT_TOKEN, "ALLEGRO_GITEA_COMMAND_TOKEN": COMMAND_TOKEN}},
            ],
        }
        # JSON text, which is YAML.
        self.config.write_text(json.dumps(document, indent=1))


class Fleet:
    """The three hosts, started and stopped through `Supervisors` of test_supervisor_e2e (which at
    the end stops every supervisor still running and kills whatever group any of them started)."""

    def __init__(self, binary: str, root: Path, gitea: FakeGitea) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.supervisors = Supervisors(binary, root)
        self.hosts: Dict[str, Host] = {name: Host(name, root / name) for name in HOSTS}
        for host in self.hosts.values():
            host.write_config([peer for peer in self.hosts.values() if peer is not host], gitea)
        self.killed: List[int] = []

    @property
    def relays(self) -> List[str]:
        return [self.hosts[name].relay for name in HOSTS]

    def start(self, *names: str) -> float:
        """Starts the hosts' supervisors at once, waits for their ports; the monotonic start time."""
        started_at = time.monotonic()
        launched = [(name, self.supervisors.start(self.hosts[name].config, wait_http=False)) for name in names or HOSTS]
        for name, supervisor in launched:
            supervisor.wait_http()
            host = self.hosts[name]
            assert supervisor.address == host.supervisor_address, supervisor.address
            host.supervisor = supervisor
            host.runs.append(supervisor)
        return started_at

    def kill(self, name: str) -> List[int]:
        """The host dies: its supervisor killed -9, at once each process it started (found among its
        children in /proc and in DATA/children.json) killed -9 with its process group. The pids killed."""
        host = self.hosts[name]
        supervisor_pid = host.sup.process.pid
        pids = children_of(supervisor_pid)
        ledger = host.root / "supervisor" / "children.json"
        recorded = json.loads(ledger.read_text()) if ledger.exists() else {}
        for entry in recorded.values():
            if start_ticks(int(entry["pid"])) == int(entry["start_ticks"]):
                pids.add(int(entry["pid"]))
        services = {service["name"]: service.get("pid") for service in self.status(name)["services"]}
        assert {pid for pid in services.values() if pid} <= pids, (services, pids, recorded)
        os.kill(supervisor_pid, signal.SIGKILL)
        for pid in pids:
            try:
                if process_group(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        host.sup.kill9()
        host.supervisor = None
        self.killed += sorted(pids)
        wait_for(lambda: not any(alive(pid) for pid in pids), 10, "%s's processes %s are gone" % (name, sorted(pids)),
                 lambda: str([(pid, proc_stat(pid)) for pid in pids]))
        return sorted(pids)

    # -- what the supervisors say --

    def get(self, name: str, path: str, timeout: float = 1.0) -> Optional[bytes]:
        try:
            with OPENER.open("http://%s%s" % (self.hosts[name].supervisor_address, path), timeout=timeout) as answer:
                return answer.read() if answer.status == 200 else None
        except (OSError, urllib.error.URLError):
            return None

    def status(self, name: str) -> Dict[str, Any]:
        body = self.get(name, "/v1/status", timeout=10)
        assert body is not None, "%s answers /v1/status" % name
        return dict(json.loads(body))

    def held(self, name: str, duty: str = "gitea") -> Optional[bool]:
        """Whether `name` holds `duty` by its /metrics (allegro_supervisor_duty_held); None when it does
        not answer."""
        body = self.get(name, "/metrics")
        if body is None:
            return None
        match = re.search(r'^allegro_supervisor_duty_held\{duty="%s"\} (\S+)$' % duty, body.decode(), re.M)
        return match is not None and float(match.group(1)) == 1

    def holders(self, duty: str = "gitea") -> List[str]:
        return [name for name in HOSTS if self.hosts[name].supervisor is not None and self.held(name, duty)]

    def bridge_ready(self, name: str) -> bool:
        """The host's bridge answers its /health with 200 (relay and Gitea reachable)."""
        try:
            with OPENER.open("http://%s/health" % self.hosts[name].bridge, timeout=1) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def gitea(self, name: str, attempts: int = 4) -> GiteaBridge:
        """Timmy's client of the host's bridge."""
        return GiteaBridge(self.hosts[name].bridge, COMMAND_TOKEN, timeout=30, attempts=attempts, retry_delay=0.25)

    def wait_holder(self, name: str, timeout: float = HANG_GUARD) -> float:
        """Waits until `name` alone holds gitea (on every running host's /metrics) and its bridge is up;
        the monotonic time the holding was first seen on `name`."""
        seen = wait_for(lambda: self.held(name) and time.monotonic(), timeout, "%s holds gitea" % name,
                        self.logs, interval=0.01)
        wait_for(lambda: self.holders() == [name], timeout, "only %s holds gitea" % name,
                 lambda: "holders: %s\n%s" % (self.holders(), self.logs()))
        wait_for(lambda: self.bridge_ready(name), timeout, "%s's bridge answers /health" % name, self.logs)
        return float(seen)

    def logs(self, lines: int = 25) -> str:
        """The end of each supervisor run's log (its services' output included)."""
        parts = []
        for host in self.hosts.values():
            for index, run in enumerate(host.runs):
                tail = run.text().splitlines()[-lines:]
                parts.append("-- %s, run %d (%s) --\n%s" % (host.name, index + 1,
                                                            "running" if run.process.poll() is None else "ended",
                                                            "\n".join(tail)))
        return "\n".join(parts)

    def cleanup(self) -> None:
        self.supervisors.cleanup()
        for pid in self.killed:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# -- Timmy's stream -------------------------------------------------------------------------------------


class TimmyStream:
    """HermesBridge over every relay as the durable collector "timmy", in a thread of its own, keeping
    the payload of each `load` record it yields (committing as it goes)."""

    def __init__(self, relays: Sequence[str]) -> None:
        self.relays = list(relays)
        self.received: List[Tuple[str, str, int]] = []      # (payload id, relay id, relay seq)
        self.raw: List[Tuple[str, str, int, int, str]] = []  # every delivered record: relay id, producer, its seq, relay seq, kind
        self.stats: Dict[str, int] = {}
        self.error: Optional[BaseException] = None
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="timmy", daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._task = loop.create_task(self._read())
        self._ready.set()
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as error:       # noqa: B036 - shown by the test
            self.error = error
        finally:
            loop.close()

    async def _read(self) -> None:
        bridge = HermesBridge(self.relays, collector="timmy", start="earliest", max_backoff=0.3)
        self.stats = bridge.stats
        # A tap on what the relays deliver, before HermesBridge drops the records a second relay
        # also holds: no one relay may deliver a record twice.
        delivered = bridge._inbox.get

        async def tapped() -> Any:
            batch = await delivered()
            if batch is not None:
                with self._lock:
                    self.raw += [(item.relay_id, item.producer, item.producer_seq, item.relay_seq, item.kind)
                                 for item in batch.items if isinstance(item, TelemetryEvent)]
            return batch

        bridge._inbox.get = tapped       # type: ignore
        try:
            async for event in bridge.stream_telemetry():
                if event.kind == "load":
                    with self._lock:
                        self.received.append((event.text(), event.relay_id, event.relay_seq))
                await event.commit()
        finally:
            await bridge.close(5)

    def ids(self) -> List[str]:
        with self._lock:
            return [payload for payload, _, _ in self.received]

    def relay_duplicates(self) -> List[Tuple[str, str, int, int, str]]:
        """Deliveries of a (producer, producer seq) that the same relay had delivered before, any kind."""
        seen: Set[Tuple[str, str, int]] = set()
        again = []
        with self._lock:
            for entry in self.raw:
                key = entry[:3]
                if key in seen:
                    again.append(entry)
                seen.add(key)
        return again

    def cross_relay(self) -> List[Tuple[str, int, List[str]]]:
        """Records delivered by more than one relay (HermesBridge hands each out once): producer,
        producer seq, the relays."""
        with self._lock:
            holders: Dict[Tuple[str, int], Set[str]] = {}
            for relay_id, producer, sequence, _, _ in self.raw:
                holders.setdefault((producer, sequence), set()).add(relay_id)
        return [(producer, sequence, sorted(relays)) for (producer, sequence), relays in sorted(holders.items())
                if len(relays) > 1]

    def stop(self) -> None:
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._task.cancel)
            except RuntimeError:
                pass
        self._thread.join(15)


def assert_exactly_once(timmy: TimmyStream, accepted: Set[str], refused: Set[str], timeout: float = 30) -> None:
    """Waits until Timmy has every accepted record, then: each once, nothing else."""
    def summary() -> str:
        got = timmy.ids()
        missing = sorted(accepted - set(got))
        return ("Timmy has %d records (%d distinct) of %d accepted; missing %d, e.g. %s; stream error %r; stats %s"
                % (len(got), len(set(got)), len(accepted), len(missing), missing[:10], timmy.error, timmy.stats))

    wait_for(lambda: accepted <= set(timmy.ids()), timeout, "every acknowledged record reached Timmy", summary,
             interval=0.1)
    got = timmy.ids()
    counts: Dict[str, int] = {}
    for payload in got:
        counts[payload] = counts.get(payload, 0) + 1
    twice = sorted(payload for payload, count in counts.items() if count > 1)
    with timmy._lock:
        where = [entry for entry in timmy.received if entry[0] in set(twice[:5])]
    assert twice == [], "Timmy got %d records more than once, e.g. %s at %s" % (len(twice), twice[:5], where)
    assert set(got) == accepted, "records Timmy got that no producer had accepted: %s" % sorted(set(got) - accepted)[:10]
    assert timmy.relay_duplicates() == [], "a relay delivered one record twice (relay id, producer, producer seq, " \
        "relay seq, kind): %s" % timmy.relay_duplicates()[:10]
    assert not set(got) & refused, "a record emit() refused reached Timmy"


# -- the producers ----------------------------------------------------------------------------------------


class LoadProducer:
    """One Producer publishing `load` records ("NAME-N") at `rate` a second from a thread of its own,
    on a schedule; keeps (producer sequence, payload id) of every record emit() accepted, and the
    ids emit() refused (BufferFull) with how long each refusal took."""

    def __init__(self, name: str, relays: Sequence[str], rate: int = RATE, **options: Any) -> None:
        self.name, self.rate = name, rate
        options.setdefault("max_backoff", 0.3)
        self.producer = Producer(list(relays), producer_id=name, **options)
        self.accepted: List[Tuple[int, str]] = []
        self.refused: List[Tuple[str, float]] = []
        self.most_held = 0                   # the most records the producer held, seen after each emit
        self.error: Optional[BaseException] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-" + name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval, begun, index = 1.0 / self.rate, time.monotonic(), 0
        try:
            while not self._stop.is_set():
                due = begun + index * interval
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                payload = "%s-%d" % (self.name, index)
                index += 1
                asked = time.monotonic()
                try:
                    sequence = self.producer.emit(payload, session="load", kind="load")
                except BufferFull:
                    with self._lock:
                        self.refused.append((payload, time.monotonic() - asked))
                    continue
                with self._lock:
                    self.accepted.append((sequence, payload))
                    self.most_held = max(self.most_held, self.producer.unacked)
        except BaseException as error:       # noqa: B036 - shown by the test
            self.error = error

    def acked(self) -> int:
        """How many accepted records the relays have acknowledged (cumulative ACKs)."""
        through = self.producer.acked_through
        with self._lock:
            return sum(1 for sequence, _ in self.accepted if sequence <= through)

    def accepted_ids(self) -> Set[str]:
        with self._lock:
            return {payload for _, payload in self.accepted}

    def refused_ids(self) -> Set[str]:
        with self._lock:
            return {payload for payload, _ in self.refused}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "%s's emit() never returned" % self.name
        assert self.error is None, "%s: %r" % (self.name, self.error)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.producer.close(2)

    def describe(self) -> str:
        p = self.producer
        return ("%s: accepted %d, acked %d, held %d, relay %s, reconnects %d, refused %d, last error %r"
                % (self.name, len(self.accepted), self.acked(), p.unacked, p.relay, p.reconnects, len(self.refused),
                   p.last_error))


# -- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture
def gitea() -> Iterator[FakeGitea]:
    """The fake Gitea with Allegro's bot, Timmy, a person and the repository with Timmy's labels."""
    fake = FakeGitea(users={BOT: BOT_TOKEN, "timmy": TIMMY_TOKEN, ALEXANDER: ALEXANDER_TOKEN}, repos=[REPO])
    for status in STATUSES:
        fake.add_label(REPO, "status/" + status, color="0075ca", exclusive=True)
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def fleet(binary: str, tmp_path: Path, gitea: FakeGitea) -> Iterator[Fleet]:
    started = Fleet(binary, tmp_path, gitea)
    try:
        yield started
    finally:
        started.cleanup()


# -- 1. the primary killed -9 under load ----------------------------------------------------------------


def test_kill_9_of_the_primary_under_producer_load_moves_the_gitea_duty_and_timmy_gets_every_acked_record_exactly_once_after_it_returns(
        fleet: Fleet, gitea: FakeGitea) -> None:
    number = gitea.create_issue(REPO, "Failover under load", body="Watch the comments.", user=ALEXANDER)["number"]
    h1, h2 = fleet.hosts["h1"], fleet.hosts["h2"]
    timmy: Optional[TimmyStream] = None
    load: List[LoadProducer] = []
    try:
        fleet.start()
        fleet.wait_holder("h1")
        timmy = TimmyStream(fleet.relays)
        # Each lists every relay; two prefer h1 (and rotate to h2 and h3 when it dies), one prefers h2.
        orders = {"p-a": ["h1", "h2", "h3"], "p-b": ["h2", "h3", "h1"], "p-c": ["h1", "h3", "h2"]}
        load = [LoadProducer(name, [fleet.hosts[host].relay for host in order], failback_after=2.0)
                for name, order in orders.items()]
        on_h1 = [p for p in load if orders[p.name][0] == "h1"]

        def flowing() -> str:
            return "\n".join(p.describe() for p in load) + "\n" + fleet.logs()

        wait_for(lambda: all(p.acked() >= 100 for p in load), 15, "every producer's records are acknowledged", flowing)
        assert all(p.producer.relay == ("127.0.0.1", h1.relay_port) for p in on_h1), flowing()

        # Timmy's comment, answered by h1's bridge.
        answered = ask(fleet.gitea("h1").comment_on_issue(REPO, number, "Looking into it.", operation_id="op-answered"))
        assert answered["written"] == "now", answered
        # A comment in flight at the kill: Gitea writes it, its answer comes too late for h1's bridge.
        gitea.slow_next(1, 10.0, method="POST", path=r"/issues/%d/comments$" % number)
        inflight = Call(fleet.gitea("h1", attempts=1).comment_on_issue(REPO, number, "In flight.",
                                                                       operation_id="op-inflight"))
        wait_for(lambda: "op-inflight" in op_comments(gitea, number), 10, "the in-flight comment reached Gitea",
                 lambda: "comments: %s\n%s" % (gitea.comments(REPO, number), fleet.logs()))

        # h1 dies: its supervisor, relay and bridge, killed -9.
        acked_at_kill = {p.name: p.acked() for p in load}
        held_at_kill = {p.name: p.producer.unacked for p in load}
        killed_at = time.monotonic()
        killed = fleet.kill("h1")
        print("\nh1 killed -9: supervisor and %d processes %s; records not yet acknowledged at the kill: %s"
              % (len(killed), killed, held_at_kill))
        took_at = wait_for(lambda: fleet.held("h2") and time.monotonic(), HANG_GUARD, "h2 takes gitea",
                           fleet.logs, interval=0.01)
        wait_for(lambda: fleet.bridge_ready("h2"), HANG_GUARD, "h2's bridge answers /health", fleet.logs)
        ready_at = time.monotonic()
        print("gitea held by h2 %.3f s after the kill (its /metrics), its bridge up after %.3f s (check_ms %d, failures %d)"
              % (took_at - killed_at, ready_at - killed_at, CHECK_MS, FAILURES))
        assert fleet.holders() == ["h2"], fleet.holders()
        inflight.join()
        assert isinstance(inflight.error, GiteaBridgeError) and inflight.error.status == 0, \
            "Timmy got no answer from the killed bridge: %r %r" % (inflight.error, inflight.result)

        # The producers keep publishing, those of h1 to the next relay of their lists.
        wait_for(lambda: all(p.acked() >= acked_at_kill[p.name] + 100 for p in load), HANG_GUARD,
                 "every producer is acknowledged again with h1 down", flowing)
        moved = {p.name: p.producer.relay for p in on_h1}
        assert moved == {"p-a": ("127.0.0.1", h2.relay_port), "p-c": ("127.0.0.1", fleet.hosts["h3"].relay_port)}, \
            flowing()
        assert all(p.producer.reconnects >= 1 for p in on_h1), flowing()

        # Timmy asks the new holder again, as a client that had no answer, and something new.
        again = ask(fleet.gitea("h2").comment_on_issue(REPO, number, "In flight.", operation_id="op-inflight"))
        assert again["written"] in ("found", "found after a lost answer"), again
        assert again["comment_id"] == op_comments(gitea, number)["op-inflight"][0], again
        repeated = ask(fleet.gitea("h2").comment_on_issue(REPO, number, "Looking into it.", operation_id="op-answered"))
        assert repeated["comment_id"] == answered["comment_id"], repeated
        new = ask(fleet.gitea("h2").comment_on_issue(REPO, number, "Found it.", operation_id="op-on-h2"))
        assert new["written"] == "now", new
        assert op_comments(gitea, number) == {"op-answered": [answered["comment_id"]],
                                              "op-inflight": [again["comment_id"]],
                                              "op-on-h2": [new["comment_id"]]}, gitea.comments(REPO, number)

        # h1 comes back on the same data directories and configuration: the duty is given back.
        back_at = fleet.start("h1")
        held_at = fleet.wait_holder("h1", timeout=HANG_GUARD + GIVEBACK_MS / 1000)
        print("gitea held by h1 again %.3f s after its supervisor restarted (giveback_ms %d)"
              % (held_at - back_at, GIVEBACK_MS))
        assert held_at - back_at >= GIVEBACK_MS / 1000 - TOLERANCE, "not given back before giveback_ms"
        given = h2.sup.events("duty_given_back", duty="gitea")
        assert [line.get("to") for line in given] == ["h1"], h2.sup.text()[-3000:]

        # h1's bridge finished the command it was killed in (looking first), and takes new ones.
        resumed = ask(fleet.gitea("h1").comment_on_issue(REPO, number, "In flight.", operation_id="op-inflight"))
        assert resumed["comment_id"] == again["comment_id"], resumed
        last = ask(fleet.gitea("h1").comment_on_issue(REPO, number, "Fixed.", operation_id="op-on-h1-again"))
        assert last["written"] == "now", last
        print("op-inflight answered by h2: %s; again by h1 after the give-back: %s (h1's bridge logged "
              "gitea_command_resumed: %s)" % (again["written"], resumed.get("written"),
                                               "gitea_command_resumed" in h1.sup.text()))
        per_operation = op_comments(gitea, number)
        assert {op: len(ids) for op, ids in per_operation.items()} == {
            "op-answered": 1, "op-inflight": 1, "op-on-h2": 1, "op-on-h1-again": 1}, \
            "one comment per operation id: %s" % gitea.comments(REPO, number)
        assert len(gitea.comments(REPO, number)) == 4

        # The producers that prefer h1 move back to it once it has answered their probes for
        # failback_after (2 s), and are acknowledged there.
        wait_for(lambda: all(p.producer.relay == ("127.0.0.1", h1.relay_port) for p in on_h1), HANG_GUARD,
                 "the producers that prefer h1 are back on it", flowing)
        back = {p.name: p.acked() for p in load}
        wait_for(lambda: all(p.acked() >= back[p.name] + 100 for p in load), HANG_GUARD,
                 "every producer is acknowledged with h1 back", flowing)

        # The load stops; every record accepted is acknowledged, and reaches Timmy exactly once.
        for p in load:
            p.stop()
        unflushed = [p.name for p in load if not p.producer.flush(30)]
        assert unflushed == [], flowing()
        accepted: Set[str] = set()
        for p in load:
            assert p.refused == [], p.describe()
            assert p.acked() == len(p.accepted), p.describe()
            accepted |= p.accepted_ids()
        assert timmy is not None
        assert_exactly_once(timmy, accepted, set())
        print("%d records from %d producers reached Timmy once each (HermesBridge stats %s; records two relays "
              "delivered: %s)" % (len(accepted), len(load), timmy.stats, timmy.cross_relay()))
        gitea.assert_clean()
    finally:
        for p in load:
            p.close()
        if timmy is not None:
            timmy.stop()


# -- 2. the whole fleet down ------------------------------------------------------------------------------


def test_with_the_whole_fleet_down_producers_keep_buffering_within_their_bounds_and_deliver_when_a_relay_returns(
        fleet: Fleet, gitea: FakeGitea) -> None:
    bound, block_timeout = 300, 0.5
    timmy: Optional[TimmyStream] = None
    load: Optional[LoadProducer] = None
    blocked: Optional[threading.Thread] = None
    try:
        fleet.start()
        fleet.wait_holder("h1")
        timmy = TimmyStream(fleet.relays)
        # The Producer's bound, as it documents it: on_full "block" waits up to block_timeout for
        # room, then raises BufferFull; the record is not queued.
        load = LoadProducer("bounded", fleet.relays, rate=200, max_buffer=bound, on_full="block",
                            block_timeout=block_timeout)
        producer = load.producer

        def seen() -> str:
            assert load is not None
            return load.describe() + "\n" + fleet.logs()

        wait_for(lambda: load is not None and load.acked() >= 100, 15, "the producer is acknowledged", seen)

        down_at = time.monotonic()
        for name in HOSTS:
            fleet.kill(name)
        print("\nall three hosts killed -9 within %.3f s" % (time.monotonic() - down_at))

        # It keeps publishing into its buffer until the bound, then each emit() waits, and is refused.
        wait_for(lambda: len(load.refused) >= 3, 15, "emit() refuses records once the buffer is full", seen)
        assert producer.unacked == bound and producer.unreachable, seen()
        assert load.most_held <= bound, "the producer held %d records, its bound is %d" % (load.most_held, bound)
        waits = [waited for _, waited in load.refused]
        assert all(waited >= block_timeout - TOLERANCE for waited in waits), \
            "emit() waited block_timeout before BufferFull: %s" % waits
        load.stop()
        accepted_while_down = len(load.accepted) - load.acked()
        print("held %d records (the bound), refused %d after waiting %.2f-%.2f s each"
              % (accepted_while_down, len(load.refused), min(waits), max(waits)))
        assert producer.unacked == bound and accepted_while_down == bound

        # One more emit(), now willing to wait: it returns once a relay is back and acknowledges.
        producer.block_timeout = 30.0
        outcome: Dict[str, Any] = {}

        def emit_last() -> None:
            try:
                outcome["sequence"] = producer.emit("bounded-last", session="load", kind="load")
            except BaseException as error:       # noqa: B036 - shown by the test
                outcome["error"] = error
            outcome["at"] = time.monotonic()

        blocked = threading.Thread(target=emit_last, name="blocked-emit", daemon=True)
        blocked.start()

        back_at = fleet.start("h1")
        blocked.join(HANG_GUARD)
        assert not blocked.is_alive(), "the blocked emit() returned once h1 was back:\n" + seen()
        assert "sequence" in outcome, outcome
        assert outcome["at"] > back_at
        print("the waiting emit() returned %.3f s after h1's supervisor started" % (outcome["at"] - back_at))
        assert producer.flush(30), seen()
        assert producer.relay == ("127.0.0.1", fleet.hosts["h1"].relay_port)
        fleet.wait_holder("h1")

        accepted = load.accepted_ids() | {"bounded-last"}
        assert_exactly_once(timmy, accepted, load.refused_ids())
        print("%d records accepted, %d refused; Timmy got each accepted one once (HermesBridge stats %s; records "
              "two relays delivered: %s)" % (len(accepted), len(load.refused), timmy.stats, timmy.cross_relay()))
        gitea.assert_clean()
    finally:
        if load is not None:
            load.close()
        if blocked is not None:
            blocked.join(5)
        if timmy is not None:
            timmy.stop()
