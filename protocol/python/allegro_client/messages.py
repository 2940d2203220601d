"""The seed's Allegro Request and Allegro Report, and the notifier's Allegro Alert (protocol/MESSAGES.md) as values.

    from allegro_client.messages import AllegroRequest, AllegroReport, Telemetry, parse_markdown

    request = AllegroRequest(type="approval", urgency="high", context="https://gitea.example/timmy/allegro/pulls/42",
                             question="May I merge PR #42?", options=("Merge now", "Wait a day"),
                             recommendation="Merge now.", time_constraint="Before 18:00 UTC today.")
    request.to_markdown()        # the seed's Markdown, exactly (MESSAGES.md)
    request.to_json()            # canonical JSON, byte-equal to what the Swift side writes
    request.to_telegram_html()   # Telegram's HTML parse mode
    parse_markdown(text)         # an AllegroRequest or an AllegroReport, by its heading
    parse_json(text)             # likewise, by its "message" key (also an AllegroAlert)

    alert = AllegroAlert(alert="disk_filling", subject="relay-1", status="firing", severity="warning",
                         summary="3.2% of the disk is free", since_ms=1767225600000)
    alert.to_json()              # the payload of an `allegro.alert` record (JSON only, no Markdown)
    AllegroAlert.from_json(text)
    alert.key                    # ("disk_filling", "relay-1"): one alert, whatever its status

A value that exists is valid and renders: every check runs in the constructor, and the values are
frozen. Whatever cannot be built or read raises `MessageError` (a ValueError) naming the field (its
JSON key) and, for Markdown, the line: `line 3: urgency: "urgent" is not one of low, medium, high,
critical`. Standard library only.
"""

import html
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["AllegroRequest", "AllegroReport", "AllegroAlert", "Telemetry", "MessageError", "parse_markdown",
           "parse_json", "REQUEST_HEADING", "REPORT_HEADING", "REQUEST_TYPES", "URGENCIES", "STATUSES",
           "ALERT_STATUSES", "SEVERITIES", "ALERT_NAME_MAX", "ALERT_SUBJECT_MAX",
           "ALERT_SUMMARY_MAX", "ALERT_DETAILS_MAX"]

REQUEST_HEADING = "## \U0001F504 Allegro Request"
REPORT_HEADING = "## \u2705 Allegro Report"
_HEADINGS_TEXT = REQUEST_HEADING + " or " + REPORT_HEADING

REQUEST_TYPES: Tuple[str, ...] = ("decision", "approval", "review", "alert")
URGENCIES: Tuple[str, ...] = ("low", "medium", "high", "critical")
STATUSES: Tuple[str, ...] = ("complete", "in-progress", "blocked", "failed")
ALERT_STATUSES: Tuple[str, ...] = ("firing", "resolved")
SEVERITIES: Tuple[str, ...] = ("info", "warning", "critical")
ALERT_NAME_MAX = 64         # characters (code points) of an alert's name
ALERT_SUBJECT_MAX = 200     # characters (code points) of an alert's subject
ALERT_SUMMARY_MAX = 1000    # ... of its summary
ALERT_DETAILS_MAX = 8192    # ... of its details

# The Markdown labels of each message: a line of a multi-line text may not read as one of them.
_REQUEST_LABELS: Tuple[str, ...] = ("Type", "Urgency", "Context", "Question/Request", "Options", "Recommendation",
                                    "Time constraint")
_REPORT_LABELS: Tuple[str, ...] = ("Task", "Status", "Duration", "Results", "Artifacts", "Telemetry", "Next Steps")

_REQUEST_KEYS: Tuple[str, ...] = ("context", "message", "options", "question", "recommendation", "time_constraint",
                                  "type", "urgency")
_REPORT_KEYS: Tuple[str, ...] = ("artifacts", "duration", "message", "next_steps", "results", "status", "task",
                                 "telemetry")
