"""Failover between hosts end to end: three `allegro supervise` runs ($ALLEGRO_BIN) on loopback play a
fleet of three hosts (alpha, bravo, charlie), each with its own data directory and supervisor port,
the others as its `fleet.peers` (config/README.md, "Failover between hosts (`fleet`)").

    gitea:  [alpha, bravo, charlie]
    hermes: [bravo, charlie]            (alpha is not in the list: it never runs hermes)

Every host lists a service for each duty: a tiny script that appends "DUTY EPOCH PID TIME" (its
ALLEGRO_DUTY, ALLEGRO_DUTY_EPOCH, its pid and the wall clock) to a file of its own host and duty,
then sleeps (`exec`, so the pid is the process group the supervisor started). Which duty processes
run is read from those files and /proc; who holds what from each supervisor's `/v1/duties` (its
claims) and `/v1/status` (its view of the fleet); what happened from its log.

A host that dies is its supervisor killed -9 together with the duty processes it started (a
supervisor killed -9 leaves its children running); a host that pauses is its supervisor and its duty
process stopped with SIGSTOP. Timings are small (check_ms 200, failures 3, giveback_ms 1500); times
are measured and printed (`-s`), checked only against generous timeouts, or as lower bounds the
design promises (a give-back never sooner than giveback_ms).

Two tests go beyond the steady cases: a host killed within a check interval of taking its duty
(its successor must still use a higher epoch), and a give-back whose old holder takes a second to
stop after SIGTERM (the two must not run together for that second)."""

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import pytest

from allegro_client import TelemetryEvent
from allegro_client.messages import AllegroAlert, AllegroReport
from stream_watcher import StreamWatcher
from test_supervisor_e2e import (FAST, OPENER, TOLERANCE, Supervisor, Supervisors, alive, free_port,
                                 kill_group_if_leader, shell_script, supervisor_env, wait_until)

pytestmark = pytest.mark.skipif(not os.environ.get("ALLEGRO_BIN"),
                                reason="ALLEGRO_BIN is not set (the allegro binary with `allegro supervise`)")

HOSTS = ("alpha", "bravo", "charlie")
DUTIES: Dict[str, List[str]] = {"gitea": ["alpha", "bravo", "charlie"], "hermes": ["bravo", "charlie"]}
CHECK_MS, FAILURES, GIVEBACK_MS = 200, 3, 1500
CHECK = CHECK_MS / 1000
TAKEOVER_TIMEOUT = 15.0   # seconds: generous; the design's own figure is failures x check_ms plus a start

# Appends one line per start, then becomes the sleep (same pid, same process group). The last field
# is the duty's epoch in the host's DATA/duties.json as the process found it when it started.
RECORD = ('saved=$(sed -n "s/.*\\"$ALLEGRO_DUTY\\":\\([0-9]*\\).*/\\1/p" "$2" 2>/dev/null)\n'
          'echo "$ALLEGRO_DUTY ${ALLEGRO_DUTY_EPOCH:-none} $$ $(date +%s.%N) ${saved:-none}" >> "$1"\n')
DUTY_SCRIPT = RECORD + "exec sleep 1000\n"
# The same, but a stop takes about a second after SIGTERM (a service finishing its work in hand).
SLOW_STOP_SCRIPT = RECORD + "trap 'sleep 1; exit 0' TERM\nsleep 1000 &\nwait\n"


@dataclass(frozen=True)
class Record:
    """One start of a duty process, as the script wrote it."""
    host: str
    duty: str
    epoch: int
    pid: int
    wall: float     # time.time() when it started
    saved: Optional[int]    # the duty's epoch in DATA/duties.json when it started


class Host:
    def __init__(self, name: str, port: int, config: Path, data_dir: Path) -> None:
        self.name, self.port, self.config, self.data_dir = name, port, config, data_dir
        self.supervisor: Optional[Supervisor] = None
        self.runs: List[Supervisor] = []

    @property
    def address(self) -> str:
        return "127.0.0.1:%d" % self.port

    @property
    def sup(self) -> Supervisor:
        assert self.supervisor is not None, "%s is not running" % self.name
        return self.supervisor


