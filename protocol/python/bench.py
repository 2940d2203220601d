"""How fast one Python process can emit to a relay, and what emit() costs the caller.

    python3 protocol/python/bench.py --relay 127.0.0.1:7400 [--events 200000] [--size 128]

Prints events/s from the first emit() until every event is acknowledged (spill fsync'd), and the
mean and p99 cost of one emit() call in microseconds.
"""

import argparse
import time

from allegro_client import Producer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--relay", default="127.0.0.1:7400")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    payload = b"x" * args.size
    producer = Producer([args.relay], producer_id="bench-%d" % time.time_ns(), max_buffer=args.events + 1)
    costs = []
    started = time.perf_counter()
    for _ in range(args.events):
        before = time.perf_counter_ns()
        producer.emit(payload, session="bench", kind="model_turn")
        costs.append(time.perf_counter_ns() - before)
    emitted = time.perf_counter()
    assert producer.flush(120), "not everything was acknowledged"
    done = time.perf_counter()
    producer.close(5)
    costs.sort()
    print("events %d x %d B: emit loop %.0f events/s; acked %.0f events/s end to end" %
          (args.events, args.size, args.events / (emitted - started), args.events / (done - started)))
    print("emit() cost: mean %.2f us, p50 %.2f us, p99 %.2f us" %
          (sum(costs) / len(costs) / 1000, costs[len(costs) // 2] / 1000, costs[int(len(costs) * 0.99)] / 1000))


if __name__ == "__main__":
    main()
