#!/usr/bin/env python3
"""A stand-in for `systemctl`, for testing `allegro supervise`'s systemd adapter on machines where
systemd is not PID 1. Put on PATH as `systemctl` (`FakeSystemd.install(bin_dir)` writes the wrapper),
it keeps the units' state in a JSON file and answers the two verbs the supervisor may use the way
the real one does:

- `show [-p A,B | --property=A ...] [--value] [--] UNIT...`: `KEY=VALUE` lines in systemd's own
  order, whatever order they were asked in (the Service interface's properties first: Result,
  NRestarts, ExecMainCode, ExecMainStatus, MainPID; then the Unit's: Id, LoadState, ActiveState,
  SubState), a blank line between units, exit 0. An unknown unit is shown too, as systemd shows
  one it could not load (LoadState=not-found, ActiveState=inactive, SubState=dead), exit 0.
- `restart [--] UNIT...`: the unit becomes active/running with a new MainPID, exit 0. An unknown
  unit: "Failed to restart X: Unit X not found." on stderr, exit 5. A unit marked to fail its start
  (`FakeSystemd.set_start_fails`): failed/failed, Result=exit-code, systemd's "Job for X failed"
  message, exit 1. NRestarts is set to 0 as the real one does: it counts only systemd's own
  automatic restarts (Restart=), which a manual start flushes (systemd PR #6495); a test simulates
  an automatic restart with `FakeSystemd.auto_restart`.

Every other verb is refused (exit 1, a sentence on stderr), real or not, so a test can assert the
supervisor only reads and restarts. Every invocation (arguments, exit code) is appended as a JSON
line to the calls file, which the test reads (`FakeSystemd.calls()`).

The state file is named by FAKE_SYSTEMCTL_STATE (the wrapper sets it); the calls file is next to
it (`.calls` appended). Updates are under an flock, written by rename, so the supervisor's polls
and the test's changes never see half a file."""

import fcntl
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

STATE_ENV = "FAKE_SYSTEMCTL_STATE"

# The properties the fake knows, in the order `systemctl show` prints them (org.freedesktop.systemd1
# Service interface first, then the Unit interface), with an unknown unit's values.
PROPERTY_ORDER: Tuple[str, ...] = ("Type", "Restart", "MainPID", "Result", "NRestarts", "ExecMainPID", "ExecMainCode",
                                   "ExecMainStatus", "Id", "Names", "LoadState", "ActiveState", "SubState")
NOT_FOUND: Dict[str, str] = {"Type": "simple", "Restart": "no", "MainPID": "0", "Result": "success", "NRestarts": "0",
                             "ExecMainPID": "0", "ExecMainCode": "0", "ExecMainStatus": "0", "LoadState": "not-found",
                             "ActiveState": "inactive", "SubState": "dead"}

Unit = Dict[str, str]
# {"units": {name: Unit}, "meta": {"next_pid": int, "manual_restarts": {name: int}}}
State = Dict[str, Dict[str, Any]]


def canonical(name: str) -> str:
    """A name without a type suffix means a service, as for the real one."""
    return name if "." in name else name + ".service"


# -- the state file -------------------------------------------------------------------------------


def _read(path: Path) -> State:
    state: State
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        state = {}
    state.setdefault("units", {})
    state.setdefault("meta", {})
    return state


def _write(path: Path, state: State) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(temporary, path)