class Fleet:
    """The three hosts' supervisors (through `Supervisors` of test_supervisor_e2e, which starts them,
    tails their logs and at the end stops them and kills every group any of them started)."""

    def __init__(self, binary: str, root: Path, relays: Optional[Dict[str, str]] = None,
                 script_body: str = DUTY_SCRIPT, stop_grace_ms: int = 1000) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.supervisors = Supervisors(binary, root)
        self.records_dir = root / "records"
        self.records_dir.mkdir()
        self.script = shell_script(root / "duty.sh", script_body)
        self.stop_grace_ms = stop_grace_ms
        self.relays = relays or {}
        ports = {name: free_port() for name in HOSTS}
        self.hosts: Dict[str, Host] = {}
        for name in HOSTS:
            data_dir = root / (name + "-data")
            self.hosts[name] = Host(name, ports[name], self._write_config(name, ports, data_dir), data_dir)
        self.stopped_pids: Set[int] = set()

    def _write_config(self, name: str, ports: Dict[str, int], data_dir: Path) -> Path:
        supervisor: Dict[str, Any] = dict(FAST)
        supervisor.update(http="127.0.0.1:%d" % ports[name], data_dir=str(data_dir), relay=self.relays.get(name, "off"))
        fleet = {"host": name,
                 "peers": [{"name": peer, "url": "http://127.0.0.1:%d" % ports[peer]} for peer in HOSTS if peer != name],
                 "duties": DUTIES, "check_ms": CHECK_MS, "failures": FAILURES, "giveback_ms": GIVEBACK_MS}
        services = [{"name": duty + "-worker", "command": [self.script, str(self.records_file(name, duty)), str(data_dir / "duties.json")], "duty": duty,
                     "stop_grace_ms": self.stop_grace_ms} for duty in sorted(DUTIES)]
        path = self.root / (name + ".yaml")
        # JSON text, which is YAML.
        path.write_text(json.dumps({"supervisor": supervisor, "fleet": fleet, "services": services}, indent=1))
        return path

    def records_file(self, host: str, duty: str) -> Path:
        return self.records_dir / ("%s-%s" % (host, duty))

    # -- starting, killing, pausing --

    def start(self, *names: str) -> None:
        """Starts the hosts' supervisors all at once (so none sees another silent for `failures`
        checks while it starts), then waits for each one's port."""
        launched = [(name, self.supervisors.start(self.hosts[name].config, wait_http=False)) for name in names or HOSTS]
        for name, supervisor in launched:
            supervisor.wait_http()
            assert supervisor.address == self.hosts[name].address, supervisor.address
            self.hosts[name].supervisor = supervisor
            self.hosts[name].runs.append(supervisor)

    def duty_pids(self, name: str) -> List[int]:
        """The duty processes `name` runs: from its /v1/status, and from the record files."""
        pids = {int(service["pid"]) for service in self.status(name)["services"] if service.get("pid")}
        pids |= {record.pid for record in self.records(host=name) if alive(record.pid)}
        return sorted(pids)

    def kill(self, name: str) -> List[int]:
        """The host dies: its supervisor killed -9, then the duty processes it had started."""
        host = self.hosts[name]
        pids = self.duty_pids(name)
        host.sup.kill9()
        for pid in pids:
            kill_group_if_leader(pid)
        assert wait_until(lambda: not any(alive(pid) for pid in pids), 10), "the host's duty processes are gone"
        host.supervisor = None
        return pids

    def pause(self, name: str) -> List[int]:
        """SIGSTOP to the host's supervisor and its duty processes; the pids stopped."""
        pids = self.duty_pids(name)
        supervisor = self.hosts[name].sup.process.pid
        os.kill(supervisor, signal.SIGSTOP)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        self.stopped_pids |= {supervisor, *pids}
        return pids

    def resume(self, name: str, pids: Sequence[int]) -> None:
        """SIGCONT to the duty processes, then to the supervisor (which never signals a stopped one)."""
        for pid in list(pids) + [self.hosts[name].sup.process.pid]:
            os.kill(pid, signal.SIGCONT)
            self.stopped_pids.discard(pid)

    def cleanup(self) -> None:
        for pid in self.stopped_pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.supervisors.cleanup()
        for record in self.records():
            kill_group_if_leader(record.pid)

    # -- what runs, who claims what --

    def records(self, duty: Optional[str] = None, host: Optional[str] = None) -> List[Record]:
        found = []
        for path in sorted(self.records_dir.iterdir()):
            owner, kind = path.name.split("-", 1)
            if (duty is not None and kind != duty) or (host is not None and owner != host):
                continue
            text = path.read_text()
            for line in text[:text.rfind("\n") + 1].splitlines():   # complete lines only
                written_duty, epoch, pid, wall, saved = line.split()
                assert written_duty == kind, "ALLEGRO_DUTY is the service's duty: %r in %s" % (line, path.name)
                found.append(Record(owner, kind, int(epoch), int(pid), float(wall), None if saved == "none" else int(saved)))
        return sorted(found, key=lambda record: record.wall)

    def running(self, duty: str) -> List[Record]:
        return [record for record in self.records(duty) if alive(record.pid)]

    def wait_running(self, duty: str, host: str, epoch: Optional[int] = None, timeout: float = TAKEOVER_TIMEOUT) -> Record:
        """The duty's process on `host` (of `epoch`), once it runs."""
        def found() -> Optional[Record]:
            mine = [record for record in self.running(duty) if record.host == host and (epoch is None or record.epoch == epoch)]
            return mine[-1] if mine else None

        record = wait_until(found, timeout, interval=0.005)
        if not record:
            raise AssertionError("no %s process of epoch %s on %s within %s s; records: %s\n%s"
                                 % (duty, epoch, host, timeout, self.records(duty), self.logs()))
        return record

    def get(self, name: str, path: str, timeout: float = 2) -> Optional[Any]:
        """A supervisor's JSON answer, or None when it does not answer."""
        try:
            with OPENER.open("http://%s%s" % (self.hosts[name].address, path), timeout=timeout) as response:
                return json.loads(response.read()) if response.status == 200 else None
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def status(self, name: str) -> Dict[str, Any]:
        status = self.get(name, "/v1/status", timeout=10)
        assert isinstance(status, dict), "%s answers /v1/status" % name
        return status

    def claims(self, name: str, timeout: float = 2) -> Optional[Dict[str, int]]:
        """What `name` answers on /v1/duties (duty: epoch), None when it does not answer."""
        answer = self.get(name, "/v1/duties", timeout=timeout)
        if answer is None:
            return None
        assert answer["host"] == name, answer
        return {claim["duty"]: int(claim["epoch"]) for claim in answer["claims"]}

    def view(self, name: str) -> Dict[str, str]:
        """Who holds what, as `name` sees it (/v1/status `duties`)."""
        return {holder["duty"]: holder["host"] for holder in self.status(name)["duties"]}

    def saved_epochs(self, name: str) -> Dict[str, int]:
        path = self.hosts[name].data_dir / "duties.json"
        return {duty: int(epoch) for duty, epoch in json.loads(path.read_text()).items()} if path.exists() else {}

    def logs(self) -> str:
        parts = []
        for host in self.hosts.values():
            for index, run in enumerate(host.runs):
                interesting = [line.text for line in run.events() if line.get("event").startswith(("duty_", "service_", "alert"))]
                parts.append("-- %s run %d --\n%s" % (host.name, index + 1, "\n".join(interesting[-40:])))
        return "\n".join(parts)


