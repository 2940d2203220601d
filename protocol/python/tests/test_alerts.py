"""The Allegro Alert (the payload of an `allegro.alert` record; JSON only): its canonical JSON, round
trips, every bad field named by its JSON key, unknown and missing keys, and parse_json choosing it."""

import dataclasses
import json
import re
from pathlib import Path
from typing import Callable

import pytest

from allegro_client import AllegroAlert as ExportedAlert
from allegro_client.messages import (ALERT_STATUSES, SEVERITIES, AllegroAlert, AllegroReport, AllegroRequest,
                                     MessageError, parse_json)

ALERT = AllegroAlert(alert="collector_away", subject="timmy", status="firing", severity="warning",
                     summary="durable collector timmy has been away for 12 min; 3170 records wait for it",
                     details="last seen from 10.0.0.7:51234\ncursor 48211", since_ms=1767225600000)

ALERT_JSON = ('{"alert":"collector_away","details":"last seen from 10.0.0.7:51234\\ncursor 48211",'
              '"message":"allegro.alert","severity":"warning","since_ms":1767225600000,"status":"firing",'
              '"subject":"timmy","summary":"durable collector timmy has been away for 12 min; 3170 records wait for it"}')

MAX = 9223372036854775807
SPEC = Path(__file__).resolve().parents[2] / "MESSAGES.md"

SAMPLES = {
    "worked": ALERT,
    "bare": AllegroAlert("a", "s", "resolved", "info", "x"),
    "edges": AllegroAlert(alert="a" * 64, subject="\U0001F504" * 200, status="firing", severity="critical",
                          summary=" \u2028 <b>&amp;</b> \"quoted\" \\ ", details="\u0301first\n\n\n**Options:**\nlast",
                          since_ms=MAX),
    "names": AllegroAlert(alert="0.9_-z", subject="relay-1 (vps1) \u05e9\u05dc\u05d5\u05dd", status="resolved",
                          severity="warning", summary="resolved after 3 min: the spill writes again", since_ms=0),
}


def alert(**changes: object) -> AllegroAlert:
    fields = {field.name: getattr(ALERT, field.name) for field in dataclasses.fields(ALERT)}
    fields.update(changes)
    return AllegroAlert(**fields)  # type: ignore[arg-type]


def error_of(action: Callable[[], object]) -> str:
    with pytest.raises(MessageError) as raised:
        action()
    return str(raised.value)


def json_with(change: Callable[[dict], None], base: str = ALERT_JSON) -> str:
    value = json.loads(base)
    change(value)
    return json.dumps(value, ensure_ascii=False)


def test_the_json_form_is_canonical_with_exactly_the_eight_keys():
    assert ALERT.to_json() == ALERT_JSON
    for sample in SAMPLES.values():
        text = sample.to_json()
        value = json.loads(text)
        assert text == json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        assert sorted(value) == ["alert", "details", "message", "severity", "since_ms", "status", "subject", "summary"]
        assert value["message"] == "allegro.alert"
    assert '"details":""' in SAMPLES["bare"].to_json() and '"since_ms":0' in SAMPLES["bare"].to_json()
    assert '"subject":"' + "\U0001F504" * 200 + '"' in SAMPLES["edges"].to_json()     # not escaped


def test_the_example_in_messages_md_reads_and_writes_back_byte_for_byte():
    spec = SPEC.read_text(encoding="utf-8")
    section = spec[spec.index("## 9. Allegro Alert"):]
    examples = re.findall(r"```\n(\{.*?\})\n```", section)
    assert examples, "no JSON example in MESSAGES.md section 9"
    for example in examples:
        read = AllegroAlert.from_json(example)
        assert read.to_json() == example and read.key == ("collector_away", "timmy")
        assert parse_json(example) == read


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trips_through_json(name: str):
    sample = SAMPLES[name]
    text = sample.to_json()
    assert AllegroAlert.from_json(text) == sample
    assert AllegroAlert.from_json(text.encode("utf-8")) == sample
    assert AllegroAlert.from_json(" \n" + text + "\n") == sample
    assert AllegroAlert.from_json(text).to_json() == text
    assert parse_json(text) == sample and isinstance(parse_json(text), AllegroAlert)


def test_defaults_key_and_frozen():
    built = AllegroAlert("disk_filling", "relay-1", "firing", "warning", "3% free")
    assert (built.details, built.since_ms) == ("", 0)
    assert built.key == ("disk_filling", "relay-1")
    assert built.key == dataclasses.replace(built, status="resolved", summary="resolved").key
    assert ExportedAlert is AllegroAlert
    assert ALERT_STATUSES == ("firing", "resolved") and SEVERITIES == ("info", "warning", "critical")
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.status = "resolved"  # type: ignore[misc]


