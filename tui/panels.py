"""
Panels
------

The Zones, History and Find panels: thin widgets over
:mod:`buddyscope.tui.overview` and :mod:`buddyscope.model.find`, like the
ones in :mod:`buddyscope.tui.widgets`.
"""

from __future__ import annotations

from typing import List, Optional

from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Input, Label, Static

from buddyscope.model.find import FoundPage
from buddyscope.tui.overview import Sample, ZoneRow, crossings, sparkline
from buddyscope.tui.views import mt_short

__all__ = ("FindPanel", "HistoryPanel", "ZonesPanel")


def plural(n: int, word: str) -> str:
    """``1 entry``, ``2 entries``, ``1 page``, ``3 pages``."""
    if n == 1:
        return f"1 {word}"
    if word.endswith("y"):
        return f"{n} {word[:-1]}ies"
    return f"{n} {word}s"


class ZonesPanel(VerticalScroll, can_focus=True):
    """Every zone at once: ``nr_free`` per order as ``/proc/buddyinfo``
    prints it, free pages against the watermarks, pageblocks per type."""

    rows: reactive[Optional[List[ZoneRow]]] = reactive(None, always_update=True)

    def compose(self):
        yield Static(id="zones-buddyinfo")
        yield Static(id="zones-pages")

    def watch_rows(self, rows: Optional[List[ZoneRow]]) -> None:
        if not rows:
            return
        orders = max(len(r.nr_free) for r in rows)
        t = Table(title="free blocks per order (/proc/buddyinfo)", title_justify="left",
                  box=None, padding=(0, 0), pad_edge=False)
        t.add_column("zone", no_wrap=True)
        for o in range(orders):
            t.add_column(str(o), justify="right", min_width=5)
        for r in rows:
            t.add_row(f"{r.node}/{r.name}", *(Text(str(n), style="dim" if n == 0 else "")
                                              for n in r.nr_free))
        p = Table(title="pages", title_justify="left", box=None, padding=(0, 1),
                  pad_edge=False)
        p.add_column("zone", no_wrap=True)
        p.add_column("free", justify="right")
        p.add_column("vs wmark", no_wrap=True)
        p.add_column("pcp", justify="right")
        p.add_column("managed", justify="right")
        p.add_column("pageblocks by type")
        for r in rows:
            blocks = ("not known" if r.pageblocks is None else
                      " ".join(f"{mt_short(k)} {v}" for k, v in r.pageblocks.items() if v)
                      or "none")
            p.add_row(f"{r.node}/{r.name}", str(r.free_pages),
                      Text(r.level, style="bold red" if r.level == "<= min" else ""),
                      str(r.pcp_pages), str(r.managed), blocks)
        self.query_one("#zones-buddyinfo", Static).update(t)
        self.query_one("#zones-pages", Static).update(p)


class HistoryPanel(VerticalScroll, can_focus=True):
    """The zone's last reads: free pages and ``nr_free`` per order as
    sparklines, and where free pages crossed each watermark."""

    COMPONENT_CLASSES = {"history--down", "history--up"}
    LABEL = 9
    VALUE = 8

    samples: reactive[Optional[List[Sample]]] = reactive(None, always_update=True)
    note: reactive[str] = reactive("")

    def compose(self):
        yield Static(id="history-body")

    def on_resize(self) -> None:
        self._update()

    def watch_samples(self) -> None:
        self._update()

    def watch_note(self) -> None:
        self._update()

    def _update(self) -> None:
        body = self.query_one("#history-body", Static)
        s = self.samples
        if not s:
            body.update(Text(self.note or "no reads yet"))
            return
        width = max(8, self.size.width - self.LABEL - self.VALUE - 4)
        s = s[-width:]
        free = [x.free_pages for x in s]
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"{self.note}\n" if self.note else "")
        t.append(f"last {plural(len(s), 'read')}, oldest left; free pages {min(free)}"
                 f"..{max(free)}\n", style="dim")
        t.append(f"{'free':<{self.LABEL}}")
        t.append(sparkline(free), style="green")
        t.append(f" {free[-1]:>{self.VALUE}}\n")
        t.append("free pages crossing the watermarks (boosted, as the allocator uses them):\n",
                 style="bold")
        down = self.get_component_rich_style("history--down")
        up = self.get_component_rich_style("history--up")
        for name in ("high", "low", "min"):
            if name not in s[-1].marks:
                continue
            # Against each read's own (boosted) mark: boost moves them.
            cells = [" "] * len(s)
            for i in range(1, len(s)):
                was = s[i - 1].free_pages > s[i - 1].marks[name]
                now = s[i].free_pages > s[i].marks[name]
                if was != now:
                    cells[i] = "▼" if was else "▲"
            t.append(f"{name:<{self.LABEL}}")
            for c in cells:
                t.append(c if c != " " else "·", style=down if c == "▼" else up if c == "▲"
                         else "dim")
            t.append(f" {s[-1].marks[name]:>{self.VALUE}}\n")
        t.append("▼ fell to or below the mark, ▲ rose above it\n", style="dim")
        t.append("nr_free per order (free blocks):\n", style="bold")
        for o in range(len(s[-1].nr_free)):
            vals = [x.nr_free[o] if o < len(x.nr_free) else 0 for x in s]
            t.append(f"{'order ' + str(o):<{self.LABEL}}")
            t.append(sparkline(vals), style="cyan")
            t.append(f" {vals[-1]:>{self.VALUE}}\n")
        body.update(t)