@pytest.fixture
def fleet(binary: str, tmp_path: Path) -> Iterator[Fleet]:
    started = Fleet(binary, tmp_path)
    try:
        yield started
    finally:
        started.cleanup()


class Sampler:
    """Samples, in threads of their own until `stop()`, which processes of `duty` run (every few ms,
    from the record files and /proc) and, with `claims_order`, which hosts claim it on /v1/duties
    (asked in that order: a host that takes after another gave back goes first, so a sample never
    shows both unless both really claimed at once)."""

    def __init__(self, fleet: Fleet, duty: str, claims_order: Sequence[str] = ()) -> None:
        self.fleet, self.duty, self.claims_order = fleet, duty, list(claims_order)
        self.processes: List[Tuple[float, Tuple[Record, ...]]] = []
        self.claims: List[Tuple[float, Tuple[str, ...]]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._sample_processes, name="processes", daemon=True)]
        if self.claims_order:
            self._threads.append(threading.Thread(target=self._sample_claims, name="claims", daemon=True))
        for thread in self._threads:
            thread.start()

    def _sample_processes(self) -> None:
        while not self._stop.is_set():
            self.processes.append((time.monotonic(), tuple(self.fleet.running(self.duty))))
            time.sleep(0.002)

    def _sample_claims(self) -> None:
        while not self._stop.is_set():
            at = time.monotonic()
            holders = tuple(name for name in self.claims_order
                            if self.duty in (self.fleet.claims(name, timeout=1) or {}))
            self.claims.append((at, holders))
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def overlaps(self, since: float = 0.0) -> List[Tuple[float, float, Tuple[Record, ...]]]:
        """Each stretch (from `since`) in which two or more of the duty's processes ran: its first
        sample, the first sample after it with one or none (an upper bound of its end; the end of
        the sampling when it never ended), and who ran."""
        stretches: List[Tuple[float, float, Tuple[Record, ...]]] = []
        begun: Optional[Tuple[float, Tuple[Record, ...]]] = None
        for at, running in self.processes:
            if at < since:
                continue
            if len(running) >= 2 and begun is None:
                begun = (at, running)
            elif len(running) < 2 and begun is not None:
                stretches.append((begun[0], at, begun[1]))
                begun = None
        if begun is not None:
            stretches.append((begun[0], self.processes[-1][0], begun[1]))
        return stretches

    def double_claims(self, since: float = 0.0) -> List[Tuple[float, Tuple[str, ...]]]:
        return [(at, holders) for at, holders in self.claims if at >= since and len(holders) >= 2]


def describe(stretches: Sequence[Tuple[float, float, Tuple[Record, ...]]]) -> str:
    return "; ".join("%.0f ms (%s)" % ((end - start) * 1000, ", ".join("%s epoch %d" % (r.host, r.epoch) for r in who))
                     for start, end, who in stretches) or "none"


