"""Allegro Requests and Reports (protocol/MESSAGES.md): the worked examples byte for byte, round
trips through Markdown and JSON, every bad input with its exact error, Telegram HTML escaping, and
the same bytes from the Swift side (`allegro message parse|render`)."""

import dataclasses
import json
import re
import subprocess
from pathlib import Path
from typing import Callable, Dict, List, Union

import pytest

from allegro_client.messages import (AllegroReport, AllegroRequest, MessageError, Telemetry, parse_json,
                                     parse_markdown)

SPEC = Path(__file__).resolve().parents[2] / "MESSAGES.md"

REQUEST = AllegroRequest(
    type="approval", urgency="high", context="https://gitea.example/timmy/allegro/pulls/42",
    question="May I merge PR #42 (the Telegram notifier) into main?\n"
             "CI is green on 8d3f0c6; the relay's p99 lag stayed < 100 ms.",
    options=("Merge now: alerts reach Telegram tonight; the 429 back-off is tested against the fake API only.",
             "Wait a day of shadow traffic: safer, but alerts stay silent until tomorrow."),
    recommendation="Option 1. The notifier is a durable collector & commits only what Telegram accepted,\n"
                   "so nothing is lost if it misbehaves.",
    time_constraint="Before 18:00 UTC today, so the daily report goes out through the new path.")

REPORT = AllegroReport(
    task="Triage new issues in timmy/allegro", status="complete", duration="4m 12s",
    results="Labelled 3 new issues; #18 and #19 duplicate #12.\n\n"
            "Asked for the relay log on #20 (lag > 100 ms reported).",
    artifacts=("https://gitea.example/timmy/allegro/issues/18#issuecomment-201",
               "https://gitea.example/timmy/allegro/issues/20#issuecomment-204"),
    telemetry=Telemetry(executions=12, success_rate_percent=91.66, avg_latency_ms=340),
    next_steps="Poll again at 14:05 UTC.")

REQUEST_MARKDOWN = """\
## 🔄 Allegro Request
**Type:** approval
**Urgency:** high
**Context:** https://gitea.example/timmy/allegro/pulls/42
**Question/Request:**
May I merge PR #42 (the Telegram notifier) into main?
CI is green on 8d3f0c6; the relay's p99 lag stayed < 100 ms.
**Options:**
1. Merge now: alerts reach Telegram tonight; the 429 back-off is tested against the fake API only.
2. Wait a day of shadow traffic: safer, but alerts stay silent until tomorrow.
**Recommendation:**
Option 1. The notifier is a durable collector & commits only what Telegram accepted,
so nothing is lost if it misbehaves.
**Time constraint:**
Before 18:00 UTC today, so the daily report goes out through the new path.
"""

REPORT_MARKDOWN = """\
## ✅ Allegro Report
**Task:** Triage new issues in timmy/allegro
**Status:** complete
**Duration:** 4m 12s
**Results:**
Labelled 3 new issues; #18 and #19 duplicate #12.

Asked for the relay log on #20 (lag > 100 ms reported).
**Artifacts:**
- https://gitea.example/timmy/allegro/issues/18#issuecomment-201
- https://gitea.example/timmy/allegro/issues/20#issuecomment-204
**Telemetry:**
- Executions: 12
- Success rate: 91.7%
- Avg latency: 340ms
**Next Steps:**
Poll again at 14:05 UTC.
"""

REQUEST_JSON = (
    '{"context":"https://gitea.example/timmy/allegro/pulls/42","message":"allegro.request","options":["Merge now: '
    'alerts reach Telegram tonight; the 429 back-off is tested against the fake API only.","Wait a day of shadow '
    'traffic: safer, but alerts stay silent until tomorrow."],"question":"May I merge PR #42 (the Telegram '
    'notifier) into main?\\nCI is green on 8d3f0c6; the relay\'s p99 lag stayed < 100 ms.","recommendation":'
    '"Option 1. The notifier is a durable collector & commits only what Telegram accepted,\\nso nothing is lost '
    'if it misbehaves.","time_constraint":"Before 18:00 UTC today, so the daily report goes out through the new '
    'path.","type":"approval","urgency":"high"}')

REPORT_JSON = (
    '{"artifacts":["https://gitea.example/timmy/allegro/issues/18#issuecomment-201","https://gitea.example/timmy/'
    'allegro/issues/20#issuecomment-204"],"duration":"4m 12s","message":"allegro.report","next_steps":"Poll again '
    'at 14:05 UTC.","results":"Labelled 3 new issues; #18 and #19 duplicate #12.\\n\\nAsked for the relay log on '
    '#20 (lag > 100 ms reported).","status":"complete","task":"Triage new issues in timmy/allegro","telemetry":'
    '{"avg_latency_ms":340,"executions":12,"success_rate_percent":91.7}}')

