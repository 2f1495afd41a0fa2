"""
Screens
-------

The help screen, a free or pcp list opened full screen, and the "go to
step" dialog of replay mode.
"""

from __future__ import annotations

from typing import Callable, Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Label, Static

from buddyscope.tui.widgets import LinesView

__all__ = ("GotoScreen", "HelpScreen", "ListScreen")

HELP = """\
[b]buddyscope[/b]: the page allocator of a kernel, and what it hands out next

[b]Everywhere[/b]
  1-8          Free area, PCP, Watermarks, Pageblocks, Predict, Compare, Replay
               (a recording), Trace (tui --lab)
  z            next zone (or pick it in the header)
  r            read the source again now
  p            pause / resume reading (a paused display keeps its state)
  i            refresh interval: 1, 2, 5, 10 s or off
  t            dark / light theme
  ctrl+p       command palette: zones, panels, free lists, replay steps
  ?            this help          q  quit

[b]Free area[/b]  arrows move between counts; Enter opens that free list, PFNs
  in list order (head first): Home/End, PageUp/PageDown scroll it.
[b]PCP[/b]  Enter on a list opens it.
[b]Predict[/b]  order, a gfp mask (GFP_KERNEL|__GFP_ZERO) or a migratetype
  (Movable), the CPU and how many; Enter runs the model, Esc leaves the
  fields (digits then switch tabs again). Each result shows its path; the
  Compare tab shows the state the results leave.
[b]Replay[/b] (a recording)
  n / b        next / previous event
  N / B        next / previous allocation
  m            next allocation the model got wrong
  g            go to a step
  Every panel then shows the model's state after that many events.
[b]Trace[/b] (tui --lab: a lab guest with its kmem events traced)
  Each refresh (r) pauses the guest for the ring-buffer counters and the
  snapshot; the events since the previous refresh are replayed from the
  previous snapshot: which allocations the model predicted exactly, per
  window and in total. A window with lost events is shown, not scored.

Fragmentation indices are the kernel's own (mm/vmstat.c):
unusable_free_index and __fragmentation_index, shown as the kernel's
debugfs files print them.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(HELP, id="help-text")
            yield Label("Esc closes", id="help-close")


class ListScreen(Screen[None]):
    """One list, any length, drawn a screen at a time."""

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back")]

    def __init__(self, title: str, count: int, line: Callable[[int], str]) -> None:
        super().__init__()
        self._title, self._count, self._line = title, count, line

    def compose(self) -> ComposeResult:
        yield Static(Text(self._title), id="list-title")
        yield LinesView(self._count, self._line, id="list-lines")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(LinesView).focus()


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

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            self.dismiss(int(event.value))
        except ValueError:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