def assert_saved_before_started(fleet: Fleet) -> None:
    """Every duty process found its epoch already in its host's DATA/duties.json when it started."""
    for record in fleet.records():
        assert record.saved is not None and record.saved >= record.epoch, \
            "epoch %d of %s on %s was not saved before its process started (duties.json had %s)" % (
                record.epoch, record.duty, record.host, record.saved)


FIRST_HOLDERS = {duty: hosts[0] for duty, hosts in DUTIES.items()}


def start_fleet_with_first_holders(fleet: Fleet) -> Dict[str, Record]:
    """Starts the three hosts and waits until each duty runs on the first host of its list and
    every host sees so (each has had an answer to a check since the claims were made)."""
    fleet.start()
    first = {duty: fleet.wait_running(duty, hosts[0], epoch=16) for duty, hosts in DUTIES.items()}
    assert wait_until(lambda: all(fleet.view(name) == FIRST_HOLDERS for name in HOSTS), 10, interval=0.05), \
        {name: fleet.view(name) for name in HOSTS}
    return first


def kill_first_host_and_wait_for_the_second(fleet: Fleet) -> Tuple[Record, float]:
    """Kills alpha (supervisor and duty processes) and waits for gitea to run on bravo; the new
    record and the seconds from the kill to its start (measured by the process's own clock)."""
    killed_at = time.time()
    fleet.kill("alpha")
    record = fleet.wait_running("gitea", "bravo", timeout=TAKEOVER_TIMEOUT)
    return record, record.wall - killed_at


# -- 1. at start ----------------------------------------------------------------------------------------


def test_at_start_the_first_host_of_each_list_holds_its_duty_in_the_first_round_and_exactly_one_process_runs_per_duty(
        fleet: Fleet) -> None:
    first = start_fleet_with_first_holders(fleet)
    # A few more rounds: nothing else starts.
    time.sleep(5 * CHECK)
    for duty, hosts in DUTIES.items():
        assert fleet.running(duty) == [first[duty]], "exactly one %s process in the fleet: %s" % (duty, fleet.records(duty))
        assert fleet.records(duty) == [first[duty]], "started once"
        assert first[duty].host == hosts[0] and first[duty].epoch == 16, "round 1, place 0 (epochs are round x 16 + place)"

    assert all(fleet.view(name) == FIRST_HOLDERS for name in HOSTS), {name: fleet.view(name) for name in HOSTS}
    assert fleet.claims("alpha") == {"gitea": 16}
    assert fleet.claims("bravo") == {"hermes": 16}
    assert fleet.claims("charlie") == {}

    for name in HOSTS:
        supervisor = fleet.hosts[name].sup
        taken = {line.get("duty"): line for line in supervisor.events("duty_taken")}
        held = sorted(duty for duty, hosts in DUTIES.items() if hosts[0] == name)
        assert sorted(taken) == held, (name, supervisor.events("duty_taken"))
        for line in taken.values():
            assert line.get("epoch") == "16" and line.get("detection") == "first in its list", line
        assert supervisor.events("duty_fenced") == [] and supervisor.events("duty_given_back") == []
        assert supervisor.alerts("duty_moved") == [], "the first host of a list holding it is no move"
        started = {line.get("service") for line in supervisor.events("service_started")}
        assert started == {duty + "-worker" for duty in held}, (name, started)
        status_pids = {service["name"]: service.get("pid") for service in fleet.status(name)["services"]}
        for duty in held:
            assert status_pids[duty + "-worker"] == first[duty].pid
    assert_saved_before_started(fleet)
    assert fleet.saved_epochs("alpha")["gitea"] == 16
    assert fleet.saved_epochs("bravo")["hermes"] == 16
    # /metrics says the same, per duty and peer.
    bravo = metrics(fleet, "bravo")
    assert bravo['allegro_supervisor_duty_held{duty="gitea"}'] == 0 and bravo['allegro_supervisor_duty_held{duty="hermes"}'] == 1
    assert bravo['allegro_supervisor_duty_epoch{duty="hermes"}'] == 16 and 'allegro_supervisor_duty_epoch{duty="gitea"}' not in bravo
    assert bravo['allegro_supervisor_peer_up{peer="alpha"}'] == 1 and bravo['allegro_supervisor_peer_up{peer="charlie"}'] == 1
    assert 'allegro_supervisor_duty_held{duty="hermes"}' not in metrics(fleet, "alpha"), "alpha may not hold hermes"


def metrics(fleet: Fleet, name: str) -> Dict[str, float]:
    """`name`'s /metrics samples (checked by promtool where it is installed)."""
    with OPENER.open("http://%s/metrics" % fleet.hosts[name].address, timeout=5) as answer:
        text = answer.read().decode()
    promtool = shutil.which("promtool")
    if promtool:
        checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and not line.startswith("#")}


