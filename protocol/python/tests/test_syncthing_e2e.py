"""The supervisor's Syncthing watcher end to end: the real `allegro supervise` ($ALLEGRO_BIN)
watching real Syncthing instances on loopback (tests/syncthing_fixture.py: the Debian `syncthing`,
1.19 or later, each with its own temporary home, folder and API key file) and reporting to the
real relay, whose stream is read here.

What is checked is what the watcher promises (the `supervisor.syncthing_*` keys): every
`syncthing_check_ms` it reads Syncthing's REST API on `syncthing_url` with the key in
`syncthing_api_key_file`; a peer disconnected, a folder behind, or the API unreachable for
`syncthing_alert_ms` raises `syncthing_peer_lost`, `syncthing_folder_stalled` or
`syncthing_unreachable` (firing, then resolved), on the stream like the supervisor's other alerts;
`/v1/status` has a `syncthing` object (peers, folders, each peer's completion, lag and last
catch-up) and `/metrics` the `allegro_supervisor_syncthing_*` gauges; a Syncthing run as a
supervisor service is restarted when killed or hung; and the watcher only ever reads (GET): A's
folders and devices are the same after it ran.

A peer is made to fall behind deterministically by stopping its process (SIGSTOP): its connection
stays up (A does not notice a stopped peer for minutes), A scans the new file, and the peer's
completion as A computes it stays below 100 until SIGCONT. Every instance's folder starts with a
file from A, so that each peer has sent an index before a test begins (1.19 counts a peer that
never sent one as 100 % complete). Timings are small (checks every 200-300 ms, alerts after
0.6-2 s); lower bounds are only ever ones the watcher promised, upper bounds generous timeouts."""

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from allegro_client import TelemetryEvent
from allegro_client.messages import AllegroAlert
from conftest import Relay
from stream_watcher import StreamWatcher
from syncthing_fixture import OPENER as ST_OPENER
from syncthing_fixture import SYNCTHING, Cluster, Syncthing
from test_supervisor_e2e import TOLERANCE, Supervisor, Supervisors, alive, wait_until

pytestmark = [
    pytest.mark.skipif(not os.environ.get("ALLEGRO_BIN"),
                       reason="ALLEGRO_BIN is not set (the allegro binary with `allegro supervise`)"),
    pytest.mark.skipif(SYNCTHING is None, reason="syncthing is not installed (Debian package syncthing)"),
]

FOLDER = "shared"
SEED = "seed.txt"
# The watcher's settings for most tests: a check every 300 ms, an alert after 2 s.
CHECK_MS, ALERT_MS = 300, 2000
SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

MetricKey = Tuple[str, Tuple[Tuple[str, str], ...]]


# -- the rig: relay, stream, Syncthing instances, supervisors -----------------------------------------


class Rig:
    """What a test runs: the relay (conftest), a collector of its stream from the earliest record,
    Syncthing clusters made on demand, and supervisors; `cleanup()` ends all of them."""

    def __init__(self, binary: str, relay: Relay, root: Path) -> None:
        self.relay, self.root = relay, root
        self.supervisors = Supervisors(binary, root)
        self.clusters: List[Cluster] = []
        self.stream = StreamWatcher(relay.address, kinds=("allegro.",))

    def cluster(self, names: Sequence[str], unnamed: Sequence[str] = ()) -> Cluster:
        """Instances `names` (the first is A, the watched one), their folder seeded from A."""
        made = Cluster(self.root / "syncthing", names, FOLDER, unnamed)
        self.clusters.append(made)
        first = made[names[0]]
        (first.folder / SEED).write_text("seeded by %s\n" % first.name)
        return made

    def start_synced(self, cluster: Cluster, names: Sequence[str]) -> None:
        """Starts `names` here, waits until they are connected and every one has the seed, and
        A (the first instance of the cluster) sees each of them 100 % complete."""
        for name in names:
            cluster[name].start()
        assert cluster.wait_connected(30), "\n".join(instance.log_tail() for instance in cluster)
        first = next(iter(cluster))
        for name in names:
            instance = cluster[name]
            assert wait_until(lambda: (instance.folder / SEED).exists(), 30, 0.05), instance.log_tail()
            if instance is not first and first.pid is not None:
                assert wait_until(lambda: first.completion(instance.device_id) == 100, 30, 0.05)

    def supervise(self, watched: Syncthing, services: Optional[List[Dict[str, Any]]] = None, url: str = "",
                  **settings: Any) -> Supervisor:
        section: Dict[str, Any] = {"relay": self.relay.address, "syncthing_url": url or watched.api_url,
                                   "syncthing_api_key_file": str(watched.api_key_file),
                                   "syncthing_check_ms": CHECK_MS, "syncthing_alert_ms": ALERT_MS}
        section.update(settings)
        config = self.supervisors.write_config(services or [], **section)
        return self.supervisors.start(config)

    def cleanup(self) -> None:
        try:
            self.supervisors.cleanup()
        finally:
            for cluster in self.clusters:
                cluster.stop()
            self.stream.stop()


