"""Real Syncthing instances on loopback for the tests (the Debian `syncthing` binary, 1.19 or later).

Each instance has its own directory under a temporary root: `home/` (`syncthing generate --home`:
certificate, key, config.xml, and the index database once it runs), `folder/` (the shared
folder), `user/` (the HOME it runs with, so nothing outside the temporary root is touched) and
`apikey` (its REST API key, mode 0600, for Allegro to read). config.xml is edited before the
first start: the GUI/REST API on 127.0.0.1:<free port> with a known API key, the sync protocol on
tcp://127.0.0.1:<free port> only, every way out to the internet off (global discovery, local
announcements, relays, NAT traversal, crash and usage reporting, upgrades), every other instance
of the cluster as a peer at its static loopback address, and one folder (`shared`) shared by all
of them, with the file-system watcher on (1 s delay) and a short rescan interval.

`command()` and `environment()` are what runs it (`syncthing serve --home=DIR --no-browser
--no-restart --no-upgrade`), so a supervisor can run it as a service. It is two processes in one
group, as every 1.19 `serve`: a monitor (the pid started) and its child that serves; with
--no-restart the monitor exits when the child does (status 255 when the child is killed), and
SIGTERM to either stops both cleanly (exit 0). `start()` runs it here in a process group of its
own, and `stop()`/`kill()`/`pause()`/`resume()` signal only that group.

Found on 1.19.2 (what a client of its REST API must know): there is no /rest/noauth/health (404
with the key); every /rest/ path without the key, or with a wrong one, is 403 "CSRF Error"; so a
plain HTTP probe can only use a path outside /rest/ (`probe_path()`: /meta.js). The key goes in
the X-API-Key header. /rest/system/connections lists the device itself too (connected false).
A peer that has never sent an index (its sequence 0) counts as 100 % complete in
/rest/db/completion even when it lacks files: the tests seed every folder from A first.

`python3 syncthing_fixture.py` checks it standalone: two instances connect and a file written in
one's folder appears in the other's, and the REST answers Allegro reads are printed."""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence
from loopback_ports import free_port

SYNCTHING = shutil.which("syncthing")
FOLDER_ID = "shared"
RESCAN_INTERVAL_S = 10
WATCHER_DELAY_S = 1

# Loopback only, never through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))



def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """The condition's first truthy value, or its last value at the timeout."""
    deadline = time.monotonic() + timeout
    value = condition()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = condition()
    return value


def _set(parent: ET.Element, tag: str, text: str) -> None:
    """Sets the text of `parent`'s only child `tag` (made if missing; duplicates removed)."""
    children = parent.findall(tag)
    for extra in children[1:]:
        parent.remove(extra)
    child = children[0] if children else ET.SubElement(parent, tag)
    child.text = text


