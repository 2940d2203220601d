"""Failover across a network partition, end to end: two hosts, a and b, each its own network namespace
running the real `allegro supervise` ($ALLEGRO_BIN, started with `ip netns exec`), with a relay on
every host and the Gitea bridge as the `gitea` duty (config/README.md, "Failover between hosts
(`fleet`)"). A third namespace, g, holds the fake Gitea (tests/fake_gitea.py) and Timmy's client.

    a (alg-PID-a) --- 10.77.1.0/30 --- b (alg-PID-b)       the supervisors ask each other /v1/duties
        \\                                 /
      10.77.2.0/30                  10.77.3.0/30           each bridge reaches Gitea; Timmy reaches
                 \\                   /                      each bridge's command API
                  g (alg-PID-g): the fake Gitea, Timmy

The fake Gitea is served by this test process: its listening socket is made in g (a socket belongs
to the namespace of the thread that made it, and threads started by a thread in a namespace are in it
too). The bridge takes plain http to loopback only, so on each host a small TCP forwarder takes
127.0.0.1:3000 over the host's link to g, where another one hands it to the fake's loopback port:
every byte between a bridge and Gitea crosses that host's veth to g. Nothing outside the namespaces
is ever addressed, and the root namespace's interfaces and routes are not touched (each veth pair is
made inside its namespaces).

The partition is silent: a's end of the a-b link goes down; both hosts still reach g. b stops hearing
a and takes the duty with a higher epoch (33) while a keeps its own (16): both hold it, both bridges
run. Timmy cannot tell which host holds it, so he sends each command to both bridges with one
operation id: a comment asked of a and then of b (trying the other host), a comment asked of both at
once, and a gated pull request (the same signed approval) asked of both at once. Then the link heals:
a hears b's stronger claim and is fenced at once, b gives the duty back to a (its first host) after
giveback_ms, and the fake Gitea holds exactly one comment per operation and one pull request.

Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) for `ip netns`; skipped with the reason otherwise."""

import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

import pytest

from allegro_client.messages import AllegroReport
from allegro_client.timmy import GiteaBridge
from fake_gitea import FakeGitea
from stream_watcher import StreamWatcher
from test_gitea_e2e import ALEXANDER, ALEXANDER_TOKEN, BOT, BOT_TOKEN, COMMAND_TOKEN, MARKER, REPO, approve, timmy_signer
from test_supervisor_e2e import FAST, OPENER, TOLERANCE, LogLine, Supervisor, Supervisors, supervisor_env, wait_until

pytestmark = pytest.mark.skipif(not os.environ.get("ALLEGRO_BIN"),
                                reason="ALLEGRO_BIN is not set (the allegro binary with `allegro supervise`)")

T = TypeVar("T")

CHECK_MS, FAILURES, GIVEBACK_MS = 200, 3, 2000
TIMEOUT = 15.0                     # seconds: generous bound of every wait for a failover step
HOSTS = ("a", "b")
DUTIES = {"gitea": ["a", "b"]}
# Ports are the same on every host: each namespace has ports of its own.
RELAY_PORT, RELAY_HTTP_PORT, BRIDGE_PORT, SUPERVISOR_PORT, GITEA_PORT = 7400, 7401, 7402, 7403, 3000
# The links: (one end's namespace, its address, the other end's namespace, its address), each a /30.
LINKS = (("a", "10.77.1.1", "b", "10.77.1.2"),
         ("a", "10.77.2.1", "g", "10.77.2.2"),
         ("b", "10.77.3.1", "g", "10.77.3.2"))

CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)


# -- network namespaces ---------------------------------------------------------------------------------