def test_json_whole_numbers_are_read_as_the_report_reads_them():
    for written, read in (("12.0", 12), ("1.2e1", 12), ("-0", 0), (str(MAX), MAX)):
        assert AllegroAlert.from_json(ALERT_JSON.replace("1767225600000", written)).since_ms == read


CONSTRUCTION = [
    (lambda: alert(alert=""), "alert: 1 ... 64 characters of a-z, 0-9, _ . -"),
    (lambda: alert(alert="a" * 65), "alert: 1 ... 64 characters of a-z, 0-9, _ . -"),
    (lambda: alert(alert="Collector_away"), "alert: 1 ... 64 characters of a-z, 0-9, _ . -"),
    (lambda: alert(alert="collector away"), "alert: 1 ... 64 characters of a-z, 0-9, _ . -"),
    (lambda: alert(alert="collector/away"), "alert: 1 ... 64 characters of a-z, 0-9, _ . -"),
    (lambda: alert(alert="caf\u00e9"), "alert: 1 ... 64 characters of a-z, 0-9, _ . -"),
    (lambda: alert(alert="\u0661"), "alert: 1 ... 64 characters of a-z, 0-9, _ . -"),
    (lambda: alert(alert=None), "alert: expected a string"),
    (lambda: alert(subject=""), "subject: empty"),
    (lambda: alert(subject="two\nlines"), "subject: one line only"),
    (lambda: alert(subject="tab\there"), "subject: control character U+0009 in it"),
    (lambda: alert(subject="\x85"), "subject: control character U+0085 in it"),
    (lambda: alert(subject="\ud800"), "subject: surrogate U+D800 in it"),
    (lambda: alert(subject="s" * 201), "subject: longer than 200 characters"),
    (lambda: alert(subject="\U0001F504" * 201), "subject: longer than 200 characters"),
    (lambda: alert(subject="\t" + "s" * 300), "subject: control character U+0009 in it"),
    (lambda: alert(subject=7), "subject: expected a string"),
    (lambda: alert(status="open"), 'status: "open" is not one of firing, resolved'),
    (lambda: alert(status="Firing"), 'status: "Firing" is not one of firing, resolved'),
    (lambda: alert(status=None), "status: expected a string"),
    (lambda: alert(severity="error"), 'severity: "error" is not one of info, warning, critical'),
    (lambda: alert(severity=3), "severity: expected a string"),
    (lambda: alert(summary=""), "summary: empty"),
    (lambda: alert(summary="a\nb"), "summary: one line only"),
    (lambda: alert(summary="\x1b[31mred"), "summary: control character U+001B in it"),
    (lambda: alert(details="\n"), "details: starts or ends with an empty line"),
    (lambda: alert(details="\nx"), "details: starts or ends with an empty line"),
    (lambda: alert(details="x\n"), "details: starts or ends with an empty line"),
    (lambda: alert(details="a\r\nb"), "details: control character U+000D in it"),
    (lambda: alert(details="a\tb"), "details: control character U+0009 in it"),
    (lambda: alert(details=None), "details: expected a string"),
    (lambda: alert(since_ms=-1), "since_ms: below 0"),
    (lambda: alert(since_ms=1.0), "since_ms: expected a whole number"),
    (lambda: alert(since_ms=True), "since_ms: expected a whole number"),
    (lambda: alert(since_ms=MAX + 1), "since_ms: expected a whole number"),
    (lambda: alert(since_ms="0"), "since_ms: expected a whole number"),
    # In field order: the first bad field is named.
    (lambda: alert(alert="", subject="", summary=""), "alert: 1 ... 64 characters of a-z, 0-9, _ . -"),
    (lambda: alert(subject="", status="x"), "subject: empty"),
    (lambda: alert(status="x", severity="y"), 'status: "x" is not one of firing, resolved'),
    (lambda: alert(summary="", details="\n", since_ms=-1), "summary: empty"),
]


@pytest.mark.parametrize("build,expected", CONSTRUCTION, ids=[case[1] for case in CONSTRUCTION])
def test_construction_refuses_naming_the_field(build: Callable[[], object], expected: str):
    assert error_of(build) == expected


def test_details_may_hold_any_heading_and_empty_lines_inside():
    text = "**Type:** x\n**Task:** y\n\n## \u2705 Allegro Report"
    assert alert(details=text).details == text