REPORT_HTML = """\
<b>✅ Allegro Report</b>
<b>Task:</b> Triage new issues in timmy/allegro
<b>Status:</b> complete
<b>Duration:</b> 4m 12s
<b>Results:</b>
Labelled 3 new issues; #18 and #19 duplicate #12.

Asked for the relay log on #20 (lag &gt; 100 ms reported).
<b>Artifacts:</b>
- https://gitea.example/timmy/allegro/issues/18#issuecomment-201
- https://gitea.example/timmy/allegro/issues/20#issuecomment-204
<b>Telemetry:</b>
- Executions: 12
- Success rate: 91.7%
- Avg latency: 340ms
<b>Next Steps:</b>
Poll again at 14:05 UTC.
"""

MAX = 9223372036854775807

# Messages at the edges: no options or artifacts, the extreme numbers, text that only just is not a
# heading, characters JSON escapes, combining marks right after a prefix (compared as code points),
# emoji sequences, right-to-left text, U+2028 (not a line break here).
SAMPLES: Dict[str, Union[AllegroRequest, AllegroReport]] = {
    "request": REQUEST,
    "report": REPORT,
    "request-bare": AllegroRequest(type="alert", urgency="critical", context="spill", question="q", options=(),
                                   recommendation="r", time_constraint="now"),
    "report-bare": AllegroReport(task="t", status="in-progress", duration="0s", results="r", artifacts=(),
                                 telemetry=Telemetry(0, 0.0, 0), next_steps="n"),
    "report-extremes": AllegroReport(task="  spaced  ", status="failed", duration="forever", results="**Options:**\n x",
                                     artifacts=("-", " - ", "1. not a number"),
                                     telemetry=Telemetry(MAX, 100, MAX), next_steps="**Task:**x\n**task:** y"),
    "request-unicode": AllegroRequest(
        type="review", urgency="low", context="\u0301combining first \"quoted\" \\ back\\slash",
        question="**Type:**x\n\n\n**Type :** y\n**Results:**\n\u2028 line separator \u2028\n"
                 "\u05e9\u05dc\u05d5\u05dd, \U0001F468\u200d\U0001F469\u200d\U0001F467 and \u2705\ufe0f",
        options=("\u0301", "a <b> & </b> &amp;", "tab\\t is not a tab"),
        recommendation="## \u2705 Allegro Report", time_constraint="1. 2. - **"),
}


def request(**changes: object) -> AllegroRequest:
    fields = {field.name: getattr(REQUEST, field.name) for field in dataclasses.fields(REQUEST)}
    fields.update(changes)
    return AllegroRequest(**fields)  # type: ignore[arg-type]


def report(**changes: object) -> AllegroReport:
    fields = {field.name: getattr(REPORT, field.name) for field in dataclasses.fields(REPORT)}
    fields.update(changes)
    return AllegroReport(**fields)  # type: ignore[arg-type]


def error_of(action: Callable[[], object]) -> str:
    with pytest.raises(MessageError) as raised:
        action()
    return str(raised.value)


# -- the worked examples --------------------------------------------------------------------------


def test_the_worked_examples_render_exactly_and_are_the_ones_in_the_spec():
    assert REQUEST.to_markdown() == REQUEST_MARKDOWN
    assert REPORT.to_markdown() == REPORT_MARKDOWN
    assert REQUEST.to_json() == REQUEST_JSON
    assert REPORT.to_json() == REPORT_JSON
    assert REPORT.to_telegram_html() == REPORT_HTML
    spec = SPEC.read_text(encoding="utf-8")
    for block in (REQUEST_MARKDOWN, REPORT_MARKDOWN, REQUEST_JSON + "\n", REPORT_JSON + "\n", REPORT_HTML):
        assert "```\n" + block + "```\n" in spec