class Namespace:
    """A network namespace made by `ip netns add` (its handle is /run/netns/NAME)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def enter(self) -> None:
        """Moves the calling thread (only it) into this namespace."""
        handle = os.open("/run/netns/" + self.name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _LIBC.setns(handle, CLONE_NEWNET) != 0:
                error = ctypes.get_errno()
                raise OSError(error, "setns into %s: %s" % (self.name, os.strerror(error)))
        finally:
            os.close(handle)

    def call(self, function: Callable[[], T], timeout: float = 60) -> T:
        """function() in a new thread inside this namespace: the sockets it makes and the threads it
        starts are in the namespace (and stay there after it returns)."""
        outcome: Dict[str, Any] = {}

        def run() -> None:
            try:
                self.enter()
                outcome["value"] = function()
            except BaseException as error:          # noqa: B036 - handed to the caller
                outcome["error"] = error

        thread = threading.Thread(target=run, name="in-" + self.name, daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise AssertionError("a call inside %s did not return within %s s" % (self.name, timeout))
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]  # type: ignore[no-any-return]

    def ip(self, *args: str) -> None:
        """`ip -n NAME ARGS...`: what it changes is inside this namespace (or one named in ARGS)."""
        result = subprocess.run(["ip", "-n", self.name] + list(args), capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, "ip -n %s %s: %s" % (self.name, " ".join(args), result.stderr.strip())


class Network:
    """The namespaces a, b and g with a veth pair for each link of LINKS. `delete()` removes every
    namespace it made (a namespace's veth ends go with it)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.spaces: Dict[str, Namespace] = {}

    def create(self) -> None:
        if shutil.which("ip") is None:
            pytest.skip("network namespaces not permitted here: no `ip` command (iproute2)")
        for role in ("a", "b", "g"):
            name = "%s-%s" % (self.prefix, role)
            result = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=30)
            if result.returncode != 0:
                pytest.skip("network namespaces not permitted here: %s" % result.stderr.strip())
            self.spaces[role] = Namespace(name)
            self.spaces[role].ip("link", "set", "lo", "up")
        for left, left_address, right, right_address in LINKS:
            # Made inside `left`, its peer inside `right`: neither end ever exists in the root namespace.
            self[left].ip("link", "add", self.device(right), "type", "veth", "peer", "name", self.device(left),
                          "netns", self[right].name)
            for role, address, other in ((left, left_address, right), (right, right_address, left)):
                self[role].ip("addr", "add", address + "/30", "dev", self.device(other))
                self[role].ip("link", "set", self.device(other), "up")

    def __getitem__(self, role: str) -> Namespace:
        return self.spaces[role]

    @staticmethod
    def device(peer: str) -> str:
        """The name of the veth end that leads to `peer` (names are per namespace)."""
        return "to-" + peer

    @staticmethod
    def address(role: str, towards: str) -> str:
        """`role`'s address on its link to `towards`."""
        for left, left_address, right, right_address in LINKS:
            if (left, right) == (role, towards):
                return left_address
            if (right, left) == (role, towards):
                return right_address
        raise KeyError((role, towards))

    def delete(self) -> List[str]:
        """Deletes every namespace made; the problems, if any."""
        problems = []
        for space in self.spaces.values():
            result = subprocess.run(["ip", "netns", "delete", space.name], capture_output=True, text=True, timeout=30)
            if result.returncode != 0:
                problems.append("ip netns delete %s: %s" % (space.name, result.stderr.strip()))
        self.spaces.clear()
        return problems


class Forwarder:
    """TCP from `listen` to `target`, made by `Namespace.call`: its sockets (and its threads) are in
    that namespace."""

    def __init__(self, listen: Tuple[str, int], target: Tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(listen)
        self.server.settimeout(0.1)
        self.sockets: List[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="forward-%s:%d" % listen, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self.sockets += [client, upstream]
            ends = [2]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink, client, upstream, ends), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, client: socket.socket, upstream: socket.socket,
              ends: List[int]) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with self._lock:
            ends[0] -= 1
            if ends[0] == 0:
                for end in (client, upstream):
                    end.close()
                    if end in self.sockets:
                        self.sockets.remove(end)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.close()
        with self._lock:
            for end in self.sockets:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
            self.sockets.clear()


# -- the hosts -----------------------------------------------------------------------------------------