class Syncthing:
    """One instance. `generate()` first (its device id is known from then on), `configure(peers)`
    once every instance of the cluster is generated, then `start()` or run `command()` elsewhere."""

    def __init__(self, root: Path, name: str, folder_id: str = FOLDER_ID) -> None:
        if SYNCTHING is None:
            raise RuntimeError("syncthing is not on PATH")
        self.binary: str = SYNCTHING
        self.name, self.folder_id = name, folder_id
        self.dir = root / name
        self.home = self.dir / "home"
        self.folder = self.dir / "folder"
        self.user_home = self.dir / "user"
        self.api_key_file = self.dir / "apikey"
        self.log_path = self.dir / "syncthing.log"
        self.gui_port = free_port()
        self.listen_port = free_port()
        self.api_key = secrets.token_hex(16)
        self.device_id = ""
        # Without a name in its own config (so it announces none) and in its peers' ones.
        self.unnamed = False
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self._log: Optional[Any] = None

    # -- set-up ------------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return "http://127.0.0.1:%d" % self.gui_port

    @property
    def listen_address(self) -> str:
        return "tcp://127.0.0.1:%d" % self.listen_port

    @property
    def config_path(self) -> Path:
        return self.home / "config.xml"

    @property
    def short_id(self) -> str:
        return self.device_id[:7]

    def environment(self) -> Dict[str, str]:
        """What it runs with besides PATH: a HOME of its own, no default folder, no restart by its
        monitor process, no upgrade, and a fixed SHA-256 package (STHASHING): without it each
        start spends about a second benchmarking two."""
        return {"HOME": str(self.user_home), "STNODEFAULTFOLDER": "1", "STNORESTART": "1", "STNOUPGRADE": "1",
                "STHASHING": "minio"}

    def command(self) -> List[str]:
        return [self.binary, "serve", "--home=%s" % self.home, "--no-browser", "--no-restart", "--no-upgrade",
                "--logflags=3"]

    def _full_environment(self) -> Dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if key.lower() not in ("http_proxy", "https_proxy", "all_proxy") and not key.startswith("ST")}
        env.update(self.environment())
        env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        return env

    def generate(self) -> str:
        for path in (self.home, self.folder, self.user_home):
            path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run([self.binary, "generate", "--home=%s" % self.home, "--no-default-folder",
                                 "--skip-port-probing"], env=self._full_environment(), capture_output=True,
                                text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError("syncthing generate failed: %s%s" % (result.stdout, result.stderr))
        for line in (result.stdout + result.stderr).splitlines():
            if "Device ID:" in line:
                self.device_id = line.split("Device ID:", 1)[1].strip()
        if not self.device_id:
            raise RuntimeError("no device id in: %s%s" % (result.stdout, result.stderr))
        return self.device_id

    def configure(self, peers: Sequence["Syncthing"], peer_names: Optional[Dict[str, str]] = None,
                  rescan_interval_s: int = RESCAN_INTERVAL_S, watcher_delay_s: int = WATCHER_DELAY_S) -> None:
        """Writes config.xml: `peers` known at their static addresses (named `peer_names[id]`,
        default their own names; "" leaves one unnamed) and the folder shared with all of them."""
        names = peer_names or {}
        tree = ET.parse(self.config_path)
        config = tree.getroot()
        defaults = config.find("defaults")
        assert defaults is not None, "config.xml has no <defaults> (syncthing older than 1.18?)"
        default_folder, default_device = defaults.find("folder"), defaults.find("device")
        assert default_folder is not None and default_device is not None

        for element in config.findall("folder"):
            config.remove(element)
        for element in config.findall("device"):
            if element.get("id") != self.device_id:
                config.remove(element)
        own = [element for element in config.findall("device") if element.get("id") == self.device_id]
        assert len(own) == 1, "config.xml lacks this device"
        own[0].set("name", "" if self.unnamed else self.name)

        position = list(config).index(own[0])
        folder = ET.fromstring(ET.tostring(default_folder))
        folder.set("id", self.folder_id)
        folder.set("label", self.folder_id)
        folder.set("path", str(self.folder))
        folder.set("type", "sendreceive")
        folder.set("rescanIntervalS", str(rescan_interval_s))
        folder.set("fsWatcherEnabled", "true")
        folder.set("fsWatcherDelayS", str(watcher_delay_s))
        for element in folder.findall("device"):
            folder.remove(element)
        for index, device_id in enumerate([self.device_id] + [peer.device_id for peer in peers]):
            member = ET.Element("device", {"id": device_id, "introducedBy": ""})
            ET.SubElement(member, "encryptionPassword").text = ""
            folder.insert(index, member)
        config.insert(position, folder)

        for offset, peer in enumerate(peers, start=2):
            device = ET.fromstring(ET.tostring(default_device))
            device.set("id", peer.device_id)
            device.set("name", names.get(peer.device_id, peer.name))
            for element in device.findall("address"):
                device.remove(element)
            address = ET.Element("address")
            address.text = peer.listen_address
            device.insert(0, address)
            config.insert(position + offset, device)

        gui = config.find("gui")
        assert gui is not None
        gui.set("enabled", "true")
        gui.set("tls", "false")
        _set(gui, "address", "127.0.0.1:%d" % self.gui_port)
        _set(gui, "apikey", self.api_key)

        options = config.find("options")
        assert options is not None
        settings = {
            "listenAddress": self.listen_address,
            "globalAnnounceEnabled": "false",
            "localAnnounceEnabled": "false",
            "relaysEnabled": "false",
            "natEnabled": "false",
            "startBrowser": "false",
            "urAccepted": "-1",
            "urSeen": "3",
            "autoUpgradeIntervalH": "0",
            "crashReportingEnabled": "false",
            "announceLANAddresses": "false",
            "restartOnWakeup": "false",
            "reconnectionIntervalS": "1",
            "setLowPriority": "false",
        }
        for tag, text in settings.items():
            _set(options, tag, text)
        for element in options.findall("unackedNotificationID"):
            options.remove(element)
        tree.write(self.config_path, encoding="unicode")
        self.config_path.chmod(0o600)

        self.api_key_file.write_text(self.api_key + "\n")
        self.api_key_file.chmod(0o600)
        marker = self.folder / ".stfolder"
        marker.mkdir(parents=True, exist_ok=True)

    # -- the process ---------------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> None:
        """Runs it in a process group of its own (output to `log_path`) and waits for its REST API."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self._close_log()
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, env=self._full_environment(),
                                        start_new_session=True)
        if not self.wait_healthy(timeout):
            raise RuntimeError("syncthing %s: no REST API within %s s (exit %s); log:\n%s"
                               % (self.name, timeout, self.process.poll(), self.log_tail()))

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def _signal_group(self, number: int) -> None:
        # Only the group this object started, and only while its leader is not reaped yet
        # (poll() is None), so the number cannot name a later process group.
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, number)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (Syncthing shuts down cleanly), SIGKILL after `timeout`."""
        if self.process is None:
            return
        self._signal_group(signal.SIGCONT)
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(10)
        self._close_log()

    def kill(self) -> None:
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(10)
        self._close_log()

    def pause(self) -> None:
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except FileNotFoundError:
            return ""

    # -- the REST API ------------------------------------------------------------------------------

    def get(self, path: str, query: Optional[Dict[str, str]] = None, timeout: float = 5) -> Any:
        """GET `path` (with the API key, `query` as its query string) as JSON; raises on an error
        status or no answer."""
        url = self.api_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(url, headers={"X-API-Key": self.api_key})
        with OPENER.open(request, timeout=timeout) as response:
            return json.loads(response.read())

    def healthy(self) -> bool:
        """The REST API answers: GET /rest/system/ping with the API key is 200. (1.19 has no
        /rest/noauth/health: with the key it is 404, and without a key every /rest/ path is 403
        "CSRF Error"; later versions answer it 200 without a key.)"""
        request = urllib.request.Request(self.api_url + "/rest/system/ping", headers={"X-API-Key": self.api_key})
        try:
            with OPENER.open(request, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def status_without_key(self, path: str) -> int:
        """The status of a GET of `path` without any header (what a plain HTTP probe sees), 0
        with no answer."""
        try:
            with OPENER.open(self.api_url + path, timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except (OSError, urllib.error.URLError):
            return 0

    def probe_path(self) -> str:
        """A path a plain HTTP GET (no header) finds 2xx while it serves: /rest/noauth/health
        where this version has it without a key, else /meta.js (the GUI's tiny script, served by
        the same HTTP server, outside /rest/ so without the CSRF check)."""
        return "/rest/noauth/health" if self.status_without_key("/rest/noauth/health") == 200 else "/meta.js"

    def wait_healthy(self, timeout: float) -> bool:
        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                return True    # exited: stop waiting; the caller sees healthy() is false
            return self.healthy()
        return bool(wait_for(up, timeout)) and self.healthy()

    def connected(self, peer_id: str) -> bool:
        try:
            connections = self.get("/rest/system/connections")["connections"]
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return False
        return bool(connections.get(peer_id, {}).get("connected"))

    def completion(self, peer_id: str) -> Optional[float]:
        try:
            return float(self.get("/rest/db/completion", {"folder": self.folder_id, "device": peer_id})["completion"])
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return None

    def config_lists(self) -> Dict[str, Any]:
        """The folders and devices of config.xml, parsed: each element as (tag, attributes,
        children) all the way down, in file order."""
        def canonical(element: ET.Element) -> Any:
            return [element.tag, sorted(element.attrib.items()), (element.text or "").strip(),
                    [canonical(child) for child in element]]
        config = ET.parse(self.config_path).getroot()
        return {"folders": [canonical(element) for element in config.findall("folder")],
                "devices": [canonical(element) for element in config.findall("device")]}


class Cluster:
    """Instances sharing one folder, each knowing all the others; `unnamed` are instances with no
    name at all: none in their own config (so they announce none when they connect) and none in
    the others' (name=""). A peer only unnamed in the others' config would not stay so: Syncthing
    fills in an empty device name from the name the peer announces, and saves its config."""

    def __init__(self, root: Path, names: Sequence[str], folder_id: str = FOLDER_ID,
                 unnamed: Sequence[str] = ()) -> None:
        self.instances: Dict[str, Syncthing] = {name: Syncthing(root, name, folder_id) for name in names}
        for instance in self.instances.values():
            instance.unnamed = instance.name in unnamed
            instance.generate()
        for instance in self.instances.values():
            peers = [other for other in self.instances.values() if other is not instance]
            instance.configure(peers, {peer.device_id: ("" if peer.name in unnamed else peer.name) for peer in peers})

    def __getitem__(self, name: str) -> Syncthing:
        return self.instances[name]

    def __iter__(self) -> Iterator[Syncthing]:
        return iter(self.instances.values())

    def wait_connected(self, timeout: float = 30) -> bool:
        """Every instance that this process runs sees every other one that it runs connected."""
        running = [instance for instance in self if instance.pid is not None]
        return bool(wait_for(lambda: all(a.connected(b.device_id) for a in running for b in running if a is not b),
                             timeout, interval=0.1))

    def stop(self) -> None:
        for instance in self:
            try:
                instance.stop()
            except Exception:           # noqa: BLE001 - a teardown goes on to the next one
                instance.kill()


def main() -> int:
    """The standalone check: two instances connect, a file written on alpha appears on beta, and
    the REST answers Allegro reads (printed)."""
    if SYNCTHING is None:
        print("syncthing is not on PATH")
        return 2
    print(subprocess.run([SYNCTHING, "--version"], capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory(prefix="syncthing-fixture-") as temp:
        cluster = Cluster(Path(temp), ["alpha", "beta"])
        alpha, beta = cluster["alpha"], cluster["beta"]
        try:
            started = time.monotonic()
            alpha.start()
            beta.start()
            print("both REST APIs up in %.2f s" % (time.monotonic() - started))
            assert cluster.wait_connected(30), "not connected:\n" + alpha.log_tail() + beta.log_tail()
            print("connected %.2f s after the start" % (time.monotonic() - started))
            assert (alpha.api_key_file.stat().st_mode & 0o777) == 0o600
            # An `events` filter is a subscription of its own, made by its first request: made now,
            # it holds the events of the sync below.
            events = {"events": "LocalIndexUpdated,FolderCompletion", "since": "0", "timeout": "0"}
            alpha.get("/rest/events", events)
            written = time.monotonic()
            (alpha.folder / "hello.txt").write_text("hello from alpha\n")
            arrived = wait_for(lambda: (beta.folder / "hello.txt").exists()
                               and (beta.folder / "hello.txt").read_text() == "hello from alpha\n", 30)
            assert arrived, "the file never reached beta:\n" + alpha.log_tail() + beta.log_tail()
            print("file on beta %.2f s after it was written on alpha" % (time.monotonic() - written))
            assert wait_for(lambda: alpha.completion(beta.device_id) == 100, 15)
            shapes = {
                "/rest/system/ping": alpha.get("/rest/system/ping"),
                "/rest/system/status": alpha.get("/rest/system/status"),
                "/rest/system/connections": alpha.get("/rest/system/connections"),
                "/rest/db/completion": alpha.get("/rest/db/completion", {"folder": FOLDER_ID, "device": beta.device_id}),
                "/rest/db/status": alpha.get("/rest/db/status", {"folder": FOLDER_ID}),
                "/rest/config/folders": alpha.get("/rest/config/folders"),
                "/rest/config/devices": alpha.get("/rest/config/devices"),
                "/rest/events?events=LocalIndexUpdated,FolderCompletion (the last 4)": alpha.get("/rest/events", events)[-4:],
            }
            try:
                alpha.get("/rest/db/completion", {"folder": "nope", "device": beta.device_id})
            except urllib.error.HTTPError as error:
                shapes["/rest/db/completion unknown folder"] = "%d %s" % (error.code, error.read().decode().strip())
            try:
                OPENER.open(alpha.api_url + "/rest/system/status", timeout=5)
            except urllib.error.HTTPError as error:
                shapes["/rest/system/status without key"] = "%d %s" % (error.code, error.read().decode().strip())
            for path in ("/rest/noauth/health", "/rest/system/ping", "/meta.js"):
                shapes["GET %s without key: status" % path] = alpha.status_without_key(path)
            try:
                alpha.get("/rest/noauth/health")
            except urllib.error.HTTPError as error:
                shapes["/rest/noauth/health with the key"] = "%d %s" % (error.code, error.read().decode().strip())
            try:
                alpha.get("/rest/system/status")
                request = urllib.request.Request(alpha.api_url + "/rest/system/status", headers={"X-API-Key": "wrong"})
                OPENER.open(request, timeout=5)
            except urllib.error.HTTPError as error:
                shapes["/rest/system/status wrong key"] = "%d %s" % (error.code, error.read().decode().strip())
            print(json.dumps(shapes, indent=1))
        finally:
            cluster.stop()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