_TELEMETRY_KEYS: Tuple[str, ...] = ("avg_latency_ms", "executions", "success_rate_percent")
_ALERT_KEYS: Tuple[str, ...] = ("alert", "details", "message", "severity", "since_ms", "status", "subject", "summary")
# The error for any other "message" value stays as MESSAGES.md section 5 words it (and the Swift side
# writes it), though parse_json also reads allegro.alert.
_MESSAGE_KINDS_TEXT = "allegro.request or allegro.report"

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_WHOLE = re.compile(r"0|[1-9][0-9]*")
_RATE = re.compile(r"(0|[1-9][0-9]*)\.([0-9])%")
_LATENCY = re.compile(r"(0|[1-9][0-9]*)ms")


class MessageError(ValueError):
    """A message that cannot be built or read. `field` is the JSON key (`telemetry.executions` for
    the telemetry's keys, `message` for the message as a whole), `line` the 1-based Markdown line
    (None for construction and JSON), `reason` the rest of the text."""

    def __init__(self, field: str, reason: str, line: Optional[int] = None) -> None:
        self.field = field
        self.reason = reason
        self.line = line
        super().__init__(("line %d: " % line if line is not None else "") + field + ": " + reason)


# -- the checks every field shares (MESSAGES.md, "Fields") ----------------------------------------


def _bad_scalar(value: str, allow_lf: bool) -> Optional[str]:
    """The reason for the first character that may not appear, or None."""
    for character in value:
        code = ord(character)
        if code < 0x20 or 0x7F <= code < 0xA0:
            if code == 0x0A:
                if allow_lf:
                    continue
                return "one line only"
            return "control character U+%04X in it" % code
        if 0xD800 <= code < 0xE000:
            return "surrogate U+%04X in it" % code
    return None


def _check_string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise MessageError(field, "expected a string")
    return str(value)


def _check_single_line(given: Any, field: str) -> str:
    value = _check_string(given, field)
    if not value:
        raise MessageError(field, "empty")
    bad = _bad_scalar(value, allow_lf=False)
    if bad:
        raise MessageError(field, bad)
    return value


def _is_heading(line: str, labels: Sequence[str]) -> bool:
    return any(line == "**" + label + ":**" or line.startswith("**" + label + ":** ") for label in labels)


def _check_text(given: Any, field: str, labels: Sequence[str]) -> str:
    value = _check_string(given, field)
    if not value:
        raise MessageError(field, "empty")
    bad = _bad_scalar(value, allow_lf=True)
    if bad:
        raise MessageError(field, bad)
    lines = value.split("\n")
    if not lines[0] or not lines[-1]:
        raise MessageError(field, "starts or ends with an empty line")
    for line in lines:
        if _is_heading(line, labels):
            raise MessageError(field, 'the line "%s" reads as a heading of the message' % line)
    return value


def _check_alert_name(given: Any, field: str) -> str:
    """An alert's name: 1 to 64 characters, each one of a-z, 0-9, "_", "." and "-"."""
    value = _check_string(given, field)
    if not 1 <= len(value) <= ALERT_NAME_MAX or not all(
            "a" <= character <= "z" or "0" <= character <= "9" or character in "_.-" for character in value):
        raise MessageError(field, "1 ... %d characters of a-z, 0-9, _ . -" % ALERT_NAME_MAX)
    return value


def _check_bounded_line(given: Any, field: str, limit: int) -> str:
    """A single line of at most `limit` characters (code points)."""
    value = _check_single_line(given, field)
    if len(value) > limit:
        raise MessageError(field, "longer than %d characters" % limit)
    return value


def _check_optional_text(given: Any, field: str) -> str:
    """"" or a text (rules 1 to 3: no control character but LF, first and last line not empty); no
    heading rule, as an alert has no Markdown form."""
    value = _check_string(given, field)
    if not value:
        return value
    return _check_text(value, field, ())