# -- 2. the first host dies -------------------------------------------------------------------------------


def test_when_the_first_host_dies_the_second_takes_its_duty_with_a_higher_epoch_and_starts_its_process(
        fleet: Fleet) -> None:
    first = start_fleet_with_first_holders(fleet)
    record, took = kill_first_host_and_wait_for_the_second(fleet)
    print("\ngitea running on bravo %.3f s after alpha was killed -9 (check_ms %d, failures %d)" % (took, CHECK_MS, FAILURES))
    assert record.epoch > first["gitea"].epoch
    assert record.epoch == 33, "the round after the highest seen (alpha's 16), at bravo's place 1"
    taken = fleet.hosts["bravo"].sup.wait_event("duty_taken", timeout=5, duty="gitea")[0]
    assert taken.get("epoch") == "33"
    print("bravo's detection: %s" % taken.get("detection"))
    assert taken.get("detection").endswith("after the last of alpha stopped answering"), taken
    assert fleet.saved_epochs("bravo")["gitea"] == 33
    assert_saved_before_started(fleet)

    # One gitea process in the fleet, and the others agree who holds it.
    time.sleep(5 * CHECK)
    assert fleet.running("gitea") == [record]
    assert [r.host for r in fleet.records("gitea")] == ["alpha", "bravo"]
    assert fleet.running("hermes") == [first["hermes"]], "hermes did not move"
    assert fleet.claims("bravo") == {"gitea": 33, "hermes": 16}
    assert fleet.claims("charlie") == {}
    assert wait_until(lambda: fleet.view("charlie") == fleet.view("bravo") == {"gitea": "bravo", "hermes": "bravo"}, 5), \
        (fleet.view("bravo"), fleet.view("charlie"))
    assert fleet.hosts["charlie"].sup.events("duty_taken") == [], "charlie is after bravo, who answers"
    fired = fleet.hosts["bravo"].sup.alerts("duty_moved", "firing", "gitea")
    assert len(fired) == 1 and "alpha does not answer" in fired[0].get("summary"), fired


def test_a_host_that_dies_right_after_taking_its_duty_is_succeeded_with_a_higher_epoch(fleet: Fleet) -> None:
    """alpha killed as soon as its gitea process runs, before a check of bravo's may have seen its
    claim: bravo must still not run gitea under the epoch alpha's process had."""
    fleet.start("bravo", "charlie")
    fleet.start("alpha")
    alpha_record = fleet.wait_running("gitea", "alpha")
    seen_by_bravo = fleet.view("bravo").get("gitea")
    fleet.kill("alpha")
    bravo_record = fleet.wait_running("gitea", "bravo")
    taken = fleet.hosts["bravo"].sup.wait_event("duty_taken", timeout=5, duty="gitea")[0]
    print("\nalpha ran gitea with epoch %d (bravo's view of gitea at the kill: %s); bravo took it with epoch %d: %s"
          % (alpha_record.epoch, seen_by_bravo, bravo_record.epoch, taken))
    assert bravo_record.epoch > alpha_record.epoch, \
        "two holders of gitea ran under epoch %d: alpha's pid %d, then bravo's pid %d" % (
            bravo_record.epoch, alpha_record.pid, bravo_record.pid)


# -- 3. the first host comes back -------------------------------------------------------------------------


