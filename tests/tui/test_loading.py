"""The TUI handed a :class:`~buddyscope.tui.session.SessionLoader` (what
``buddyscope tui FILE`` does): the first frame shows the header, the tabs
and the loader's progress before the loader has finished, the data after;
a loader that fails ends the app with its one line. No timing: the slow
loader is held by an event until the test has seen the progress."""

import asyncio
import re
import sys
import threading

from textual.widgets import ContentSwitcher, TabbedContent

from buddyscope.errors import BuddyscopeError
from buddyscope.probe.sources import SourceSpec
from buddyscope.tui.session import SessionLoader
from buddyscope.tui.widgets import FreeAreaTable, HeaderBar, ReplayPanel
from buddyscope.wiring import open_session, session_loader

from ptyrun import run_on_pty
from tuihelp import REC_61, SNAP_61, PinnedApp, raw


async def _until(cond, pilot, what, limit=600):
    """Pause the pilot until *cond()* holds (a bound on the number of
    pauses, not a time: a loaded machine only makes it slower)."""
    for _ in range(limit):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"never: {what}")


def _run(app, body, size=(120, 40)):
    async def go():
        async with app.run_test(size=size) as pilot:
            return await body(app, pilot)
    return asyncio.run(go())


def test_progress_first_then_the_data():
    gate = threading.Event()
    phases = []

    def slow_open(progress):
        progress("reading the first half")
        phases.append("first half")
        gate.wait(60)
        progress("reading the second half")
        return open_session(SourceSpec(file=SNAP_61), "", progress)

    app = PinnedApp(SessionLoader("file", slow_open, what=SNAP_61.name), interval=None)
    d = raw(SNAP_61)

    async def body(app, pilot):
        out = {}
        header = app.main.query_one(HeaderBar)
        await _until(lambda: "reading the first half" in header.status, pilot, "the progress")
        # The loader is held: header and tabs are up, with the progress and
        # the loading indicator over the panels, and no data.
        tabs = app.main.query_one("#tabs", TabbedContent)
        out["tabs"] = [str(t.label) for t in tabs.query("ContentTab")][:2]
        out["loading"] = app.main.query_one("#tabs ContentSwitcher", ContentSwitcher).loading
        out["data before"] = (app.session, app.main.snapshot, header.view)
        gate.set()
        await _until(lambda: app.main.snapshot is not None and app.main.prediction is not None,
                     pilot, "the data")
        out["loading after"] = app.main.query_one("#tabs ContentSwitcher",
                                                   ContentSwitcher).loading
        out["header"] = header.view.release
        zi = app.main.zone
        table = app.main.query_one(FreeAreaTable)
        out["nr_free"] = [table.view.nr_free[o] for o in range(len(table.view.nr_free))]
        out["want nr_free"] = [a["nr_free"] for a in d["zones"][zi]["free_area"]]
        return out

    out = _run(app, body)
    assert out["tabs"] == ["1 Free area", "2 PCP"]
    assert out["loading"] is True and out["data before"] == (None, None, None)
    assert out["loading after"] is False
    assert out["header"] == d["kernel"]["release"]
    assert out["nr_free"] == out["want nr_free"] and sum(out["nr_free"]) > 0
    assert phases == ["first half"] and app.load_error is None
    app.session.close()


def test_a_recording_loads_into_replay_mode():
    loader = session_loader(SourceSpec(file=REC_61))
    assert loader.kind == "fixture" and loader.replay
    app = PinnedApp(loader, interval=None)

    async def body(app, pilot):
        # The Replay tab is there from the first frame, before the recording is read.
        first = bool(app.main.query("TabPane#replay"))
        await _until(lambda: app.main.snapshot is not None, pilot, "step 0")
        await _until(lambda: app.main.query(ReplayPanel), pilot, "the replay panel")
        await pilot.press("n")
        await _until(lambda: app._replay_state is not None and app._replay_state.step == 1,
                     pilot, "step 1")
        return first, app.step, len(app.stepper)

    first, step, total = _run(app, body)
    assert first and step == 1 and total > 1
    app.session.close()


def test_a_load_that_fails_ends_the_app_with_one_line():
    def failing_open(progress):
        progress("loading broken.json.gz")
        raise BuddyscopeError("broken.json.gz is not a buddyscope snapshot (not JSON)")

    app = PinnedApp(SessionLoader("file", failing_open, what="broken.json.gz"), interval=None)

    async def body(app, pilot):
        await _until(lambda: app.return_code is not None, pilot, "the exit")

    _run(app, body)
    assert app.return_code == 1
    assert app.load_error == "broken.json.gz is not a buddyscope snapshot (not JSON)"
    assert app.session is None


_ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()=>78]")


def test_cli_tui_on_a_terminal_bad_file_is_one_line(tmp_path):
    """``buddyscope tui FILE`` in a terminal, FILE not a snapshot: the TUI
    starts (the file is read behind its first frame), ends, and the error
    is one line after the terminal is given back, with exit status 1."""
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(b"hello")
    out, code = run_on_pty([sys.executable, "-m", "buddyscope", "tui", str(bad)])
    assert b"\x1b[?1049h" in out   # the TUI took the terminal (the alternate screen) ...
    text = _ANSI.sub(b"", out).decode(errors="replace")
    assert "Traceback" not in text
    # ... and gave it back; what follows is what the user reads.
    after = _ANSI.sub(b"", out.rsplit(b"\x1b[?1049l", 1)[1]).decode(errors="replace")
    lines = [ln.strip() for ln in after.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert lines[-1] == f"buddyscope: error: {bad} is not a buddyscope snapshot (not JSON)"
    assert code == 1
