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
:class:`~buddyscope.tui.session.Session`, or a
:class:`~buddyscope.tui.session.SessionLoader` that opens one: then the
first frame (header, tabs, the loader's progress) is drawn before the
loader runs, in a thread worker, and the data fills in after.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Union

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Provider
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Input, Select, Static, TabbedContent, TabPane
from textual.worker import Worker, get_current_worker

from buddyscope.errors import BuddyscopeError
from buddyscope.model._atomic import write_atomic
from buddyscope.model.find import FoundPage, find_page
from buddyscope.model.snapshot import Snapshot
from buddyscope.tui.overview import History, zone_rows
from buddyscope.tui.panels import FindPanel, FoundView, HistoryPanel, ZonesPanel, plural
from buddyscope.tui.screens import GotoScreen, HelpScreen, ListScreen
from buddyscope.tui.session import Session, SessionLoader
from buddyscope.tui.text import (
    record_text, replay_status, running_text, score_brief, trace_status)
from buddyscope.tui.views import (
    HeaderView, Prediction, PredictionRequest, ZoneViews, compare_view, header_view,
    model_snapshot, pageblock_type, parse_request, pfn_lines, run_prediction, source_label,
    zone_views,
)
from buddyscope.tui.widgets import (
    ComparePanel, FreeAreaTable, HeaderBar, PageblockPanel, PcpPanel, PredictPanel, ReplayPanel,
    TracePanel, WatermarkPanel,
)

if TYPE_CHECKING:   # the model's replay is imported where it runs, not before the first frame
    from buddyscope.model.window import RunningScore, WindowScore

__all__ = ("BuddyscopeApp", "MainScreen")

#: (tab id, title, key). Replay (a recording) and History (a source read
#: again and again) never come together, so they share 7.
PANELS = (
    ("free", "Free area", "1"), ("pcp", "PCP", "2"), ("marks", "Watermarks", "3"),
    ("blocks", "Pageblocks", "4"), ("predict", "Predict", "5"), ("compare", "Compare", "6"),
    ("replay", "Replay", "7"), ("history", "History", "7"), ("trace", "Trace", "8"),
    ("zones", "Zones", "9"), ("find", "Find", "0"),
)
TABS = tuple(p[0] for p in PANELS)
TAB_TITLES = tuple(p[1] for p in PANELS)
_TITLE = {t: title for t, title, _ in PANELS}
_KEY = {t: key for t, _, key in PANELS}
#: Titles for a terminal under 110 columns: every tab stays in sight.
_SHORT_TITLE = {"free": "Free", "marks": "Marks", "blocks": "Blocks", "predict": "Pred",
                "compare": "Compare", "history": "Hist"}
#: The widget that takes the keys of each panel: focused after every switch.
MAIN_WIDGET = {
    "free": "#free-area", "pcp": "#pcp-lists", "marks": "#marks-panel",
    "blocks": "#blocks-map", "predict": "#predict-results", "compare": "#compare-panel",
    "replay": "#replay-records", "history": "#history-panel", "trace": "#trace-records",
    "zones": "#zones-panel", "find": "#find-input",
}
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


class SessionLoaded(Message):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session


class LoadProgress(Message):
    """The loader has gone on to a new phase."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class LoadFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ReadFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class FindReady(Message):
    def __init__(self, found: Optional[FoundPage], error: str = "") -> None:
        super().__init__()
        self.found, self.error = found, error


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

    # Focus is placed by hand (focus_panel): Textual's auto focus would pick
    # a widget of the first tab and so switch back to it after an overlay.
    AUTO_FOCUS = None

    # Priority: a table or button never keeps a digit; an input does
    # (check_action), so that numbers can be typed into it.
    BINDINGS = [Binding(k, f"show_key('{k}')", f"panel {k}", show=False, priority=True)
                for k in "1234567890"] + [
        Binding("escape", "back", "Back", show=False),
    ]

    #: The state shown: a source's snapshot, or the model's at a replay step.
    snapshot: reactive[Optional[Snapshot]] = reactive(None, always_update=True)
    views: reactive[Optional[List[ZoneViews]]] = reactive(None, always_update=True)
    header: reactive[Optional[HeaderView]] = reactive(None)
    zone: reactive[int] = reactive(0)
    prediction: reactive[Optional[Prediction]] = reactive(None, always_update=True)
    compares: reactive[Optional[list]] = reactive(None, always_update=True)

    def __init__(self, replay: bool, traced: bool = False, refreshing: bool = False,
                 defer: bool = False) -> None:
        super().__init__()
        self.replay = replay
        self.traced = traced
        self.refreshing = refreshing and not replay
        #: The panels are mounted after the first frame (mount_panels), which
        #: then shows the header and the tabs only: half the first frame's
        #: work is mounting and styling the panels.
        self.panels_mounted = not defer
        #: Why this source (and, for procfs, why counts only).
        self.why = ""
        #: Reads of a refreshing source (History panel).
        self.history: Optional[History] = History() if self.refreshing else None

    def _tabs(self) -> List[str]:
        return [t for t in TABS if (t != "replay" or self.replay)
                and (t != "history" or self.refreshing) and (t != "trace" or self.traced)]

    @staticmethod
    def _panel(tab: str) -> list:
        """The widgets of one tab's pane."""
        if tab == "free":
            return [FreeAreaTable(id="free-area"), Static(id="free-summary")]
        panel = {"pcp": PcpPanel, "marks": WatermarkPanel, "blocks": PageblockPanel,
                 "predict": PredictPanel, "compare": ComparePanel, "replay": ReplayPanel,
                 "history": HistoryPanel, "trace": TracePanel, "zones": ZonesPanel,
                 "find": FindPanel}[tab]
        return [panel(id=f"{tab}-panel")]

    def compose(self) -> ComposeResult:
        with Horizontal(id="top"):
            yield HeaderBar(id="header")
            yield Select([], id="zone-select", prompt="zone", allow_blank=True, compact=True)
        with TabbedContent(id="tabs"):
            for t in self._tabs():
                with TabPane(f"{_KEY[t]} {_TITLE[t]}", id=t):
                    if self.panels_mounted:
                        yield from self._panel(t)
        yield Footer(compact=True)

    async def mount_panels(self) -> None:
        """Mount the panels a deferred screen left out of its first frame."""
        if self.panels_mounted:
            return
        for t in self._tabs():
            await self.query_one(f"TabPane#{t}", TabPane).mount_all(self._panel(t))
        self.panels_mounted = True
        self.focus_panel()

    def on_mount(self) -> None:
        self.fit_tabs()

    def on_resize(self, event) -> None:
        self.fit_tabs()

    def fit_tabs(self) -> None:
        """Short tab titles below 110 columns. From the app's size now, not
        the event's: resize events at start-up can arrive out of order."""
        tabs = self.query_one("#tabs", TabbedContent)
        narrow = self.app.size.width < 110
        self.set_class(narrow, "-narrow")
        for t in TABS:
            if self.query(f"TabPane#{t}"):
                title = _SHORT_TITLE.get(t, _TITLE[t]) if narrow else _TITLE[t]
                tabs.get_tab(t).label = f"{_KEY[t]} {title}"

    # -- focus: the keys go to the panel shown -----------------------------------
    def focus_panel(self) -> None:
        """Focus the active panel's main widget."""
        tabs = self.query_one("#tabs", TabbedContent)
        sel = MAIN_WIDGET.get(tabs.active)
        if sel:
            for w in self.query(sel):
                if w.focusable and w.display:
                    w.focus()
                    return
        # Never nothing: Textual would pick a widget of another tab, and the
        # tabs would follow it there.
        pane = tabs.active_pane
        if pane is not None:
            for w in pane.query("*"):
                if w.focusable and w.display:
                    w.focus()
                    return

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        focused = self.focused
        pane = self.query_one("#tabs", TabbedContent).active_pane
        if focused is None or pane is None or pane not in focused.ancestors:
            self.call_after_refresh(self.focus_panel)

    def on_screen_resume(self) -> None:
        focused = self.focused
        pane = self.query_one("#tabs", TabbedContent).active_pane
        if focused is None or pane is None or (pane not in focused.ancestors
                                               and focused.id != "zone-select"):
            self.call_after_refresh(self.focus_panel)

    def check_action(self, action: str, parameters) -> Optional[bool]:
        if action == "show_key":
            # Digits typed into a field stay there.
            return not isinstance(self.focused, Input)
        return True

    def action_show_key(self, key: str) -> None:
        for t, _, k in PANELS:
            if k == key and self.query(f"TabPane#{t}"):
                self.action_show_tab(t)
                return

    def action_back(self) -> None:
        """Escape: out of a field or the zone picker, back to the panel (out
        of the Find field: onto its answer, where digits switch panels)."""
        tab = self.query_one("#tabs", TabbedContent).active
        if tab == "find" and isinstance(self.focused, Input):
            self.query_one("#find-result").focus()
        else:
            self.focus_panel()

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

    def watch_zone(self, zone: int) -> None:
        # The picker follows at once: the label never lags the panels.
        sel = self.query_one("#zone-select", Select)
        if sel.value != zone and self.views and 0 <= zone < len(self.views):
            with self.prevent(Select.Changed):
                sel.value = zone
        self._show_zone()
        self._show_compare()

    def watch_snapshot(self, snap: Optional[Snapshot]) -> None:
        # query, not query_one: a read can land while the app shuts down.
        for panel in self.query(ZonesPanel):
            if snap is not None:
                panel.rows = zone_rows(snap)

    def show_history(self) -> None:
        if self.history is None or not self.views or not 0 <= self.zone < len(self.views):
            return
        v = self.views[self.zone]
        panel = self.query_one("#history-panel", HistoryPanel)
        panel.note = f"{v.title}"
        panel.samples = self.history.samples(f"{v.node}/{v.name}")

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
        blocks.counts = self._pageblock_counts()
        blocks.view = v.pageblocks
        self.show_history()
        fa, w = v.free_area, v.watermarks
        self.query_one("#free-summary", Static).update(Text(
            f"{v.title}\n{fa.total_pages} pages on the free lists (NR_FREE_PAGES "
            f"{w.free_pages}), {w.pcp_pages} on pcp lists. "
            + ("Enter on a count opens that list." if fa.has_lists
               else "Counts only: this source has no PFNs"
               + (f" ({self.why})" if self.why else "") + ".")))

    def _pageblock_counts(self) -> Optional[dict]:
        """/proc/pagetypeinfo's "Number of blocks type" of the zone shown."""
        snap = self.snapshot
        if snap is None or not 0 <= self.zone < len(snap.zones):
            return None
        f = snap.zones[self.zone].fields
        out = {k[len("pageblocks_"):]: v for k, v in f.items() if k.startswith("pageblocks_")}
        return out or None

    def watch_prediction(self, p: Optional[Prediction]) -> None:
        if not self.panels_mounted:
            return
        self.query_one("#predict-panel", PredictPanel).prediction = p

    def watch_compares(self) -> None:
        self._show_compare()

    def _show_compare(self) -> None:
        if not self.panels_mounted:
            return
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
            f"{z.name} free_area[{event.order}].free_list[{name}]: "
            f"{plural(len(pfns), 'entry')}, head first ({self._whose()})", len(pfns),
            pfn_lines(pfns, event.order, lambda p: pageblock_type(snap, z, p)),
            pfns=pfns, order=event.order, at=event.at))

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
            f"{plural(len(pfns), 'entry')}, head first ({self._whose()})", len(pfns),
            pfn_lines(pfns, pl.order, lambda p: pageblock_type(snap, z, p)),
            pfns=pfns, order=pl.order, at=event.at))

    def on_find_panel_submitted(self, event: FindPanel.Submitted) -> None:
        snap = self.snapshot
        panel = self.query_one("#find-panel", FindPanel)
        if snap is None:
            panel.error = "nothing read yet"
            return
        self.app.find(snap, event.text)

    def on_found_view_open(self, event: FoundView.Open) -> None:
        """Open the list that holds a found page, at its entry."""
        f: FoundPage = event.found
        views = self.views or []
        zi = next((i for i, v in enumerate(views) if (v.node, v.name) == (f.node, f.zone)), None)
        if zi is None or self.snapshot is None:
            return
        self.zone = zi
        if f.where == "free_list":
            mt = self.snapshot.kernel.migratetypes.index(f.migratetype)
            self.post_message(FreeAreaTable.ListChosen(f.order, mt, at=f.position))
        else:
            self.post_message(PcpPanel.ListChosen(f.cpu, f.pindex, at=f.position))

    def _whose(self) -> str:
        h = self.header
        return h.source if h is not None else "?"

    def action_show_tab(self, tab: str) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        if tabs.query(f"TabPane#{tab}"):
            tabs.active = tab
            # Now, so no later focus message of the old panel's widget pulls
            # the tabs back; and after the refresh, once the panel is shown.
            self.focus_panel()
            self.call_after_refresh(self.focus_panel)


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
    # The footer shows the keys a newcomer needs first; the help (?) has all.
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("r", "refresh", "Refresh"),
        Binding("p", "pause", "Pause"),
        Binding("p", "resume", "Resume"),
        Binding("i", "interval", "Interval", show=False),
        Binding("z", "next_zone", "Zone"),
        Binding("t", "toggle_theme", "Theme", show=False),
        Binding("n", "step(1)", "Step"),
        Binding("b", "step(-1)", "Back"),
        Binding("N", "alloc_step(1)", "Alloc", key_display="N"),
        Binding("B", "alloc_step(-1)", "Prev alloc", key_display="B", show=False),
        Binding("m", "next_miss", "Miss"),
        Binding("g", "goto", "Go to", show=False),
        Binding("f,slash", "find", "Find", key_display="f"),
        Binding("s", "screenshot_svg", "Shot", show=False),
        Binding("e", "export_snapshot", "Export", show=False),
    ]

    paused: reactive[bool] = reactive(False, bindings=True)
    interval: reactive[Optional[float]] = reactive(None, bindings=True)
    step: reactive[int] = reactive(0)

    def __init__(self, session: Union[Session, SessionLoader], interval: Optional[float] = -1.0,
                 request: PredictionRequest = DEFAULT_REQUEST) -> None:
        super().__init__()
        loader = session if isinstance(session, SessionLoader) else None
        #: The session; None until the loader (if any) has opened it.
        self.session: Optional[Session] = None if loader is not None else session
        self._loader = loader
        #: The loader's error, when it could not open the session: the app
        #: exits with return code 1 and the caller prints this line.
        self.load_error: Optional[str] = None
        #: Seconds the loader took (None: no loader, or not done).
        self.load_seconds: Optional[float] = None
        self.source_kind = session.kind
        self.stepper = None if loader is not None else session.stepper
        replay = loader.replay if loader is not None else self.stepper is not None
        self._initial_interval = session.refresh if interval == -1.0 else interval
        self.request = request
        #: The source is traced: each refresh gives a window of events
        #: (a lab guest: booted before the TUI, never loaded by it).
        self.traced = loader is None and hasattr(session.source, "refresh")
        #: The source changes between reads (not a file, vmcore or recording).
        self.refreshing = session.refresh is not None and not replay
        self.main = MainScreen(replay=replay, traced=self.traced, refreshing=self.refreshing,
                               defer=loader is not None)
        self.main.why = session.why or _why(session.kind)
        #: The traced windows so far, added up (a traced source only).
        self.running: Optional[RunningScore] = None
        if self.traced:
            from buddyscope.model.window import RunningScore

            self.running = RunningScore()
        self.windows: List[WindowScore] = []
        self._last_window: Optional[WindowScored] = None
        self._quitting = False
        self._window_shown = True
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
        self._loading(True)
        if self._loader is not None:
            what = self._loader.what or source_label(self.source_kind)
            self._status(f"loading {what} ...")
            # After the first frame: the panels, then the load (which holds
            # the GIL for much of its time and would hold the frame back).
            self.call_after_refresh(self._after_first_frame)
        else:
            self._start()

    async def _after_first_frame(self) -> None:
        await self.main.mount_panels()
        self.load_session()

    def _start(self) -> None:
        """The session is there: the first read (or replay step 0)."""
        self._status("reading " + source_label(self.source_kind) + " ...")
        if self.stepper is not None:
            self.replay_to(0)
        else:
            self.interval = self._initial_interval
            self.read_source()

    def on_unmount(self) -> None:
        self.workers.cancel_all()

    def _loading(self, on: bool) -> None:
        """The panels' loading indicator, shown until the first state is."""
        for switcher in self.main.query("#tabs ContentSwitcher"):
            switcher.loading = on

    # -- loading the session -----------------------------------------------------------
    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load_session(self) -> None:
        worker = get_current_worker()
        t0 = time.perf_counter()
        try:
            session = self._loader.open(
                lambda text: self.post_message(LoadProgress(text)))
        except Exception as e:   # one line, then the app ends: there is nothing to show
            self.post_message(LoadFailed(_error_text(e)))
            return
        if worker.is_cancelled:
            session.close()
            return
        self.load_seconds = time.perf_counter() - t0
        self.post_message(SessionLoaded(session))

    def on_load_progress(self, m: LoadProgress) -> None:
        if self.session is None:
            self._status(f"{m.text} ...")

    def on_load_failed(self, m: LoadFailed) -> None:
        self.load_error = m.error
        self.exit(return_code=1)

    def on_session_loaded(self, m: SessionLoaded) -> None:
        if self.return_code is not None:
            m.session.close()
            return
        self.session = m.session
        self.stepper = m.session.stepper
        self.refresh_bindings()
        self._start()

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
        if self.session is not None and not self.paused and not self._reading():
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
                from buddyscope.model.window import score_window

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
        if self.main.history is not None:
            self.main.history.add(m.snapshot)
        with self.batch_update():
            if self.main.snapshot is None:
                self.main.zone = _default_zone(m.snapshot)
                self._loading(False)
            self.main.header = header_view(self.source_kind, m.snapshot)
            self.main.snapshot = m.snapshot
            self.main.views = m.views
        if self.refreshing:
            self._last_read = self.stamp(m.seconds)
        else:
            # A file's time is when it was captured, not when the TUI opened it.
            c = m.snapshot.capture
            self._last_read = f"captured {c.time.replace('T', ' ')}"
        self._show_read_status()
        if self._loader is not None:
            # The data goes on screen before the model is built: on a big
            # state the build and the prediction hold the GIL in C calls of
            # up to a second (dict.update, dict.fromkeys of whole lists), and
            # a frame needs the UI thread to get it back many times.
            self.call_after_refresh(self.predict, m.snapshot, self.request)
        else:
            self.predict(m.snapshot, self.request)

    def stamp(self, seconds: float) -> str:
        """When the last read ended and how long it took (tests pin it)."""
        return f"read {time.strftime('%H:%M:%S')} in {seconds:.2f} s"

    def _show_read_status(self) -> None:
        every = "view frozen (p resumes)" if self.paused else (
            f"every {self.interval:g} s" if self.interval else "no auto refresh")
        if not self.refreshing:
            every = "read once"
        hits = f" · {score_brief(self.running)}" if self.windows else ""
        self._status(f"{self._last_read} · {every}{hits}")

    # -- traced windows ------------------------------------------------------------------
    def on_window_scored(self, m: WindowScored) -> None:
        # The totals take every window, even while the view is frozen.
        self.running = self.running.add(m.score)
        self.windows.append(m.score)
        self._window_shown = False
        self._last_window = m
        if not self.paused:
            self._show_window()

    def _show_window(self) -> None:
        """The last window in the Trace panel (and the score in the header
        and the Compare panel)."""
        m = self._last_window
        if m is None or self._window_shown or self.return_code is not None:
            return
        self._window_shown = True
        w = m.score
        panel = self.main.query_one("#trace-panel", TracePanel)
        panel.status = trace_status(self.running, w, self.windows[-HISTORY:], m.read_seconds,
                                    m.rearmed, self.session.workload)
        names = self.main.snapshot.kernel.migratetypes if self.main.snapshot else ()
        recs = w.records
        panel.records = (len(recs), lambda i: Text(
            record_text(recs[i], names), style="" if recs[i].hit else "bold red"))
        self.main.query_one("#compare-panel", ComparePanel).check = self._check_text()
        if self._last_read:
            self._show_read_status()

    def on_read_failed(self, m: ReadFailed) -> None:
        self._loading(False)
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

    # -- find -----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="find", exit_on_error=False)
    def find(self, snap: Snapshot, text: str) -> None:
        try:
            found = find_page(snap, text)
        except BuddyscopeError as e:
            self.post_message(FindReady(None, str(e)))
            return
        self.post_message(FindReady(found))

    def on_find_ready(self, m: FindReady) -> None:
        panel = self.main.query_one("#find-panel", FindPanel)
        if m.found is None:
            panel.error = m.error
        else:
            panel.show(m.found)

    def action_find(self) -> None:
        if not self.main.panels_mounted:
            return   # the first frame is up, the Find field not yet
        self.main.action_show_tab("find")
        self.main.call_after_refresh(lambda: self.main.query_one("#find-input").focus())

    # -- export ----------------------------------------------------------------------------
    def _out_dir(self) -> Path:
        """Where screenshots and exports go: $BUDDYSCOPE_EXPORT_DIR, else the
        current directory, else the temporary directory."""
        for d in (os.environ.get("BUDDYSCOPE_EXPORT_DIR"), os.getcwd(), tempfile.gettempdir()):
            if d and os.path.isdir(d) and os.access(d, os.W_OK):
                return Path(d)
        return Path(tempfile.gettempdir())

    def _out_path(self, suffix: str) -> Path:
        return self._out_dir() / f"buddyscope-{time.strftime('%Y%m%d-%H%M%S')}{suffix}"

    def action_screenshot_svg(self) -> None:
        path = self._out_path(".svg")
        try:
            write_atomic(path, self.export_screenshot().encode())
        except OSError as e:
            self.notify(f"cannot write {path}: {e.strerror or e}", severity="error")
            return
        self.notify(str(path), title="screenshot saved")

    def action_export_snapshot(self) -> None:
        snap = self.main.snapshot
        if snap is None:
            self.notify("nothing read yet", severity="warning")
            return
        path = self._out_path(".json.gz")
        try:
            snap.save(path)  # written atomically (model._jsonfile)
        except OSError as e:
            self.notify(f"cannot write {path}: {e.strerror or e}", severity="error")
            return
        what = f"the model's state at step {self.step}" if self.stepper is not None else \
            "the snapshot shown"
        self.notify(f"{what}: {path}", title="exported")

    def on_prediction_ready(self, m: PredictionReady) -> None:
        panels = self.main.query("#predict-panel")
        if self.return_code is not None or not panels:
            return   # quitting: the panels may be gone already
        panel = panels.first(PredictPanel)
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
            # No stale results under the error.
            self.main.prediction = None
            self.main.compares = None
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
        return self.session.check if self.session is not None else ""

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
                self._loading(False)
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
        full replay, computed once); on a traced source, the next miss in
        the Trace panel's list of the last window."""
        if self.stepper is None:
            if self.traced:
                self._next_trace_miss()
            return
        self._find_miss(self.step)

    def _next_trace_miss(self) -> None:
        self.main.action_show_tab("trace")
        panel = self.main.query_one("#trace-panel", TracePanel)
        m = self._last_window if self._window_shown else None
        recs = m.score.records if m is not None else ()
        after = panel.marked if panel.marked is not None else -1
        nxt = next((i for i in range(after + 1, len(recs)) if not recs[i].hit), None)
        if nxt is None:
            nxt = next((i for i in range(0, after + 1) if not recs[i].hit), None)
        if nxt is None:
            self.notify("no misses in this window")
        else:
            # After the tab switch has laid the list out.
            self.main.call_after_refresh(panel.show_record, nxt)

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
        if action == "next_miss":
            return replay or self.traced
        if action in ("step", "alloc_step", "goto"):
            return replay
        if action in ("refresh", "pause", "interval", "resume"):
            # A file, vmcore or recording never changes: nothing to refresh.
            if action in ("pause", "resume"):
                return self.refreshing and self.paused == (action == "resume")
            return self.refreshing
        return True

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def _reading(self) -> bool:
        return any(w.group == "read" and w.is_running for w in self.workers)

    async def action_quit(self) -> None:
        """Quit; on a traced guest, once the read under way has ended: the
        read cannot be cut short, and quitting under it would leave a blank
        terminal until it ends (seconds to tens of seconds under TCG)."""
        if self.traced and self._reading():
            if not self._quitting:
                self._quitting = True
                if self._timer is not None:
                    self._timer.stop()
                self.notify("quitting once the read under way ends", timeout=60)
            return
        self.exit()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if self._quitting and event.worker.group == "read" and event.worker.is_finished:
            self.exit()

    def action_refresh(self) -> None:
        if self.session is None:
            return   # still loading: the first read follows by itself
        if self.traced and self._reading():
            self.notify("a refresh is under way")
            return
        self.read_source()

    def action_resume(self) -> None:
        self.action_pause()

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self._show_window()
        if self._last_read:
            self._show_read_status()
        else:
            self._status("view frozen (p resumes)" if self.paused else "reading ...")

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
            if self.main.query(f"TabPane#{t}"):
                out.append((f"Show {title}", lambda t=t: self.main.action_show_tab(t),
                            f"the {title} panel (key {_KEY[t]})"))
        out.append(("Find a page (PFN or struct page)", self.action_find, "like kmem -f"))
        out.append(("Save a screenshot (SVG)", self.action_screenshot_svg,
                    "into the current directory"))
        out.append(("Export the snapshot shown", self.action_export_snapshot,
                    "a .json.gz any buddyscope command opens"))
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
                                plural(c, "entry")))
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


def _why(kind: str) -> str:
    """Why a source has counts only, when the session does not say."""
    if kind == "procfs":
        return "PFNs need root, /proc/kcore and the kernel's debug info (vmlinux)"
    return ""


def _default_zone(snap: Snapshot) -> int:
    """The zone with the most managed pages (DMA32 on a small guest, Normal
    on a big machine)."""
    if not snap.zones:
        return 0
    return max(range(len(snap.zones)), key=lambda i: snap.zones[i].managed_pages)
