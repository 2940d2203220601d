"""`allegro bridge`, the Telegram notifier, end to end: the real relay and bridge binaries ($ALLEGRO_BIN)
and tests/fake_telegram.py as the Bot API. Alerts, Requests and Reports are published with the Python
producer as the records the relay carries (kinds allegro.alert, allegro.request, allegro.report); what
the bridge tells Telegram is read from the fake, and what the relay itself raises from the stream.

What is checked is the behaviour the bridge promises, not how it words its messages: grouping by alert
name (a burst becomes a few messages), the rate limit, waiting out a 429's retry_after, riding out an
outage, falling back to plain text when Telegram cannot parse the HTML, splitting above 4,096
characters, nothing resent but the message in flight after kill -9 and nothing lost, the relay's own
alerts (retention_warning before records_lost, collector_away firing then resolved), the daily report
and its figures, Requests by urgency, and the bot token kept out of messages, logs and /health.
Timings are small (group_wait 300 ms, ...) and only ever checked as lower bounds."""

import asyncio
import base64
import datetime
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import pytest

from allegro_client import Collector, Producer, TelemetryEvent
from allegro_client.messages import AllegroAlert, AllegroReport, AllegroRequest, Telemetry
from bridge_run import BridgeRun
from fake_telegram import Call, FakeTelegram, shown_text
from stream_watcher import StreamWatcher

pytestmark = pytest.mark.skipif(not os.environ.get("ALLEGRO_BIN"),
                                reason="ALLEGRO_BIN is not set (the allegro binary with `allegro bridge`)")

TOKEN = "123456789:AAHfake-Secret_bridge-token-x9Qe"
SECRET = TOKEN.split(":", 1)[1]
CHAT = "42"
TOLERANCE = 0.05          # seconds: arrival jitter allowed below a promised lower bound
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# The relay for every test: the notifier's and Timmy's durable collectors, no daily report unless a
# test asks for one (one due at 08:00 UTC would land in any test running then).
RELAY_FLAGS = ("--durable", "timmy", "--durable", "notifier", "--set", "daily_report_at=off")

# The bridge's timings unless a test says otherwise.
# relay_down_ms=0: the relay's /health is not watched (its control port is on a test's own port);
# the one test that needs it names the port.
BRIDGE_DEFAULTS = {"group_wait_ms": 300, "group_interval_ms": 1000, "repeat_interval_ms": 600000,
                   "telegram_min_interval_ms": 100, "relay_down_ms": 0}


# -- the bridge as a process ------------------------------------------------------------------------


