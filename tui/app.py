"""
App
---

The buddyscope TUI: the allocator state of one source (header, free area,
pcp lists, watermarks and fragmentation, pageblock map), the model's
prediction for a request and the state it would leave, side by side with the
state now; for a recording, replay event by event; for a traced lab guest
(``tui --lab``), which predictions came true between two refreshes.

Data flow: the source is read in a thread worker, which also computes what
the panels show (:func:`buddyscope.tui.views.zone_views`) and posts it up as
a message; the App sets the screen's reactives; the screen's watchers hand
each widget its part (attributes down, messages up). The model runs in
thread workers too. The TUI never imports drgn: it is handed a
:class:`~buddyscope.tui.session.Session`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import List, Optional

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Provider
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Select, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from buddyscope.errors import BuddyscopeError
from buddyscope.model.snapshot import Snapshot
from buddyscope.model.window import RunningScore, WindowScore, score_window
from buddyscope.tui.screens import GotoScreen, HelpScreen, ListScreen
from buddyscope.tui.session import Session
from buddyscope.tui.text import record_text, replay_status, running_text, window_text
from buddyscope.tui.views import (
    HeaderView, Prediction, PredictionRequest, ZoneViews, compare_view, header_view,
    model_snapshot, pageblock_type, parse_request, pfn_lines, run_prediction, source_label,
    zone_views,
)
from buddyscope.tui.widgets import (
    ComparePanel, FreeAreaTable, HeaderBar, PageblockPanel, PcpPanel, PredictPanel, ReplayPanel,
    TracePanel, WatermarkPanel,
)

__all__ = ("BuddyscopeApp", "MainScreen")

#: Tab ids in key order (1..8).
TABS = ("free", "pcp", "marks", "blocks", "predict", "compare", "replay", "trace")
TAB_TITLES = ("Free area", "PCP", "Watermarks", "Pageblocks", "Predict", "Compare", "Replay",
              "Trace")
#: Windows listed in the Trace tab's history.
HISTORY = 8
INTERVALS = (1.0, 2.0, 5.0, 10.0, None)
DEFAULT_REQUEST = PredictionRequest(0, None, "Movable", 0, 8)


# -- messages from the workers ----------------------------------------------------------


class SnapshotReady(Message):
    def __init__(self, snapshot: Snapshot, views: List[ZoneViews], seconds: float) -> None:
        super().__init__()
        self.snapshot, self.views, self.seconds = snapshot, views, seconds


class WindowScored(Message):
    """A traced source's window, scored (posted before the snapshot that
    ends it)."""

    def __init__(self, score: WindowScore, read_seconds: float, rearmed: bool) -> None:
        super().__init__()
        self.score, self.read_seconds, self.rearmed = score, read_seconds, rearmed


class ReadFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class PredictionReady(Message):
    def __init__(self, prediction: Optional[Prediction], compares: list, error: str = "") -> None:
        super().__init__()
        self.prediction, self.compares, self.error = prediction, compares, error


class ReplayReady(Message):
    def __init__(self, state, snapshot: Snapshot, views: List[ZoneViews], prediction,
                 compares: list, error: str = "") -> None:
        super().__init__()
        self.state, self.snapshot, self.views = state, snapshot, views
        self.prediction, self.compares, self.error = prediction, compares, error


def _error_text(e: BaseException) -> str:
    if isinstance(e, BuddyscopeError):
        return str(e)
    return f"{type(e).__name__}: {e}"


# -- the screen ---------------------------------------------------------------------------


class MainScreen(Screen):
    """Header and zone picker, one tab per panel, the footer."""

    AUTO_FOCUS = "#free-area"

    BINDINGS = [Binding(str(i + 1), f"show_tab('{t}')", TAB_TITLES[i], show=False)
                for i, t in enumerate(TABS)]

    #: The state shown: a source's snapshot, or the model's at a replay step.
    snapshot: reactive[Optional[Snapshot]] = reactive(None, always_update=True)
    views: reactive[Optional[List[ZoneViews]]] = reactive(None, always_update=True)
    header: reactive[Optional[HeaderView]] = reactive(None)
    zone: reactive[int] = reactive(0)
    prediction: reactive[Optional[Prediction]] = reactive(None, always_update=True)
    compares: reactive[Optional[list]] = reactive(None, always_update=True)

    def __init__(self, replay: bool, traced: bool = False) -> None:
        super().__init__()
        self.replay = replay
        self.traced = traced

    def compose(self) -> ComposeResult:
        with Horizontal(id="top"):
            yield HeaderBar(id="header")
            yield Select([], id="zone-select", prompt="zone", allow_blank=True, compact=True)
        with TabbedContent(id="tabs"):
            with TabPane("Free area", id="free"):
                yield FreeAreaTable(id="free-area")
                yield Static(id="free-summary")
            with TabPane("PCP", id="pcp"):
                yield PcpPanel(id="pcp-panel")
            with TabPane("Watermarks", id="marks"):
                yield WatermarkPanel(id="marks-panel")
            with TabPane("Pageblocks", id="blocks"):
                yield PageblockPanel(id="blocks-panel")
            with TabPane("Predict", id="predict"):
                yield PredictPanel(id="predict-panel")
            with TabPane("Compare", id="compare"):
                yield ComparePanel(id="compare-panel")
            if self.replay:
                with TabPane("Replay", id="replay"):
                    yield ReplayPanel(id="replay-panel")
            if self.traced:
                with TabPane("Trace", id="trace"):
                    yield TracePanel(id="trace-panel")
        yield Footer()

    # -- attributes down ----------------------------------------------------------
    def watch_views(self, views: Optional[List[ZoneViews]]) -> None:
        if views is None:
            return
        sel = self.query_one("#zone-select", Select)
        options = [(f"{v.node}/{v.name}", i) for i, v in enumerate(views)]
        if [o for o, _ in options] != [str(p) for p, _ in sel._options[1:]]:
            with self.prevent(Select.Changed):
                sel.set_options(options)
        if not 0 <= self.zone < len(views):
            self.zone = 0
        with self.prevent(Select.Changed):
            sel.value = self.zone
        self._show_zone()

    def watch_zone(self) -> None:
        self._show_zone()
        self._show_compare()

    def watch_header(self, header: Optional[HeaderView]) -> None:
        self.query_one("#header", HeaderBar).view = header

    def _show_zone(self) -> None:
        views = self.views
        if not views or not 0 <= self.zone < len(views):
            return
        v = views[self.zone]
        self.query_one("#free-area", FreeAreaTable).view = v.free_area
        pcp = self.query_one("#pcp-panel", PcpPanel)
        pcp.cpus, pcp.lists = v.pcp_cpus, v.pcp_lists
        marks = self.query_one("#marks-panel", WatermarkPanel)
        marks.marks, marks.frag = v.watermarks, v.fragmentation
        blocks = self.query_one("#blocks-panel", PageblockPanel)
        blocks.title = v.title
        blocks.view = v.pageblocks
        fa, w = v.free_area, v.watermarks
        self.query_one("#free-summary", Static).update(Text(
            f"{v.title}\n{fa.total_pages} pages on the free lists (NR_FREE_PAGES "
            f"{w.free_pages}), {w.pcp_pages} on pcp lists. "
            + ("Enter on a count opens that list." if fa.has_lists
               else "Counts only: this source has no PFNs.")))

    def watch_prediction(self, p: Optional[Prediction]) -> None:
        self.query_one("#predict-panel", PredictPanel).prediction = p

    def watch_compares(self) -> None:
        self._show_compare()

    def _show_compare(self) -> None:
        c = self.compares
        panel = self.query_one("#compare-panel", ComparePanel)
        if c is None or not 0 <= self.zone < len(c):
            panel.compare = None
            return
        p = self.prediction
        what = f"after {len(p.outcomes)} predicted" if p is not None else "predicted"
        panel.titles = ("now" if not self.replay else "model now", what)
        panel.compare = c[self.zone]

    # -- messages up ------------------------------------------------------------------
    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, int):
            self.zone = event.value

    def on_free_area_table_list_chosen(self, event: FreeAreaTable.ListChosen) -> None:
        snap = self.snapshot
        if snap is None:
            return
        z = snap.zones[self.zone]
        name = snap.kernel.migratetypes[event.migratetype]
        lst = z.free_area[event.order].free_list
        if lst is None:
            self.notify("this source has counts only: no PFNs to list", severity="warning")
            return
        pfns = lst[event.migratetype]
        self.app.push_screen(ListScreen(
            f"{z.name} free_area[{event.order}].free_list[{name}]: {len(pfns)} entries, "
            f"head first ({self._whose()})", len(pfns),
            pfn_lines(pfns, event.order, lambda p: pageblock_type(snap, z, p))))

    def on_pcp_panel_list_chosen(self, event: PcpPanel.ListChosen) -> None:
        snap = self.snapshot
        if snap is None:
            return
        z = snap.zones[self.zone]
        pcp = next((p for p in z.pcp if p.cpu == event.cpu), None)
        if pcp is None or pcp.lists is None:
            self.notify("this source has no pcp lists: counts only", severity="warning")
            return
        pfns = pcp.lists[event.pindex]
        pl = snap.kernel.pcp_lists[event.pindex]
        self.app.push_screen(ListScreen(
            f"{z.name} cpu {event.cpu} pcp lists[{event.pindex}] (order {pl.order}): "
            f"{len(pfns)} entries, head first ({self._whose()})", len(pfns),
            pfn_lines(pfns, pl.order, lambda p: pageblock_type(snap, z, p))))

    def _whose(self) -> str:
        h = self.header
        return h.source if h is not None else "?"

    def action_show_tab(self, tab: str) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        if tabs.query(f"TabPane#{tab}"):
            tabs.active = tab


# -- the command palette -----------------------------------------------------------------


class BuddyscopeCommands(Provider):
    """Zones, panels, free lists and replay steps."""

    def _commands(self):
        app = self.app
        if isinstance(app, BuddyscopeApp):
            return app.palette_commands()
        return []

    async def discover(self):
        for text, callback, help in self._commands():
            yield DiscoveryHit(text, callback, help=help)

    async def search(self, query: str):
        matcher = self.matcher(query)
        for text, callback, help in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, help=help)


# -- the app ---------------------------------------------------------------------------


class BuddyscopeApp(App):
    """The TUI on one :class:`~buddyscope.tui.session.Session`."""

    # Absolute: Textual resolves a relative path against the module of the
    # subclass, and tests subclass the app.
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "buddyscope"
    COMMANDS = App.COMMANDS | {BuddyscopeCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("r", "refresh", "Refresh"),
        Binding("p", "pause", "Pause"),
        Binding("i", "interval", "Interval"),
        Binding("z", "next_zone", "Zone"),
        Binding("t", "toggle_theme", "Theme"),
        Binding("n", "step(1)", "Step"),
        Binding("b", "step(-1)", "Back"),
        Binding("N", "alloc_step(1)", "Next alloc", key_display="N"),
        Binding("B", "alloc_step(-1)", "Prev alloc", key_display="B", show=False),
        Binding("m", "next_miss", "Next miss"),
        Binding("g", "goto", "Go to", show=False),
    ]

    paused: reactive[bool] = reactive(False, bindings=True)
    interval: reactive[Optional[float]] = reactive(None, bindings=True)
    step: reactive[int] = reactive(0)

    def __init__(self, session: Session, interval: Optional[float] = -1.0,
                 request: PredictionRequest = DEFAULT_REQUEST) -> None:
        super().__init__()
        self.session = session
        self.stepper = session.stepper
        self._initial_interval = session.refresh if interval == -1.0 else interval
        self.request = request
        #: The source is traced: each refresh gives a window of events.
        self.traced = hasattr(session.source, "refresh")
        self.main = MainScreen(replay=self.stepper is not None, traced=self.traced)
        self.running = RunningScore()
        self.windows: List[WindowScore] = []
        self._source_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._model = None            # (snapshot, Allocator) of the shown state
        self._replay_state = None
        self._timer = None
        self._last_read = ""
        self.reads = 0
        self.theme = "textual-dark"

    # -- lifecycle ---------------------------------------------------------------------
    async def on_mount(self) -> None:
        await self.push_screen(self.main)
        self._status("reading " + source_label(self.session.kind) + " ...")
        if self.stepper is not None:
            self.replay_to(0)
        else:
            self.interval = self._initial_interval
            self.read_source()

    def on_unmount(self) -> None:
        self.workers.cancel_all()

    def _status(self, text: str, error: bool = False) -> None:
        bar = self.main.query_one("#header", HeaderBar)
        bar.status, bar.error = text, error

    def watch_interval(self, interval: Optional[float]) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if interval is not None:
            self._timer = self.set_interval(interval, self._tick)

    def _tick(self) -> None:
        if not self.paused and not any(w.group == "read" and w.is_running for w in self.workers):
            self.read_source()

    # -- reading -------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="read", exit_on_error=False)
    def read_source(self) -> None:
        worker = get_current_worker()
        t0 = time.perf_counter()
        source = self.session.source
        try:
            with self._source_lock:
                if self.traced:
                    r = source.refresh()
                    snap, window = r.snapshot, r.window
                else:
                    snap, window = source.snapshot(), None
            if window is not None:
                score = score_window(window.before, window.events, window.index, window.invalid)
                # Even when cancelled: the next window starts where this
                # one ended, so the running totals need every window.
                self.post_message(WindowScored(score, window.read_seconds, r.rearmed))
            views = zone_views(snap)
        except Exception as e:   # shown in the UI, never a crash
            if not worker.is_cancelled:
                self.post_message(ReadFailed(_error_text(e)))
            return
        if not worker.is_cancelled:
            self.post_message(SnapshotReady(snap, views, time.perf_counter() - t0))

    def on_snapshot_ready(self, m: SnapshotReady) -> None:
        self.reads += 1
        if self.paused:
            return
        with self.batch_update():
            if self.main.snapshot is None:
                self.main.zone = _default_zone(m.snapshot)
            self.main.header = header_view(self.session.kind, m.snapshot)
            self.main.snapshot = m.snapshot
            self.main.views = m.views
        self._last_read = self.stamp(m.seconds)
        self._show_read_status()
        self.predict(m.snapshot, self.request)

    def stamp(self, seconds: float) -> str:
        """When the last read ended and how long it took (tests pin it)."""
        return f"read {time.strftime('%H:%M:%S')} in {seconds:.2f} s"

    def _show_read_status(self) -> None:
        every = "paused" if self.paused else (
            f"every {self.interval:g} s" if self.interval else "no auto refresh")
        hits = ""
        if self.windows:
            r = self.running
            pct = f"{100.0 * r.accuracy:.2f} %" if r.accuracy is not None else "n/a"
            hits = f" · {r.hits}/{r.allocations} exact ({pct}) in {r.scored} windows"
        self._status(f"{self._last_read} · {every}{hits}")

    # -- traced windows ------------------------------------------------------------------
    def on_window_scored(self, m: WindowScored) -> None:
        w = m.score
        self.running = self.running.add(w)
        self.windows.append(w)
        panel = self.main.query_one("#trace-panel", TracePanel)
        history = " · ".join(
            f"#{x.index} " + ("invalid" if not x.valid else
                              f"{x.hits}/{x.allocations}" if x.allocations else "no allocs")
            for x in self.windows[-HISTORY:])
        notes = [f"trace read in {m.read_seconds:.2f} s, replayed in {w.seconds:.2f} s"]
        if m.rearmed:
            notes.append("ring buffer cleared after it: the next window starts at the "
                         "snapshot taken just after")
        panel.status = "\n".join([running_text(self.running), window_text(w),
                                   "  " + "; ".join(notes), f"windows: {history}",
                                   "the allocations of this window (misses in red):"])
        names = self.main.snapshot.kernel.migratetypes if self.main.snapshot else ()
        recs = w.records
        panel.records = (len(recs), lambda i: Text(
            record_text(recs[i], names), style="" if recs[i].hit else "bold red"))
        self.main.query_one("#compare-panel", ComparePanel).check = self._check_text()
        if self._last_read:
            self._show_read_status()

    def on_read_failed(self, m: ReadFailed) -> None:
        stale = " (showing the last good read)" if self.main.snapshot is not None else ""
        self._status(f"read failed: {m.error}{stale}", error=True)
        self.notify(m.error, title="read failed", severity="error")

    # -- prediction ------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="predict", exit_on_error=False)
    def predict(self, snap: Snapshot, req: PredictionRequest) -> None:
        from buddyscope.model.allocator import Allocator

        try:
            with self._model_lock:
                if self._model is None or self._model[0] is not snap:
                    self._model = (snap, Allocator(snap))
                alloc = self._model[1]
                p = run_prediction(alloc, snap, req)
            compares = [compare_view(p.before, p.after, zi) for zi in range(len(snap.zones))]
        except Exception as e:
            self.post_message(PredictionReady(None, [], _error_text(e)))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(PredictionReady(p, compares))

    def on_prediction_ready(self, m: PredictionReady) -> None:
        panel = self.main.query_one("#predict-panel", PredictPanel)
        panel.error = m.error
        if m.prediction is not None:
            self.main.prediction = m.prediction
            self.main.compares = m.compares
        else:
            self.main.prediction = None
            self.main.compares = None
        self.main.query_one("#compare-panel", ComparePanel).check = self._check_text()

    def on_predict_panel_submitted(self, m: PredictPanel.Submitted) -> None:
        try:
            self.request = parse_request(m.order, m.what, m.cpu, m.n)
        except BuddyscopeError as e:
            self.main.query_one("#predict-panel", PredictPanel).error = str(e)
            return
        if self.stepper is not None:
            self.predict_replay(self.request)
        elif self.main.snapshot is not None:
            self.predict(self.main.snapshot, self.request)

    def _check_text(self) -> str:
        if self._replay_state is not None:
            rep = self._replay_state.report
            pct = f"{100.0 * rep.hits / rep.allocations:.2f} %" if rep.allocations else "n/a"
            return (f"predictions checked against the trace so far: {rep.hits}/"
                    f"{rep.allocations} allocations exact ({pct})")
        if self.windows:
            return (f"predictions checked against the events traced between refreshes; "
                    f"{running_text(self.running)} (see the Trace tab)")
        return self.session.check

    # -- replay -------------------------------------------------------------------------------
    def replay_to(self, step: int) -> None:
        if self.stepper is None:
            return
        self.step = max(0, min(step, len(self.stepper)))
        self._status(f"replaying to step {self.step} ...")
        self.replay_worker(self.step, self.request)

    @work(thread=True, exclusive=True, group="replay", exit_on_error=False)
    def replay_worker(self, step: int, req: PredictionRequest) -> None:
        worker = get_current_worker()
        st = self.stepper
        try:
            with self._model_lock:
                state = st.state_at(step, lambda: worker.is_cancelled)
                snap = model_snapshot(state.alloc, st.snapshot)
                views = zone_views(snap)
                try:
                    p = run_prediction(state.alloc, st.snapshot, req, before=snap)
                    compares = [compare_view(p.before, p.after, zi)
                                for zi in range(len(snap.zones))]
                    err = ""
                except BuddyscopeError as e:
                    p, compares, err = None, [], str(e)
        except InterruptedError:
            return
        except Exception as e:
            self.post_message(ReadFailed(_error_text(e)))
            return
        if not worker.is_cancelled:
            self.post_message(ReplayReady(state, snap, views, p, compares, err))

    @work(thread=True, exclusive=True, group="predict", exit_on_error=False)
    def predict_replay(self, req: PredictionRequest) -> None:
        state = self._replay_state
        if state is None:
            return
        try:
            with self._model_lock:
                snap = self.main.snapshot
                p = run_prediction(state.alloc, self.stepper.snapshot, req, before=snap)
            compares = [compare_view(p.before, p.after, zi) for zi in range(len(snap.zones))]
        except Exception as e:
            self.post_message(PredictionReady(None, [], _error_text(e)))
            return
        self.post_message(PredictionReady(p, compares))

    def on_replay_ready(self, m: ReplayReady) -> None:
        if m.state.step != self.step:
            return   # an older step, overtaken
        self._replay_state = m.state
        st = self.stepper
        names = st.snapshot.kernel.migratetypes
        with self.batch_update():
            if self.main.snapshot is None:
                self.main.zone = _default_zone(m.snapshot)
            hv = header_view("fixture", st.snapshot)
            state = (f"snapshot: {hv.state}" if m.state.step == 0 else
                     f"step {m.state.step}/{m.state.total}")
            self.main.header = HeaderView(f"fixture {st.name}", hv.release, state,
                                          hv.consistent, hv.read)
            self.main.snapshot = m.snapshot
            self.main.views = m.views
            panel = self.main.query_one("#replay-panel", ReplayPanel)
            panel.status = replay_status(m.state, names)
            records = m.state.report.records
            panel.records = (len(records), lambda i: Text(
                record_text(records[i], names), style="" if records[i].hit else "bold red"))
        rep = m.state.report
        acc = f"{100.0 * rep.hits / rep.allocations:.2f} %" if rep.allocations else "n/a"
        self._status(f"{rep.hits}/{rep.allocations} allocations exact ({acc})")
        self.on_prediction_ready(PredictionReady(m.prediction, m.compares, m.error))

    def action_step(self, delta: int) -> None:
        self.replay_to(self.step + delta)

    def action_alloc_step(self, delta: int) -> None:
        if self.stepper is None:
            return
        st = self.stepper
        self.replay_to(st.next_alloc_step(self.step) if delta > 0 else st.prev_alloc_step(self.step))

    def action_next_miss(self) -> None:
        """Go to just after the next allocation the model got wrong (from a
        full replay, computed once)."""
        if self.stepper is None:
            return
        self._find_miss(self.step)

    @work(thread=True, exclusive=True, group="miss", exit_on_error=False)
    def _find_miss(self, after: int) -> None:
        st = self.stepper
        misses = st.miss_steps()
        nxt = next((s for s in misses if s > after), None)
        if nxt is None:
            self.call_from_thread(self.notify, "no more misses after this step")
        else:
            self.call_from_thread(self.replay_to, nxt)

    def action_goto(self) -> None:
        if self.stepper is None:
            return

        def done(step: Optional[int]) -> None:
            if step is not None:
                self.replay_to(step)

        self.push_screen(GotoScreen(len(self.stepper)), done)

    # -- other keys ---------------------------------------------------------------------
    def check_action(self, action: str, parameters) -> Optional[bool]:
        replay = self.stepper is not None
        # False hides a key from the footer and disables it.
        if action in ("step", "alloc_step", "next_miss", "goto"):
            return replay
        if action in ("refresh", "pause", "interval"):
            return not replay
        return True

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_refresh(self) -> None:
        if self.traced and any(w.group == "read" and w.is_running for w in self.workers):
            self.notify("a refresh is under way")
            return
        self.read_source()

    def action_pause(self) -> None:
        self.paused = not self.paused
        if self._last_read:
            self._show_read_status()
        else:
            self._status("paused" if self.paused else "reading ...")

    def action_interval(self) -> None:
        i = INTERVALS.index(self.interval) if self.interval in INTERVALS else -1
        self.interval = INTERVALS[(i + 1) % len(INTERVALS)]
        self.notify(f"refresh every {self.interval:g} s" if self.interval
                    else "no auto refresh (r reads again)")
        if self._last_read:
            self._show_read_status()

    def action_next_zone(self) -> None:
        views = self.main.views
        if views:
            self.main.zone = (self.main.zone + 1) % len(views)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def palette_commands(self):
        out = []
        views = self.main.views or []
        for i, v in enumerate(views):
            out.append((f"Zone {v.node}/{v.name}", lambda i=i: setattr(self.main, "zone", i),
                        v.title))
        for t, title in zip(TABS, TAB_TITLES):
            if (t != "replay" or self.stepper is not None) and (t != "trace" or self.traced):
                out.append((f"Show {title}", lambda t=t: self.main.action_show_tab(t),
                            f"the {title} panel"))
        if views and 0 <= self.main.zone < len(views):
            v = views[self.main.zone]
            if v.free_area.has_lists:
                for o, row in enumerate(v.free_area.counts):
                    for mt, c in enumerate(row):
                        if c:
                            name = v.free_area.migratetypes[mt]
                            out.append((
                                f"Open free list {v.name} order {o} {name}",
                                lambda o=o, mt=mt: self.main.post_message(
                                    FreeAreaTable.ListChosen(o, mt)),
                                f"{c} entries"))
        if self.stepper is not None:
            out.append(("Replay: go to step ...", self.action_goto, "a step number"))
            out.append(("Replay: start", lambda: self.replay_to(0), "step 0: the snapshot"))
            out.append(("Replay: end", lambda: self.replay_to(len(self.stepper)),
                        "every event applied"))
            out.append(("Replay: next miss", self.action_next_miss, "the next wrong prediction"))
        else:
            out.append(("Refresh now", self.action_refresh, "read the source again"))
            out.append(("Pause or resume", self.action_pause, "stop or restart reading"))
        out.append(("Toggle dark/light theme", self.action_toggle_theme, ""))
        out.append(("Help", self.action_help, "keys"))
        return out


def _default_zone(snap: Snapshot) -> int:
    """The zone with the most managed pages (DMA32 on a small guest, Normal
    on a big machine)."""
    if not snap.zones:
        return 0
    return max(range(len(snap.zones)), key=lambda i: snap.zones[i].managed_pages)
