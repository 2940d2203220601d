"""Failover's detection and takeover times (issue 20), with three `allegro supervise` on loopback.

    .venv/bin/python protocol/python/bench_failover.py --allegro .build/release/allegro [--kills 20] [--check-ms 1000]

The fleet of tests/test_failover_e2e.py (alpha, bravo, charlie; duty `gitea` in that order; each
duty service a script that records when it starts), with the configured `--check-ms`, `--failures`
and `--giveback-ms`. `--kills` rounds: alpha (holding gitea) dies (its supervisor and its duty
process killed -9); bravo's gitea process starting ends the takeover. Reported: kill -> bravo's
decision as bravo measures it (`detection=` in its log: from alpha's first unanswered check), kill
-> bravo's duty process running, p50, p99, max. Then alpha is started again and the round ends when
bravo has given gitea back and alpha's process runs. Times are wall-clock differences in this
process (the script stamps its start with `date`), so each is within a few milliseconds.
"""

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "tests"))

import test_failover_e2e as fleet_tests  # noqa: E402


def percentile(values: List[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--allegro", required=True)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--check-ms", type=int, default=1000)
    parser.add_argument("--failures", type=int, default=3)
    parser.add_argument("--giveback-ms", type=int, default=3000)
    args = parser.parse_args()
    fleet_tests.CHECK_MS, fleet_tests.FAILURES, fleet_tests.GIVEBACK_MS = args.check_ms, args.failures, args.giveback_ms
    timeout = 30 + args.check_ms * args.failures / 1000
    detections: List[float] = []
    takeovers: List[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as scratch:
        fleet = fleet_tests.Fleet(args.allegro, Path(scratch))
        try:
            fleet.start()
            fleet.wait_running("gitea", "alpha", timeout=timeout)
            for round_number in range(args.kills):
                seen = len(fleet.records("gitea", "bravo"))
                bravo = fleet.hosts["bravo"].sup
                decided = len(bravo.events("duty_taken", duty="gitea"))
                killed = time.time()
                fleet.kill("alpha")
                deadline = time.monotonic() + timeout
                while len(fleet.records("gitea", "bravo")) <= seen:
                    if time.monotonic() > deadline:
                        raise RuntimeError("bravo did not take gitea:\n" + fleet.logs()[-3000:])
                    time.sleep(0.005)
                started = fleet.records("gitea", "bravo")[-1].wall
                takeovers.append((started - killed) * 1000)
                taken = bravo.wait_event("duty_taken", timeout=timeout, count=decided + 1, duty="gitea")[-1]
                match = re.match(r"(\d+) ms", taken.get("detection", ""))
                if match:
                    detections.append(float(match.group(1)))
                print("round %d: takeover %.0f ms (%s)" % (round_number + 1, takeovers[-1], taken.get("detection")), file=sys.stderr)
                # alpha comes back; the round ends when it holds gitea again.
                back = len(fleet.records("gitea", "alpha"))
                fleet.start("alpha")
                deadline = time.monotonic() + timeout + args.giveback_ms / 1000
                while len([r for r in fleet.records("gitea", "alpha")]) <= back or not fleet.running("gitea"):
                    if time.monotonic() > deadline:
                        raise RuntimeError("alpha did not get gitea back:\n" + fleet.logs()[-3000:])
                    time.sleep(0.02)
        finally:
            fleet.cleanup()
    print("## Failover of a duty, %d kills of its holder (check_ms %d, failures %d, giveback_ms %d)"
          % (args.kills, args.check_ms, args.failures, args.giveback_ms))
    print("| ms | p50 | p99 | max | mean |\n| --- | --- | --- | --- | --- |")
    for label, values in (("first unanswered check -> decision (bravo's log)", detections),
                          ("kill -> the new holder's duty process running", takeovers)):
        if values:
            print("| %s | %.0f | %.0f | %.0f | %.0f |" % (label, statistics.median(values), percentile(values, 0.99), max(values),
                                                         statistics.mean(values)))


if __name__ == "__main__":
    main()
