"""allegro-collect: Timmy's durable collector for shells and systemd.

    allegro-collect --relay vps1:7400 --relay vps2:7400 [--collector timmy] [--from committed]
                    [--format jsonl|payload] [--token T] [--count N] [--idle-exit-ms MS]

Writes every event of every relay to standard output, once (cross-relay duplicates dropped), and
commits what it has written and flushed: at-least-once into the pipe (a crash between the write
and the commit means those lines come again on the next start). SIGTERM or SIGINT: stops reading,
sends the last commit, waits for the relays to confirm it, exits 0. Reconnects by itself; says why
on standard error. The token defaults to $ALLEGRO_COLLECTOR_TOKEN.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any, Dict, List, Optional

from .collector import CollectorError, Gap, PermanentRelayError, ProtocolViolation, TelemetryEvent
from . import wire
from .timmy import HermesBridge


def line(event: Any) -> bytes:
    """One event as a JSON line: the fields of `allegro tail --format jsonl` plus relay_id."""
    if isinstance(event, Gap):
        return json.dumps({"relay_id": event.relay_id, "skip_first": event.first, "skip_last": event.last,
                           "lost": event.lost}, separators=(",", ":")).encode() + b"\n"
    fields: Dict[str, Any] = {"relay_id": event.relay_id, "relay_seq": event.relay_seq, "ingest_ns": event.ingest_ns,
                              "producer": event.producer, "producer_seq": event.producer_seq,
                              "event_time_ns": event.event_time_ns, "session": event.session, "kind": event.kind,
                              "content_type": event.content_type}
    try:
        fields["payload"] = event.payload.decode("utf-8")
    except UnicodeDecodeError:
        fields["payload_hex"] = event.payload.hex()
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="allegro-collect", description=__doc__.split("\n\n")[0],
                                     epilog="Exit status: 0 after a clean stop (SIGTERM, --count, --idle-exit-ms); "
                                            "1 when a relay refused for good (wrong token, unknown collector name); "
                                            "2 for bad arguments.")
    parser.add_argument("--relay", action="append", help="relay address HOST:PORT (repeat: every relay is read at once)")
    parser.add_argument("--collector", default="timmy", help="durable collector name configured on the relays "
                        "(default timmy; an empty name is an ephemeral subscription that commits nothing)")
    parser.add_argument("--from", dest="start", default=None,
                        help="committed (default with a name), earliest, latest, or a relay sequence (one relay only)")
    parser.add_argument("--format", choices=("jsonl", "payload"), default="jsonl")
    parser.add_argument("--token", default=None, help="collector token (default $ALLEGRO_COLLECTOR_TOKEN)")
    parser.add_argument("--count", type=int, default=None, help="exit after this many events")
    parser.add_argument("--idle-exit-ms", type=int, default=None, help="exit when nothing arrives for this long")
    parser.add_argument("--gaps", action="store_true", help="also write a line where a relay skipped sequences (jsonl)")
    args = parser.parse_args(argv)
    args.relay = args.relay or ["127.0.0.1:7400"]
    if args.start is None:
        args.start = "committed" if args.collector else "latest"
    if args.start not in ("committed", "earliest", "latest"):
        if not args.start.isdigit() or int(args.start) < 1:
            parser.error("--from must be committed, earliest, latest or a relay sequence (1 or more), not %s" % args.start)
        if len(args.relay) != 1:
            parser.error("--from SEQUENCE names a place in one relay's stream: give one --relay")
        args.start = int(args.start)
    if args.start == "committed" and not args.collector:
        parser.error("--from committed needs --collector NAME")
    if args.count is not None and args.count < 1:
        parser.error("--count must be at least 1")
    for relay in args.relay:
        try:
            wire.parse_address(relay)
        except ValueError as error:
            parser.error("--relay: %s" % error)
    return args


async def collect(args: argparse.Namespace) -> int:
    bridge = HermesBridge(args.relay, args.collector or None, args.token, start=args.start,
                          gaps=args.gaps and args.format == "jsonl")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    out = sys.stdout.buffer
    payload_format = args.format == "payload"
    written = 0
    status = 0
    batches = bridge.stream_batches().__aiter__()
    stopping = loop.create_task(stop.wait())
    idle = args.idle_exit_ms / 1000.0 if args.idle_exit_ms else None
    try:
        while not stop.is_set():
            following = loop.create_task(batches.__anext__())
            done, _ = await asyncio.wait({following, stopping}, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
            if following not in done:
                following.cancel()
                try:
                    await following
                except (asyncio.CancelledError, StopAsyncIteration):
                    pass
                break
            try:
                batch = following.result()
            except StopAsyncIteration:
                break
            if args.count is not None and written + len(batch) > args.count:
                batch = batch[:args.count - written]
            if payload_format:
                chunk = b"".join(item.payload + b"\n" for item in batch if isinstance(item, TelemetryEvent))
            else:
                chunk = b"".join(line(item) for item in batch)
            try:
                out.write(chunk)
                out.flush()
            except BrokenPipeError:
                # The reader left: what it did not get is not committed.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                break
            written += sum(1 for item in batch if isinstance(item, TelemetryEvent))
            # Everything written and flushed is committed (the last item of a cut batch and
            # every batch before it, of every relay).
            last = batch[-1] if batch else None
            if args.count is not None and written >= args.count and isinstance(last, TelemetryEvent):
                await last.commit()
                for state in bridge._registry.values():
                    if state is not last.source:
                        state.want(state.last_user)
                break
            await bridge.commit()
    except (PermanentRelayError, ProtocolViolation) as error:
        sys.stderr.write("allegro-collect: %s\n" % error)
        status = 1
    finally:
        stopping.cancel()
        confirmed = await bridge.close()
    committed = ", ".join("%s through %d" % item for item in sorted(bridge.committed.items())) or "nothing"
    sys.stderr.write("allegro-collect: wrote %d events; committed %s%s\n" %
                     (written, committed, "" if confirmed else " (the last commit was not confirmed)"))
    return status


def main(argv: Optional[List[str]] = None) -> None:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="allegro-collect: %(message)s", stream=sys.stderr)
    try:
        sys.exit(asyncio.run(collect(args)))
    except CollectorError as error:
        sys.stderr.write("allegro-collect: %s\n" % error)
        sys.exit(1)


if __name__ == "__main__":
    main()
