"""Fixtures that start the real `allegro relay` binary on loopback with its own data directory."""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def allegro_binary():
    path = os.environ.get("ALLEGRO_BIN")
    if path:
        return path
    bin_dir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
    return os.path.join(bin_dir, "allegro")


def terminate(process):
    """Stops a process gracefully (SIGTERM), and at once (SIGKILL) if it takes over 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Relay:
    """A running relay; `restart()` and `crash()` keep its port and data directory. `http` is its
    control port (HOST:PORT, port 0 picks one; `http_address` is then the one bound) or "off"."""

    def __init__(self, binary, data, listen="127.0.0.1:0", extra=(), http="off"):
        self.binary, self.data, self.extra, self.http = binary, data, list(extra), http
        self.http_address = None
        self._start(listen)

    def _start(self, listen):
        self.log_path = self.data.parent / ("relay-%d.log" % time.monotonic_ns())
        self.log = open(self.log_path, "wb")
        http = self.http_address or self.http
        # The relay's own alerts and daily report stay off unless a test asks for them (a test
        # that counts records must not meet a report because it ran across 08:00 UTC).
        watch = [] if any(str(a).startswith("alert_interval_ms=") for a in self.extra) else ["--set", "alert_interval_ms=0"]
        self.process = subprocess.Popen([self.binary, "relay", "--listen", listen, "--http", http, "--data", str(self.data)] + watch + self.extra,
                                        stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = self.log_path.read_text()
            match = re.search(r"event=listening .*?address=(\S+)", text)
            http_match = re.search(r"event=http_listening .*?address=(\S+)", text)
            if match and (http == "off" or http_match):
                self.address = match.group(1)
                self.http_address = http_match.group(1) if http_match else None
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError("relay did not start: " + self.log_path.read_text())

    def stop(self):
        terminate(self.process)
        self.log.close()

    def crash(self):
        self.process.kill()
        self.process.wait()
        self.log.close()

    def restart(self):
        self._start(self.address)

    def tail(self, count, start="earliest", timeout=120):
        """Records from the relay as dicts, via `allegro tail` (the real collector)."""
        result = subprocess.run([self.binary, "tail", "--relay", self.address, "--from", start, "--count", str(count),
                                 "--format", "jsonl"], capture_output=True, timeout=timeout)
        assert result.returncode == 0, result.stderr.decode()
        return [json.loads(line) for line in result.stdout.decode().splitlines() if '"relay_seq"' in line]


@pytest.fixture(scope="session")
def binary():
    return allegro_binary()


@pytest.fixture
def relay(binary, tmp_path):
    running = Relay(binary, tmp_path / "data")
    yield running
    running.stop()


@pytest.fixture
def relays(binary, tmp_path):
    """Starts relays on demand: `relays.start("alpha", "--set", ..., http="127.0.0.1:0")` (the name
    becomes its relay_id and its data directory); all are stopped at the end."""

    class Relays:
        def __init__(self):
            self.started = []

        def start(self, name, *extra, http="off"):
            running = Relay(binary, tmp_path / name, extra=["--set", "relay_id=" + name] + list(extra), http=http)
            self.started.append(running)
            return running

    started = Relays()
    yield started
    for running in started.started:
        if running.process.poll() is None:
            try:
                running.process.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
        running.stop()