def test_a_first_host_that_comes_back_waits_for_the_give_back_then_takes_with_a_higher_epoch_and_the_two_never_run_it_together_for_long(
        binary: str, tmp_path: Path, relays: Any) -> None:
    # Each host reports to a relay of its own, as in the fleet.
    relay_of = {name: relays.start("relay-" + name) for name in HOSTS}
    fleet = Fleet(binary, tmp_path / "fleet", relays={name: relay.address for name, relay in relay_of.items()})
    watchers: List[StreamWatcher] = []
    sampler: Optional[Sampler] = None
    try:
        start_fleet_with_first_holders(fleet)
        watchers = [StreamWatcher(relay_of[name].address) for name in ("alpha", "bravo")]

        def failovers(watcher: StreamWatcher) -> List[Tuple[TelemetryEvent, AllegroReport]]:
            return [(event, AllegroReport.from_json(event.payload)) for event in watcher.snapshot()
                    if event.kind == "allegro.report" and AllegroReport.from_json(event.payload).task.startswith("Failover of ")]

        # alpha's Report of its take is on its relay before alpha dies.
        assert wait_until(lambda: failovers(watchers[0]), 20), "alpha reported its take"
        bravo_record, took = kill_first_host_and_wait_for_the_second(fleet)
        print("\ngitea running on bravo %.3f s after alpha was killed -9" % took)
        assert bravo_record.epoch == 33

        # alpha comes back on the same data directory (its duties.json says 1).
        assert fleet.saved_epochs("alpha") == {"gitea": 16, "hermes": 16}
        sampler = Sampler(fleet, "gitea", claims_order=["alpha", "bravo"])
        fleet.start("alpha")
        alpha = fleet.hosts["alpha"].sup
        bravo = fleet.hosts["bravo"].sup
        back_at = alpha.wait_event("http_listening")[0].seen

        # While bravo holds it, alpha does not take it.
        time.sleep(5 * CHECK)
        assert alpha.events("duty_taken") == [], alpha.text()[-3000:]
        assert fleet.running("gitea") == [bravo_record]
        assert fleet.claims("alpha") == {} and fleet.claims("bravo") == {"gitea": 33, "hermes": 16}
        assert fleet.view("alpha")["gitea"] == "bravo"

        # After giveback_ms of alpha answering, bravo gives it back and alpha takes it in the next round (48).
        given = bravo.wait_event("duty_given_back", timeout=TAKEOVER_TIMEOUT, duty="gitea")[0]
        assert given.get("to") == "alpha"
        assert given.seen - back_at >= GIVEBACK_MS / 1000 - TOLERANCE, "not before alpha answered giveback_ms"
        alpha_record = fleet.wait_running("gitea", "alpha", epoch=48, timeout=TAKEOVER_TIMEOUT)
        taken = alpha.wait_event("duty_taken", timeout=5, duty="gitea")[0]
        assert taken.get("epoch") == "48"
        assert wait_until(lambda: not alive(bravo_record.pid), 10), "bravo's gitea process stopped"
        time.sleep(5 * CHECK)
        sampler.stop()

        given_wall = time.time() - (time.monotonic() - given.seen)
        print("alpha's epoch-48 process started %.3f s after bravo's give-back was logged"
              % (alpha_record.wall - given_wall))
        stretches = sampler.overlaps()
        print("both gitea processes running: %s" % describe(stretches))
        # bravo stops claiming before it stops its process, and alpha takes at its next check once
        # nobody claims: the two may overlap for as long as bravo's stop takes (here a sleep's
        # SIGTERM: milliseconds), never more than a couple of check intervals.
        assert all(end - start <= 2 * CHECK for start, end, _ in stretches), describe(stretches)
        assert sampler.double_claims() == [], "never both claiming: %s" % sampler.double_claims()[:5]
        assert fleet.running("gitea") == [alpha_record]
        assert [(r.host, r.epoch) for r in fleet.records("gitea")] == [("alpha", 16), ("bravo", 33), ("alpha", 48)]
        assert bravo.events("duty_fenced") == [] and alpha.events("duty_fenced") == []
        assert fleet.claims("alpha") == {"gitea": 48} and fleet.claims("bravo") == {"hermes": 16}
        assert wait_until(lambda: all(fleet.view(name) == {"gitea": "alpha", "hermes": "bravo"} for name in HOSTS), 5)
        assert fleet.saved_epochs("alpha")["gitea"] == 48
        assert_saved_before_started(fleet)
        assert [line.get("status") for line in bravo.alerts("duty_moved", subject="gitea")] == ["firing", "resolved"]

        # What Timmy gets: Reports and the duty_moved alert on each host's own relay.
        assert wait_until(lambda: len(failovers(watchers[0])) >= 2 and len(failovers(watchers[1])) >= 3, 20), \
            ([r.task for _, r in failovers(watchers[0])], [r.task for _, r in failovers(watchers[1])])
        on_alpha = failovers(watchers[0])
        on_bravo = failovers(watchers[1])
        assert [report.task for _, report in on_alpha] == ["Failover of gitea: taken by alpha"] * 2
        assert "Epoch: 16" in on_alpha[0][1].results and "Epoch: 48" in on_alpha[1][1].results
        assert sorted(report.task for _, report in on_bravo) == sorted(
            ["Failover of hermes: taken by bravo", "Failover of gitea: taken by bravo", "Failover of gitea: given back to alpha"])
        taken_report = [report for _, report in on_bravo if report.task == "Failover of gitea: taken by bravo"][0]
        assert "Epoch: 33" in taken_report.results and "First holder: alpha" in taken_report.results, taken_report.results
        assert all(event.session == "allegro.supervisor" for event, _ in on_alpha + on_bravo)
        alerts = [AllegroAlert.from_json(event.payload) for event in watchers[1].snapshot() if event.kind == "allegro.alert"]
        moved = [alert for alert in alerts if alert.alert == "duty_moved"]
        assert [(alert.subject, alert.status) for alert in moved] == [("gitea", "firing"), ("gitea", "resolved")], moved
    finally:
        if sampler is not None:
            sampler.stop()
        for watcher in watchers:
            watcher.stop()
        fleet.cleanup()