def bridge_env(token: Optional[str]) -> Dict[str, str]:
    """The environment without any ALLEGRO_ setting or proxy of the test's own, with the token if given."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("ALLEGRO_") and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    if token is not None:
        env["ALLEGRO_TELEGRAM_BOT_TOKEN"] = token
    return env


class Bridge(BridgeRun):
    """A running `allegro bridge`: settings as `--set bridge.KEY=VALUE`; `kill()` (SIGKILL) and
    `start()` again keep its data directory. Each run's standard output and error go to their own
    files; `output()` is all of them."""

    def __init__(self, binary: str, root: Path, relay: str, telegram: FakeTelegram, *, token: Optional[str] = TOKEN,
                 **settings: Any) -> None:
        self.binary, self.root = binary, root
        root.mkdir(parents=True, exist_ok=True)
        values: Dict[str, Any] = dict(BRIDGE_DEFAULTS)
        values.update(relay=relay, http="127.0.0.1:0", data_dir=str(root / "bridge-data"),
                      telegram_api=telegram.base_url, telegram_chat_id=CHAT)
        values.update(settings)
        self.settings = {key: str(value) for key, value in values.items()}
        self.env = bridge_env(token)
        self.runs: List[Tuple[Path, Path]] = []
        super().__init__()
        self.http_address = ""
        self.start()

    def command(self) -> List[str]:
        command = [self.binary, "bridge"]
        for key, value in self.settings.items():
            command += ["--set", "bridge.%s=%s" % (key, value)]
        return command

    def start(self) -> None:
        self.stopping = False
        number = len(self.runs) + 1
        paths = (self.root / ("bridge-%d.out" % number), self.root / ("bridge-%d.err" % number))
        self.runs.append(paths)
        with open(paths[0], "wb") as out, open(paths[1], "wb") as err:
            self.process = subprocess.Popen(self.command(), env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=err)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            match = re.search(r"http_listening\b.*?\baddress=(\S+)", self.run_output())
            if match:
                self.http_address = match.group(1).strip('"')
                break
            if self.process.poll() is not None:
                raise RuntimeError("the bridge exited with %s:\n%s" % (self.process.returncode, self.run_output()))
            time.sleep(0.02)
        else:
            raise RuntimeError("the bridge did not log http_listening:\n" + self.run_output())
        while time.monotonic() < deadline:
            if self.health()[0] == 200:
                return
            time.sleep(0.05)
        raise RuntimeError("the bridge's /health never answered 200: %r\n%s" % (self.health(), self.run_output()))

    def run_output(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.runs[-1])

    def output(self) -> str:
        return "".join(path.read_text(errors="replace") for paths in self.runs for path in paths)

    def health(self) -> Tuple[int, bytes]:
        try:
            with OPENER.open("http://%s/health" % self.http_address, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError as error:
            return 0, str(error).encode()


# The bridges of the running test: waiting stops, saying why, as soon as one of them dies.
RUNNING: List[Bridge] = []


def check_bridges() -> None:
    for bridge in RUNNING:
        if bridge.died():
            assert bridge.process is not None
            output = bridge.output()
            crash = max(output.find("crashed:"), 0)            # a Swift backtrace: the crashed thread
            raise AssertionError("the bridge exited with %s; its output:\n%s\n...\n%s"
                                 % (bridge.process.returncode, output[:1500], output[crash:crash + 2500]))


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Waits for `condition` (polled); False after `timeout` seconds; fails at once if a bridge died."""
    deadline = time.monotonic() + timeout
    while not condition():
        check_bridges()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram(token=TOKEN, chats=(int(CHAT),))
    yield fake
    fake.close()


@pytest.fixture
def bridges(binary: str, tmp_path: Path) -> Iterator[Callable[..., Bridge]]:
    """bridges(relay, telegram, **settings) starts a bridge; all are stopped at the end."""
    started: List[Bridge] = []

    def start(relay: Any, telegram: FakeTelegram, name: str = "bridge", **settings: Any) -> Bridge:
        bridge = Bridge(binary, tmp_path / name, relay.address, telegram, **settings)
        started.append(bridge)
        RUNNING.append(bridge)
        return bridge

    yield start
    for bridge in started:
        bridge.stop()
        RUNNING.remove(bridge)


def start_relay(relays: Any, name: str = "alpha", *settings: str) -> Any:
    flags: List[str] = list(RELAY_FLAGS)
    for setting in settings:
        flags += ["--set", setting]
    return relays.start(name, *flags, http="127.0.0.1:0")


# -- publishing and watching the stream ---------------------------------------------------------------

Message = Union[AllegroAlert, AllegroRequest, AllegroReport]
KINDS = {AllegroAlert: "allegro.alert", AllegroRequest: "allegro.request", AllegroReport: "allegro.report"}


def publish(relay: Any, messages: Iterable[Union[Message, Tuple[Message, str]]], producer_id: str = "bridge-e2e") -> int:
    """Publishes each message (or (message, session)) as the record the relay carries; returns how many,
    once the relay has acknowledged them all."""
    producer = Producer([relay.address], producer_id=producer_id, max_backoff=0.2)
    count = 0
    try:
        for item in messages:
            message, session = item if isinstance(item, tuple) else (item, "")
            producer.emit(message.to_json(), session=session, kind=KINDS[type(message)],
                          content_type="application/json")
            count += 1
        assert producer.flush(30), "the relay did not acknowledge the messages"
    finally:
        producer.close(5)
    return count


