"""Helpers for the TUI tests (imported by name: pytest puts this folder on
sys.path): real fixtures, read raw (gzip + json) so the
expected numbers do not come from the code under test; an app with a pinned
clock; a way to run a pilot from a plain (sync) test."""

import asyncio
import gzip
import json
from pathlib import Path

from buddyscope.probe.sources import SourceSpec
from buddyscope.tui.app import BuddyscopeApp
from buddyscope.tui.session import Session
from buddyscope.wiring import open_session

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = REPO / "fixtures" / "snapshots"
RECORDINGS = REPO / "fixtures" / "recordings"
SNAP_72 = SNAPSHOTS / "7.2-2cpu-512m.json.gz"
SNAP_61 = SNAPSHOTS / "6.1-2cpu-512m.json.gz"
REC_61 = RECORDINGS / "6.1-2cpu-tmpfs-write.json.gz"


def raw(path: Path) -> dict:
    """The snapshot in a snapshot or fixture file, as plain JSON."""
    d = json.loads(gzip.decompress(path.read_bytes()))
    return d["snapshot"] if "fixture_format" in d else d


class PinnedApp(BuddyscopeApp):
    """The app with a fixed read time, for SVG snapshots."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.animation_level = "none"

    def stamp(self, seconds: float) -> str:
        return "read 12:00:00 in 0.01 s"

    def on_window_scored(self, m) -> None:
        # The replay's own time, pinned as the read time is. (Textual calls
        # the handler of each class in the MRO, this one first: no super.)
        import dataclasses

        m.score = dataclasses.replace(m.score, seconds=0.25)


def app_on(path: Path, **kw) -> BuddyscopeApp:
    return PinnedApp(open_session(SourceSpec(file=path)), **kw)


class FakeSource:
    """A source that gives the snapshots it is handed, then raises what it
    is handed (a guest that went away)."""

    def __init__(self, kind, *results):
        self.kind = kind
        self.results = list(results)
        self.reads = 0

    def snapshot(self):
        self.reads += 1
        r = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        if isinstance(r, BaseException):
            raise r
        return r

    def close(self):
        pass


class RecordingWatcher:
    """Duck-types :class:`~buddyscope.lab.watch.LabWatcher` with a real
    recording (``tui --lab`` without a guest): refresh 0 is the recording's
    snapshot; refresh 1 ends a window holding the recording's own events;
    refresh 2 a window that lost events (and nothing else changes)."""

    kind = "lab"

    def __init__(self, fx, events, workload="fork-exec.sh"):
        from buddyscope.lab.watch import Refresh, Window

        snap = fx.snapshot
        self.workload = workload
        self.results = [
            Refresh(snap, None, 0.01, 0.01),
            Refresh(snap, Window(1, snap, events, list(fx.trace), "",
                                 {0: (0, 1), 1: (0, 1)}, 0.5), 0.01, 0.6),
            Refresh(snap, Window(2, snap, [], [], "CPU 1 lost events (overrun 12, "
                                 "commit_overrun 0, dropped 0)"), 0.01, 0.1, rearmed=True),
        ]
        self.refreshes = 0
        self.closed = False

    def refresh(self):
        r = self.results[min(self.refreshes, len(self.results) - 1)]
        self.refreshes += 1
        return r

    def snapshot(self):
        return self.refresh().snapshot

    def close(self):
        self.closed = True


def fake_app(kind, *results) -> BuddyscopeApp:
    return PinnedApp(Session(FakeSource(kind, *results)), interval=None)


async def settle(app, pilot) -> None:
    """Let the workers finish and their messages land (a message may start
    another worker: the prediction after a read)."""
    await pilot.pause()
    while any(not w.is_finished for w in app.workers):
        await app.workers.wait_for_complete()
        await pilot.pause()


def screen_text(app) -> str:
    """The screen as plain text, as the terminal would show it."""
    import io

    from rich.console import Console

    w, h = app.size
    c = Console(width=w, height=h, file=io.StringIO(), force_terminal=True, color_system=None,
                record=True, legacy_windows=False, safe_box=False)
    c.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return c.export_text()


def run(app, body, size=(120, 40)):
    """Run *body(app, pilot)* in a headless app; return what it returns."""
    async def go():
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            return await body(app, pilot)
    return asyncio.run(go())