def test_a_give_back_waits_for_the_old_holders_duty_process_to_end_before_the_first_host_starts_its_own(
        binary: str, tmp_path: Path) -> None:
    """The same handover with a duty process that takes a second to stop after SIGTERM (work in
    hand finished, as a bridge would): the two must not run together for that second."""
    fleet = Fleet(binary, tmp_path, script_body=SLOW_STOP_SCRIPT, stop_grace_ms=5000)
    sampler: Optional[Sampler] = None
    try:
        start_fleet_with_first_holders(fleet)
        killed_at = time.time()
        alpha_pids = fleet.duty_pids("alpha")
        fleet.hosts["alpha"].sup.kill9()
        for pid in alpha_pids:
            kill_group_if_leader(pid)       # SIGKILL: no second of cleanup for a dead host
        fleet.hosts["alpha"].supervisor = None
        bravo_record = fleet.wait_running("gitea", "bravo", epoch=33)
        print("\ngitea running on bravo %.3f s after alpha was killed -9" % (bravo_record.wall - killed_at))

        sampler = Sampler(fleet, "gitea")
        fleet.start("alpha")
        given = fleet.hosts["bravo"].sup.wait_event("duty_given_back", timeout=TAKEOVER_TIMEOUT, duty="gitea")[0]
        alpha_record = fleet.wait_running("gitea", "alpha", epoch=48)
        assert wait_until(lambda: not alive(bravo_record.pid), 10)
        time.sleep(2 * CHECK)
        sampler.stop()
        stretches = sampler.overlaps()
        stopping = fleet.hosts["bravo"].sup.events("service_stopping", service="gitea-worker")
        print("both gitea processes running: %s" % describe(stretches))
        print("bravo: %s\nbravo: %s" % (stopping[0] if stopping else "(no service_stopping)", given))
        assert all(end - start <= 2 * CHECK for start, end, _ in stretches), \
            "bravo's process (stopping for ~1 s after SIGTERM) and alpha's ran together: %s" % describe(stretches)
        assert alpha_record.wall > bravo_record.wall
    finally:
        if sampler is not None:
            sampler.stop()
        fleet.cleanup()


# -- 4. a paused host -------------------------------------------------------------------------------------


def test_a_paused_first_host_is_fenced_when_it_resumes_then_gets_its_duty_back_and_the_two_never_both_hold_after_the_fence(
        fleet: Fleet) -> None:
    first = start_fleet_with_first_holders(fleet)
    old = first["gitea"]
    paused = fleet.pause("alpha")
    assert old.pid in paused
    bravo_record = fleet.wait_running("gitea", "bravo", epoch=33)
    assert alive(old.pid), "alpha's process is only stopped"
    # Let bravo hold it for a few checks, then alpha wakes up still believing it holds epoch 16.
    time.sleep(3 * CHECK)
    resumed_at = time.monotonic()
    fleet.resume("alpha", paused)
    alpha = fleet.hosts["alpha"].sup
    bravo = fleet.hosts["bravo"].sup

    fenced = alpha.wait_event("duty_fenced", timeout=TAKEOVER_TIMEOUT, duty="gitea")[0]
    assert fenced.get("by") == "bravo" and fenced.get("epoch") == "33", fenced
    assert wait_until(lambda: not alive(old.pid), 5), "alpha's duty process stopped at once"
    dead_at = time.monotonic()
    print("\nalpha fenced %.3f s after SIGCONT; its epoch-16 process gone %.3f s after SIGCONT"
          % (fenced.seen - resumed_at, dead_at - resumed_at))
    stopped = alpha.events("service_stopped", service="gitea-worker")
    assert stopped and stopped[0].get("exit") == "killed by signal 15 (SIGTERM)", stopped

    # From here on: never both. Claims asked alpha first (it takes only after bravo gives back).
    sampler = Sampler(fleet, "gitea", claims_order=["alpha", "bravo"])
    try:
        given = bravo.wait_event("duty_given_back", timeout=TAKEOVER_TIMEOUT, duty="gitea")[0]
        assert given.get("to") == "alpha"
        assert given.seen - resumed_at >= GIVEBACK_MS / 1000 - TOLERANCE
        alpha_record = fleet.wait_running("gitea", "alpha", epoch=48)
        assert wait_until(lambda: not alive(bravo_record.pid), 10)
        time.sleep(5 * CHECK)
    finally:
        sampler.stop()
    # Only bravo's process (at the fence) and later alpha's epoch-48 one ever ran: never alpha's old one.
    assert sampler.processes and [r.pid for r in sampler.processes[0][1]] == [bravo_record.pid]
    seen = {record for _, running in sampler.processes for record in running}
    assert seen == {bravo_record, alpha_record}, seen
    stretches = sampler.overlaps()
    print("both gitea processes running after the fence: %s" % describe(stretches))
    assert all(end - start <= 2 * CHECK for start, end, _ in stretches), describe(stretches)
    assert sampler.double_claims() == [], "both claimed gitea after the fence: %s" % sampler.double_claims()[:5]

    assert [(r.host, r.epoch) for r in fleet.records("gitea")] == [("alpha", 16), ("bravo", 33), ("alpha", 48)]
    assert fleet.running("gitea") == [alpha_record]
    assert [line.get("epoch") for line in alpha.events("duty_taken", duty="gitea")] == ["16", "48"]
    assert bravo.events("duty_fenced") == [], "bravo's epoch 33 was the stronger claim"
    assert [line.get("status") for line in bravo.alerts("duty_moved", subject="gitea")] == ["firing", "resolved"]
    assert fleet.claims("alpha") == {"gitea": 48} and fleet.claims("bravo") == {"hermes": 16}
    assert fleet.running("hermes") == [first["hermes"]]
    assert fleet.saved_epochs("alpha")["gitea"] == 48
    assert_saved_before_started(fleet)