class AlertWatcher(StreamWatcher):
    """A `StreamWatcher` of the allegro.* records, read as alerts and reports."""

    def alerts(self) -> List[AllegroAlert]:
        events = self.snapshot()
        return [AllegroAlert.from_json(event.payload) for event in events if event.kind == "allegro.alert"]

    def reports(self) -> List[Tuple[TelemetryEvent, AllegroReport]]:
        events = self.snapshot()
        return [(event, AllegroReport.from_json(event.payload)) for event in events if event.kind == "allegro.report"]

    def assert_canonical(self) -> None:
        """Every allegro.alert and allegro.report record carries the canonical JSON Python writes
        (the relay's are written by Swift: the same bytes)."""
        for event in self.snapshot():
            if event.kind == "allegro.alert":
                assert AllegroAlert.from_json(event.payload).to_json().encode("utf-8") == event.payload, event.payload
            elif event.kind == "allegro.report":
                assert AllegroReport.from_json(event.payload).to_json().encode("utf-8") == event.payload, event.payload

    def wait_alert(self, predicate: Callable[[AllegroAlert], bool], timeout: float) -> Optional[AllegroAlert]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for alert in self.alerts():
                if predicate(alert):
                    return alert
            time.sleep(0.05)
        return None



@pytest.fixture
def watchers() -> Iterator[Callable[..., AlertWatcher]]:
    started: List[AlertWatcher] = []

    def start(address: str, name: Optional[str] = None, commit: bool = False) -> AlertWatcher:
        watcher = AlertWatcher(address, name, commit)
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        watcher.stop()


# -- reading what Telegram got ----------------------------------------------------------------------


def sent_with(telegram: FakeTelegram, needle: str, after: float = 0.0) -> List[Call]:
    """Accepted messages (arrived after `after`) whose shown text contains `needle`."""
    return [call for call in telegram.sent() if call.at > after and needle in call.shown]


def wait_all_shown(telegram: FakeTelegram, needles: Sequence[str], timeout: float) -> List[str]:
    """Waits until every needle is in some accepted message; returns the ones still missing."""
    missing: List[str] = list(needles)

    def shown_all() -> bool:
        shown = "\n\x00".join(telegram.shown_texts())
        missing[:] = [needle for needle in missing if needle not in shown]
        return not missing

    wait_until(shown_all, timeout)
    return missing


def subjects_in(call: Call, subjects: Iterable[str]) -> set:
    return {subject for subject in subjects if subject in call.shown}


def alert(name: str, subject: str, status: str = "firing", severity: str = "warning", summary: str = "",
          details: str = "") -> AllegroAlert:
    return AllegroAlert(alert=name, subject=subject, status=status, severity=severity,
                        summary=summary or "%s on %s" % (name, subject), details=details,
                        since_ms=int(time.time() * 1000))


def request(urgency: str, question: str, context: str = "https://gitea.example/timmy/allegro/pulls/42") -> AllegroRequest:
    return AllegroRequest(type="approval", urgency=urgency, context=context, question=question,
                          options=("Merge now", "Wait a day"), recommendation="Merge now.",
                          time_constraint="Before 18:00 UTC today.")


def assert_spaced(calls: Sequence[Call], seconds: float) -> None:
    gaps = [later.at - earlier.at for earlier, later in zip(calls, calls[1:])]
    assert all(gap >= seconds - TOLERANCE for gap in gaps), \
        "requests closer than %.3f s: %s" % (seconds, [round(gap, 3) for gap in gaps if gap < seconds - TOLERANCE])


# -- grouping and the rate limit ----------------------------------------------------------------------


