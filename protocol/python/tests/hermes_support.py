"""Helpers for the Hermes end-to-end tests: a HERMES_HOME per test, running the real `hermes`, reading a relay.

Hermes is the `hermes` executable beside the running Python (the venv scripts/test makes, with
hermes-agent==0.19.0 and this client installed); the tests skip, saying why, when it is absent.
Everything stays offline: the model is tests/fake_model.py on 127.0.0.1, lazy installs and the
tirith scanner are off, and only the `file` toolset is loaded.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest

HERMES = Path(sys.executable).parent / "hermes"

needs_hermes = pytest.mark.skipif(
    not HERMES.exists(),
    reason="hermes-agent is not installed beside %s (scripts/test installs hermes-agent==0.19.0 into .venv)"
           % sys.executable)

# The kinds one `hermes chat -q` turn with one tool call produces, in order.
ONE_TOOL_TURN = ["session_start", "turn_start",
                 "api_request", "api_response", "usage", "tool_call", "tool_result",
                 "api_request", "api_response", "usage", "turn_response", "turn_end"]


def make_home(root: Path, base_url: str, enable: bool = True) -> Path:
    """A HERMES_HOME whose model is the fake server; `enable` lists the plugin in plugins.enabled,
    as `hermes plugins enable allegro` records it."""
    home = root / "hermes-home"
    home.mkdir(parents=True, exist_ok=True)
    lines = [
        "model:",
        "  provider: custom",
        "  base_url: %s" % base_url,
        "  default: fake-model",
        "  api_key: test-key",
        "security:",
        "  allow_lazy_installs: false",
        "  tirith_enabled: false",
    ]
    if enable:
        lines += ["plugins:", "  enabled:", "    - allegro"]
    (home / "config.yaml").write_text("\n".join(lines) + "\n")
    return home


def hermes_env(home: Path, relays: Sequence[str], producer_id: str, **extra: str) -> Dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HERMES_", "ALLEGRO_", "OPENAI_", "OPENROUTER_", "ANTHROPIC_"))}
    env.update(HERMES_HOME=str(home), ALLEGRO_RELAYS=",".join(relays), ALLEGRO_PRODUCER_ID=producer_id,
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_hermes(args: Sequence[str], env: Dict[str, str], cwd: Path, timeout: float = 90) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([str(HERMES)] + list(args), env=env, cwd=str(cwd), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def session_id_printed(stderr: str) -> str:
    """The `session_id: ...` line `hermes chat -q` prints to standard error."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("session_id:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("hermes printed no session_id line:\n" + stderr)


def read_relay(relay: Any, idle_ms: int = 800, timeout: float = 60) -> List[Dict[str, Any]]:
    """Every record the relay holds, from the earliest, read with the real collector (`allegro tail`)."""
    result = subprocess.run([relay.binary, "tail", "--relay", relay.address, "--from", "earliest", "--format", "jsonl",
                             "--idle-exit-ms", str(idle_ms), "--no-reconnect"], capture_output=True, timeout=timeout)
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode().splitlines() if '"relay_seq"' in line]


def read_count(relay: Any, count: int, timeout: float = 30) -> List[Dict[str, Any]]:
    """The relay's first `count` records, waiting for them (bounded by `timeout`)."""
    result = subprocess.run([relay.binary, "tail", "--relay", relay.address, "--from", "earliest", "--format", "jsonl",
                             "--count", str(count), "--no-reconnect"], capture_output=True, timeout=timeout)
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode().splitlines() if '"relay_seq"' in line]


def payload(record: Dict[str, Any]) -> Dict[str, Any]:
    assert record["content_type"] == "application/json", record
    return json.loads(record["payload"])


def kinds(records: Sequence[Dict[str, Any]]) -> List[str]:
    return [record["kind"] for record in records]


def assert_one_producer_in_order(records: Sequence[Dict[str, Any]], producer_id: Optional[str] = None) -> None:
    """One producer; its sequences consecutive (nothing missing, nothing twice) and its event times in order."""
    assert records, "no records"
    producers = {record["producer"] for record in records}
    assert len(producers) == 1, producers
    if producer_id is not None:
        assert producers == {producer_id}
    sequences = [record["producer_seq"] for record in records]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), sequences
    times = [record["event_time_ns"] for record in records]
    assert times == sorted(times), "event times go backwards"


def stop_process(process: "subprocess.Popen[bytes]", timeout: float = 5.0) -> None:
    """SIGSTOP, and wait until the kernel reports the process stopped (the signal is asynchronous:
    a process may still run for a moment after kill() returns)."""
    import signal
    import time
    process.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/%d/stat" % process.pid) as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            return
        time.sleep(0.001)
    raise AssertionError("process %d did not stop within %g s" % (process.pid, timeout))
