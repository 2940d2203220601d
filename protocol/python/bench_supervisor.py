"""The supervisor's costs (issue 19): crash-to-serving time of the relay under `allegro supervise`,
and the supervisor's own CPU and memory at idle with ten services.

    .venv/bin/python protocol/python/bench_supervisor.py --allegro .build/release/allegro [--kills 50] [--idle-seconds 60]

1. Crash to serving: the relay is the supervisor's service (probe: its /health every 500 ms), under
   load from a producer in this process (one record every 2 ms). `--kills` times: SIGKILL to the
   relay, then, every 2 ms, a new connection tries HELLO and PUBLISH of one record; serving is the
   first ACK. Reported: kill -> the supervisor's new relay process exists, kill -> first ACK, p50,
   p99, max. Between kills it waits until the relay has run `supervisor.healthy_ms` (1000 here), so
   each crash is a first restart (the schedule's first wait, `first_restart_ms` = 100); a crash
   loop would wait longer, by design. At the end every record the producer had acked is read back
   (nothing acked lost).
2. Idle: ten services (`sleep`), five of them probed (tcp, to a listener in this process, every
   5 s); the supervisor's CPU time (utime + stime from /proc) over `--idle-seconds` and its resident
   memory (VmRSS) at the end.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from allegro_client import wire  # noqa: E402
from allegro_client.producer import Producer  # noqa: E402

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: List[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Supervisor:
    """`allegro supervise` with a file of its own, its log in the work directory."""

    def __init__(self, binary: str, work: Path, text: str) -> None:
        self.work = work
        (work / "allegro.yaml").write_text(text)
        self.log = work / "supervise.log"
        self.process = subprocess.Popen([binary, "supervise", "--config", str(work / "allegro.yaml")],
                                        stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"), start_new_session=True)
        self.address = self.wait_line("event=http_listening").split("address=", 1)[1].split()[0]

    def wait_line(self, needle: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if needle in line:
                    return line
            time.sleep(0.02)
        raise RuntimeError("no %r in the supervisor's log:\n%s" % (needle, self.log.read_text()[-3000:]))

    def status(self) -> Dict[str, Any]:
        with OPENER.open("http://%s/v1/status" % self.address, timeout=5) as answer:
            return {service["name"]: service for service in json.loads(answer.read())["services"]}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def serving(address: Tuple[str, int], sequence: int) -> bool:
    """A new producer connection's HELLO and PUBLISH of one record are acknowledged."""
    try:
        with socket.create_connection(address, timeout=1) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(wire.hello(b"bench-probe") + wire.publish([wire.record(sequence, time.time_ns(), b"probe", b"probe",
                                                                                  b"text/plain", b"x")]))
            decoder = wire.Decoder()
            while True:
                data = sock.recv(65536)
                if not data:
                    return False
                decoder.feed(data)
                for _, fields in decoder.frames():
                    if fields["type"] == "ACK":
                        return True
                    if fields["type"] == "ERROR":
                        return False
    except OSError:
        return False


def crash_to_serving(binary: str, work: Path, kills: int) -> Dict[str, Any]:
    listen, http = free_port(), free_port()
    relay_data = work / "relay"
    supervisor = Supervisor(binary, work, """
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
data_dir: "%s"
alert_interval_ms: 0
daily_report_at: "off"
supervisor:
  http: "127.0.0.1:0"
  data_dir: "%s"
  healthy_ms: 1000
services:
  - name: relay
    command: ["allegro", "relay", "--config", "%s"]
    probe: {http: "http://127.0.0.1:%d/health", interval_ms: 500, timeout_ms: 500, failures: 3, grace_ms: 10000}
""" % (listen, http, relay_data, work / "supervisor", work / "allegro.yaml", http))
    address = ("127.0.0.1", listen)
    try:
        deadline = time.monotonic() + 30
        while not serving(address, 1):
            if time.monotonic() > deadline:
                raise RuntimeError("the relay never served")
            time.sleep(0.05)
        producer = Producer(["127.0.0.1:%d" % listen], producer_id="bench-load")
        stop = threading.Event()
        emitted = [0]

        def load() -> None:
            while not stop.is_set():
                producer.emit({"n": emitted[0]}, session="load", kind="bench")
                emitted[0] += 1
                time.sleep(0.002)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        to_process: List[float] = []
        to_serving: List[float] = []
        probe_sequence = 10
        for _ in range(kills):
            # Each crash a first restart: the relay has run the healthy period.
            while True:
                relay = supervisor.status()["relay"]
                if relay["up"] and relay["pid"]:
                    break
                time.sleep(0.05)
            time.sleep(1.2)
            old = supervisor.status()["relay"]["pid"]
            killed = time.monotonic()
            os.kill(old, signal.SIGKILL)
            new_pid: Optional[float] = None
            while True:
                probe_sequence += 1
                if new_pid is None:
                    pid = supervisor.status()["relay"].get("pid")
                    if pid and pid != old:
                        new_pid = time.monotonic()
                if serving(address, probe_sequence):
                    break
                time.sleep(0.002)
            served = time.monotonic()
            to_process.append(((new_pid or served) - killed) * 1000)
            to_serving.append((served - killed) * 1000)
        stop.set()
        loader.join()
        assert producer.flush(60), "the producer's records were not all acknowledged"
        acked = emitted[0]
        producer.close()
        lost = missing_records(binary, "127.0.0.1:%d" % listen, acked)
        return {"kills": kills, "to_process_ms": to_process, "to_serving_ms": to_serving, "records_acked": acked,
                "records_missing": lost}
    finally:
        supervisor.stop()