def test_the_json_form_is_pythons_canonical_dump():
    for message in SAMPLES.values():
        text = message.to_json()
        assert text == json.dumps(json.loads(text), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    assert '"telemetry":{"avg_latency_ms":0,"executions":0,"success_rate_percent":0.0}' in SAMPLES["report-bare"].to_json()
    assert '"success_rate_percent":100.0' in SAMPLES["report-extremes"].to_json()


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trips_through_markdown_and_json(name: str):
    message = SAMPLES[name]
    kind = type(message)
    markdown, text = message.to_markdown(), message.to_json()
    assert kind.from_markdown(markdown) == message
    assert kind.from_markdown(markdown).to_markdown() == markdown
    assert kind.from_json(text) == message
    assert kind.from_json(text).to_json() == text
    assert kind.from_json(text.encode("utf-8")) == message
    assert parse_markdown(markdown) == message
    assert parse_json(text) == message
    assert parse_markdown(markdown).to_json() == text
    assert parse_json(text).to_markdown() == markdown
    assert markdown.endswith("\n") and not markdown.endswith("\n\n") and "\r" not in markdown


def test_the_values_are_frozen_and_lists_become_tuples():
    built = request(options=["one", "two"])
    assert built.options == ("one", "two") and built == request(options=("one", "two"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.urgency = "low"  # type: ignore[misc]


def test_the_success_rate_is_rounded_to_tenths_halves_away_from_zero():
    cases = [(91.66, 91.7, "91.7"), (0.05, 0.1, "0.1"), (0.25, 0.3, "0.3"), (0.35, 0.4, "0.4"), (99.95, 100.0, "100.0"),
             (100, 100.0, "100.0"), (0, 0.0, "0.0"), (-0.0, 0.0, "0.0"), (12.34, 12.3, "12.3"), (50.5, 50.5, "50.5")]
    for given, value, text in cases:
        telemetry = Telemetry(1, given, 2)
        assert telemetry.success_rate_percent == value and isinstance(telemetry.success_rate_percent, float)
        assert ("- Success rate: %s%%" % text) in report(telemetry=telemetry).to_markdown()
        assert ('"success_rate_percent":%s}' % text) in report(telemetry=telemetry).to_json()


# -- construction ---------------------------------------------------------------------------------

CONSTRUCTION = [
    (lambda: request(type="question"), 'type: "question" is not one of decision, approval, review, alert'),
    (lambda: request(urgency="urgent"), 'urgency: "urgent" is not one of low, medium, high, critical'),
    (lambda: request(urgency=None), "urgency: expected a string"),
    (lambda: request(context=""), "context: empty"),
    (lambda: request(context="two\nlines"), "context: one line only"),
    (lambda: request(context="a\rb"), "context: control character U+000D in it"),
    (lambda: request(context="tab\there"), "context: control character U+0009 in it"),
    (lambda: request(context="\x85"), "context: control character U+0085 in it"),
    (lambda: request(context="\x7f"), "context: control character U+007F in it"),
    (lambda: request(context="\ud800"), "context: surrogate U+D800 in it"),
    (lambda: request(question=""), "question: empty"),
    (lambda: request(question="\nq"), "question: starts or ends with an empty line"),
    (lambda: request(question="q\n"), "question: starts or ends with an empty line"),
    (lambda: request(question="\n"), "question: starts or ends with an empty line"),
    (lambda: request(question="q\r\nr"), "question: control character U+000D in it"),
    (lambda: request(question="a\n**Options:**"), 'question: the line "**Options:**" reads as a heading of the message'),
    (lambda: request(recommendation="**Time constraint:** soon"),
     'recommendation: the line "**Time constraint:** soon" reads as a heading of the message'),
    (lambda: request(time_constraint="x\n**Question/Request:**\ny"),
     'time_constraint: the line "**Question/Request:**" reads as a heading of the message'),
    (lambda: request(options="one"), "options: expected a list of strings"),
    (lambda: request(options=["one", 2]), "options: expected a list of strings"),
    (lambda: request(options=["one", ""]), "options: item 2: empty"),
    (lambda: request(options=["a\nb"]), "options: item 1: one line only"),
    (lambda: request(options=["ok", "ok", "\x00"]), "options: item 3: control character U+0000 in it"),
    (lambda: report(task=""), "task: empty"),
    (lambda: report(status="done"), 'status: "done" is not one of complete, in-progress, blocked, failed'),
    (lambda: report(duration="4m\n12s"), "duration: one line only"),
    (lambda: report(results="**Next Steps:**"), 'results: the line "**Next Steps:**" reads as a heading of the message'),
    (lambda: report(results="r\n\n"), "results: starts or ends with an empty line"),
    (lambda: report(artifacts=("",)), "artifacts: item 1: empty"),
    (lambda: report(telemetry={"executions": 1}), "telemetry: expected a Telemetry"),
    (lambda: report(next_steps="**Artifacts:** none"),
     'next_steps: the line "**Artifacts:** none" reads as a heading of the message'),
    (lambda: Telemetry(-1, 50, 1), "telemetry.executions: below 0"),
    (lambda: Telemetry(True, 50, 1), "telemetry.executions: expected a whole number"),
    (lambda: Telemetry(1.0, 50, 1), "telemetry.executions: expected a whole number"),  # type: ignore[arg-type]
    (lambda: Telemetry(MAX + 1, 50, 1), "telemetry.executions: expected a whole number"),
    (lambda: Telemetry(1, 100.01, 1), "telemetry.success_rate_percent: not a number from 0 to 100"),
    (lambda: Telemetry(1, -0.01, 1), "telemetry.success_rate_percent: not a number from 0 to 100"),
    (lambda: Telemetry(1, float("nan"), 1), "telemetry.success_rate_percent: not a number from 0 to 100"),
    (lambda: Telemetry(1, float("inf"), 1), "telemetry.success_rate_percent: not a number from 0 to 100"),
    (lambda: Telemetry(1, "98.5", 1), "telemetry.success_rate_percent: expected a number"),  # type: ignore[arg-type]
    (lambda: Telemetry(1, False, 1), "telemetry.success_rate_percent: expected a number"),
    (lambda: Telemetry(1, 50, -5), "telemetry.avg_latency_ms: below 0"),
]


@pytest.mark.parametrize("build,expected", CONSTRUCTION, ids=[case[1] for case in CONSTRUCTION])
def test_construction_refuses_naming_the_field(build: Callable[[], object], expected: str):
    assert error_of(build) == expected


def test_the_error_carries_field_line_and_reason():
    with pytest.raises(ValueError) as raised:
        parse_markdown(REQUEST_MARKDOWN.replace("**Urgency:** high", "**Urgency:** urgent"))
    error = raised.value
    assert isinstance(error, MessageError)
    assert (error.line, error.field, error.reason) == (3, "urgency", '"urgent" is not one of low, medium, high, critical')
    with pytest.raises(MessageError) as raised:
        request(context="")
    assert (raised.value.line, raised.value.field, raised.value.reason) == (None, "context", "empty")


# -- bad Markdown ---------------------------------------------------------------------------------


def lines_of(text: str) -> List[str]:
    return text[:-1].split("\n")


def with_lines(text: str, change: Callable[[List[str]], None]) -> str:
    lines = lines_of(text)
    change(lines)
    return "\n".join(lines) + "\n"


RQ, RP = REQUEST_MARKDOWN, REPORT_MARKDOWN
MARKDOWN = [
    (RQ.replace("**Urgency:** high", "**Urgency:** urgent"),
     'line 3: urgency: "urgent" is not one of low, medium, high, critical'),
    (RQ.replace("**Type:** approval", "**Type:** Approval"),
     'line 2: type: "Approval" is not one of decision, approval, review, alert'),
    (RQ.replace("**Type:** approval", "**Type:** "), 'line 2: type: "" is not one of decision, approval, review, alert'),
    (RQ.replace("**Type:** approval", "**Type:**approval"), "line 2: type: expected **Type:** and its value"),
    (RQ.replace("**Type:** approval", "**type:** approval"), "line 2: type: expected **Type:** and its value"),
    (RQ.replace("**Question/Request:**\n", ""), "line 5: message: expected **Question/Request:**"),
    (RQ.replace("**Question/Request:**\n", "**Question/Request:** May I?\n"),
     "line 5: message: expected **Question/Request:**"),
    ("# Hello\n", "line 1: message: expected ## 🔄 Allegro Request or ## ✅ Allegro Report"),
    ("", "line 1: message: expected ## 🔄 Allegro Request or ## ✅ Allegro Report"),
    ("\n" + RQ, "line 1: message: expected ## 🔄 Allegro Request or ## ✅ Allegro Report"),
    (RQ.replace("## 🔄 Allegro Request", "## 🔄\ufe0f Allegro Request"),
     "line 1: message: expected ## 🔄 Allegro Request or ## ✅ Allegro Report"),
    (RQ.replace("## 🔄 Allegro Request", "## 🔄 Allegro Request "),
     "line 1: message: expected ## 🔄 Allegro Request or ## ✅ Allegro Report"),
    (RQ.replace("\n", "\r\n"), "line 1: message: a carriage return: lines end with LF alone"),
    (RQ.replace("**Type:** approval\n", "**Type:** approval\r\n"), "line 2: message: a carriage return: lines end with LF alone"),
    (RQ.replace("stayed < 100", "stayed\r< 100"), "line 7: message: a carriage return: lines end with LF alone"),
    (RQ[:-1], "line 15: message: the last line does not end with LF"),
    (RQ.replace("is lost", "is\n\nlost")[:-1], "line 17: message: the last line does not end with LF"),
    (RQ + "\n", "line 15: time_constraint: starts or ends with an empty line"),
    (RQ.replace("**Context:** https://gitea.example/timmy/allegro/pulls/42", "**Context:** "), "line 4: context: empty"),
    (RQ.replace("**Context:** https://gitea.example/timmy/allegro/pulls/42", "**Context:**"),
     "line 4: context: expected **Context:** and its value"),
    (RQ.replace("pulls/42", "pulls/\t42"), "line 4: context: control character U+0009 in it"),
    (RQ.replace("2. Wait", "3. Wait"), 'line 10: options: expected "2. ..." or **Recommendation:**'),
    (RQ.replace("1. Merge", "1.Merge"), 'line 9: options: expected "1. ..." or **Recommendation:**'),
    (RQ.replace("1. Merge", "01. Merge"), 'line 9: options: expected "1. ..." or **Recommendation:**'),
    (RQ.replace("2. Wait a day of shadow traffic: safer, but alerts stay silent until tomorrow.", "2. "),
     "line 9: options: item 2: empty"),
    (RQ.replace("**Options:**\n", ""), "line 15: question: expected **Options:** after it"),
    (RQ.replace("**Recommendation:**\n", ""), 'line 11: options: expected "3. ..." or **Recommendation:**'),
    ("\n".join(lines_of(RQ)[:10]) + "\n", "line 11: options: expected **Recommendation:** after it"),
    (with_lines(RQ, lambda lines: lines.__setitem__(slice(5, 7), [])), "line 6: question: empty"),
    (with_lines(RQ, lambda lines: lines.insert(5, "")), "line 6: question: starts or ends with an empty line"),
    (with_lines(RQ, lambda lines: lines.insert(7, "")), "line 6: question: starts or ends with an empty line"),
    (with_lines(RQ, lambda lines: lines.insert(6, "**Type:** x")),
     'line 6: question: the line "**Type:** x" reads as a heading of the message'),
    (with_lines(RQ, lambda lines: lines.insert(6, "in\tbetween")), "line 6: question: control character U+0009 in it"),
    (with_lines(RQ, lambda lines: lines.insert(6, "\x1b[31m")), "line 6: question: control character U+001B in it"),
    (with_lines(RQ, lambda lines: lines.__delitem__(slice(14, 15))), "line 15: time_constraint: empty"),
    (with_lines(RQ, lambda lines: lines.append("**Urgency:** low")),
     'line 15: time_constraint: the line "**Urgency:** low" reads as a heading of the message'),
    (RQ.replace("## 🔄 Allegro Request", "## ✅ Allegro Report"), "line 2: task: expected **Task:** and its value"),
    (RP.replace("**Status:** complete", "**Status:** done"),
     'line 3: status: "done" is not one of complete, in-progress, blocked, failed'),
    (RP.replace("**Results:**\n", ""), "line 5: message: expected **Results:**"),
    (RP.replace("- https://gitea.example/timmy/allegro/issues/20", "* https://gitea.example/timmy/allegro/issues/20"),
     'line 11: artifacts: expected "- ..." or **Telemetry:**'),
    (RP.replace("- https://gitea.example/timmy/allegro/issues/20#issuecomment-204", "- "), "line 10: artifacts: item 2: empty"),
    (RP.replace("**Telemetry:**\n", ""), 'line 15: artifacts: expected "- ..." or **Telemetry:**'),
    ("\n".join(lines_of(RP)[:11]) + "\n", "line 12: artifacts: expected **Telemetry:** after it"),
    (RP.replace("- Executions: 12", "- Runs: 12"), 'line 13: telemetry.executions: expected "- Executions: ..."'),
    (RP.replace("- Success rate: 91.7%", "- Success: 91.7%"),
     'line 14: telemetry.success_rate_percent: expected "- Success rate: ..."'),
    (RP.replace("- Avg latency: 340ms\n", ""), 'line 15: telemetry.avg_latency_ms: expected "- Avg latency: ..."'),
    (RP.replace("**Next Steps:**", "**Next steps:**"), "line 16: message: expected **Next Steps:**"),
    (RP.replace("- Executions: 12", "- Executions: 012"), 'line 13: telemetry.executions: "012" is not a whole number of 0 or more'),
    (RP.replace("- Executions: 12", "- Executions: +12"), 'line 13: telemetry.executions: "+12" is not a whole number of 0 or more'),
    (RP.replace("- Executions: 12", "- Executions: -1"), 'line 13: telemetry.executions: "-1" is not a whole number of 0 or more'),
    (RP.replace("- Executions: 12", "- Executions: \u0661\u0662"),
     'line 13: telemetry.executions: "\u0661\u0662" is not a whole number of 0 or more'),
    (RP.replace("- Executions: 12", "- Executions: 9223372036854775808"),
     'line 13: telemetry.executions: "9223372036854775808" is not a whole number of 0 or more'),
    (RP.replace("- Executions: 12", "- Executions: " + "9" * 5000),
     'line 13: telemetry.executions: "' + "9" * 5000 + '" is not a whole number of 0 or more'),
    (RP.replace("- Executions: 12", "- Executions: 12 "), 'line 13: telemetry.executions: "12 " is not a whole number of 0 or more'),
    (RP.replace("91.7%", "91.66%"),
     'line 14: telemetry.success_rate_percent: "91.66%" is not a number from 0.0 to 100.0 with one decimal and %'),
    (RP.replace("91.7%", "92%"),
     'line 14: telemetry.success_rate_percent: "92%" is not a number from 0.0 to 100.0 with one decimal and %'),
    (RP.replace("91.7%", "91.7"),
     'line 14: telemetry.success_rate_percent: "91.7" is not a number from 0.0 to 100.0 with one decimal and %'),
    (RP.replace("91.7%", "100.1%"),
     'line 14: telemetry.success_rate_percent: "100.1%" is not a number from 0.0 to 100.0 with one decimal and %'),
    (RP.replace("91.7%", "091.7%"),
     'line 14: telemetry.success_rate_percent: "091.7%" is not a number from 0.0 to 100.0 with one decimal and %'),
    (RP.replace("91.7%", "-0.0%"),
     'line 14: telemetry.success_rate_percent: "-0.0%" is not a number from 0.0 to 100.0 with one decimal and %'),
    (RP.replace("340ms", "340 ms"),
     'line 15: telemetry.avg_latency_ms: "340 ms" is not a whole number of milliseconds (like 42ms)'),
    (RP.replace("340ms", "340"), 'line 15: telemetry.avg_latency_ms: "340" is not a whole number of milliseconds (like 42ms)'),
    (RP.replace("340ms", "0340ms"), 'line 15: telemetry.avg_latency_ms: "0340ms" is not a whole number of milliseconds (like 42ms)'),
    # The numbers are read once every line is in place: a later structural error comes first.
    (RP.replace("340ms", "340 ms").replace("**Next Steps:**", "**Next:**"), "line 16: message: expected **Next Steps:**"),
    (RP.replace("Poll again", "**Results:** again"),
     'line 17: next_steps: the line "**Results:** again at 14:05 UTC." reads as a heading of the message'),
    (RP + "\n", "line 17: next_steps: starts or ends with an empty line"),
]


@pytest.mark.parametrize("text,expected", MARKDOWN, ids=[case[1][:90] for case in MARKDOWN])
def test_bad_markdown_is_refused_naming_the_line_and_the_field(text: str, expected: str):
    assert error_of(lambda: parse_markdown(text)) == expected
    if text.startswith("## 🔄 Allegro Request"):
        assert error_of(lambda: AllegroRequest.from_markdown(text)) == expected
    if text.startswith("## ✅ Allegro Report"):
        assert error_of(lambda: AllegroReport.from_markdown(text)) == expected


def test_reading_one_kind_refuses_the_other():
    expected = "line 1: message: expected ## 🔄 Allegro Request or ## ✅ Allegro Report"
    assert error_of(lambda: AllegroRequest.from_markdown(REPORT_MARKDOWN)) == expected
    assert error_of(lambda: AllegroReport.from_markdown(REQUEST_MARKDOWN)) == expected
    assert error_of(lambda: AllegroRequest.from_json(REPORT_JSON)) == 'message: "allegro.report", expected "allegro.request"'
    assert error_of(lambda: AllegroReport.from_json(REQUEST_JSON)) == 'message: "allegro.request", expected "allegro.report"'


def test_the_spec_error_table_is_what_the_code_says():
    spec = SPEC.read_text(encoding="utf-8")
    table = spec[spec.index("## 7. Worked examples of errors"):spec.index("## 8.")]
    for expected in [case[1] for case in MARKDOWN + JSON] + ['message: "allegro.report", expected "allegro.request"']:
        table = table.replace("| `" + expected + "` |", "| |")
    # Every error in the table (the second column) is one the tests check.
    assert not re.findall(r"\| `[^`]*` \|\n", table), table


# -- bad JSON -------------------------------------------------------------------------------------


def json_with(base: str, change: Callable[[dict], None]) -> str:
    value = json.loads(base)
    change(value)
    return json.dumps(value, ensure_ascii=False)


def set_telemetry(key: str, value: object) -> Callable[[dict], None]:
    return lambda message: message["telemetry"].__setitem__(key, value)


JSON = [
    ("", "message: not valid JSON"),
    ("{", "message: not valid JSON"),
    ('{"message":"allegro.request",}', "message: not valid JSON"),
    (REPORT_JSON.replace("91.7", "NaN"), "message: not valid JSON"),
    (REPORT_JSON.replace("91.7", "Infinity"), "message: not valid JSON"),
    (REPORT_JSON.replace("91.7", "1e400"), "message: not valid JSON"),
    (REQUEST_JSON.replace("May I", "\\ud800May I"), "message: not valid JSON"),
    (b'{"message":"allegro.request","context":"\xff"}', "message: not valid JSON"),
    ("[]", "message: expected one JSON object"),
    ('"allegro.request"', "message: expected one JSON object"),
    (REQUEST_JSON.replace('"type":"approval"', '"type":"approval","type":"review"'), "type: duplicate key"),
    (REQUEST_JSON.replace('{"context"', '{"message":"allegro.report","context"'), "message: duplicate key"),
    (REPORT_JSON.replace('"executions":12', '"executions":12,"executions":13'), "telemetry.executions: duplicate key"),
    ('{"type":"decision"}', "message: expected a string"),
    (REQUEST_JSON.replace('"message":"allegro.request"', '"message":null'), "message: expected a string"),
    (REQUEST_JSON.replace('"allegro.request"', '"allegro.alarm"'), 'message: "allegro.alarm", expected "allegro.request"'),
    (json_with(REQUEST_JSON, lambda m: m.__setitem__("extra", 1)), "extra: unknown key"),
    (json_with(REQUEST_JSON, lambda m: m.__setitem__("Type", 1)), "Type: unknown key"),
    (json_with(REQUEST_JSON, lambda m: m.pop("question")), "question: missing"),
    ('{"message":"allegro.request","type":"x"}', "context: missing"),
    (json_with(REQUEST_JSON, lambda m: m.__setitem__("urgency", "urgent")), "urgency: not one of low, medium, high, critical"),
    (json_with(REQUEST_JSON, lambda m: m.__setitem__("type", 1)), "type: expected a string"),
    (json_with(REQUEST_JSON, lambda m: m.update(type="x", context=None)), "type: not one of decision, approval, review, alert"),
    (json_with(REQUEST_JSON, lambda m: m.update(context=None, question="")), "context: expected a string"),
    (json_with(REQUEST_JSON, lambda m: m.update(context="", question=None)), "question: expected a string"),
    (json_with(REQUEST_JSON, lambda m: m.__setitem__("options", "one")), "options: expected a list of strings"),
    (json_with(REQUEST_JSON, lambda m: m.__setitem__("options", ["one", None])), "options: expected a list of strings"),
    (json_with(REQUEST_JSON, lambda m: m.__setitem__("options", ["one", "a\nb"])), "options: item 2: one line only"),
    (json_with(REQUEST_JSON, lambda m: m.__setitem__("context", "a\nb")), "context: one line only"),
    (json_with(REQUEST_JSON, lambda m: m.__setitem__("question", "q\n")), "question: starts or ends with an empty line"),
    (json_with(REQUEST_JSON, lambda m: m.__setitem__("question", "q\r")), "question: control character U+000D in it"),
    (json_with(REQUEST_JSON, lambda m: m.__setitem__("time_constraint", "**Options:**")),
     'time_constraint: the line "**Options:**" reads as a heading of the message'),
    (json_with(REPORT_JSON, lambda m: m.__setitem__("status", "done")), "status: not one of complete, in-progress, blocked, failed"),
    (json_with(REPORT_JSON, lambda m: m.__setitem__("telemetry", [])), "telemetry: expected an object"),
    (json_with(REPORT_JSON, lambda m: m["telemetry"].pop("executions")), "telemetry.executions: missing"),
    (json_with(REPORT_JSON, set_telemetry("runs", 1)), "telemetry.runs: unknown key"),
    (json_with(REPORT_JSON, set_telemetry("executions", "12")), "telemetry.executions: expected a whole number"),
    (json_with(REPORT_JSON, set_telemetry("executions", 12.5)), "telemetry.executions: expected a whole number"),
    (json_with(REPORT_JSON, set_telemetry("executions", True)), "telemetry.executions: expected a whole number"),
    (json_with(REPORT_JSON, set_telemetry("executions", MAX + 1)), "telemetry.executions: expected a whole number"),
    (json_with(REPORT_JSON, set_telemetry("executions", -1)), "telemetry.executions: below 0"),
    (json_with(REPORT_JSON, set_telemetry("avg_latency_ms", -1)), "telemetry.avg_latency_ms: below 0"),
    (json_with(REPORT_JSON, set_telemetry("avg_latency_ms", None)), "telemetry.avg_latency_ms: expected a whole number"),
    (json_with(REPORT_JSON, set_telemetry("success_rate_percent", "91.7")), "telemetry.success_rate_percent: expected a number"),
    (json_with(REPORT_JSON, set_telemetry("success_rate_percent", False)), "telemetry.success_rate_percent: expected a number"),
    (json_with(REPORT_JSON, set_telemetry("success_rate_percent", 2e12)), "telemetry.success_rate_percent: expected a number"),
    (json_with(REPORT_JSON, set_telemetry("success_rate_percent", 1e12 + 0.5)),
     "telemetry.success_rate_percent: expected a number"),
    (json_with(REPORT_JSON, set_telemetry("success_rate_percent", 1e12)),
     "telemetry.success_rate_percent: not a number from 0 to 100"),
    (json_with(REPORT_JSON, set_telemetry("success_rate_percent", 1 << 40)), "telemetry.success_rate_percent: expected a number"),
    (json_with(REPORT_JSON, set_telemetry("success_rate_percent", 100.05)),
     "telemetry.success_rate_percent: not a number from 0 to 100"),
    (json_with(REPORT_JSON, set_telemetry("success_rate_percent", -0.05)),
     "telemetry.success_rate_percent: not a number from 0 to 100"),
    (json_with(REPORT_JSON, lambda m: m.update(next_steps=None, telemetry=dict(m["telemetry"], executions=-1))),
     "telemetry.executions: below 0"),
    (json_with(REPORT_JSON, lambda m: m.update(next_steps=None, task="")), "next_steps: expected a string"),
    (json_with(REPORT_JSON, lambda m: m.__setitem__("artifacts", ["", ""])), "artifacts: item 1: empty"),
]


@pytest.mark.parametrize("text,expected", JSON, ids=[case[1] for case in JSON])
def test_bad_json_is_refused_naming_the_key(text, expected: str):
    kind = AllegroReport if "allegro.report" in str(text) and "allegro.request" not in str(text) else AllegroRequest
    assert error_of(lambda: kind.from_json(text)) == expected


def test_json_numbers_are_read_as_the_swift_side_reads_them():
    def rate(value: object) -> float:
        return AllegroReport.from_json(json_with(REPORT_JSON, set_telemetry("success_rate_percent", value))) \
            .telemetry.success_rate_percent
    assert [rate(value) for value in (98.55, 100.04, -0.04, 0.05, 0.25, 100, 0)] == [98.6, 100.0, 0.0, 0.1, 0.3, 100.0, 0.0]
    for written, read in (("12.0", 12), ("1.2e1", 12), ("-0", 0), ("9223372036854775807", MAX)):
        text = REPORT_JSON.replace('"executions":12', '"executions":' + written)
        assert AllegroReport.from_json(text).telemetry.executions == read
    assert AllegroReport.from_json(" \n" + REPORT_JSON + "\n") == REPORT


def test_choosing_the_message_by_its_json_key():
    assert parse_json(REQUEST_JSON) == REQUEST and parse_json(REPORT_JSON) == REPORT
    assert error_of(lambda: parse_json("nope")) == "message: not a JSON object"
    assert error_of(lambda: parse_json("[1]")) == "message: not a JSON object"
    assert error_of(lambda: parse_json("{}")) == "message: expected a string"
    assert error_of(lambda: parse_json('{"message":"allegro.alarm"}')) == \
        'message: "allegro.alarm" is not allegro.request or allegro.report'
    assert error_of(lambda: parse_json('{"message":"allegro.report"}')) == "artifacts: missing"


# -- Telegram HTML --------------------------------------------------------------------------------


def test_telegram_html_escapes_all_text_and_keeps_only_bold_tags():
    sneaky = AllegroRequest(type="alert", urgency="critical", context='<a href="x">&amp;</a>',
                            question="1 < 2 & 3 > 2\n<b>not bold</b>\n<\u0338 and &\u0301", options=("<i>", "&lt;"),
                            recommendation="'quotes' \"stay\"", time_constraint="now")
    assert sneaky.to_telegram_html() == (
        "<b>🔄 Allegro Request</b>\n"
        "<b>Type:</b> alert\n"
        "<b>Urgency:</b> critical\n"
        '<b>Context:</b> &lt;a href="x"&gt;&amp;amp;&lt;/a&gt;\n'
        "<b>Question/Request:</b>\n"
        "1 &lt; 2 &amp; 3 &gt; 2\n"
        "&lt;b&gt;not bold&lt;/b&gt;\n"
        "&lt;\u0338 and &amp;\u0301\n"
        "<b>Options:</b>\n"
        "1. &lt;i&gt;\n"
        "2. &amp;lt;\n"
        "<b>Recommendation:</b>\n"
        "'quotes' \"stay\"\n"
        "<b>Time constraint:</b>\n"
        "now\n")
    for message in SAMPLES.values():
        html = message.to_telegram_html()
        tags = re.findall(r"<[^>]*>", html)
        assert set(tags) <= {"<b>", "</b>"}, tags
        assert html.endswith("\n") and not html.endswith("\n\n")
        assert html.count("\n") == message.to_markdown().count("\n")
    assert REQUEST.to_telegram_html().startswith("<b>🔄 Allegro Request</b>\n<b>Type:</b> approval\n")
    assert "\n<b>Recommendation:</b>\nOption 1. The notifier is a durable collector &amp; commits" in REQUEST.to_telegram_html()


# -- the same bytes from Swift --------------------------------------------------------------------


def run_allegro(binary: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "message", *arguments], capture_output=True, timeout=60)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_swift_reads_and_writes_the_same_bytes(binary: str, tmp_path: Path, name: str):
    """Python writes the Markdown, Swift parses it to JSON (Python's bytes) and renders it back to the
    same Markdown (and the same Telegram HTML)."""
    message = SAMPLES[name]
    markdown_file, json_file = tmp_path / "message.md", tmp_path / "message.json"
    markdown_file.write_bytes(message.to_markdown().encode("utf-8"))
    parsed = run_allegro(binary, "parse", str(markdown_file))
    assert parsed.returncode == 0, parsed.stderr.decode()
    assert parsed.stdout.decode("utf-8") == message.to_json() + "\n"
    json_file.write_bytes(parsed.stdout)
    rendered = run_allegro(binary, "render", str(json_file))
    assert rendered.returncode == 0, rendered.stderr.decode()
    assert rendered.stdout == message.to_markdown().encode("utf-8")
    html = run_allegro(binary, "render", "--format", "html", str(json_file))
    assert html.returncode == 0, html.stderr.decode()
    assert html.stdout == message.to_telegram_html().encode("utf-8")


# Every bad Markdown above, and a combining mark right after a label's space (code points, not
# characters: the label matches, and the error is the later one).
SWIFT_ERRORS = [text for text, _ in MARKDOWN] + [
    REPORT_MARKDOWN.replace("**Task:** ", "**Task:** \u0301").replace("340ms", "34x"),
]


@pytest.mark.parametrize("text", SWIFT_ERRORS, ids=[error_of(lambda: parse_markdown(text))[:90] for text in SWIFT_ERRORS])
def test_swift_refuses_bad_markdown_with_the_same_error(binary: str, tmp_path: Path, text: str):
    path = tmp_path / "bad.md"
    path.write_bytes(text.encode("utf-8"))
    parsed = run_allegro(binary, "parse", str(path))
    assert (parsed.returncode, parsed.stdout) == (1, b"")
    assert parsed.stderr.decode("utf-8") == "allegro message parse: %s\n" % error_of(lambda: parse_markdown(text))


SWIFT_JSON_ERRORS = [text for text, _ in JSON if isinstance(text, str)]


@pytest.mark.parametrize("text", SWIFT_JSON_ERRORS, ids=[error_of(lambda: parse_json(text))[:90] for text in SWIFT_JSON_ERRORS])
def test_swift_refuses_bad_json_with_the_same_error(binary: str, tmp_path: Path, text: str):
    path = tmp_path / "bad.json"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    rendered = run_allegro(binary, "render", str(path))
    assert (rendered.returncode, rendered.stdout) == (1, b"")
    assert rendered.stderr.decode("utf-8") == "allegro message render: %s\n" % error_of(lambda: parse_json(text))
