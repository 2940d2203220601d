"""The Python collector's throughput and lag, beside `allegro tail` in the same run.

    python3 protocol/python/bench_collector.py --allegro .build/release/allegro \
        [--events 1000000] [--size 128] [--rate 10000] [--seconds 10] [--rounds 3]

Starts its own relay (loopback, a temporary data directory). Throughput: `--events` records of
`--size` bytes are pushed first (`allegro push`), then read from `earliest` by
HermesBridge.stream_telemetry() (one relay), by its stream_batches(), and by
`allegro tail --format payload > /dev/null`, each in a fresh process; events/s from the first
record to the last. Lag: a paced producer process sends one record per PUBLISH at `--rate` for
`--seconds`, stamping each with its *scheduled* send time (no coordinated omission); collectors
subscribed at `latest` take receive time minus that event time: the Python collector as Timmy
runs it (durable, named: only fsync'd records) and ephemeral with `live`, each beside the same kind
of `allegro tail` (durable with --collector, or --live), read through a pipe by a reader process.
Percentiles are exact (sorted samples), not an HdrHistogram.

With `--swift-bench PATH` (the allegro-bench harness, built by `scripts/bench`) each round also
measures the Swift collector (AllegroClient's, through the harness's own Swift producer): its
throughput and its lag at the same rate, fsync'd and live, right after the Python rounds, so the
three collectors are compared in one run.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from allegro_client import wire  # noqa: E402


def percentiles(samples):
    samples.sort()
    if not samples:
        return {}

    def at(q):
        return samples[min(len(samples) - 1, int(q * len(samples)))]
    return {"count": len(samples), "p50_us": at(0.5) / 1000, "p90_us": at(0.9) / 1000, "p99_us": at(0.99) / 1000,
            "p999_us": at(0.999) / 1000, "max_us": samples[-1] / 1000}


# -- roles run as separate processes ---------------------------------------------------------------

def role_throughput(args):
    from allegro_client.timmy import HermesBridge

    async def main():
        bridge = HermesBridge([args.relay], collector=None, start="earliest", window=args.window)
        count, started = 0, None
        if args.api == "events":
            async for event in bridge.stream_telemetry():
                if started is None:
                    started = time.perf_counter()
                count += 1
                if count == args.events:
                    break
        else:
            async for batch in bridge.stream_batches():
                if started is None:
                    started = time.perf_counter()
                count += len(batch)
                if count >= args.events:
                    break
        elapsed = time.perf_counter() - started
        await bridge.close()
        print(json.dumps({"events": count, "seconds": elapsed, "per_second": count / elapsed}))

    asyncio.run(main())


def role_lag(args):
    from allegro_client.timmy import HermesBridge

    async def main():
        options = {"live": True} if args.live else {}
        bridge = HermesBridge([args.relay], collector=args.name or None, start="latest", **options)
        await bridge.start()
        for _ in range(200):
            if bridge.collectors[0].connected:
                break
            await asyncio.sleep(0.01)
        print("ready", flush=True)
        lags, relay_part = [], []
        now = time.time_ns
        async for event in bridge.stream_telemetry():
            received = now()
            lags.append(received - event.event_time_ns)
            relay_part.append(received - event.ingest_ns)
            if args.name:
                await event.commit()
            if len(lags) == args.expect:
                break
        await bridge.close()
        result = percentiles(lags)
        result["from_ingest"] = percentiles(relay_part)
        print(json.dumps(result), flush=True)

    asyncio.run(main())


def role_tail_lag(args):
    command = [args.allegro, "tail", "--relay", args.relay, "--from", "latest", "--format", "jsonl"]
    command += ["--collector", args.name] if args.name else ["--live"]
    tail = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # subscribed at latest before the producer starts
    print("ready", flush=True)
    lags = []
    now = time.time_ns
    pattern = re.compile(rb'"event_time_ns":(\d+)')
    assert tail.stdout is not None
    while len(lags) < args.expect:
        line = tail.stdout.readline()
        if not line:
            break
        received = now()
        match = pattern.search(line)
        if match:
            lags.append(received - int(match.group(1)))
    tail.terminate()
    tail.wait(10)
    print(json.dumps(percentiles(lags)), flush=True)


def role_producer(args):
    host, port = args.relay.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(wire.hello("bench-paced-%d" % os.getpid()))
    decoder = wire.Decoder()
    while not decoder.frames():
        decoder.feed(sock.recv(4096))
    sock.setblocking(False)
    payload = b"p" * args.size
    total = int(args.rate * args.seconds)
    interval = 1.0 / args.rate
    first_sequence = time.time_ns() // 1000
    started = time.perf_counter()
    wall_start = time.time_ns() - int((time.perf_counter() - started) * 1e9)
    late = 0
    for index in range(total):
        target = started + index * interval
        # Sleeps rather than spins (a spinning sender would take one of the two cores from the
        # relay and the collectors); a record whose time came during a sleep goes out at once.
        ahead = target - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
            ahead = target - time.perf_counter()
        if -ahead > 0.001:
            late += 1
        event_time = wall_start + int(index * interval * 1e9)
        frame = wire.publish([wire.record(first_sequence + index, event_time, b"bench", b"paced", b"", payload)])
        sent = 0
        while sent < len(frame):
            try:
                sent += sock.send(frame[sent:])
            except BlockingIOError:
                time.sleep(0.0001)
        if index % 64 == 0:
            try:
                while sock.recv(65536):
                    pass
            except BlockingIOError:
                pass
    sock.setblocking(True)
    sock.sendall(wire.goodbye())
    sock.settimeout(15)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
    sys.stderr.write("producer: %d records, %d sent more than 1 ms late\n" % (total, late))


# -- the run ------------------------------------------------------------------------------------

def start_relay(binary, data):
    log_path = os.path.join(data, "relay.log")
    log = open(log_path, "wb")
    relay = subprocess.Popen([binary, "relay", "--listen", "127.0.0.1:0", "--http", "off", "--data",
                              os.path.join(data, "d"), "--durable", "timmy", "--durable", "bench-tail"],
                             stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(2000):
        match = re.search(r"event=listening .*?address=(\S+)", open(log_path).read())
        if match:
            return relay, match.group(1)
        time.sleep(0.01)
    raise RuntimeError("the relay did not start")


def me(*extra):
    return [sys.executable, os.path.abspath(__file__)] + list(extra)


def throughput_round(args, relay):
    results = {}
    for api in ("events", "batches"):
        out = subprocess.run(me("--role", "throughput", "--relay", relay, "--events", str(args.events), "--api", api),
                             capture_output=True, check=True, timeout=600)
        results["python " + api] = json.loads(out.stdout)["per_second"]
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        subprocess.run([args.allegro, "tail", "--relay", relay, "--from", "earliest", "--count", str(args.events),
                        "--format", "payload"], stdout=sink, check=True, timeout=600)
    results["allegro tail"] = args.events / (time.perf_counter() - started)
    return results


def lag_round(args, relay, durable):
    expect = int(args.rate * args.seconds)
    collectors = []
    if "python" in args.peers:
        collectors.append(("python", subprocess.Popen(me("--role", "lag", "--relay", relay, "--expect", str(expect))
                                                      + (["--name", "timmy"] if durable else ["--live"]),
                                                      stdout=subprocess.PIPE)))
    if "tail" in args.peers:
        collectors.append(("allegro tail", subprocess.Popen(
            me("--role", "tail-lag", "--allegro", args.allegro, "--relay", relay, "--expect", str(expect))
            + (["--name", "bench-tail"] if durable else []), stdout=subprocess.PIPE)))
    for _, process in collectors:
        assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
    subprocess.run(me("--role", "producer", "--relay", relay, "--rate", str(args.rate), "--seconds", str(args.seconds),
                      "--size", str(args.size)), check=True, timeout=args.seconds * 3 + 60)
    results = {}
    for label, process in collectors:
        try:
            out, _ = process.communicate(timeout=30)
            results[label] = json.loads(out.splitlines()[-1])
        except (subprocess.TimeoutExpired, IndexError, ValueError):
            process.kill()
            results[label] = {"error": "did not receive every record"}
    return results


def swift_round(args, scenario):
    """One round of the Swift collector through allegro-bench: its measurements, by peer."""
    if scenario == "throughput":
        command = [args.swift_bench, "throughput", "--allegro", args.allegro, "--seconds", str(args.seconds),
                   "--peers", "allegro", "--size", str(args.size), "--json"]
    else:
        command = [args.swift_bench, "paced", "--allegro", args.allegro, "--seconds", str(args.seconds),
                   "--rates", "%d" % args.rate, "--peers", "allegro,allegro-live", "--size", str(args.size), "--json"]
    done = subprocess.run(command, capture_output=True, timeout=600, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-300:]}
    return {m["peer"]: m["results"] for m in json.loads(done.stdout)["measurements"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", default="run")
    parser.add_argument("--allegro", default=os.environ.get("ALLEGRO_BIN", "allegro"))
    parser.add_argument("--relay")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=4096)
    parser.add_argument("--api", default="events")
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--name", default="")
    parser.add_argument("--live", action="store_true")
    parser.add_argument("--skip", default="", help="comma-separated: throughput, lag")
    parser.add_argument("--peers", default="python,tail", help="lag collectors, run side by side: python, tail")
    parser.add_argument("--swift-bench", help="the allegro-bench binary: also measure the Swift collector each round")
    args = parser.parse_args()
    roles = {"throughput": role_throughput, "lag": role_lag, "tail-lag": role_tail_lag, "producer": role_producer}
    if args.role in roles:
        roles[args.role](args)
        return
    data = tempfile.mkdtemp(prefix="bench-collector-")
    relay_process, relay = start_relay(args.allegro, data)
    try:
        if "throughput" not in args.skip:
            line = ("x" * args.size + "\n").encode()
            subprocess.run([args.allegro, "push", "--relay", relay, "--producer", "bench", "--batch", "4096"],
                           input=line * args.events, check=True, capture_output=True, timeout=600)
            for round_number in range(1, args.rounds + 1):
                results = throughput_round(args, relay)
                print("throughput round %d (%d x %d B): %s" % (round_number, args.events, args.size, ", ".join(
                    "%s %.0f events/s" % item for item in results.items())), flush=True)
                if args.swift_bench:
                    swift = swift_round(args, "throughput")
                    print("throughput round %d, Swift collector (allegro-bench, %.0f s of its own producer): %s" % (
                        round_number, args.seconds, swift.get("error") or "%.0f records/s" % swift["allegro"]["records_per_s"]),
                        flush=True)
        if "lag" not in args.skip:
            for round_number in range(1, args.rounds + 1):
                for durable in (True, False):
                    results = lag_round(args, relay, durable)
                    kind = "durable (named, fsync'd)" if durable else "ephemeral live"
                    print("lag round %d at %.0f/s for %.0f s, %s: %s" % (
                        round_number, args.rate, args.seconds, kind, "; ".join(
                            "%s p50 %.0f us, p99 %.0f us, p99.9 %.0f us, max %.0f us (%d)%s" % (
                                label, r["p50_us"], r["p99_us"], r["p999_us"], r["max_us"], r["count"],
                                " [from the relay's ingest time: p50 %.0f us, p99 %.0f us]" % (
                                    r["from_ingest"]["p50_us"], r["from_ingest"]["p99_us"]) if "from_ingest" in r else "")
                            if "p50_us" in r else "%s %s" % (label, r.get("error", r))
                            for label, r in results.items())), flush=True)
                if args.swift_bench:
                    swift = swift_round(args, "paced")
                    print("lag round %d at %.0f/s, Swift collector (allegro-bench): %s" % (
                        round_number, args.rate, swift.get("error") or "; ".join(
                            "%s p50 %.0f us, p99 %.0f us" % (
                                "durable (fsync'd)" if peer == "allegro" else "live", r["p50_us"], r["p99_us"])
                            for peer, r in sorted(swift.items()))), flush=True)
    finally:
        relay_process.terminate()
        relay_process.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