@pytest.fixture
def rig(binary: str, relay: Relay, tmp_path: Path) -> Iterator[Rig]:
    made = Rig(binary, relay, tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


# -- reading the supervisor ---------------------------------------------------------------------------


def syncthing_status(supervisor: Supervisor) -> Dict[str, Any]:
    code, body = supervisor.get("/v1/status")
    assert code == 200, body
    status = json.loads(body)
    assert "syncthing" in status, status
    return dict(status["syncthing"])


def wait_syncthing(supervisor: Supervisor, condition: Callable[[Dict[str, Any]], bool], what: str,
                   timeout: float = 20) -> Dict[str, Any]:
    found = wait_until(lambda: (lambda s: s if condition(s) else None)(syncthing_status(supervisor)), timeout, 0.05)
    if not found:
        raise AssertionError("never %s within %s s: %s\nthe log:\n%s"
                             % (what, timeout, json.dumps(syncthing_status(supervisor)), supervisor.text()[-4000:]))
    return dict(found)


def peer_of(status: Dict[str, Any], device_id: str) -> Optional[Dict[str, Any]]:
    for peer in status.get("peers", []):
        if peer.get("id") == device_id:
            return dict(peer)
    return None


def folder_peer(status: Dict[str, Any], folder: str, name: str) -> Optional[Dict[str, Any]]:
    for entry in status.get("folders", []):
        if entry.get("id") == folder:
            for peer in entry.get("peers", []):
                if peer.get("name") == name:
                    return dict(peer)
    return None


def metrics(supervisor: Supervisor) -> Dict[MetricKey, float]:
    """/metrics' samples, keyed by (name, sorted labels); checked by promtool where installed."""
    code, body = supervisor.get("/metrics")
    assert code == 200, body
    text = body.decode()
    promtool = shutil.which("promtool")
    if promtool:
        checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    samples: Dict[MetricKey, float] = {}
    for line in text.splitlines():
        match = SAMPLE.fullmatch(line)
        if match and not line.startswith("#"):
            labels = tuple(sorted(LABEL.findall(match.group(2) or "")))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def metric(samples: Dict[MetricKey, float], name: str, **labels: str) -> Optional[float]:
    return samples.get((name, tuple(sorted(labels.items()))))


# -- reading the stream ----------------------------------------------------------------------------------


def stream_alerts(rig: Rig, alert: str, subject: Optional[str] = None) -> List[Tuple[TelemetryEvent, AllegroAlert]]:
    found = []
    for event in rig.stream.snapshot():
        if event.kind == "allegro.alert":
            record = AllegroAlert.from_json(event.payload)
            if record.alert == alert and (subject is None or record.subject == subject):
                found.append((event, record))
    return found


def wait_stream(rig: Rig, alert: str, subject: str, statuses: Sequence[str], timeout: float = 20) -> \
        List[Tuple[TelemetryEvent, AllegroAlert]]:
    """Waits until the stream holds `alert` about `subject` with exactly `statuses`, in order."""
    def seen() -> Optional[List[Tuple[TelemetryEvent, AllegroAlert]]]:
        found = stream_alerts(rig, alert, subject)
        return found if [record.status for _, record in found] == list(statuses) else None

    found = wait_until(seen, timeout, 0.05)
    if not found:
        everything = [(record.alert, record.subject, record.status) for event in rig.stream.snapshot()
                      if event.kind == "allegro.alert" for record in [AllegroAlert.from_json(event.payload)]]
        raise AssertionError("the stream never held %s %r as %s within %s s; its alerts: %s"
                             % (alert, subject, list(statuses), timeout, everything))
    for event, record in found:
        assert event.session == "allegro.supervisor", event
        assert record.summary, record
    return list(found)


def firing_in_log(supervisor: Supervisor, alert: str, subject: Optional[str] = None) -> List[Any]:
    return supervisor.alerts(alert, "firing", subject)


# -- a proxy that records what the watcher asks ------------------------------------------------------------


class RecordingProxy:
    """An HTTP proxy on loopback in front of one Syncthing: forwards every request as it is and
    records its method, path and headers (`requests`)."""

    def __init__(self, upstream: str) -> None:
        self.requests: List[Tuple[str, str, Dict[str, str]]] = []
        lock = threading.Lock()
        recorded = self.requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {key.lower(): value for key, value in self.headers.items()}
                with lock:
                    recorded.append((self.command, self.path, headers))
                passed = {key: value for key, value in self.headers.items()
                          if key.lower() in ("x-api-key", "authorization", "accept", "content-type")}
                request = urllib.request.Request(upstream + self.path, data=body, method=self.command, headers=passed)
                try:
                    # Long enough for Syncthing's long polls (/rest/events?timeout=S).
                    with ST_OPENER.open(request, timeout=120) as answer:
                        status, payload = answer.status, answer.read()
                        content_type = answer.headers.get("Content-Type", "application/json")
                except urllib.error.HTTPError as error:
                    status, payload = error.code, error.read()
                    content_type = error.headers.get("Content-Type", "text/plain")
                except (OSError, http.client.HTTPException):
                    # No answer, or one cut short (Syncthing stopped during a long poll).
                    status, payload, content_type = 502, b"upstream unreachable\n", "text/plain"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                except OSError:
                    self.close_connection = True     # the watcher went away (the supervisor stopped)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="syncthing-proxy", daemon=True)
        self.thread.start()

    def snapshot(self) -> List[Tuple[str, str, Dict[str, str]]]:
        return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


# -- (a) lag and catch-up -------------------------------------------------------------------------------


def test_a_file_written_on_a_reaches_b_and_the_watcher_on_a_reports_b_behind_then_caught_up_at_100_percent(
        rig: Rig) -> None:
    cluster = rig.cluster(["alpha", "beta"])
    alpha, beta = cluster["alpha"], cluster["beta"]
    rig.start_synced(cluster, ["alpha", "beta"])
    supervisor = rig.supervise(alpha)

    status = wait_syncthing(supervisor, lambda s: s.get("up") is True and bool((peer_of(s, beta.device_id) or {})
                                                                               .get("connected")), "up with beta")
    assert [{key: peer.get(key) for key in ("name", "id", "connected")} for peer in status["peers"]] == \
        [{"name": "beta", "id": beta.device_id, "connected": True}], \
        "the peers are the other devices only, named as in A's config: %s" % status["peers"]
    status = wait_syncthing(supervisor, lambda s: (folder_peer(s, FOLDER, "beta") or {}).get("completion_percent") == 100,
                            "beta complete")
    [folder] = status["folders"]
    assert folder["id"] == FOLDER and isinstance(folder["state"], str) and folder["state"]
    assert [peer["name"] for peer in folder["peers"]] == ["beta"], folder
    assert folder["peers"][0]["lag_ms"] == 0

    # A file written on A appears on B.
    (alpha.folder / "hello.txt").write_text("hello from alpha\n")
    assert wait_until(lambda: (beta.folder / "hello.txt").exists()
                      and (beta.folder / "hello.txt").read_text() == "hello from alpha\n", 20, 0.05), \
        "hello.txt never reached beta:\n" + alpha.log_tail() + beta.log_tail()

    # B falls behind: stopped, it keeps its connection, and A sees it lack the file A scanned.
    beta.pause()
    try:
        (alpha.folder / "while-stopped.txt").write_text("written while beta was stopped\n")
        assert wait_until(lambda: (alpha.completion(beta.device_id) or 100) < 100, 20, 0.02), \
            "A never counted beta behind:\n" + alpha.log_tail()
        behind_seen_here = time.monotonic()
        lags: List[int] = []

        def behind() -> bool:
            peer = folder_peer(syncthing_status(supervisor), FOLDER, "beta") or {}
            if (peer.get("completion_percent") or 100) < 100 and (peer.get("lag_ms") or 0) > 0:
                lags.append(int(peer["lag_ms"]))
            return bool(lags) and lags[-1] >= ALERT_MS + CHECK_MS
        assert wait_until(behind, 20, 0.05), "the watcher never reported beta behind long enough: %s" % lags
        assert lags == sorted(lags), "the lag only grows while beta stays behind: %s" % lags
        assert (metric(metrics(supervisor), "allegro_supervisor_syncthing_lag_seconds", folder=FOLDER, peer="beta")
                or 0) > 0

        # Behind for alert_ms while connected: stalled, never lost.
        fired = supervisor.wait_event("alert", timeout=10, alert="syncthing_folder_stalled", status="firing",
                                      subject="%s to beta" % FOLDER)[0]
        assert fired.seen - behind_seen_here >= ALERT_MS / 1000 - CHECK_MS / 1000 - TOLERANCE, \
            "not before alert_ms (a check's slack: A counted beta behind before this test saw it)"
        assert syncthing_status(supervisor)["peers"][0]["connected"] is True
        assert firing_in_log(supervisor, "syncthing_peer_lost") == []
    finally:
        beta.resume()
    resumed = time.monotonic()
    assert wait_until(lambda: (beta.folder / "while-stopped.txt").exists(), 20, 0.05), beta.log_tail()

    status = wait_syncthing(supervisor, lambda s: (folder_peer(s, FOLDER, "beta") or {}).get("completion_percent") == 100
                            and (folder_peer(s, FOLDER, "beta") or {}).get("lag_ms") == 0, "beta caught up")
    caught_up = time.monotonic()
    peer = folder_peer(status, FOLDER, "beta")
    assert peer is not None
    last = peer["last_catch_up_ms"]
    assert isinstance(last, int), peer
    assert last >= max(lags), "the stretch lasted at least the longest lag seen: %s < %s" % (last, max(lags))
    assert last >= (resumed - behind_seen_here) * 1000 - CHECK_MS - TOLERANCE * 1000, \
        "behind at least from when A counted it behind (less one check) until it ran again"
    assert last <= (caught_up - behind_seen_here) * 1000 + 10 * CHECK_MS, "no longer than it was behind (generous)"

    supervisor.wait_event("alert", timeout=10, alert="syncthing_folder_stalled", status="resolved",
                          subject="%s to beta" % FOLDER)
    wait_stream(rig, "syncthing_folder_stalled", "%s to beta" % FOLDER, ["firing", "resolved"])

    samples = metrics(supervisor)
    assert metric(samples, "allegro_supervisor_syncthing_up") == 1
    assert metric(samples, "allegro_supervisor_syncthing_peer_connected", peer="beta") == 1
    assert metric(samples, "allegro_supervisor_syncthing_completion_percent", folder=FOLDER, peer="beta") == 100
    assert metric(samples, "allegro_supervisor_syncthing_lag_seconds", folder=FOLDER, peer="beta") == 0
    assert firing_in_log(supervisor, "syncthing_unreachable") == []
    assert firing_in_log(supervisor, "syncthing_peer_lost") == []
    assert supervisor.stop() == 0


# -- (b) a peer lost and back -------------------------------------------------------------------------------


def test_stopping_b_raises_syncthing_peer_lost_on_the_stream_after_alert_ms_and_starting_b_again_resolves_it(
        rig: Rig) -> None:
    # gamma has no name (in its own config nor in alpha's): its alerts name it by its ID's first 7
    # characters.
    cluster = rig.cluster(["alpha", "beta", "gamma"], unnamed=["gamma"])
    alpha, beta, gamma = cluster["alpha"], cluster["beta"], cluster["gamma"]
    rig.start_synced(cluster, ["alpha", "beta", "gamma"])
    supervisor = rig.supervise(alpha)
    wait_syncthing(supervisor, lambda s: s.get("up") is True and all(
        (peer_of(s, peer.device_id) or {}).get("connected") for peer in (beta, gamma)), "up with beta and gamma")
    status = syncthing_status(supervisor)
    assert {peer["id"] for peer in status["peers"]} == {beta.device_id, gamma.device_id}, "never A itself"
    assert (peer_of(status, beta.device_id) or {}).get("name") == "beta"

    stopped_at = time.monotonic()
    beta.stop()
    gamma.stop()
    wait_syncthing(supervisor, lambda s: (peer_of(s, beta.device_id) or {}).get("connected") is False
                   and (peer_of(s, gamma.device_id) or {}).get("connected") is False, "beta and gamma disconnected",
                   timeout=10)
    lost = {subject: supervisor.wait_event("alert", timeout=15, alert="syncthing_peer_lost", status="firing",
                                           subject=subject)[0] for subject in ("beta", gamma.short_id)}
    for subject, line in lost.items():
        assert line.seen - stopped_at >= ALERT_MS / 1000 - TOLERANCE, "%s lost no sooner than alert_ms" % subject
    for subject in ("beta", gamma.short_id):
        wait_stream(rig, "syncthing_peer_lost", subject, ["firing"])
    samples = metrics(supervisor)
    assert metric(samples, "allegro_supervisor_syncthing_peer_connected", peer="beta") == 0
    assert metric(samples, "allegro_supervisor_syncthing_up") == 1
    assert syncthing_status(supervisor)["up"] is True, "Syncthing itself still answers"

    beta.start()
    gamma.start()
    for subject in ("beta", gamma.short_id):
        supervisor.wait_event("alert", timeout=30, alert="syncthing_peer_lost", status="resolved", subject=subject)
        wait_stream(rig, "syncthing_peer_lost", subject, ["firing", "resolved"])
    wait_syncthing(supervisor, lambda s: (peer_of(s, beta.device_id) or {}).get("connected") is True
                   and (peer_of(s, gamma.device_id) or {}).get("connected") is True, "both back", timeout=10)
    assert metric(metrics(supervisor), "allegro_supervisor_syncthing_peer_connected", peer="beta") == 1
    subjects = {record.subject for _, record in stream_alerts(rig, "syncthing_peer_lost")}
    assert subjects == {"beta", gamma.short_id}, "one alert per lost peer, never A: %s" % subjects
    assert firing_in_log(supervisor, "syncthing_unreachable") == []
    assert supervisor.stop() == 0


# -- (c) Syncthing as a supervised service --------------------------------------------------------------------


def test_a_syncthing_run_by_the_supervisor_is_restarted_when_killed_9_or_stopped_and_syncthing_unreachable_fires_and_resolves(
        rig: Rig) -> None:
    cluster = rig.cluster(["alpha", "beta"])
    alpha, beta = cluster["alpha"], cluster["beta"]
    beta.start()
    # A plain HTTP GET: /rest/noauth/health where it answers without a key (1.20 on), else /meta.js
    # (1.19 has no /rest/noauth/health and answers 403 to any /rest/ GET without the key).
    probe_url = alpha.api_url + beta.probe_path()
    check_ms, alert_ms = 200, 600
    service = {"name": "syncthing", "command": alpha.command(), "environment": alpha.environment(),
               "stop_grace_ms": 1000,
               "probe": {"http": probe_url, "interval_ms": 200, "timeout_ms": 500, "failures": 3, "grace_ms": 10000}}
    # The first restart waits 1.6-2.4 s: A stays unreachable well past alert_ms plus a check, so
    # syncthing_unreachable surely fires (and resolves once A is back).
    supervisor = rig.supervise(alpha, [service], first_restart_ms=2000, max_restart_ms=4000, healthy_ms=1000,
                               syncthing_check_ms=check_ms, syncthing_alert_ms=alert_ms)

    def steady(restarts: int) -> Dict[str, Any]:
        service_status = supervisor.wait_status("syncthing", lambda s: s["up"] and s["restarts"] == restarts, timeout=30)
        wait_syncthing(supervisor, lambda s: s.get("up") is True, "up", timeout=20)
        # Whatever fired while A started (it is unreachable until it serves) has resolved.
        assert wait_until(lambda: len(supervisor.alerts("syncthing_unreachable", "firing"))
                          == len(supervisor.alerts("syncthing_unreachable", "resolved")), 10)
        return service_status

    first_pid = int(steady(0)["pid"])
    assert wait_until(lambda: alpha.connected(beta.device_id), 30, 0.05)
    fired_before = len(supervisor.alerts("syncthing_unreachable", "firing"))

    # kill -9: restarted after its wait; unreachable the whole time, so the alert fires and resolves.
    killed_at = time.monotonic()
    os.kill(first_pid, signal.SIGKILL)
    restart = supervisor.wait_event("service_restart", timeout=20, service="syncthing")[0]
    assert restart.get("why") == "killed by signal 9 (SIGKILL)", restart
    fired = supervisor.wait_event("alert", timeout=20, count=fired_before + 1, alert="syncthing_unreachable",
                                  status="firing", subject="syncthing")[fired_before]
    assert fired.seen - killed_at >= alert_ms / 1000 - TOLERANCE, "not before alert_ms"
    second_pid = int(steady(1)["pid"])
    assert second_pid != first_pid and not alive(first_pid)
    assert syncthing_status(supervisor)["up"] is True
    wait_stream(rig, "syncthing_unreachable", "syncthing", ["firing", "resolved"] * (fired_before + 1))
    assert wait_until(lambda: alpha.connected(beta.device_id), 30, 0.05), "A is back with its peer"

    # SIGSTOP (the whole group: the monitor and the process serving): the probe fails, the
    # supervisor stops it (SIGKILL after the grace) and starts it again.
    os.killpg(second_pid, signal.SIGSTOP)
    try:
        restart = supervisor.wait_event("service_restart", timeout=30, count=2, service="syncthing")[1]
        assert restart.get("why", "").startswith("probe failing"), restart
        assert supervisor.alerts("service_unhealthy", "firing", "syncthing")
        supervisor.wait_event("alert", timeout=20, count=fired_before + 2, alert="syncthing_unreachable",
                              status="firing", subject="syncthing")
    finally:
        if alive(second_pid):
            try:
                os.killpg(second_pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    third_pid = int(steady(2)["pid"])
    assert third_pid not in (first_pid, second_pid) and not alive(second_pid)
    wait_stream(rig, "syncthing_unreachable", "syncthing", ["firing", "resolved"] * (fired_before + 2))
    assert alpha.healthy()
    assert supervisor.stop() == 0
    assert not alive(third_pid)


# -- (d) only reading -------------------------------------------------------------------------------------------


def test_the_watcher_only_reads_a_s_rest_api_with_get_and_a_s_folders_and_devices_are_unchanged(rig: Rig) -> None:
    cluster = rig.cluster(["alpha", "beta"])
    alpha, beta = cluster["alpha"], cluster["beta"]
    rig.start_synced(cluster, ["alpha", "beta"])
    proxy = RecordingProxy(alpha.api_url)
    try:
        before = alpha.config_lists()
        rest_before = (alpha.get("/rest/config/folders"), alpha.get("/rest/config/devices"))
        mtime_before = alpha.config_path.stat().st_mtime_ns

        supervisor = rig.supervise(alpha, url=proxy.url)
        wait_syncthing(supervisor, lambda s: s.get("up") is True and bool((peer_of(s, beta.device_id) or {})
                                                                           .get("connected")), "up through the proxy")
        # Some life while it watches: a file each way, then a few more checks.
        (alpha.folder / "from-alpha.txt").write_text("a\n")
        (beta.folder / "from-beta.txt").write_text("b\n")
        assert wait_until(lambda: (beta.folder / "from-alpha.txt").exists()
                          and (alpha.folder / "from-beta.txt").exists(), 20, 0.05)
        seen = len(proxy.snapshot())
        assert wait_until(lambda: len(proxy.snapshot()) >= seen + 10, 20, 0.05), "it keeps checking"
        assert supervisor.stop() == 0
    finally:
        proxy.close()

    requests = proxy.snapshot()
    assert requests, "the watcher asked Syncthing"
    assert {method for method, _, _ in requests} == {"GET"}, sorted({(m, p) for m, p, _ in requests if m != "GET"})
    for method, path, headers in requests:
        assert path.startswith("/rest/"), path
        assert headers.get("x-api-key") == alpha.api_key or headers.get("authorization") == "Bearer " + alpha.api_key, \
            "%s %s without the API key" % (method, path)
    print("\nthe watcher's requests: %s" % sorted({re.sub(r"=[^&]*", "=", path) for _, path, _ in requests}))

    assert alpha.config_lists() == before, "A's folders and devices are what they were"
    assert (alpha.get("/rest/config/folders"), alpha.get("/rest/config/devices")) == rest_before
    assert alpha.config_path.stat().st_mtime_ns == mtime_before, "A's config.xml was not written"