def test_a_burst_of_1000_alerts_becomes_a_few_grouped_messages_sent_no_faster_than_the_limit(relays, telegram, bridges):
    relay = start_relay(relays)
    # group_wait is longer than the burst takes, so each group's first message holds all of it.
    bridge = bridges(relay, telegram, group_wait_ms=1500, telegram_min_interval_ms=250)
    names = ["burst_%s" % letter for letter in "abcde"]
    subjects = {name: ["%s/host-%03d" % (name, number) for number in range(200)] for name in names}
    burst = [alert(name, subject) for number in range(200) for name in names for subject in [subjects[name][number]]]
    # The same (alert, subject) firing again is the same alert: 300 duplicates add nothing.
    duplicates = [alert(name, subject) for name in names for subject in subjects[name][:60]]
    publish(relay, burst + duplicates)
    everything = [subject for name in names for subject in subjects[name]]

    assert wait_all_shown(telegram, everything, timeout=60) == []
    time.sleep(1.5)                                       # anything more would come now
    calls = telegram.all_calls()
    sent = telegram.sent()
    assert len(calls) == len(sent), [(call.status, call.description) for call in calls if not call.ok]
    assert all(call.parse_mode == "HTML" and str(call.chat_id) == CHAT for call in sent)
    for name in names:
        assert sent_with(telegram, name), "no message names the group %s" % name
    for subject in everything:
        assert len(sent_with(telegram, subject)) == 1, "%s told %d times" % (subject, len(sent_with(telegram, subject)))
    # A few messages: parts of a split group average at least 2,000 characters, and far fewer than the alerts.
    characters = sum(len(call.shown) for call in sent)
    assert len(sent) <= len(names) + characters // 2000 and len(sent) <= 100, (len(sent), characters)
    assert_spaced(calls, 0.25)
    assert bridge.health()[0] == 200


def test_a_429_is_waited_out_for_retry_after_and_the_same_message_then_arrives(relays, telegram, bridges):
    relay = start_relay(relays)
    telegram.too_many_requests_next(1, retry_after=2)
    bridges(relay, telegram)
    publish(relay, [alert("replica_lag", "db-1", summary="replica db-1 is 42 s behind")])

    assert wait_until(lambda: len(telegram.sent()) >= 1, timeout=30)
    refused, accepted = telegram.all_calls()[:2]
    assert refused.status == 429 and refused.answer["parameters"] == {"retry_after": 2}
    assert accepted.ok and "db-1" in accepted.shown
    assert accepted.at - refused.at >= 2 - TOLERANCE, "sent again %.3f s after a retry_after of 2" % (accepted.at - refused.at)
    assert (accepted.text, accepted.parse_mode) == (refused.text, refused.parse_mode)


def test_an_unchanged_firing_alert_is_repeated_and_a_resolved_one_is_told_once(relays, telegram, bridges):
    relay = start_relay(relays)
    bridges(relay, telegram, group_interval_ms=1000, repeat_interval_ms=2500)
    publish(relay, [alert("queue_stuck", "queue-x"), alert("queue_stuck", "queue-y")])
    assert wait_all_shown(telegram, ["queue-x", "queue-y"], timeout=30) == []
    first = sent_with(telegram, "queue_stuck")[0]
    assert "queue-x" in first.shown and "queue-y" in first.shown

    publish(relay, [alert("queue_stuck", "queue-x", status="resolved", summary="queue-x moves again"),
                    alert("queue_stuck", "queue-x", status="resolved", summary="queue-x moves again")])
    assert wait_until(lambda: bool(sent_with(telegram, "queue-x", after=first.at)), timeout=30)
    resolved = sent_with(telegram, "queue-x", after=first.at)[0]
    assert "resolved" in resolved.shown.lower()
    assert resolved.at - first.at >= 1.0 - TOLERANCE, "a change told %.3f s after the group's last message" % (
        resolved.at - first.at)

    # Unchanged and still firing: queue-y is told again after repeat_interval; queue-x never again.
    assert wait_until(lambda: bool(sent_with(telegram, "queue-y", after=resolved.at)), timeout=30)
    repeat = sent_with(telegram, "queue-y", after=resolved.at)[0]
    assert repeat.at - resolved.at >= 2.5 - TOLERANCE
    time.sleep(0.5)
    assert sent_with(telegram, "queue-x", after=resolved.at) == []


# -- failures on Telegram's side ----------------------------------------------------------------------


