"""
Screens
-------

The help screen, a free or pcp list opened full screen, and the "go to
step" dialog of replay mode.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Label, Static

from buddyscope.errors import BuddyscopeError
from buddyscope.model.find import parse_pfn_or_addr
from buddyscope.tui.widgets import LinesView

__all__ = ("GotoScreen", "HelpScreen", "ListScreen")

HELP = """\
[b]buddyscope[/b]: the page allocator of a kernel, and what it hands out next

[b]Panels[/b] (a number key switches from anywhere but a text field)
  1 Free area   2 PCP        3 Watermarks  4 Pageblocks  5 Predict
  6 Compare     7 Replay (a recording) or History (a source read again)
  8 Trace (tui --lab)        9 Zones (all zones)          0 Find
  Tab / Shift+Tab move between the widgets of a panel; the footer shows
  the keys of the one focused. Esc goes back: out of a field, a list or
  a dialog.

[b]Everywhere[/b]
  z            next zone (or pick it in the header)
  f or /       find a page: a PFN or a struct page address
  r            read the source again now (sources that change)
  p            pause: freeze the view (reads wait for r)
  i            refresh interval: 1, 2, 5, 10 s or off
  s            save a screenshot (SVG) in the current directory
  e            export the snapshot shown (.json.gz, any buddyscope
               command opens it; in a replay, the model's state)
  t            dark / light theme
  ctrl+p       command palette: zones, panels, free lists, replay steps
  ?            this help          q  quit

[b]Free area[/b]  arrows move between counts; Enter opens that free list,
  PFNs in list order (head first): Home/End, PageUp/PageDown scroll it,
  / finds a PFN in it.
[b]PCP[/b]  Enter on a list opens it.
[b]Predict[/b]  o edits the request: order, a gfp mask (GFP_KERNEL|__GFP_ZERO)
  or a migratetype (Movable), the CPU and how many; Enter runs the model,
  Esc leaves the fields. Arrows pick a result: its path shows below. The
  Compare panel shows the state the results leave.
[b]Find[/b]  type a PFN (0x6468) or a struct page address (when the
  snapshot records vmemmap), Enter: the free list or pcp list holding
  it or the free block containing it, its position, order and pageblock
  type (crash's kmem -f). Enter again opens that list at the entry.
[b]Zones[/b]  every zone at once, as /proc/buddyinfo prints them.
[b]History[/b]  free pages and nr_free per order over the last reads,
  and where free pages crossed min, low or high (▼ ▲).
[b]Replay[/b] (a recording)
  n / b        next / previous event
  N / B        next / previous allocation
  m            next allocation the model got wrong
  g            go to a step
  Every panel then shows the model's state after that many events.
  "naive" is the baseline: the head of the snapshot's list for that
  order and migratetype, taken in turn.
[b]Trace[/b] (tui --lab: a lab guest with its kmem events traced)
  Each refresh (r) stops the guest for the ring-buffer counters and the
  snapshot; the events since the previous refresh are replayed from the
  previous snapshot: which allocations the model predicted exactly, per
  window and in total. A window with lost events is shown, not scored.
  m            next allocation of the last window the model got wrong
  p            freezes the Trace panel too (the totals keep counting)

Fragmentation indices are the kernel's own (mm/vmstat.c):
unusable_free_index and __fragmentation_index, shown as the kernel's
debugfs files print them.

[dim]End of help. Esc closes.[/dim]
"""


class HelpScreen(ModalScreen[None]):
    """The keys; scrolls (arrows, PageUp/PageDown, Home/End) when the
    terminal is smaller than the help."""

    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            with VerticalScroll(id="help-scroll"):
                yield Static(HELP, id="help-text")
            yield Label("Esc closes · arrows, PgUp/PgDn, Home/End scroll", id="help-close")

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()


class ListScreen(Screen[None]):
    """One list, any length, drawn a screen at a time; / finds a PFN in it."""

    BINDINGS = [Binding("escape,q", "back", "Back"),
                Binding("slash,f", "search", "Find PFN", key_display="/")]

    def __init__(self, title: str, count: int, line: Callable[[int], str],
                 pfns: Optional[Sequence[int]] = None, order: int = 0,
                 at: Optional[int] = None) -> None:
        super().__init__()
        self._title, self._count, self._line = title, count, line
        self._pfns, self._order, self._at = pfns, order, at

    def compose(self) -> ComposeResult:
        yield Static(Text(self._title), id="list-title")
        yield LinesView(self._count, self._line, id="list-lines")
        yield Input(id="list-search", placeholder="PFN to find in this list, Enter",
                    compact=True)
        yield Static(id="list-found")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#list-search").display = False
        v = self.query_one(LinesView)
        v.focus()
        if self._at is not None:
            v.call_after_refresh(v.show_line, self._at)
            self.query_one("#list-found", Static).update(f"entry {self._at} highlighted")

    def check_action(self, action: str, parameters) -> Optional[bool]:
        if action == "search":
            return self._pfns is not None and not isinstance(self.focused, Input)
        return True

    def action_back(self) -> None:
        search = self.query_one("#list-search", Input)
        if search.display:
            search.display = False
            self.query_one(LinesView).focus()
        else:
            self.app.pop_screen()

    def action_search(self) -> None:
        search = self.query_one("#list-search", Input)
        search.value = ""
        search.display = True
        search.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        found = self.query_one("#list-found", Static)
        try:
            pfn = parse_pfn_or_addr(event.value)
        except BuddyscopeError as e:
            found.update(Text(str(e), style="bold red"))
            return
        i = self.find(pfn)
        if i is None:
            found.update(Text(f"pfn {pfn:#x} is in no block of this list", style="bold red"))
            return
        event.input.display = False
        v = self.query_one(LinesView)
        v.focus()
        v.show_line(i)
        head = self._pfns[i]
        found.update(f"pfn {pfn:#x}: entry {i}" + ("" if head == pfn else
                                                   f" (the block at {head:#x} holds it)"))

    def find(self, pfn: int) -> Optional[int]:
        """Position of the block on this list that holds *pfn*."""
        size = 1 << self._order
        for i, head in enumerate(self._pfns or ()):
            if head <= pfn < head + size:
                return i
        return None


class GotoScreen(ModalScreen[Optional[int]]):
    """Ask for a step number."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = total

    def compose(self) -> ComposeResult:
        with Vertical(id="goto-box"):
            yield Label(f"go to step (0..{self.total}):")
            yield Input(id="goto-input", type="integer")
            yield Label("", id="goto-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        # A step out of range stays here and says so: clamped, it went
        # somewhere the user did not ask for.
        try:
            step = int(event.value)
        except ValueError:
            step = -1
        if 0 <= step <= self.total:
            self.dismiss(step)
        else:
            self.query_one("#goto-error", Label).update(
                f"no step {event.value.strip() or '(empty)'}: 0..{self.total}")

    def action_cancel(self) -> None:
        self.dismiss(None)
