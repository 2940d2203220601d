"""The shipped systemd units (config/*.service): systemd never gives up on them (a crash-at-start
loop would otherwise leave the relay down for good after about 10 s: 5 starts in 10 s is systemd's
default limit), they restart always, and `systemd-analyze verify` finds nothing wrong in them (run
with the binary under test in place of /usr/local/bin/allegro; skipped where systemd-analyze is not
installed)."""

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

CONFIG = Path(__file__).resolve().parents[3] / "config"
UNITS = ["allegro.service", "allegro-supervise.service"]


def sections(text: str) -> Dict[str, List[str]]:
    """The unit's lines (comments and blanks left out) by section."""
    found: Dict[str, List[str]] = {}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            found.setdefault(current, [])
        else:
            found.setdefault(current, []).append(line)
    return found


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_never_gives_up_on_the_unit_and_restarts_it_always(unit: str) -> None:
    parts = sections((CONFIG / unit).read_text())
    assert "StartLimitIntervalSec=0" in parts["Unit"], parts["Unit"]
    assert "Restart=always" in parts["Service"], parts["Service"]
    assert any(line.startswith("RestartSec=") for line in parts["Service"])
    assert any(line.startswith("ExecStartPre=/usr/local/bin/allegro config check") for line in parts["Service"])


def test_the_supervisor_unit_reloads_only_a_file_that_passes_the_check() -> None:
    service = sections((CONFIG / "allegro-supervise.service").read_text())["Service"]
    reloads = [line for line in service if line.startswith("ExecReload=")]
    assert reloads[0].startswith("ExecReload=/usr/local/bin/allegro config check") and "-HUP" in reloads[-1], reloads
    assert "ExecStart=/usr/local/bin/allegro supervise --config /etc/allegro/allegro.yaml" in service


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify_finds_nothing_wrong(unit: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    binary = os.environ.get("ALLEGRO_BIN")
    if analyze is None or binary is None:
        pytest.skip("systemd-analyze is not installed or ALLEGRO_BIN is not set")
    text = (CONFIG / unit).read_text().replace("/usr/local/bin/allegro", str(Path(binary).resolve()))
    (tmp_path / unit).write_text(text)
    done = subprocess.run([analyze, "verify", str(tmp_path / unit)], capture_output=True, text=True, timeout=60)
    # systemd-analyze exits 0 even for a line it ignores ("Failed to parse ..."): every line naming
    # the unit is a problem.
    problems = [line for line in (done.stdout + done.stderr).splitlines() if unit in line]
    assert done.returncode == 0 and problems == [], done.stdout + done.stderr
