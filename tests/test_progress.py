"""Progress on a terminal (Rich), nothing extra elsewhere: run as a user
would, under a pseudo-terminal and through pipes."""

import re
import subprocess
import sys
from pathlib import Path

from ptyrun import run_on_pty

ROOT = Path(__file__).resolve().parents[1]
LONG = ROOT / "fixtures" / "recordings" / "5.10-1cpu-fallback.json.gz"  # 13698 events


def _on_pty(args, timeout=120):
    """Run *args* on a pseudo-terminal; return everything written to it."""
    out, code = run_on_pty(args, timeout, env={"COLUMNS": "100", "TERM": "xterm"})
    assert code == 0, out.decode(errors="replace")[-2000:]
    # Without the terminal's colour and cursor codes.
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))


def test_replay_of_a_long_trace_shows_a_bar_on_a_terminal_only():
    text = _on_pty([sys.executable, "-m", "buddyscope", "replay", str(LONG)])
    assert "replaying" in text and "/13698" in text
    assert "accuracy" in text
    p = subprocess.run([sys.executable, "-m", "buddyscope", "replay", str(LONG)], cwd="/",
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stderr == ""
    assert "replaying" not in p.stdout and "accuracy" in p.stdout


PHASES = """
import time
from buddyscope.progress import phases
with phases() as log:
    log("first phase")
    time.sleep(0.3)
    log("second phase")
"""


def test_phases_show_their_time_on_a_terminal_and_stay_plain_lines_elsewhere():
    text = _on_pty([sys.executable, "-c", PHASES])
    assert re.search(r"first phase\s+\(0\.[3-9] s\)", text), text
    assert "second phase" in text
    p = subprocess.run([sys.executable, "-c", PHASES], capture_output=True, text=True, timeout=60)
    assert p.stderr == "  first phase\n  second phase\n" and p.stdout == ""