JSON = [
    ("", "message: not valid JSON"),
    (ALERT_JSON[:-1], "message: not valid JSON"),
    (ALERT_JSON.replace("1767225600000", "NaN"), "message: not valid JSON"),
    (ALERT_JSON.replace("1767225600000", "1e400"), "message: not valid JSON"),
    (ALERT_JSON.replace('"timmy"', '"\\ud800"'), "message: not valid JSON"),
    ("[]", "message: expected one JSON object"),
    (ALERT_JSON.replace('"alert":"collector_away"', '"alert":"collector_away","alert":"x"'), "alert: duplicate key"),
    (ALERT_JSON.replace('"message":"allegro.alert"', '"message":null'), "message: expected a string"),
    (json_with(lambda m: m.pop("message")), "message: expected a string"),
    (ALERT_JSON.replace('"allegro.alert"', '"allegro.request"'), 'message: "allegro.request", expected "allegro.alert"'),
    (json_with(lambda m: m.__setitem__("labels", {})), "labels: unknown key"),
    (json_with(lambda m: m.update(zzz=1, aaa=1)), "aaa: unknown key"),
    (json_with(lambda m: m.update(extra=1, status=None)), "extra: unknown key"),
    (json_with(lambda m: m.pop("details")), "details: missing"),
    (json_with(lambda m: m.pop("since_ms")), "since_ms: missing"),
    (json.dumps({k: v for k, v in json.loads(ALERT_JSON).items() if k not in ("alert", "summary")}), "alert: missing"),
    ('{"message":"allegro.alert"}', "alert: missing"),
    (json_with(lambda m: m.__setitem__("status", "open")), "status: not one of firing, resolved"),
    (json_with(lambda m: m.__setitem__("status", 1)), "status: expected a string"),
    (json_with(lambda m: m.__setitem__("severity", "fatal")), "severity: not one of info, warning, critical"),
    (json_with(lambda m: m.update(severity=None, alert="")), "severity: expected a string"),
    (json_with(lambda m: m.update(alert=None, status="open")), "status: not one of firing, resolved"),
    (json_with(lambda m: m.update(alert=None, subject="")), "alert: expected a string"),
    (json_with(lambda m: m.update(subject=["timmy"], alert="")), "subject: expected a string"),
    (json_with(lambda m: m.update(summary=None, alert="")), "summary: expected a string"),
    (json_with(lambda m: m.update(details=None, alert="")), "details: expected a string"),
    (json_with(lambda m: m.update(since_ms="1", alert="")), "since_ms: expected a whole number"),
    (json_with(lambda m: m.__setitem__("since_ms", 1.5)), "since_ms: expected a whole number"),
    (json_with(lambda m: m.__setitem__("since_ms", True)), "since_ms: expected a whole number"),
    (json_with(lambda m: m.__setitem__("since_ms", MAX + 1)), "since_ms: expected a whole number"),
    (json_with(lambda m: m.update(since_ms=-1, details="\n")), "details: starts or ends with an empty line"),
    (json_with(lambda m: m.__setitem__("since_ms", -1)), "since_ms: below 0"),
    (json_with(lambda m: m.__setitem__("alert", "Disk")), "alert: 1 ... 64 characters of a-z, 0-9, _ . -"),
    (json_with(lambda m: m.__setitem__("subject", "")), "subject: empty"),
    (json_with(lambda m: m.__setitem__("subject", "x" * 201)), "subject: longer than 200 characters"),
    (json_with(lambda m: m.__setitem__("summary", "a\nb")), "summary: one line only"),
    (json_with(lambda m: m.__setitem__("details", "a\n")), "details: starts or ends with an empty line"),
]


@pytest.mark.parametrize("text,expected", JSON, ids=[case[1] for case in JSON])
def test_bad_json_is_refused_naming_the_key(text: str, expected: str):
    assert error_of(lambda: AllegroAlert.from_json(text)) == expected


def test_parse_json_chooses_the_alert_and_the_other_readers_refuse_it():
    assert parse_json(ALERT_JSON) == ALERT
    assert error_of(lambda: parse_json('{"message":"allegro.alert"}')) == "alert: missing"
    assert error_of(lambda: parse_json('{"message":"allegro.alarm"}')) == \
        'message: "allegro.alarm" is not allegro.request or allegro.report'
    assert error_of(lambda: parse_json(json_with(lambda m: m.__setitem__("status", "open")))) == \
        "status: not one of firing, resolved"
    assert error_of(lambda: AllegroRequest.from_json(ALERT_JSON)) == 'message: "allegro.alert", expected "allegro.request"'
    assert error_of(lambda: AllegroReport.from_json(ALERT_JSON)) == 'message: "allegro.alert", expected "allegro.report"'