@pytest.mark.parametrize("closed", [False, True], ids=["503", "closed port"])
def test_telegram_down_for_a_few_seconds_then_back_every_alert_arrives_grouped(relays, telegram, bridges, closed):
    relay = start_relay(relays)
    bridges(relay, telegram)
    outage = 3.0
    telegram.down_for(outage, closed=closed)
    back_at = time.monotonic() + outage
    names = ["outage_a", "outage_b", "outage_c"]
    first_wave = [alert(name, "%s/svc-%02d" % (name, number)) for name in names for number in range(15)]
    publish(relay, first_wave)
    time.sleep(1.5)
    second_wave = [alert(name, "%s/svc-%02d" % (name, number)) for name in names for number in range(15, 20)]
    publish(relay, second_wave)

    subjects = [item.subject for item in first_wave + second_wave]
    assert wait_all_shown(telegram, subjects, timeout=45) == []
    sent = telegram.sent()
    assert all(call.at >= back_at - TOLERANCE for call in sent)
    assert len(sent) <= 2 * len(names), "not grouped: %d messages for %d groups in two waves" % (len(sent), len(names))
    for subject in subjects:
        assert len(sent_with(telegram, subject)) >= 1
    if not closed:
        failed = [call for call in telegram.all_calls() if call.status == 503]
        assert failed, "the bridge never tried while Telegram was down"
        assert len(failed) <= outage / 0.1 + 2, "%d attempts in a %.0f s outage" % (len(failed), outage)


def test_html_telegram_cannot_parse_is_sent_again_as_plain_text(relays, telegram, bridges):
    relay = start_relay(relays)
    telegram.refuse_html_next(1)
    bridges(relay, telegram)
    subject = 'db<1> & "co"'
    publish(relay, [alert("schema_drift", subject, summary="column a < b & c > d")])

    assert wait_until(lambda: len(telegram.sent()) >= 1, timeout=30)
    refused, plain = telegram.all_calls()[:2]
    assert refused.status == 400 and refused.description.startswith("Bad Request: can't parse entities")
    assert refused.parse_mode == "HTML"
    assert plain.ok and plain.parse_mode is None
    # As a person reads it: the subject and summary as they are, no tags, no entities.
    assert subject in plain.text and "column a < b & c > d" in plain.text and "schema_drift" in plain.text
    assert "<b>" not in plain.text and "&lt;" not in plain.text and "&amp;" not in plain.text

    # Only that message went as plain text: the next one is HTML again.
    publish(relay, [alert("schema_drift_2", "db-2")])
    assert wait_until(lambda: bool(sent_with(telegram, "db-2")), timeout=30)
    assert sent_with(telegram, "db-2")[0].parse_mode == "HTML"


def test_a_message_over_4096_characters_is_split_into_messages_telegram_accepts(relays, telegram, bridges):
    relay = start_relay(relays)
    bridges(relay, telegram)
    lines = ["line %03d: the relay at 10.0.0.%d said <nothing> & then \"something\" %s" % (number, number, "." * 20)
             for number in range(120)]
    long_request = request("critical", "\n".join(lines), context="split-test")
    assert len(shown_text(long_request.to_telegram_html(), "HTML")) > 3 * 4096 // 2
    subjects = ["split_group/%03d/%s" % (number, "s" * 180) for number in range(40)]
    publish(relay, [long_request] + [alert("split_group", subject) for subject in subjects])

    assert wait_all_shown(telegram, lines + subjects, timeout=45) == []
    calls = telegram.all_calls()
    assert all(call.ok for call in calls), [(call.status, call.description) for call in calls if not call.ok]
    sent = telegram.sent()
    assert all(len(call.shown) <= 4096 for call in sent)
    # The request in order, each line whole in exactly one part.
    holders = []
    for line in lines:
        holding = [index for index, call in enumerate(sent) if line in call.shown]
        assert len(holding) == 1, "%r is in messages %s" % (line, holding)
        holders.append(holding[0])
    assert holders == sorted(holders) and len(set(holders)) >= 3
    for subject in subjects:
        assert sent_with(telegram, subject)


# -- kill -9 -------------------------------------------------------------------------------------