@contextmanager
def _locked(path: Path) -> Iterator[State]:
    """The state, to read or change; written back at the end, under an exclusive flock."""
    with open(str(path) + ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = _read(path)
            yield state
            _write(path, state)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# -- the command line -------------------------------------------------------------------------------


class Usage(Exception):
    """A command line the fake refuses: the message goes to stderr, exit 1."""


def _parse(argv: List[str]) -> Tuple[str, List[str], List[str], bool]:
    """(verb, properties, units, value_only). Options may come before or after the verb; `--`
    ends them."""
    verb: Optional[str] = None
    properties: List[str] = []
    units: List[str] = []
    value_only = False
    index = 0
    options_done = False
    while index < len(argv):
        arg = argv[index]
        index += 1
        if not options_done and arg == "--":
            options_done = True
        elif not options_done and arg in ("-p", "--property"):
            if index >= len(argv):
                raise Usage("systemctl: option requires an argument -- 'p'")
            properties += [p for p in argv[index].split(",") if p]
            index += 1
        elif not options_done and arg.startswith("--property="):
            properties += [p for p in arg[len("--property="):].split(",") if p]
        elif not options_done and arg.startswith("-p") and len(arg) > 2:
            properties += [p for p in arg[2:].split(",") if p]
        elif not options_done and arg == "--value":
            value_only = True
        elif not options_done and arg in ("--no-pager", "--system", "--no-ask-password", "-q", "--quiet"):
            continue
        elif not options_done and arg.startswith("-") and arg != "-":
            raise Usage("systemctl: unrecognized option '%s'" % arg)
        elif verb is None:
            verb = arg
        else:
            units.append(arg)
    if verb is None:
        raise Usage("fake systemctl: no verb (the real one would list units; the supervisor never asks that)")
    return verb, properties, units, value_only


def _show(path: Path, properties: List[str], units: List[str], value_only: bool) -> Tuple[int, str, str]:
    if not units:
        return 1, "", "fake systemctl: show without a unit (the manager's properties) is not faked\n"
    with _locked(path) as state:
        known = dict(state["units"])
    blocks: List[str] = []
    for name in (canonical(u) for u in units):
        unit = dict(NOT_FOUND)
        unit.update(known.get(name, {}))
        unit["Id"] = name
        unit["Names"] = name
        wanted = [key for key in PROPERTY_ORDER if not properties or key in properties]
        lines = [unit[key] if value_only else "%s=%s" % (key, unit[key]) for key in wanted]
        blocks.append("".join(line + "\n" for line in lines))
    return 0, "\n".join(blocks), ""


def _restart(path: Path, units: List[str]) -> Tuple[int, str, str]:
    if not units:
        return 1, "", "Too few arguments.\n"
    with _locked(path) as state:
        for name in (canonical(u) for u in units):
            unit = state["units"].get(name)
            if unit is None:
                return 5, "", "Failed to restart %s: Unit %s not found.\n" % (name, name)
            meta = state["meta"]
            meta["next_pid"] = int(meta.get("next_pid", 40000)) + 1
            meta.setdefault("manual_restarts", {})
            meta["manual_restarts"][name] = int(meta["manual_restarts"].get(name, 0)) + 1
            if unit.get("StartFails") == "yes":
                unit.update(ActiveState="failed", SubState="failed", Result="exit-code", MainPID="0",
                            ExecMainPID=str(meta["next_pid"]), ExecMainCode="1", ExecMainStatus="1", NRestarts="0")
                return 1, "", ('Job for %s failed because the control process exited with error code.\n'
                               'See "systemctl status %s" and "journalctl -xeu %s" for details.\n' % (name, name, name))
            unit.update(ActiveState="active", SubState="running", Result="success", MainPID=str(meta["next_pid"]),
                        ExecMainPID=str(meta["next_pid"]), ExecMainCode="0", ExecMainStatus="0", NRestarts="0")
    return 0, "", ""


def main(argv: List[str]) -> int:
    path = Path(os.environ[STATE_ENV])
    try:
        verb, properties, units, value_only = _parse(argv)
        if verb == "show":
            code, out, err = _show(path, properties, units, value_only)
        elif verb == "restart":
            code, out, err = _restart(path, units)
        else:
            code, out, err = 1, "", ("fake systemctl: refusing the verb '%s': the supervisor may only read a unit (show) "
                                     "and restart it\n" % verb)
    except Usage as usage:
        code, out, err = 1, "", str(usage) + "\n"
    sys.stdout.write(out)
    sys.stderr.write(err)
    with open(str(path) + ".calls", "a") as calls:
        calls.write(json.dumps({"argv": argv, "exit": code, "pager": os.environ.get("SYSTEMD_PAGER")}) + "\n")
    return code


# -- the test's side --------------------------------------------------------------------------------


class FakeSystemd:
    """The fake's state, for a test: add units, make them fail as systemd would see a crash, and
    read what `systemctl` was asked."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.state_path = root / "systemd-state.json"
        self.calls_path = Path(str(self.state_path) + ".calls")
        with _locked(self.state_path):
            pass

    def install(self, bin_dir: Path) -> Path:
        """Writes `bin_dir/systemctl`, the wrapper to put first on PATH."""
        bin_dir.mkdir(parents=True, exist_ok=True)
        wrapper = bin_dir / "systemctl"
        wrapper.write_text("#!/bin/sh\n%s=%s exec %s %s \"$@\"\n" % (
            STATE_ENV, _sh(str(self.state_path)), _sh(sys.executable), _sh(str(Path(__file__).resolve()))))
        wrapper.chmod(0o755)
        return wrapper

    def add_unit(self, name: str, active: bool = True) -> None:
        with _locked(self.state_path) as state:
            state["units"][canonical(name)] = {
                "Type": "simple", "Restart": "no", "LoadState": "loaded", "Result": "success", "NRestarts": "0",
                "ExecMainCode": "0", "ExecMainStatus": "0", "ActiveState": "active" if active else "inactive",
                "SubState": "running" if active else "dead", "MainPID": "4242" if active else "0",
                "ExecMainPID": "4242" if active else "0"}

    def fail(self, name: str, status: int = 1) -> None:
        """The unit's main process exited with `status` and systemd gave up on it (no Restart=)."""
        with _locked(self.state_path) as state:
            state["units"][canonical(name)].update(ActiveState="failed", SubState="failed", Result="exit-code",
                                                   MainPID="0", ExecMainCode="1", ExecMainStatus=str(status))

    def auto_restart(self, name: str) -> None:
        """systemd restarted the unit itself (Restart=): NRestarts counts it; still active."""
        with _locked(self.state_path) as state:
            unit = state["units"][canonical(name)]
            unit.update(ActiveState="active", SubState="running", Result="success",
                        NRestarts=str(int(unit.get("NRestarts", "0")) + 1))

    def set_start_fails(self, name: str, fails: bool) -> None:
        with _locked(self.state_path) as state:
            state["units"][canonical(name)]["StartFails"] = "yes" if fails else "no"

    def unit(self, name: str) -> Unit:
        with _locked(self.state_path) as state:
            return dict(state["units"][canonical(name)])

    def manual_restarts(self, name: str) -> int:
        with _locked(self.state_path) as state:
            return int(state["meta"].get("manual_restarts", {}).get(canonical(name), 0))

    def calls(self) -> List[Dict[str, Any]]:
        """Every invocation so far: {"argv": [...], "exit": code, "pager": SYSTEMD_PAGER}."""
        try:
            text = self.calls_path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
