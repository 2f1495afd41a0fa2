"""Bad input (issue 12): a recording whose bulk or compaction kprobe events
are incomplete (enabled mid-run, or lost from some line on) replays through
the CLI with those windows marked, never a traceback. The recordings are
real ones with their kprobe lines cut from a line onward, or from the start
up to a line, in the middle of a call."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from buddyscope.model.events import BULK_EVENTS, ISOLATE_EVENTS
from buddyscope.model.fixture import Fixture

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings"
NAME = re.compile(r"\d+:\s+(\S+?):")


def _name(line):
    m = NAME.search(line)
    return m.group(1) if m else None


def _cut(name, kinds, tmp_path, onward):
    """The recording with its *kinds* lines removed from the first entry
    after the middle onward (keeping that entry: its return is lost), or
    from the start up to that entry's return (keeping the return: its
    entry is lost). Returns the file and the line of the kept half."""
    fx = Fixture.load(RECORDINGS / f"{name}.json.gz")
    lines = fx.trace
    entries = [i for i, line in enumerate(lines) if _name(line) == kinds[0]]
    at = entries[len(entries) // 2]
    if onward:
        keep = at
        lines = [line for i, line in enumerate(lines) if i <= at or _name(line) not in kinds]
    else:
        keep = next(i for i in range(at, len(lines)) if _name(lines[i]) == kinds[1])
        lines = [line for i, line in enumerate(lines) if i >= keep or _name(line) not in kinds]
        keep -= len(fx.trace) - len(lines)
    cut = Fixture(fx.snapshot, lines, fx.provenance)
    path = tmp_path / f"{name}-cut.json.gz"
    cut.save(path)
    return path, keep + 1


def _replay(path):
    p = subprocess.run([sys.executable, "-m", "buddyscope", "replay", str(path), "--json"],
                       cwd="/", capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("name, kinds, kind", [
    ("6.1-2cpu-fork-exec", BULK_EVENTS, "bulk"),
    ("5.10-2cpu-pressure-compact", ISOLATE_EVENTS, "compaction"),
])
@pytest.mark.parametrize("onward", [True, False], ids=["lost-from-a-line", "enabled-mid-run"])
def test_incomplete_kprobe_events_replay_with_windows_marked(name, kinds, kind, onward, tmp_path):
    path, line = _cut(name, kinds, tmp_path, onward)
    d = _replay(path)
    windows = [w for w in d["windows"] if w["kind"] == kind]
    # The half call left is marked: from it to the end of the trace (its
    # return lost), or from the start to it (its entry lost).
    if onward:
        assert any(w["first_line"] == line for w in windows), windows
    else:
        assert any(w["last_line"] == line and w["first_line"] == 1 for w in windows), windows
    assert d["allocations"] > 1000 and d["longest_miss_run"] <= 2
    # Not counted as a call applied.
    assert d["contradictions"].get("bulk_return_without_call", 0) == 0


def test_incomplete_window_in_the_text_report(tmp_path):
    path, _ = _cut("6.1-2cpu-fork-exec", BULK_EVENTS, tmp_path, True)
    p = subprocess.run([sys.executable, "-m", "buddyscope", "replay", str(path)], cwd="/",
                       capture_output=True, text=True, timeout=300)
    assert "Traceback" not in p.stderr and p.returncode == 0, p.stderr
    assert "windows with kprobe events missing: 1 bulk" in p.stdout