def test_a_bridge_killed_mid_burst_resends_at_most_the_message_in_flight_and_loses_nothing(relays, telegram, bridges):
    relay = start_relay(relays)
    bridge = bridges(relay, telegram, telegram_min_interval_ms=400)
    names = ["crash_%02d" % number for number in range(10)]
    subjects = {name: ["%s/node-%02d" % (name, number) for number in range(30)] for name in names}
    requests = [request("critical", "Crash test request %d: may I proceed?" % number) for number in range(3)]
    messages: List[Message] = []
    for index, name in enumerate(names):
        messages += [alert(name, subject) for subject in subjects[name]]
        if index in (2, 5, 8):
            messages.append(requests[(index - 2) // 3])
    publish(relay, messages)
    everything = [subject for name in names for subject in subjects[name]]
    questions = [item.question for item in requests]

    assert wait_until(lambda: len(telegram.sent()) >= 3, timeout=30)
    bridge.kill()
    killed_at = time.monotonic()
    time.sleep(0.2)                                       # a request that arrived just before is recorded
    before = [call for call in telegram.sent() if call.at < killed_at]
    told_before = set().union(*(subjects_in(call, everything + questions) for call in before))
    assert len(told_before) < len(everything) + len(questions), "the burst was over before the kill"

    bridge.start()
    assert wait_all_shown(telegram, everything + questions, timeout=60) == [], "lost after kill -9"
    time.sleep(1.0)
    after = [call for call in telegram.sent() if call.at > killed_at]
    told_again = set().union(*(subjects_in(call, everything + questions) for call in after)) & told_before
    in_flight = subjects_in(before[-1], everything + questions)
    assert told_again <= in_flight, "resent beyond the message in flight: %s" % sorted(told_again - in_flight)[:10]
    assert all(call.ok for call in telegram.all_calls())


# -- the relay's own alerts -------------------------------------------------------------------------


def test_the_relays_retention_warning_arrives_before_records_lost(relays, telegram, bridges, watchers):
    # Retention removes segments whose newest record is older than 6 s; the warning is due once
    # the oldest record timmy has not committed is 2 s old. A small ring (64 KiB) and small
    # segments: the records retention removes are no longer in memory either, so they are lost.
    relay = start_relay(relays, "alpha", "alert_interval_ms=200", "retention_max_age_ms=6000",
                        "alert_retention_warning_ms=4000", "max_frame_bytes=16384", "ring_bytes=65536",
                        "ring_records=1024", "spill_segment_bytes=65536")
    watcher = watchers(relay.address)
    bridges(relay, telegram)
    producer = Producer([relay.address], producer_id="filler", max_frame_bytes=16384, max_backoff=0.2)
    try:
        for number in range(200):
            producer.emit(base64.b64encode(os.urandom(1500)).decode(), kind="filler", content_type="text/plain")
        assert producer.flush(30)
    finally:
        producer.close(5)

    lost = watcher.wait_alert(lambda a: a.alert == "records_lost" and a.status == "firing", timeout=40)
    assert lost is not None, "no records_lost: %s" % [(a.alert, a.subject, a.status) for a in watcher.alerts()]
    assert lost.subject == "alpha"
    keys = [(a.alert, a.subject, a.status) for a in watcher.alerts()]
    warning = ("retention_warning", "timmy", "firing")
    assert warning in keys, keys
    assert keys.index(warning) < keys.index(("records_lost", "alpha", "firing")), keys
    watcher.assert_canonical()

    assert wait_until(lambda: bool(sent_with(telegram, "records_lost")), timeout=30)
    warned = sent_with(telegram, "retention_warning")
    assert warned and "timmy" in warned[0].shown
    assert warned[0].at < sent_with(telegram, "records_lost")[0].at


def test_collector_away_fires_and_resolves_when_the_collector_connects(relays, telegram, bridges, watchers):
    relay = start_relay(relays, "alpha", "alert_interval_ms=200", "alert_collector_away_ms=1000")
    watcher = watchers(relay.address)
    bridges(relay, telegram)

    def away(status: str) -> Callable[[AllegroAlert], bool]:
        return lambda a: (a.alert, a.subject, a.status) == ("collector_away", "timmy", status)

    fired = watcher.wait_alert(away("firing"), timeout=20)
    assert fired is not None, [(a.alert, a.subject, a.status) for a in watcher.alerts()]
    assert fired.key == ("collector_away", "timmy")
    assert wait_until(lambda: any("collector_away" in call.shown and "timmy" in call.shown
                                  for call in telegram.sent()), timeout=20)
    told = [call for call in telegram.sent() if "collector_away" in call.shown and "timmy" in call.shown][0]
    assert watcher.wait_alert(away("resolved"), timeout=1.0) is None, "resolved before timmy came"

    timmy = watchers(relay.address, name="timmy")
    assert timmy.connected.wait(10)
    resolved = watcher.wait_alert(away("resolved"), timeout=20)
    assert resolved is not None and resolved.key == fired.key
    statuses = [a.status for a in watcher.alerts() if a.key == fired.key]
    assert statuses[:2] == ["firing", "resolved"], statuses
    watcher.assert_canonical()
    assert wait_until(lambda: any("timmy" in call.shown and "resolved" in call.shown.lower()
                                  for call in telegram.sent() if call.at > told.at), timeout=20)


def test_a_relay_that_is_down_is_told_by_the_notifier_itself_and_resolved_when_it_is_back(relays, telegram, bridges):
    relay = start_relay(relays, "alpha", "alert_interval_ms=200")
    bridge = bridges(relay, telegram, relay_http=relay.http_address, relay_down_ms=1000)
    publish(relay, [alert("queue", "before-the-crash")])
    assert wait_until(lambda: bool(sent_with(telegram, "before-the-crash")), timeout=30)

    relay.crash()
    assert wait_until(lambda: bool(sent_with(telegram, "relay_unhealthy")), timeout=30), \
        "the notifier said nothing of a dead relay"
    down = sent_with(telegram, "relay_unhealthy")[0]
    assert relay.http_address in down.shown and "Firing" in down.shown
    status, body = bridge.health()
    assert status == 503 and json.loads(body)["notifier"]["relay_connected"] is False, body

    relay.restart()
    assert wait_until(lambda: any("relay_unhealthy" in call.shown and "Resolved" in call.shown
                                  for call in telegram.sent() if call.at > down.at), timeout=30)
    publish(relay, [alert("queue", "after-the-restart")])
    assert wait_until(lambda: bool(sent_with(telegram, "after-the-restart")), timeout=30)
    assert wait_until(lambda: bridge.health()[0] == 200, timeout=30)


# -- the daily report -----------------------------------------------------------------------------


async def commit_first(address: str, name: str, count: int) -> None:
    """Reads `count` records as the durable collector `name`, commits them, and leaves."""
    collector = Collector(address, name=name, start="earliest", max_backoff=0.5)
    taken = 0
    async for item in collector:
        if isinstance(item, TelemetryEvent):
            taken += 1
            if taken == count:
                await item.commit()
                break
    assert await collector.close(10)


def test_the_daily_report_arrives_with_correct_figures(relays, telegram, bridges, watchers):
    due = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=6)
    relay = start_relay(relays, "alpha", "alert_interval_ms=200", "alert_disk_free_percent=0",
                        "daily_report_at=" + due.strftime("%H:%M:%S"))
    producer = Producer([relay.address], producer_id="daily-figures", max_backoff=0.2)
    try:
        for number in range(25):
            producer.emit({"sample": number}, session="daily-test", kind="telemetry.sample")
        assert producer.flush(30)
    finally:
        producer.close(5)
    asyncio.run(commit_first(relay.address, "timmy", 10))
    watcher = watchers(relay.address)
    bridges(relay, telegram, reports="daily")

    deadline = time.monotonic() + 30
    while not watcher.reports() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert watcher.reports(), "no daily report on the stream"
    assert datetime.datetime.now(datetime.timezone.utc) >= due - datetime.timedelta(seconds=1)
    event, report = watcher.reports()[0]
    assert (event.kind, event.session, event.content_type) == ("allegro.report", "allegro.daily", "application/json")
    assert report.task.startswith("Daily report")
    assert report.telemetry.executions == 25
    results = report.results.split("\n")
    assert "records relayed: 25" in results, results
    assert "collector timmy: away, committed 10, lag 15 records" in results, results
    assert any(re.fullmatch(r"collector notifier: connected, committed [0-9]+, lag [0-9]+ records", line)
               for line in results), results
    spill = [re.fullmatch(r"spill: ([0-9]+) bytes in ([0-9]+) segments.*", line) for line in results]
    spill_numbers = [match for match in spill if match]
    assert spill_numbers and int(spill_numbers[0].group(1)) > 0 and int(spill_numbers[0].group(2)) >= 1, results
    assert "restarts: 0" in results and "errors: none" in results, results
    watcher.assert_canonical()

    html = shown_text(report.to_telegram_html(), "HTML").strip()
    assert wait_until(lambda: any(html in call.shown for call in telegram.sent()), timeout=20), \
        telegram.shown_texts()
    time.sleep(0.5)
    assert len(watcher.reports()) == 1 and len(sent_with(telegram, report.task)) == 1


# -- requests and reports -----------------------------------------------------------------------------


def test_a_request_of_urgency_critical_is_sent_and_one_of_urgency_low_is_not(relays, telegram, bridges):
    relay = start_relay(relays)
    bridges(relay, telegram, reports="daily")        # request_urgency: its default, high
    low, medium = request("low", "LOW: may I tidy the labels?"), request("medium", "MEDIUM: may I rename a branch?")
    high, critical = request("high", "HIGH: may I merge PR #42?"), request("critical", "CRITICAL: may I restart vps1?")
    other_report = AllegroReport(task="Triage new issues", status="complete", duration="4m", results="Labelled 3.",
                                 artifacts=(), telemetry=Telemetry(3, 100, 40), next_steps="None.")
    publish(relay, [low, medium, (other_report, "triage-7"), high, critical, alert("sentinel", "after-all")])

    assert wait_all_shown(telegram, [critical.question, high.question, "after-all"], timeout=30) == []
    for sent_request in (critical, high):
        calls = sent_with(telegram, sent_request.question)
        assert len(calls) == 1 and calls[0].parse_mode == "HTML"
        assert shown_text(sent_request.to_telegram_html(), "HTML").strip() in calls[0].shown
    shown = "\n".join(telegram.shown_texts())
    assert low.question not in shown and medium.question not in shown
    assert other_report.task not in shown, "reports=daily sent a report that is not the daily one"


# -- the token ------------------------------------------------------------------------------------


def test_the_bot_token_is_never_in_messages_logs_or_health(binary, relays, telegram, bridges, tmp_path):
    relay = start_relay(relays)
    token_file = tmp_path / "telegram-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    telegram.server_error_next(1, status=502)
    telegram.too_many_requests_next(1, retry_after=1)
    bridge = bridges(relay, telegram, token=None, telegram_token_file=str(token_file))
    publish(relay, [alert("token_check", "svc-1", summary="an alert"), request("critical", "TOKEN: may I?")])
    assert wait_all_shown(telegram, ["svc-1", "TOKEN: may I?"], timeout=30) == []
    telegram.down_for(1.0, closed=True)                  # a connection failure too, with whatever it logs
    publish(relay, [alert("token_check_2", "svc-2")])
    assert wait_all_shown(telegram, ["svc-2"], timeout=30) == []

    assert all(call.token == TOKEN for call in telegram.all_calls()), "the bridge used another token"
    for call in telegram.all_calls():
        assert SECRET not in json.dumps(call.params)
    status, body = bridge.health()
    assert status == 200 and isinstance(json.loads(body), dict)
    assert SECRET.encode() not in body
    bridge.stop()
    output = bridge.output()
    assert output and SECRET not in output and TOKEN not in output

    # The token is never a setting: refused as an unknown key, and not echoed.
    refused = subprocess.Popen([binary, "bridge", "--set", "bridge.relay=" + relay.address,
                                "--set", "bridge.http=127.0.0.1:0", "--set", "bridge.data_dir=" + str(tmp_path / "refused"),
                                "--set", "bridge.telegram_api=" + telegram.base_url,
                                "--set", "bridge.telegram_chat_id=" + CHAT, "--set", "bridge.telegram_token=" + TOKEN],
                               env=bridge_env(None), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        out, err = refused.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        refused.kill()
        out, err = refused.communicate()
        pytest.fail("the bridge ran with --set bridge.telegram_token: " + (out + err).decode(errors="replace"))
    said = (out + err).decode(errors="replace")
    assert refused.returncode != 0 and "bridge.telegram_token" in said, said
    assert SECRET not in said