@dataclass
class Host:
    """One host: its namespace, its supervisor (in that namespace) and a watcher of its relay's Reports."""
    name: str
    space: Namespace
    root: Path
    config: Path
    supervisors: Supervisors
    supervisor: Optional[Supervisor] = None
    reports: Optional[StreamWatcher] = None

    @property
    def supervisor_address(self) -> str:
        return "%s:%d" % (Network.address(self.name, "b" if self.name == "a" else "a"), SUPERVISOR_PORT)

    @property
    def bridge_address(self) -> str:
        """The bridge's command API, on the host's link to g (where Timmy is)."""
        return "%s:%d" % (Network.address(self.name, "g"), BRIDGE_PORT)

    @property
    def sup(self) -> Supervisor:
        assert self.supervisor is not None, "%s's supervisor is not running" % self.name
        return self.supervisor

    def get(self, path: str) -> Tuple[int, bytes]:
        """The supervisor's answer to GET path, asked from inside the host (0 when it does not answer)."""
        def ask() -> Tuple[int, bytes]:
            try:
                with OPENER.open("http://%s%s" % (self.supervisor_address, path), timeout=5) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as error:
                return error.code, error.read()
            except OSError as error:
                return 0, str(error).encode()
        return self.space.call(ask)

    def claims(self) -> Optional[Dict[str, int]]:
        """What the host answers on /v1/duties (duty: epoch); None when it does not answer."""
        status, body = self.get("/v1/duties")
        if status != 200:
            return None
        answer = json.loads(body)
        assert answer["host"] == self.name, answer
        return {claim["duty"]: int(claim["epoch"]) for claim in answer["claims"]}

    def view(self) -> Dict[str, str]:
        """Who holds what, as this host sees it (/v1/status `duties`)."""
        status, body = self.get("/v1/status")
        assert status == 200, (status, body)
        return {holder["duty"]: holder["host"] for holder in json.loads(body).get("duties", [])}

    def metrics(self) -> Dict[str, float]:
        """The failover lines of /metrics: 'allegro_supervisor_duty_held{duty="gitea"}': 1.0, ..."""
        status, body = self.get("/metrics")
        assert status == 200, (status, body)
        found = {}
        for line in body.decode().splitlines():
            match = re.fullmatch(r'(allegro_supervisor_(?:duty_held|duty_epoch|peer_up)\{\w+="[^"]+"\}) (\S+)', line)
            if match:
                found[match.group(1)] = float(match.group(2))
        return found

    def failover_reports(self) -> List[AllegroReport]:
        assert self.reports is not None
        found = [AllegroReport.from_json(event.payload) for event in self.reports.snapshot()]
        return [report for report in found if report.task.startswith("Failover of ")]

    def gitea_reports(self) -> List[AllegroReport]:
        assert self.reports is not None
        found = [AllegroReport.from_json(event.payload) for event in self.reports.snapshot()]
        return [report for report in found if report.task.startswith("Gitea ")]

    def log_tail(self, lines: int = 60) -> str:
        if self.supervisor is None:
            return "(%s: no supervisor)" % self.name
        wanted = ("duty_", "service_", "alert", "gitea_command", "http_")
        interesting = [line.text for line in self.supervisor.events() if line.get("event").startswith(wanted)]
        return "-- %s --\n%s" % (self.name, "\n".join(interesting[-lines:]))


class Outcome:
    """What one of Timmy's calls got: the bridge's answer, or the error it raised."""

    def __init__(self, value: Any = None, error: Optional[BaseException] = None) -> None:
        self.value, self.error = value, error

    def __repr__(self) -> str:
        return "Outcome(%r)" % (self.value if self.error is None else self.error)