def missing_records(binary: str, relay: str, count: int) -> int:
    """How many of the load's records 0 ... count-1 a reader from the beginning does not find."""
    done = subprocess.run([binary, "tail", "--relay", relay, "--from", "earliest", "--format", "jsonl",
                           "--no-reconnect", "--idle-exit-ms", "2000"], capture_output=True, text=True, timeout=300)
    seen = set()
    for line in done.stdout.splitlines():
        event = json.loads(line)
        if event.get("kind") == "bench":
            seen.add(json.loads(event["payload"])["n"])
    return len(set(range(count)) - seen)


def idle(binary: str, work: Path, seconds: float) -> Dict[str, Any]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.5)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
                connection.close()
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    services = []
    for index in range(10):
        service = '  - name: s%d\n    command: ["sleep", "100000"]\n' % index
        if index < 5:
            service += '    probe: {tcp: "127.0.0.1:%d", interval_ms: 5000}\n' % port
        services.append(service)
    supervisor = Supervisor(binary, work, 'supervisor:\n  http: "127.0.0.1:0"\n  data_dir: "%s"\n  relay: "off"\nservices:\n%s'
                            % (work / "supervisor", "".join(services)))
    try:
        time.sleep(3)
        ticks = os.sysconf("SC_CLK_TCK")

        def cpu() -> float:
            fields = Path("/proc/%d/stat" % supervisor.process.pid).read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks

        before, started = cpu(), time.monotonic()
        time.sleep(seconds)
        used, elapsed = cpu() - before, time.monotonic() - started
        rss = [line for line in Path("/proc/%d/status" % supervisor.process.pid).read_text().splitlines()
               if line.startswith("VmRSS")][0].split()[1]
        threads = len(os.listdir("/proc/%d/task" % supervisor.process.pid))
        up = sum(1 for service in supervisor.status().values() if service["up"])
        return {"seconds": elapsed, "cpu_seconds": used, "cpu_percent": 100 * used / elapsed, "rss_kib": int(rss),
                "threads": threads, "services_up": up}
    finally:
        stop.set()
        supervisor.stop()
        listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--allegro", required=True)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-supervisor-") as scratch:
        (Path(scratch) / "crash").mkdir()
        (Path(scratch) / "idle").mkdir()
        crash = crash_to_serving(args.allegro, Path(scratch) / "crash", args.kills)
        quiet = idle(args.allegro, Path(scratch) / "idle", args.idle_seconds)
    print("## Crash to serving, %d kills of the relay under load" % crash["kills"])
    print("| ms | p50 | p99 | max | mean |\n| --- | --- | --- | --- | --- |")
    for label, values in (("kill -> new relay process", crash["to_process_ms"]), ("kill -> first ACK", crash["to_serving_ms"])):
        print("| %s | %.0f | %.0f | %.0f | %.0f |" % (label, statistics.median(values), percentile(values, 0.99), max(values),
                                                     statistics.mean(values)))
    print("records acked under load: %d, missing when read back: %d" % (crash["records_acked"], crash["records_missing"]))
    print("\n## Idle, ten services (five probed every 5 s)")
    print("CPU %.3f s in %.0f s (%.3f %%), RSS %d KiB, %d threads, %d services up" % (
        quiet["cpu_seconds"], quiet["seconds"], quiet["cpu_percent"], quiet["rss_kib"], quiet["threads"], quiet["services_up"]))


if __name__ == "__main__":
    main()