def _check_items(values: Any, field: str) -> Tuple[str, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise MessageError(field, "expected a list of strings")
    items = tuple(values)
    if not all(isinstance(item, str) for item in items):
        raise MessageError(field, "expected a list of strings")
    for number, item in enumerate(items, 1):
        try:
            _check_single_line(item, field)
        except MessageError as error:
            raise MessageError(field, "item %d: %s" % (number, error.reason)) from None
    return tuple(str(item) for item in items)


def _check_choice(given: Any, field: str, choices: Sequence[str]) -> str:
    value = _check_string(given, field)
    if value not in choices:
        raise MessageError(field, '"%s" is not one of %s' % (value, ", ".join(choices)))
    return value


def _check_whole(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not _INT64_MIN <= value <= _INT64_MAX:
        raise MessageError(field, "expected a whole number")
    if value < 0:
        raise MessageError(field, "below 0")
    return int(value)


def _round_half_away(value: float) -> int:
    """The nearest integer, halves away from zero (Swift's `rounded()`, not Python's round())."""
    magnitude = abs(value)
    whole = math.floor(magnitude)
    if magnitude - whole >= 0.5:
        whole += 1
    return -whole if value < 0 else whole


def _html(text: str) -> str:
    return html.escape(text, quote=False)


# -- the values ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Telemetry:
    """A report's telemetry: executions (a whole number >= 0), the success rate in percent (0 to
    100, rounded to one decimal when built: tenths = round(x * 10), halves away from zero) and the
    average latency in whole milliseconds (>= 0)."""

    executions: int
    success_rate_percent: float
    avg_latency_ms: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "executions", _check_whole(self.executions, "telemetry.executions"))
        rate = self.success_rate_percent
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise MessageError("telemetry.success_rate_percent", "expected a number")
        if not (isinstance(rate, int) or math.isfinite(rate)) or not 0 <= rate <= 100:
            raise MessageError("telemetry.success_rate_percent", "not a number from 0 to 100")
        object.__setattr__(self, "success_rate_percent", _round_half_away(float(rate) * 10) / 10)
        object.__setattr__(self, "avg_latency_ms", _check_whole(self.avg_latency_ms, "telemetry.avg_latency_ms"))

    @property
    def success_rate_tenths(self) -> int:
        return _round_half_away(self.success_rate_percent * 10)

    @property
    def success_rate_text(self) -> str:
        """The rate as written: digits, a point, one digit (`98.5`, `100.0`, `0.0`)."""
        tenths = self.success_rate_tenths
        return "%d.%d" % (tenths // 10, tenths % 10)

    def _lines(self) -> List[str]:
        return ["- Executions: %d" % self.executions, "- Success rate: %s%%" % self.success_rate_text,
                "- Avg latency: %dms" % self.avg_latency_ms]


@dataclass(frozen=True)
class AllegroRequest:
    """Allegro asking Timmy for a decision, an approval or a review, or telling him of an alert."""

    type: str
    urgency: str
    context: str
    question: str
    options: Tuple[str, ...]
    recommendation: str
    time_constraint: str

    def __post_init__(self) -> None:
        _check_choice(self.type, "type", REQUEST_TYPES)
        _check_choice(self.urgency, "urgency", URGENCIES)
        object.__setattr__(self, "context", _check_single_line(self.context, "context"))
        object.__setattr__(self, "question", _check_text(self.question, "question", _REQUEST_LABELS))
        object.__setattr__(self, "options", _check_items(self.options, "options"))
        object.__setattr__(self, "recommendation", _check_text(self.recommendation, "recommendation", _REQUEST_LABELS))
        object.__setattr__(self, "time_constraint", _check_text(self.time_constraint, "time_constraint",
                                                                _REQUEST_LABELS))
        object.__setattr__(self, "type", str(self.type))
        object.__setattr__(self, "urgency", str(self.urgency))

    def to_markdown(self) -> str:
        lines = [REQUEST_HEADING, "**Type:** " + self.type, "**Urgency:** " + self.urgency,
                 "**Context:** " + self.context, "**Question/Request:**", self.question, "**Options:**"]
        lines += ["%d. %s" % (number, option) for number, option in enumerate(self.options, 1)]
        lines += ["**Recommendation:**", self.recommendation, "**Time constraint:**", self.time_constraint]
        return "\n".join(lines) + "\n"

    def to_telegram_html(self) -> str:
        lines = ["<b>\U0001F504 Allegro Request</b>", "<b>Type:</b> " + self.type, "<b>Urgency:</b> " + self.urgency,
                 "<b>Context:</b> " + _html(self.context), "<b>Question/Request:</b>", _html(self.question),
                 "<b>Options:</b>"]
        lines += ["%d. %s" % (number, _html(option)) for number, option in enumerate(self.options, 1)]
        lines += ["<b>Recommendation:</b>", _html(self.recommendation), "<b>Time constraint:</b>",
                  _html(self.time_constraint)]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return _dumps({"message": "allegro.request", "type": self.type, "urgency": self.urgency,
                       "context": self.context, "question": self.question, "options": list(self.options),
                       "recommendation": self.recommendation, "time_constraint": self.time_constraint})

    @classmethod
    def from_markdown(cls, text: str) -> "AllegroRequest":
        reader = _MarkdownReader(text, REQUEST_HEADING)
        type_ = reader.choice("Type", "type", REQUEST_TYPES)
        urgency = reader.choice("Urgency", "urgency", URGENCIES)
        context = reader.value("Context", "context")
        reader.expect("**Question/Request:**")
        question = reader.text("question", "**Options:**")
        options = reader.items("options", "**Recommendation:**", lambda number: "%d. " % number)
        recommendation = reader.text("recommendation", "**Time constraint:**")
        time_constraint = reader.text("time_constraint", None)
        try:
            return cls(type=type_, urgency=urgency, context=context, question=question, options=tuple(options),
                       recommendation=recommendation, time_constraint=time_constraint)
        except MessageError as error:
            raise reader.located(error) from None

    @classmethod
    def from_json(cls, text: Union[str, bytes]) -> "AllegroRequest":
        read = _JSONObject.message(text, "allegro.request", _REQUEST_KEYS)
        type_ = read.choice("type", REQUEST_TYPES)
        urgency = read.choice("urgency", URGENCIES)
        context, question = read.string("context"), read.string("question")
        options = read.strings("options")
        recommendation, time_constraint = read.string("recommendation"), read.string("time_constraint")
        return cls(type=type_, urgency=urgency, context=context, question=question, options=tuple(options),
                   recommendation=recommendation, time_constraint=time_constraint)


@dataclass(frozen=True)
class AllegroReport:
    """What Allegro did for Timmy, with its telemetry."""

    task: str
    status: str
    duration: str
    results: str
    artifacts: Tuple[str, ...]
    telemetry: Telemetry
    next_steps: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", _check_single_line(self.task, "task"))
        object.__setattr__(self, "status", _check_choice(self.status, "status", STATUSES))
        object.__setattr__(self, "duration", _check_single_line(self.duration, "duration"))
        object.__setattr__(self, "results", _check_text(self.results, "results", _REPORT_LABELS))
        object.__setattr__(self, "artifacts", _check_items(self.artifacts, "artifacts"))
        if not isinstance(self.telemetry, Telemetry):
            raise MessageError("telemetry", "expected a Telemetry")
        object.__setattr__(self, "next_steps", _check_text(self.next_steps, "next_steps", _REPORT_LABELS))

    def to_markdown(self) -> str:
        lines = [REPORT_HEADING, "**Task:** " + self.task, "**Status:** " + self.status,
                 "**Duration:** " + self.duration, "**Results:**", self.results, "**Artifacts:**"]
        lines += ["- " + artifact for artifact in self.artifacts]
        lines += ["**Telemetry:**"] + self.telemetry._lines() + ["**Next Steps:**", self.next_steps]
        return "\n".join(lines) + "\n"

    def to_telegram_html(self) -> str:
        lines = ["<b>\u2705 Allegro Report</b>", "<b>Task:</b> " + _html(self.task), "<b>Status:</b> " + self.status,
                 "<b>Duration:</b> " + _html(self.duration), "<b>Results:</b>", _html(self.results),
                 "<b>Artifacts:</b>"]
        lines += ["- " + _html(artifact) for artifact in self.artifacts]
        lines += ["<b>Telemetry:</b>"] + self.telemetry._lines() + ["<b>Next Steps:</b>", _html(self.next_steps)]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        telemetry = {"executions": self.telemetry.executions,
                     "success_rate_percent": self.telemetry.success_rate_tenths / 10,
                     "avg_latency_ms": self.telemetry.avg_latency_ms}
        return _dumps({"message": "allegro.report", "task": self.task, "status": self.status,
                       "duration": self.duration, "results": self.results, "artifacts": list(self.artifacts),
                       "telemetry": telemetry, "next_steps": self.next_steps})

    @classmethod
    def from_markdown(cls, text: str) -> "AllegroReport":
        reader = _MarkdownReader(text, REPORT_HEADING)
        task = reader.value("Task", "task")
        status = reader.choice("Status", "status", STATUSES)
        duration = reader.value("Duration", "duration")
        reader.expect("**Results:**")
        results = reader.text("results", "**Artifacts:**")
        artifacts = reader.items("artifacts", "**Telemetry:**", lambda number: "- ")
        line = reader.line
        executions_text = reader.telemetry("Executions", "telemetry.executions")
        rate_text = reader.telemetry("Success rate", "telemetry.success_rate_percent")
        latency_text = reader.telemetry("Avg latency", "telemetry.avg_latency_ms")
        reader.expect("**Next Steps:**")
        next_steps = reader.text("next_steps", None)
        # The numbers are read once every line is in place (the order Swift reports errors in too).
        executions = _whole_text(executions_text)
        if executions is None:
            raise MessageError("telemetry.executions", '"%s" is not a whole number of 0 or more' % executions_text, line)
        match = _RATE.fullmatch(rate_text)
        tenths = int(match.group(1)) * 10 + int(match.group(2)) if match and len(match.group(1)) <= 3 else None
        if tenths is None or tenths > 1000:
            raise MessageError("telemetry.success_rate_percent",
                               '"%s" is not a number from 0.0 to 100.0 with one decimal and %%' % rate_text, line + 1)
        latency = _whole_text(latency_text[:-2]) if _LATENCY.fullmatch(latency_text) else None
        if latency is None:
            raise MessageError("telemetry.avg_latency_ms",
                               '"%s" is not a whole number of milliseconds (like 42ms)' % latency_text, line + 2)
        try:
            telemetry = Telemetry(executions=executions, success_rate_percent=tenths / 10, avg_latency_ms=latency)
            return cls(task=task, status=status, duration=duration, results=results, artifacts=tuple(artifacts),
                       telemetry=telemetry, next_steps=next_steps)
        except MessageError as error:
            raise reader.located(error) from None

    @classmethod
    def from_json(cls, text: Union[str, bytes]) -> "AllegroReport":
        read = _JSONObject.message(text, "allegro.report", _REPORT_KEYS)
        status = read.choice("status", STATUSES)
        numbers = read.object("telemetry", _TELEMETRY_KEYS)
        task, duration, results = read.string("task"), read.string("duration"), read.string("results")
        artifacts = read.strings("artifacts")
        telemetry = Telemetry(executions=numbers.whole("executions"),
                              success_rate_percent=numbers.tenths("success_rate_percent") / 10,
                              avg_latency_ms=numbers.whole("avg_latency_ms"))
        next_steps = read.string("next_steps")
        return cls(task=task, status=status, duration=duration, results=results, artifacts=tuple(artifacts),
                   telemetry=telemetry, next_steps=next_steps)


@dataclass(frozen=True)
class AllegroAlert:
    """An alert, the payload of an `allegro.alert` record (JSON only: no Markdown or HTML form).

    alert: the alert's name, 1 to 64 characters of a-z, 0-9, "_", "." and "-" (`collector_away`).
    subject: what it is about (a relay id, a collector name), a single line of at most 200 characters.
    status: "firing" or "resolved". severity: "info", "warning" or "critical".
    summary: a single line. details: "" or a text (no control character but LF, its first and last
        line not empty). since_ms: when the condition began, in Unix milliseconds (a whole number >= 0).

    Checked in that order when built; `key` is (alert, subject): the same key firing twice is one
    alert, and a resolved one ends it."""

    alert: str
    subject: str
    status: str
    severity: str
    summary: str
    details: str = ""
    since_ms: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "alert", _check_alert_name(self.alert, "alert"))
        object.__setattr__(self, "subject", _check_bounded_line(self.subject, "subject", ALERT_SUBJECT_MAX))
        object.__setattr__(self, "status", _check_choice(self.status, "status", ALERT_STATUSES))
        object.__setattr__(self, "severity", _check_choice(self.severity, "severity", SEVERITIES))
        object.__setattr__(self, "summary", _check_bounded_line(self.summary, "summary", ALERT_SUMMARY_MAX))
        details = _check_optional_text(self.details, "details")
        if len(details) > ALERT_DETAILS_MAX:
            raise MessageError("details", "longer than %d characters" % ALERT_DETAILS_MAX)
        object.__setattr__(self, "details", details)
        object.__setattr__(self, "since_ms", _check_whole(self.since_ms, "since_ms"))

    @property
    def key(self) -> Tuple[str, str]:
        """(alert, subject): what makes two alerts the same one."""
        return (self.alert, self.subject)

    def to_json(self) -> str:
        return _dumps({"message": "allegro.alert", "alert": self.alert, "subject": self.subject,
                       "status": self.status, "severity": self.severity, "summary": self.summary,
                       "details": self.details, "since_ms": self.since_ms})

    @classmethod
    def from_json(cls, text: Union[str, bytes]) -> "AllegroAlert":
        """Reads the JSON form: as a Request (MESSAGES.md section 5, steps 1 to 4), then `status` and
        `severity` (type and value), the types of `alert`, `subject`, `summary`, `details`, then
        `since_ms` (a whole number), then the value is built (`alert`, `subject`, `summary`,
        `details`, `since_ms`: below 0)."""
        read = _JSONObject.message(text, "allegro.alert", _ALERT_KEYS)
        status = read.choice("status", ALERT_STATUSES)
        severity = read.choice("severity", SEVERITIES)
        alert, subject = read.string("alert"), read.string("subject")
        summary, details = read.string("summary"), read.string("details")
        since_ms = read.whole("since_ms")
        return cls(alert=alert, subject=subject, status=status, severity=severity, summary=summary, details=details,
                   since_ms=since_ms)


Message = Union[AllegroRequest, AllegroReport, AllegroAlert]


def parse_markdown(text: str) -> Message:
    """Either message, by the heading it starts with."""
    if not isinstance(text, str):
        raise TypeError("parse_markdown takes a str")
    if text.startswith(REPORT_HEADING):
        return AllegroReport.from_markdown(text)
    if text.startswith(REQUEST_HEADING):
        return AllegroRequest.from_markdown(text)
    raise MessageError("message", "expected " + _HEADINGS_TEXT, 1)


def parse_json(text: Union[str, bytes]) -> Message:
    """A Request, a Report or an Alert, by its "message" key."""
    try:
        value = _loads(text)
    except MessageError:
        raise MessageError("message", "not a JSON object") from None
    if not isinstance(value, dict):
        raise MessageError("message", "not a JSON object")
    read = _JSONObject(value, "")
    read.check_duplicates()
    kind = read.string("message")
    if kind == "allegro.request":
        return AllegroRequest.from_json(text)
    if kind == "allegro.report":
        return AllegroReport.from_json(text)
    if kind == "allegro.alert":
        return AllegroAlert.from_json(text)
    raise MessageError("message", '"%s" is not %s' % (kind, _MESSAGE_KINDS_TEXT))


# -- Markdown ------------------------------------------------------------------------------------------


def _whole_text(text: str) -> Optional[int]:
    """A whole number written as the seed writes it (digits, no sign, no leading zero), within int64."""
    if len(text) > 19 or not _WHOLE.fullmatch(text):
        return None
    value = int(text)
    return value if value <= _INT64_MAX else None


class _MarkdownReader:
    """Reads the lines in the one order the format allows, keeping the line each field starts on so
    that a construction error can name it (MESSAGES.md, "Reading the Markdown form")."""

    def __init__(self, text: str, heading: str) -> None:
        if not isinstance(text, str):
            raise TypeError("a message's Markdown form is a str")
        position = text.find("\r")
        if position >= 0:
            raise MessageError("message", "a carriage return: lines end with LF alone", text.count("\n", 0, position) + 1)
        if not text.endswith("\n"):
            raise MessageError("message", "the last line does not end with LF", text.count("\n") + 1)
        self.lines = text[:-1].split("\n")
        if self.lines[0] != heading:
            raise MessageError("message", "expected " + _HEADINGS_TEXT, 1)
        self.index = 1
        self.field_lines: Dict[str, int] = {}

    @property
    def line(self) -> int:
        return self.index + 1

    def _current(self) -> Optional[str]:
        return self.lines[self.index] if self.index < len(self.lines) else None

    def value(self, label: str, field: str) -> str:
        prefix = "**%s:** " % label
        current = self._current()
        if current is None or not current.startswith(prefix):
            raise MessageError(field, "expected **%s:** and its value" % label, self.line)
        self.field_lines[field] = self.line
        self.index += 1
        return current[len(prefix):]

    def choice(self, label: str, field: str, choices: Sequence[str]) -> str:
        line = self.line
        value = self.value(label, field)
        if value not in choices:
            raise MessageError(field, '"%s" is not one of %s' % (value, ", ".join(choices)), line)
        return value

    def expect(self, expected: str) -> None:
        if self._current() != expected:
            raise MessageError("message", "expected " + expected, self.line)
        self.index += 1

    def text(self, field: str, until: Optional[str]) -> str:
        self.field_lines[field] = self.line
        start = self.index
        while self.index < len(self.lines) and (until is None or self.lines[self.index] != until):
            self.index += 1
        if until is not None and self.index >= len(self.lines):
            raise MessageError(field, "expected %s after it" % until, self.line)
        if self.index == start:
            raise MessageError(field, "empty", start + 1)
        text = "\n".join(self.lines[start:self.index])
        if until is not None:
            self.index += 1
        return text

    def items(self, field: str, until: str, marker: Callable[[int], str]) -> List[str]:
        self.field_lines[field] = self.line
        items: List[str] = []
        while self.index < len(self.lines) and self.lines[self.index] != until:
            prefix = marker(len(items) + 1)
            if not self.lines[self.index].startswith(prefix):
                raise MessageError(field, 'expected "%s..." or %s' % (prefix, until), self.line)
            items.append(self.lines[self.index][len(prefix):])
            self.index += 1
        if self.index >= len(self.lines):
            raise MessageError(field, "expected %s after it" % until, self.line)
        self.index += 1
        return items

    def telemetry(self, label: str, field: str) -> str:
        prefix = "- %s: " % label
        current = self._current()
        if current is None or not current.startswith(prefix):
            raise MessageError(field, 'expected "%s..."' % prefix, self.line)
        self.field_lines[field] = self.line
        self.index += 1
        return current[len(prefix):]

    def located(self, error: MessageError) -> MessageError:
        line = error.line if error.line is not None else self.field_lines.get(error.field)
        return MessageError(error.field, error.reason, line)


# -- JSON ----------------------------------------------------------------------------------------------


def _dumps(value: Dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class _Object(dict):  # type: ignore[type-arg]
    """A JSON object as read: the first value of each key, and the keys given more than once."""

    duplicates: List[str]


def _object_pairs(pairs: List[Tuple[str, Any]]) -> _Object:
    read = _Object()
    read.duplicates = []
    for key, value in pairs:
        if key in read:
            read.duplicates.append(key)
        else:
            read[key] = value
    return read


def _refuse_constant(name: str) -> Any:
    raise ValueError("not JSON: " + name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range: " + text)
    return value


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(character) < 0xE000 for character in value)
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    if isinstance(value, dict):
        return any(_has_surrogate(key) or _has_surrogate(item) for key, item in value.items())
    return False


def _loads(text: Union[str, bytes]) -> Any:
    """Strict JSON (RFC 8259): UTF-8, no NaN or Infinity, no number beyond a double, no unpaired
    surrogate escape; MessageError("message", "not valid JSON") otherwise."""
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        if not isinstance(text, str):
            raise TypeError("a message's JSON form is a str")
        value = json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_refuse_constant,
                           parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise MessageError("message", "not valid JSON") from None
    if _has_surrogate(value):
        raise MessageError("message", "not valid JSON")
    return value


def _number_kind(value: Any) -> Tuple[str, Any]:
    """Numbers as the Swift side sees them: ("integer", int) for an integral value within int64
    (5, 5.0 and 5e0 alike), ("number", float) for any other number, ("other", value) for the rest."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "other", value
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return "integer", value
        try:
            return "number", float(value)
        except OverflowError:
            return "number", math.inf
    if value.is_integer() and -9.223372036854775808e18 <= value < 9.223372036854775808e18:
        return "integer", int(value)
    return "number", value


class _JSONObject:
    """A JSON object being read, with typed access naming the key (prefixed for nested objects)."""

    def __init__(self, fields: Dict[str, Any], prefix: str) -> None:
        self.fields, self.prefix = fields, prefix

    @classmethod
    def message(cls, text: Union[str, bytes], kind: str, keys: Sequence[str]) -> "_JSONObject":
        value = _loads(text)
        if not isinstance(value, dict):
            raise MessageError("message", "expected one JSON object")
        read = cls(value, "")
        read.check_duplicates()
        found = read.string("message")
        if found != kind:
            raise MessageError("message", '"%s", expected "%s"' % (found, kind))
        read.check_keys(keys)
        return read

    def check_duplicates(self) -> None:
        duplicates = getattr(self.fields, "duplicates", [])
        if duplicates:
            raise MessageError(self.prefix + duplicates[0], "duplicate key")

    def check_keys(self, keys: Sequence[str]) -> None:
        for key in sorted(self.fields):
            if key not in keys:
                raise MessageError(self.prefix + key, "unknown key")
        for key in sorted(keys):
            if key not in self.fields:
                raise MessageError(self.prefix + key, "missing")

    def string(self, key: str) -> str:
        value = self.fields.get(key)
        if not isinstance(value, str):
            raise MessageError(self.prefix + key, "expected a string")
        return value

    def choice(self, key: str, choices: Sequence[str]) -> str:
        value = self.string(key)
        if value not in choices:
            raise MessageError(self.prefix + key, "not one of " + ", ".join(choices))
        return value

    def strings(self, key: str) -> List[str]:
        value = self.fields.get(key)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise MessageError(self.prefix + key, "expected a list of strings")
        return list(value)

    def object(self, key: str, keys: Sequence[str]) -> "_JSONObject":
        value = self.fields.get(key)
        if not isinstance(value, dict):
            raise MessageError(self.prefix + key, "expected an object")
        read = _JSONObject(value, self.prefix + key + ".")
        read.check_duplicates()
        read.check_keys(keys)
        return read

    def whole(self, key: str) -> int:
        kind, value = _number_kind(self.fields.get(key))
        if kind != "integer":
            raise MessageError(self.prefix + key, "expected a whole number")
        return int(value)

    def tenths(self, key: str) -> int:
        """A number as tenths (98.5 is 985): an integer times ten, any other number times ten
        rounded half away from zero; beyond 2^40 (integers) or 1e12 (others), not a number."""
        kind, value = _number_kind(self.fields.get(key))
        if kind == "integer" and abs(value) < (1 << 40):
            return int(value) * 10
        if kind == "number" and math.isfinite(value) and abs(value) < 1e12:
            return _round_half_away(value * 10)
        raise MessageError(self.prefix + key, "expected a number")