@dataclass
class World:
    network: Network
    gitea: FakeGitea
    hosts: Dict[str, Host]
    tmp: Path
    key: Path                      # Timmy's signing key
    forwarders: List[Forwarder] = field(default_factory=list)

    def evidence(self) -> str:
        """What the hosts logged and claim, for a failure's message."""
        parts = [host.log_tail() for host in self.hosts.values()]
        for host in self.hosts.values():
            if host.supervisor is not None:
                parts.append("%s claims %s" % (host.name, host.claims()))
        return "\n".join(parts)

    def timmy(self, host: str, call: Callable[[GiteaBridge], Awaitable[Any]]) -> Outcome:
        """One of Timmy's calls to `host`'s bridge, made from g."""
        bridge = GiteaBridge(self.hosts[host].bridge_address, COMMAND_TOKEN, timeout=20)

        def run() -> Outcome:
            try:
                return Outcome(asyncio.run(asyncio.wait_for(call(bridge), 40)))
            except Exception as error:                    # noqa: BLE001 - kept for the test to look at
                return Outcome(error=error)
        return self.network["g"].call(run, timeout=60)

    def timmy_to_both(self, call: Callable[[GiteaBridge], Awaitable[Any]]) -> Dict[str, Outcome]:
        """The same call to both bridges at once (released together), as Timmy would when he cannot tell
        which host holds the duty."""
        outcomes: Dict[str, Outcome] = {}
        start = threading.Barrier(len(HOSTS))

        def one(host: str) -> None:
            start.wait(10)
            outcomes[host] = self.timmy(host, call)

        threads = [threading.Thread(target=one, args=(host,), daemon=True) for host in HOSTS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(70)
        assert sorted(outcomes) == list(HOSTS), "Timmy's calls did not return: %s" % outcomes
        return outcomes

    def bridge_health(self, host: str) -> int:
        """The status of `host`'s bridge /health, asked from g (0: no answer)."""
        def ask() -> int:
            try:
                with OPENER.open("http://%s/health" % self.hosts[host].bridge_address, timeout=2) as response:
                    return int(response.status)
            except urllib.error.HTTPError as error:
                return int(error.code)
            except OSError:
                return 0
        return self.network["g"].call(ask)


def host_config(root: Path, name: str, peer: str, signers: Path) -> Path:
    """One file for the host's supervisor, relay and bridge (as config/allegro.yaml): a relay on every
    host, the bridge as the `gitea` duty, the fleet of a and b."""
    supervisor: Dict[str, Any] = dict(FAST)
    supervisor.update(http="%s:%d" % (Network.address(name, peer), SUPERVISOR_PORT), relay="",
                      data_dir=str(root / "supervisor-data"))
    path = root / "allegro.yaml"
    document: Dict[str, Any] = {
        "listen": "127.0.0.1:%d" % RELAY_PORT, "http": "127.0.0.1:%d" % RELAY_HTTP_PORT,
        "data_dir": str(root / "relay-data"), "alert_interval_ms": 0, "daily_report_at": "off",
        "bridge": {"http": "%s:%d" % (Network.address(name, "g"), BRIDGE_PORT), "relay": "127.0.0.1:%d" % RELAY_PORT,
                   "data_dir": str(root / "bridge-data"), "relay_down_ms": 0},
        "gitea": {"url": "http://127.0.0.1:%d" % GITEA_PORT, "repos": [REPO], "poll_interval_ms": 1000,
                  "allowed_signers": str(signers), "triage_status": "", "triage_receipt": "false"},
        "supervisor": supervisor,
        "fleet": {"host": name, "peers": [{"name": peer, "url": "http://%s:%d" % (Network.address(peer, name), SUPERVISOR_PORT)}],
                  "duties": DUTIES, "check_ms": CHECK_MS, "failures": FAILURES, "giveback_ms": GIVEBACK_MS},
        "services": [
            {"name": "relay", "command": ["allegro", "relay", "--config", str(path)], "stop_grace_ms": 5000,
             "probe": {"tcp": "127.0.0.1:%d" % RELAY_PORT, "interval_ms": 200, "timeout_ms": 1000, "failures": 5,
                       "grace_ms": 10000}},
            {"name": "bridge", "command": ["allegro", "bridge", "--config", str(path)], "duty": "gitea",
             "pass_environment": ["ALLEGRO_GITEA_*"], "stop_grace_ms": 5000},
        ],
    }
    # JSON text, which is YAML.
    path.write_text(json.dumps(document, indent=1))
    return path


def in_namespace(binary: str, space: Namespace, path: Path) -> str:
    """A program that runs `binary` inside `space` (`ip netns exec`, which execs: same pid)."""
    ip = shutil.which("ip")
    assert ip is not None
    path.write_text('#!/bin/sh\nexec %s netns exec %s %s "$@"\n' % (ip, space.name, binary))
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def world(binary: str, tmp_path: Path) -> Iterator[World]:
    """The namespaces, the fake Gitea in g, the forwarders, and each host's supervisor (not started).
    Teardown always runs every step, in order: the relay watchers, the supervisors (and every process
    group they started), the forwarders, the fake Gitea, the namespaces."""
    with contextlib.ExitStack() as stack:
        network = Network("alg-%d" % os.getpid())

        def delete_namespaces() -> None:
            problems = network.delete()
            assert not problems, problems
        stack.callback(delete_namespaces)
        network.create()

        def make_gitea() -> FakeGitea:
            fake = FakeGitea(users={BOT: BOT_TOKEN, "timmy": "timmy-token-77aa01", ALEXANDER: ALEXANDER_TOKEN},
                             repos=[REPO])
            for status in ("triage", "in-progress", "blocked", "review", "done"):
                fake.add_label(REPO, "status/" + status, color="0075ca", exclusive=True)
            return fake
        gitea = network["g"].call(make_gitea)
        stack.callback(gitea.close)

        key, signers = timmy_signer(tmp_path / "timmy")
        world = World(network, gitea, {}, tmp_path, key)
        stack.callback(lambda: [forwarder.close() for forwarder in world.forwarders])
        # g: both links to the fake's loopback port; each host: its loopback to g over its own link.
        world.forwarders.append(network["g"].call(lambda: Forwarder(("0.0.0.0", GITEA_PORT), ("127.0.0.1", gitea.port))))
        for name in HOSTS:
            towards = (Network.address("g", name), GITEA_PORT)
            world.forwarders.append(network[name].call(lambda: Forwarder(("127.0.0.1", GITEA_PORT), towards)))

        for name in HOSTS:
            peer = "b" if name == "a" else "a"
            root = tmp_path / name
            root.mkdir()
            wrapper = in_namespace(binary, network[name], root / "allegro-in-namespace")
            host = Host(name, network[name], root, host_config(root, name, peer, signers), Supervisors(wrapper, root))
            world.hosts[name] = host
            stack.callback(host.supervisors.cleanup)
        stack.callback(lambda: [host.reports.stop() for host in world.hosts.values() if host.reports is not None])
        yield world
        gitea.assert_clean()


def start_host(world: World, name: str) -> Host:
    host = world.hosts[name]
    env = supervisor_env()
    env.update(ALLEGRO_GITEA_TOKEN=BOT_TOKEN, ALLEGRO_GITEA_COMMAND_TOKEN=COMMAND_TOKEN)
    host.supervisor = host.supervisors.start(host.config, env=env)
    assert host.supervisor.address == host.supervisor_address, host.supervisor.address
    # Reports and alerts reach the host's own relay; read them there, from inside the host.
    host.reports = host.space.call(lambda: StreamWatcher("127.0.0.1:%d" % RELAY_PORT, kinds=("allegro.report",)))
    return host


def wait_for(world: World, condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """The condition's first truthy value; fails naming `what` and the hosts' logs after `timeout`."""
    value = wait_until(condition, timeout, interval=0.05)
    if not value:
        raise AssertionError("%s: not within %s s\n%s" % (what, timeout, world.evidence()))
    return value


def duty_event(host: Host, event: str, count: int = 1) -> LogLine:
    """The `count`-th duty event of the gitea duty in the host's log, once it is there."""
    return host.sup.wait_event(event, timeout=TIMEOUT, count=count, duty="gitea")[count - 1]


def marked(comments: List[Dict[str, Any]], operation: str) -> List[Dict[str, Any]]:
    return [comment for comment in comments if operation in MARKER.findall(comment["body"])]


# -- the test ---------------------------------------------------------------------------------------------


def test_a_partition_where_both_hosts_hold_the_gitea_duty_does_no_gitea_action_twice_and_the_lower_epoch_stops_when_it_heals(
        world: World) -> None:
    gitea, a_side = world.gitea, world.network["a"]
    number = gitea.create_issue(REPO, "The relay drops frames", user=ALEXANDER)["number"]
    branch = gitea.add_branch(REPO, "fix-partition")

    # a, first in the duty's list, takes gitea (epoch 16); b sees it held by a and stays out.
    a = start_host(world, "a")
    b = start_host(world, "b")
    taken_by_a = duty_event(a, "duty_taken")
    assert taken_by_a.get("epoch") == "16", taken_by_a
    wait_for(world, lambda: world.bridge_health("a") == 200, TIMEOUT, "a's bridge answers /health")
    wait_for(world, lambda: b.view().get("gitea") == "a" and b.metrics().get('allegro_supervisor_peer_up{peer="a"}') == 1,
             TIMEOUT, "b sees a holding gitea")
    assert b.claims() == {} and b.sup.events("duty_taken") == []

    # The partition: a's end of the a-b link goes down. Both still reach g.
    a_side.ip("link", "set", Network.device("b"), "down")
    cut_at = time.monotonic()
    taken_by_b = duty_event(b, "duty_taken")
    print("\nb took gitea %.3f s after the a-b link went down" % (taken_by_b.seen - cut_at))
    assert taken_by_b.get("epoch") == "33", taken_by_b
    wait_for(world, lambda: world.bridge_health("b") == 200, TIMEOUT, "b's bridge answers /health")
    # Both hold it now, each in its own epoch, and neither hears the other.
    assert a.claims() == {"gitea": 16} and b.claims() == {"gitea": 33}, world.evidence()
    assert a.metrics()['allegro_supervisor_duty_held{duty="gitea"}'] == 1
    assert b.metrics()['allegro_supervisor_duty_held{duty="gitea"}'] == 1
    assert wait_until(lambda: a.metrics().get('allegro_supervisor_peer_up{peer="b"}') == 0, 5)
    assert b.metrics()['allegro_supervisor_peer_up{peer="a"}'] == 0

    # Timmy cannot tell which host holds it, so each command goes to both bridges with one operation id:
    # a comment asked of a and then again of b (Timmy trying the other host), a comment asked of both
    # at once, and a gated pull request (the same signed approval) asked of both at once.
    retry_text = "Asked of a, then again of b."
    retried = {"a": world.timmy("a", lambda bridge: bridge.comment_on_issue(REPO, number, retry_text,
                                                                         operation_id="partition-retry"))}
    retried["b"] = world.timmy("b", lambda bridge: bridge.comment_on_issue(REPO, number, retry_text,
                                                                         operation_id="partition-retry"))
    text = "Looking into it from whichever host holds Gitea."
    comments = world.timmy_to_both(lambda bridge: bridge.comment_on_issue(REPO, number, text, operation_id="partition-ack"))
    made = approve(world.key, world.tmp / "approval-pr", "create_pr", "--head", "fix-partition",
                   "--head-sha", branch.sha, "--base", "main")
    pulls = world.timmy_to_both(lambda bridge: bridge.create_pr(REPO, "fix-partition", "Fix the partition", "Refs #%d" % number,
                                                                made, operation_id="partition-pr"))
    print("comment asked of a then b: %s\ncomment asked of both at once: %s\npull request asked of both at once: %s"
          % (retried, comments, pulls))
    # Still both holding after the commands: the duty was held twice for the whole exchange.
    assert a.claims() == {"gitea": 16} and b.claims() == {"gitea": 33}, world.evidence()
    for host, outcome in list(retried.items()) + list(comments.items()) + list(pulls.items()):
        assert outcome.error is None, "%s's bridge failed Timmy's call: %r\n%s" % (host, outcome.error, world.evidence())

    # Heal: a hears b's stronger claim and stops at once; b keeps the duty.
    a_side.ip("link", "set", Network.device("b"), "up")
    healed_at = time.monotonic()
    fenced = duty_event(a, "duty_fenced")
    print("a fenced %.3f s after the link came back" % (fenced.seen - healed_at))
    assert (fenced.get("by"), fenced.get("epoch")) == ("b", "33"), fenced
    wait_for(world, lambda: a.claims() == {} and b.claims() == {"gitea": 33}, 5, "only b (epoch 33) holds gitea")
    assert a.metrics()['allegro_supervisor_duty_held{duty="gitea"}'] == 0
    assert b.metrics()['allegro_supervisor_duty_epoch{duty="gitea"}'] == 33
    assert int(taken_by_b.get("epoch")) > int(taken_by_a.get("epoch")), "b's epoch is above a's"
    assert b.sup.events("duty_fenced") == [], "b's epoch 33 was the stronger claim"
    wait_for(world, lambda: [r.task for r in a.failover_reports()] == ["Failover of gitea: taken by a",
                                                                        "Failover of gitea: stopped on a"],
             10, "a's Reports of its take and its fence, on its relay")
    stopped = a.failover_reports()[1]
    assert "Holder: b" in stopped.results and "Epoch: 33" in stopped.results, stopped.results

    # Later b gives gitea back to a (its first host), which takes it in the next round (48).
    given = duty_event(b, "duty_given_back")
    assert given.get("to") == "a", given
    assert given.seen - healed_at >= GIVEBACK_MS / 1000 - TOLERANCE, "given back before a answered for giveback_ms"
    again = duty_event(a, "duty_taken", count=2)
    assert again.get("epoch") == "48", again
    wait_for(world, lambda: a.claims() == {"gitea": 48} and b.claims() == {}, 10, "a alone holds gitea (48)")
    wait_for(world, lambda: world.bridge_health("a") == 200, TIMEOUT, "a's bridge answers /health again")
    polls = len(gitea.calls("issueListIssues"))
    wait_for(world, lambda: len(gitea.calls("issueListIssues")) >= polls + 2, TIMEOUT, "a's bridge polls again")

    # Gitea: one pull request for the head, one comment for each operation, whatever both bridges did.
    prs = [pull for pull in gitea.pulls(REPO) if pull["head"]["ref"] == "fix-partition"]
    assert len(prs) == 1, ("%d pull requests for fix-partition: %s\nanswers: %s" % (len(prs), prs, pulls))
    assert {outcome.value["pull"] for outcome in pulls.values()} == {prs[0]["number"]}, pulls
    created = [w for w in gitea.writes() if w.method == "POST" and w.path.endswith("/pulls") and 200 <= w.status < 300]
    assert len(created) == 1, created

    found = marked(gitea.comments(REPO, number), "partition-retry")
    assert len(found) == 1, ("the comment asked of a, then of b, is on Gitea %d times: %s\nanswers: %s"
                             % (len(found), [c["body"] for c in found], retried))
    assert (retried["a"].value["written"], retried["b"].value["written"]) == ("now", "found"), retried
    assert {outcome.value["comment_id"] for outcome in retried.values()} == {found[0]["id"]}, retried

    comment_path = "/api/v1/repos/%s/issues/%d/comments" % (REPO, number)
    posts = [w for w in gitea.writes() if w.method == "POST" and w.path == comment_path
             and isinstance(w.body, dict) and "partition-ack" in MARKER.findall(w.body.get("body", ""))]
    deletes = [w for w in gitea.writes() if w.method == "DELETE" and "/issues/comments/" in w.path]
    print("comment asked of both at once: %d POST(s) %s, %d DELETE(s) %s"
          % (len(posts), [(w.status, w.answer.get("id") if isinstance(w.answer, dict) else None) for w in posts],
             len(deletes), [(w.path, w.status) for w in deletes]))
    # A copy a bridge removes must be one of its own copies of the operation, never another comment.
    copies = {int(w.answer["id"]) for w in posts if isinstance(w.answer, dict) and "id" in w.answer}
    assert all(int(w.path.rsplit("/", 1)[1]) in copies for w in deletes), (deletes, copies)
    posted = marked(gitea.comments(REPO, number), "partition-ack")
    assert len(posted) == 1, ("the comment asked of both bridges at once (operation partition-ack) is on Gitea %d times: "
                              "%s\nanswers: %s\nPOSTs (user, status, at): %s\n%s"
                              % (len(posted), [c["body"] for c in posted], comments,
                                 [(w.user, w.status, w.at) for w in posts], world.evidence()))
    assert posted[0]["user"]["login"] == BOT and posted[0]["body"].startswith(text)
    assert {outcome.value["comment_id"] for outcome in comments.values()} == {posted[0]["id"]}, comments
    assert len(gitea.comments(REPO, number)) == 2, [c["body"] for c in gitea.comments(REPO, number)]

    # Each bridge reported each of its outcomes once, on its own host's stream.
    expected = sorted(["Gitea comment on %s#%d" % (REPO, number)] * 2 + ["Gitea create_pr on %s#0" % REPO])
    for host in (a, b):
        wait_for(world, lambda: sorted(report.task for report in host.gitea_reports()) == expected, 10,
                 "%s's Reports of Timmy's commands on its relay, once each" % host.name)
    assert [r.task for r in b.failover_reports()] == ["Failover of gitea: taken by b", "Failover of gitea: given back to a"]
