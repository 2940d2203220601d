#!/usr/bin/env python3
"""Latency of the HTTP control port's endpoints, idle and while producers push.

Starts the real `allegro relay` (release build) on loopback with a scratch data directory,
pushes records with sessions, then times sequential GETs of /health, /status, /metrics and
/sessions over one keep-alive connection; then again while `allegro push` streams records.

    python3 Benchmarks/scripts/control_scrape.py [--allegro PATH] [--requests 300]
"""
import argparse
import http.client
import os
import re
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_relay(binary, data):
    log = open(os.path.join(data, "relay.log"), "wb")
    process = subprocess.Popen([binary, "relay", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                                "--data", os.path.join(data, "d"), "--durable", "timmy"],
                               stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = open(log.name).read()
        data_plane = re.search(r"event=listening .*?address=(\S+)", text)
        control = re.search(r"event=http_listening .*?address=(\S+)", text)
        if data_plane and control:
            return process, data_plane.group(1), control.group(1)
        time.sleep(0.01)
    raise RuntimeError("relay did not start: " + open(log.name).read())


def push(binary, relay, count, session):
    lines = "".join('{"turn":%d,"text":"%s"}\n' % (i, "x" * 100) for i in range(count)).encode()
    subprocess.run([binary, "push", "--relay", relay, "--session", session, "--kind", "model_turn"],
                   input=lines, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def measure(control, requests):
    host, port = control.rsplit(":", 1)
    rows = []
    for path in ["/health", "/status", "/metrics", "/sessions"]:
        connection = http.client.HTTPConnection(host, int(port))
        times = []
        size = 0
        for _ in range(requests):
            started = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            size = len(response.read())
            times.append(time.perf_counter() - started)
        connection.close()
        times.sort()
        rows.append((path, size, times[len(times) // 2] * 1e6, times[int(len(times) * 0.99) - 1] * 1e6))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allegro", default=os.path.join(ROOT, ".build", "release", "allegro"))
    parser.add_argument("--requests", type=int, default=300)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        process, relay, control = start_relay(arguments.allegro, scratch)
        try:
            for index in range(20):
                push(arguments.allegro, relay, 500, "session-%d" % index)
            print("path | bytes | p50_us | p99_us | while")
            for row in measure(control, arguments.requests):
                print("%s | %d | %.0f | %.0f | idle" % row)
            loader = threading.Thread(target=push, args=(arguments.allegro, relay, 2_000_000, "load"))
            loader.start()
            time.sleep(0.5)
            for row in measure(control, arguments.requests):
                print("%s | %d | %.0f | %.0f | pushing" % row)
            loader.join()
        finally:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
