"""allegro-emit: each line of standard input becomes one record; exits 0 once all are acked.

Same flags as `allegro push`.
"""

import argparse
import os
import sys
import time

from .producer import Producer, RelayRefused


def main(argv=None):
    parser = argparse.ArgumentParser(prog="allegro-emit", description=__doc__.splitlines()[0])
    parser.add_argument("--relay", action="append", help="relay HOST:PORT (repeat for failover, tried in order)")
    parser.add_argument("--token", help="producer token (default: $ALLEGRO_PRODUCER_TOKEN)")
    parser.add_argument("--producer", help="producer id (default: py-HOST-PID)")
    parser.add_argument("--session", default="", help="session id for every record")
    parser.add_argument("--kind", default="", help="event kind for every record")
    parser.add_argument("--content-type", default="text/plain", help="content type for every record")
    parser.add_argument("--batch", type=int, default=512, help="records per batch")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the last acks")
    args = parser.parse_args(argv)
    token = args.token if args.token is not None else os.environ.get("ALLEGRO_PRODUCER_TOKEN", "")
    producer = Producer(args.relay or ["127.0.0.1:7400"], producer_id=args.producer, token=token,
                        batch_records=args.batch, max_buffer=200_000, block_timeout=args.timeout)
    first = None
    sent = 0
    try:
        for line in sys.stdin.buffer:
            sequence = producer.emit(line.rstrip(b"\n"), session=args.session, kind=args.kind,
                                     content_type=args.content_type)
            first = first if first is not None else sequence
            sent += 1
        done = producer.close(args.timeout)
    except RelayRefused as refused:
        print("allegro-emit: the relay refused: %s" % refused, file=sys.stderr)
        return 1
    acked = 0 if first is None else max(0, producer.acked_through - first + 1)
    if producer.error is not None:
        print("allegro-emit: %s" % producer.error, file=sys.stderr)
        return 1
    print("allegro-emit: sent %d records, acked %d" % (sent, min(acked, sent)), file=sys.stderr)
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