# -- 5. a host not in a duty's list ------------------------------------------------------------------------


def test_a_host_not_in_a_duties_list_never_runs_it_even_with_every_host_of_the_list_dead(fleet: Fleet) -> None:
    first = start_fleet_with_first_holders(fleet)
    fleet.kill("bravo")
    charlie_record = fleet.wait_running("hermes", "charlie", epoch=33)
    assert fleet.running("hermes") == [charlie_record]
    fleet.kill("charlie")
    # Far longer than failures x check_ms: alpha sees both silent and still does not take hermes.
    time.sleep(2 * FAILURES * CHECK + 1.0)
    alpha = fleet.hosts["alpha"].sup
    assert not fleet.records_file("alpha", "hermes").exists()
    assert alpha.events("service_started", service="hermes-worker") == []
    assert [line.get("duty") for line in alpha.events("duty_taken")] == ["gitea"]
    assert fleet.running("hermes") == []
    assert fleet.claims("alpha") == {"gitea": 16}
    assert fleet.view("alpha") == {"gitea": "alpha"}, "nobody answering holds hermes"
    assert fleet.running("gitea") == [first["gitea"]], "alpha keeps its own duty"
    assert [service["name"] for service in fleet.status("alpha")["services"]] == ["gitea-worker"]


# -- 6. the configuration check ------------------------------------------------------------------------------


def test_config_check_refuses_a_duty_naming_an_unknown_host_a_service_duty_not_in_the_fleet_and_unknown_fleet_keys(
        binary: str, tmp_path: Path) -> None:
    def config(fleet: Optional[Dict[str, Any]], duty: str = "gitea") -> Dict[str, Any]:
        top: Dict[str, Any] = {"supervisor": {"relay": "off", "data_dir": str(tmp_path / "data")},
                               "services": [{"name": "gitea-worker", "command": ["/bin/true"], "duty": duty}]}
        if fleet is not None:
            top["fleet"] = fleet
        return top

    good = {"host": "alpha", "peers": [{"name": "bravo", "url": "http://127.0.0.1:7413"}],
            "duties": {"gitea": ["alpha", "bravo"]}, "check_ms": 200, "failures": 3, "giveback_ms": 1500}

    def check(document: Dict[str, Any], name: str) -> "subprocess.CompletedProcess[str]":
        path = tmp_path / (name + ".yaml")
        path.write_text(json.dumps(document, indent=1))
        return subprocess.run([binary, "config", "check", str(path)], capture_output=True, text=True, timeout=60,
                              env=supervisor_env())

    accepted = check(config(good), "good")
    assert accepted.returncode == 0, accepted.stderr
    assert "fleet:" in accepted.stdout and "giveback_ms: 1500" in accepted.stdout, accepted.stdout

    refused = {
        "unknown-host": (config(dict(good, duties={"gitea": ["alpha", "zulu"]})), "fleet.duties.gitea"),
        "duty-not-in-fleet": (config(good, duty="hermes"), "services[0].duty"),
        "duty-without-fleet": (config(None), "services[0].duty"),
        "unknown-fleet-key": (config(dict(good, check_interval_ms=200)), "fleet.check_interval_ms"),
        "unknown-peer-key": (config(dict(good, peers=[{"name": "bravo", "url": "http://127.0.0.1:7413", "port": 7413}])),
                             "fleet.peers[0].port"),
        "check-too-fast": (config(dict(good, check_ms=50)), "fleet.check_ms"),
    }
    for name, (document, key) in refused.items():
        result = check(document, name)
        assert result.returncode == 2, (name, result.returncode, result.stdout, result.stderr)
        assert "invalid configuration: %s = " % key in result.stderr, (name, result.stderr)
    # The hosts it may name are listed (the value itself is shown only as "(a list)").
    assert "each this host or a peer (alpha, bravo)" in check(refused["unknown-host"][0], "again").stderr
    assert "no fleet is configured" in check(refused["duty-without-fleet"][0], "again").stderr