def crossings_text(free: List[int], mark: int) -> str:
    """The crossings of *mark* in words (for tests and the palette)."""
    return ", ".join(f"read {i} {d}" for i, d in crossings(free, mark))


class FoundView(Static, can_focus=True):
    """The answer of a find; Enter opens the list that holds the page."""

    BINDINGS = [Binding("enter", "open", "Open its list")]

    class Open(Message):
        def __init__(self, found: FoundPage) -> None:
            super().__init__()
            self.found = found

    found: reactive[Optional[FoundPage]] = reactive(None, always_update=True)

    def action_open(self) -> None:
        f = self.found
        if f is not None and f.where in ("free_list", "pcp"):
            self.post_message(self.Open(f))

    def check_action(self, action: str, parameters) -> Optional[bool]:
        if action == "open":
            f = self.found
            return f is not None and f.where in ("free_list", "pcp")
        return True

    def on_focus(self) -> None:
        self.screen.refresh_bindings()

    def watch_found(self, f: Optional[FoundPage]) -> None:
        self.refresh_bindings()
        if f is None:
            return
        t = Text()
        page = f"{f.page:#x}" if f.page is not None else "not known (no vmemmap recorded)"
        rows = [("pfn", f"{f.pfn:#x} ({f.pfn})"), ("struct page", page)]
        if f.zone is None:
            rows.append(("zone", "none: outside every zone of this snapshot"))
        else:
            rows.append(("zone", f"node {f.node}, {f.zone}"))
            if f.where == "free_list":
                rows.append(("on", f"free_area[{f.order}].free_list[{f.migratetype}]"))
            elif f.where == "pcp":
                rows.append(("on", f"cpu {f.cpu} pcp lists[{f.pindex}], order {f.order} "
                                   f"({f.migratetype})"))
            else:
                rows.append(("on", "no free list and no pcp list: allocated (or held "
                                   "outside the allocator's lists)"))
            if f.block is not None:
                end = f.block + (1 << f.order) - 1
                rows.append(("block", f"order {f.order}, pfn {f.block:#x}-{end:#x}, "
                                      + ("the page is its head" if f.is_head else
                                         f"the page is +{f.pfn - f.block} in it")))
                rows.append(("position", f"entry {f.position} of {f.length} (head is 0)"))
            rows.append(("pageblock", f.pageblock or "not known"))
        for k, v in rows:
            t.append(f"{k:<12}", style="bold")
            t.append(v + "\n")
        if f.where in ("free_list", "pcp"):
            t.append("Enter opens that list at this entry", style="dim")
        self.update(t)


class FindPanel(Vertical):
    """Type a PFN or a ``struct page`` address; see where it is, like
    crash's ``kmem -f``."""

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    BINDINGS = [Binding("escape", "screen.back", "Leave field")]

    error: reactive[str] = reactive("")

    def check_action(self, action: str, parameters) -> Optional[bool]:
        if action == "screen.back":
            return isinstance(self.screen.focused, Input)
        return True

    def compose(self):
        yield Label("PFN (0x1234 or decimal) or struct page address, then Enter:",
                    id="find-label")
        yield Input(id="find-input", placeholder="0x6468", compact=True)
        yield Static(id="find-error")
        yield FoundView(id="find-result")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Submitted(event.value))

    def watch_error(self, error: str) -> None:
        self.query_one("#find-error", Static).update(Text(error, style="bold red"))
        if error:
            self.query_one(FoundView).found = None
            self.query_one(FoundView).update("")

    def show(self, found: FoundPage) -> None:
        self.error = ""
        v = self.query_one(FoundView)
        v.found = found
        v.focus()
