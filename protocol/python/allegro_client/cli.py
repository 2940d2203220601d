"""allegro-emit: each line of standard input becomes one record; exits 0 once all are acked.

Same flags as `allegro push`.
"""

import argparse
import os
import sys
import threading
import time
from typing import List, Optional

from .producer import DEFAULT_MAX_FRAME_BYTES, Producer, RecordTooLarge, RelayRefused


class _ConnectionReporter:
    """Says at once why the relay cannot be reached, every 5 s while retrying, and when it is."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.started = time.monotonic()
        self.failing = False
        self.last_report = 0.0
        self.lock = threading.Lock()

    def __call__(self, event: str, error: Optional[BaseException]) -> None:
        with self.lock:
            now = time.monotonic()
            if event == "connected":
                if self.failing:
                    print("allegro-emit: connected", file=sys.stderr)
                self.failing = False
                return
            left = max(0, int(self.timeout - (now - self.started) + 0.999))
            if not self.failing:
                print("allegro-emit: %s; retrying for %d s (--timeout)" % (error, left), file=sys.stderr)
            elif now - self.last_report >= 5:
                print("allegro-emit: still retrying (%d s left): %s" % (left, error), file=sys.stderr)
            else:
                return
            self.failing = True
            self.last_report = now


def _relay(text: str) -> str:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("%r: expected HOST:PORT, for example 127.0.0.1:7400" % text)
    return text


def _records(count: int) -> str:
    return "%d record%s" % (count, "" if count == 1 else "s")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="allegro-emit", description=__doc__.splitlines()[0])
    parser.add_argument("--relay", action="append", type=_relay, help="relay HOST:PORT (repeat for failover, tried in order)")
    parser.add_argument("--token", help="producer token (default: $ALLEGRO_PRODUCER_TOKEN)")
    parser.add_argument("--producer", help="producer id (default: py-HOST-PID)")
    parser.add_argument("--session", default="", help="session id for every record")
    parser.add_argument("--kind", default="", help="event kind for every record")
    parser.add_argument("--content-type", default="text/plain", help="content type for every record")
    parser.add_argument("--batch", type=int, default=512, help="records per batch")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to keep trying to reach the relay and to wait for the last acks")
    parser.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME_BYTES,
                        help="the relay's max_frame_bytes, when below the default (a longer line is refused)")
    args = parser.parse_args(argv)
    token = args.token if args.token is not None else os.environ.get("ALLEGRO_PRODUCER_TOKEN", "")
    reporter = _ConnectionReporter(args.timeout)
    producer = Producer(args.relay or ["127.0.0.1:7400"], producer_id=args.producer, token=token,
                        batch_records=args.batch, max_buffer=200_000, block_timeout=args.timeout,
                        on_connection=reporter, max_frame_bytes=args.max_frame_bytes)
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
    except RecordTooLarge as too_large:
        # The lines before it still go out.
        producer.close(args.timeout)
        acked = 0 if first is None else max(0, producer.acked_through - first + 1)
        print("allegro-emit: line %d: %s; before it, %s sent, %d acked" % (sent + 1, too_large, _records(sent),
                                                                          min(acked, sent)), file=sys.stderr)
        return 1
    acked = 0 if first is None else max(0, producer.acked_through - first + 1)
    if producer.refused:
        print("allegro-emit: %s refused by the relay (%s); sent %s, acked %d" % (
            _records(producer.refused), producer.last_refusal, _records(sent), min(acked, sent)), file=sys.stderr)
        return 1
    if producer.error is not None:
        print("allegro-emit: %s" % producer.error, file=sys.stderr)
        return 1
    summary = "sent %s, acked %d" % (_records(sent), min(acked, sent))
    if not done:
        reason = producer.last_error if producer.last_error is not None else "the relay did not acknowledge them in time"
        print("allegro-emit: gave up after %g s (--timeout): %s; %s" % (args.timeout, reason, summary), file=sys.stderr)
        return 1
    print("allegro-emit: %s" % summary, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
