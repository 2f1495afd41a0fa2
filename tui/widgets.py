"""
Widgets
-------

Thin widgets: each is given plain data from :mod:`buddyscope.tui.views` as an
attribute and turns it into text; what the user picks goes up as a message.
Colours come from ``app.tcss`` through component classes.
"""

from __future__ import annotations

from typing import Callable, List, Optional

from rich.console import Group
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Button, DataTable, Input, Label, Static

from buddyscope.tui.views import (
    CompareView, FragRow, FreeAreaView, HeaderView, PageblockView, PcpCpuRow, PcpListRow,
    Prediction, WatermarkView, mt_short,
)

__all__ = (
    "ComparePanel", "FreeAreaTable", "HeaderBar", "LinesView", "PageblockMap", "PageblockPanel",
    "PcpPanel",
    "PredictPanel", "ReplayPanel", "TracePanel", "WatermarkPanel",
)

_BAR = 14


def _bar(fraction: float, width: int = _BAR) -> str:
    """A horizontal bar in eighths of a cell."""
    eighths = max(0, min(width * 8, round(fraction * width * 8)))
    full, part = divmod(eighths, 8)
    return ("█" * full + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[part]).ljust(width)


def _num(v: Optional[int]) -> str:
    return "?" if v is None else str(v)


class HeaderBar(Static):
    """Source, kernel, whether the state is consistent, and the last read."""

    view: reactive[Optional[HeaderView]] = reactive(None)
    status: reactive[str] = reactive("")
    error: reactive[bool] = reactive(False)

    def render(self) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        v = self.view
        if v is None:
            t.append("buddyscope", style="bold")
        else:
            t.append(v.source, style="bold")
            t.append(f"  {v.release}")
        t.append("\n")
        if v is not None:
            t.append(v.state, style="green" if v.consistent else "yellow")
            if v.unpredictable:
                t.append(" · ")
                t.append(v.unpredictable, style="bold red")
        t.append("\n")
        t.append(self.status, style="bold red" if self.error else "dim")
        return t


class FreeAreaTable(DataTable):
    """``free_area[order]`` per migratetype, ``nr_free``, pages and a bar.
    Enter on a count opens that free list."""

    class ListChosen(Message):
        def __init__(self, order: int, migratetype: int, at: Optional[int] = None) -> None:
            super().__init__()
            self.order = order
            self.migratetype = migratetype
            #: Entry to show first (a found page).
            self.at = at

    BINDINGS = [Binding("enter", "select_cursor", "Open list")]

    view: reactive[Optional[FreeAreaView]] = reactive(None, always_update=True)

    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="cell", zebra_stripes=True, **kw)
        self._mts: List[str] = []

    def watch_view(self, view: Optional[FreeAreaView]) -> None:
        if view is None:
            self.clear(columns=True)
            self._mts = []
            return
        cursor = self.cursor_coordinate
        if view.migratetypes != self._mts:
            self.clear(columns=True)
            self._mts = list(view.migratetypes)
            self.add_column("order", key="order")
            for name in view.migratetypes:
                self.add_column(mt_short(name), key=name)
            self.add_column("nr_free", key="nr_free")
            self.add_column("pages", key="pages")
            self.add_column("share of free pages", key="bar")
        else:
            self.clear()
        top = max(view.pages) if view.pages and max(view.pages) else 1
        for o, row in enumerate(view.counts):
            cells = [Text(str(o), style="bold")]
            cells += [Text(_num(c), justify="right", style="dim" if c == 0 else "")
                      for c in row]
            cells += [Text(str(view.nr_free[o]), justify="right"),
                      Text(str(view.pages[o]), justify="right"),
                      Text(_bar(view.pages[o] / top), style="green")]
            self.add_row(*cells, key=str(o))
        if cursor.row < self.row_count and cursor.column < len(self.columns):
            self.move_cursor(row=cursor.row, column=cursor.column, animate=False)

    def check_action(self, action: str, parameters) -> Optional[bool]:
        if action == "select_cursor":
            return self.view is not None and self.view.has_lists
        return True

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        event.stop()
        row, col = event.coordinate
        if 1 <= col <= len(self._mts):
            self.post_message(self.ListChosen(row, col - 1))


class LinesView(ScrollView, can_focus=True):
    """A list of any length drawn with the Line API: only the lines on
    screen are ever formatted (a free list can hold a million entries)."""

    COMPONENT_CLASSES = {"linesview--cursor"}

    def __init__(self, count: int = 0, line: Callable[[int], "str | Text"] = str, **kw) -> None:
        super().__init__(**kw)
        self.set_lines(count, line)

    #: Keep the last line in view (a log).
    follow_end = False
    #: A line to highlight (a found entry), or None.
    mark: Optional[int] = None

    def show_line(self, i: int) -> None:
        """Highlight line *i* and scroll it to the middle."""
        self.mark = i
        self.scroll_to(y=max(0, i - self.scrollable_content_region.height // 2),
                       animate=False, immediate=True)
        self.refresh()

    def on_resize(self) -> None:
        if self.follow_end:
            self.scroll_end(animate=False, immediate=True)

    def set_lines(self, count: int, line: Callable[[int], "str | Text"]) -> None:
        self.count = count
        self._line = line
        # The width of a few lines stands for all: never format them all.
        sample = {0, 1, count // 2, count - 2, count - 1} if count else set()
        width = max((len(str(line(i))) for i in sample if 0 <= i < count), default=0)
        self.virtual_size = Size(width, count)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        i = y + scroll_y
        width = self.size.width
        if i >= self.count:
            return Strip.blank(width, self.rich_style)
        line = self._line(i)
        style = self.rich_style
        if i == self.mark:
            style = style + self.get_component_rich_style("linesview--cursor")
        if isinstance(line, Text):
            segs = list(line.render(self.app.console))
            strip = Strip(segs).apply_style(style)
        else:
            strip = Strip([Segment(line, style)], len(line))
        return strip.crop(scroll_x, scroll_x + width).extend_cell_length(width, self.rich_style)


class PcpPanel(Vertical):
    """Per CPU: count/high/batch; each pcp list with its length and head.
    Enter on a list opens it."""

    class ListChosen(Message):
        def __init__(self, cpu: int, pindex: int, at: Optional[int] = None) -> None:
            super().__init__()
            self.cpu = cpu
            self.pindex = pindex
            self.at = at

    cpus: reactive[Optional[List[PcpCpuRow]]] = reactive(None, always_update=True)
    lists: reactive[Optional[List[PcpListRow]]] = reactive(None, always_update=True)

    def compose(self):
        yield DataTable(id="pcp-cpus", cursor_type="row", show_cursor=False)
        yield Static(id="pcp-members")
        yield _PcpLists(id="pcp-lists", cursor_type="row", zebra_stripes=True)
        yield Static(id="pcp-none")

    def on_mount(self) -> None:
        self.query_one("#pcp-cpus", DataTable).add_columns("cpu", "count", "high", "batch")
        self.query_one("#pcp-lists", DataTable).add_columns(
            "cpu", "list", "order", "migratetypes", "entries", "head")

    def watch_cpus(self, rows: Optional[List[PcpCpuRow]]) -> None:
        t = self.query_one("#pcp-cpus", DataTable)
        t.clear()
        members = []
        for r in rows or ():
            t.add_row(str(r.cpu), Text(str(r.count), justify="right"),
                      Text(str(r.high), justify="right"), Text(str(r.batch), justify="right"))
            if r.fields:
                members.append(f"cpu {r.cpu}: " + ", ".join(
                    f"{k} {v}" for k, v in sorted(r.fields.items())))
        # The other members wrap below the table, never off its right edge.
        self.query_one("#pcp-members", Static).update("\n".join(members))

    def watch_lists(self, rows: Optional[List[PcpListRow]]) -> None:
        t = self.query_one("#pcp-lists", DataTable)
        row = t.cursor_row
        t.clear()
        known = bool(rows) and any(r.length is not None for r in rows)
        t.display = known
        self.query_one("#pcp-none", Static).update(
            "" if known or rows is None else
            "no pcp lists: this source has per-CPU count, high and batch only "
            "(/proc/zoneinfo); the lists need PFNs (root, /proc/kcore, debug info)")
        if not known:
            return
        for r in rows or ():
            t.add_row(str(r.cpu), Text(f"lists[{r.pindex}]"), str(r.order), Text(r.migratetypes),
                      Text(_num(r.length), justify="right",
                           style="dim" if not r.length else ""),
                      "-" if r.head is None else f"{r.head:#x}",
                      key=f"{r.cpu}/{r.pindex}")
        if 0 <= row < t.row_count:
            t.move_cursor(row=row, animate=False)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.data_table.id == "pcp-lists" and event.row_key.value:
            cpu, pindex = map(int, event.row_key.value.split("/"))
            self.post_message(self.ListChosen(cpu, pindex))


class _PcpLists(DataTable):
    BINDINGS = [Binding("enter", "select_cursor", "Open list")]


class WatermarkPanel(VerticalScroll, can_focus=True):
    """Free pages against the watermarks; the kernel's fragmentation indices."""

    marks: reactive[Optional[WatermarkView]] = reactive(None, always_update=True)
    frag: reactive[Optional[List[FragRow]]] = reactive(None, always_update=True)

    def compose(self):
        with Horizontal(id="wm-sides"):
            yield Static(id="wm-marks")
            yield Static(id="wm-frag")
        yield Static(id="wm-note")

    def on_resize(self) -> None:
        self.set_class(self.size.width < 96, "-narrow")

    def _refresh_body(self) -> None:
        w, rows = self.marks, self.frag
        if w is None or rows is None:
            return
        wt = Table(title="watermarks (pages)", title_justify="left", box=None, padding=(0, 1))
        boosted_col = w.boost != 0
        wt.add_column("")
        wt.add_column("_watermark", justify="right")
        if boosted_col:
            # wmark_pages() = _watermark + watermark_boost.
            wt.add_column("+boost", justify="right")
        wt.add_column("free-mark", justify="right")
        wt.add_column("", width=12, no_wrap=True)
        top = max([w.free_pages] + [m for _, _, m in w.marks]) or 1
        wt.add_row(Text("free", style="bold"), str(w.free_pages), *([""] if boosted_col else []),
                   "", Text(_bar(w.free_pages / top, 12), style="green"))
        for name, v, boosted in w.marks:
            margin = w.free_pages - boosted
            wt.add_row(name, str(v), *([str(boosted)] if boosted_col else []),
                       Text(f"{margin:+d}", style="red" if margin <= 0 else ""),
                       Text(_bar(boosted / top, 12), style="yellow"))
        summary = Text(
            f"free pages (NR_FREE_PAGES) are {w.level}\n"
            f"on free lists {w.on_lists}, on pcp lists {w.pcp_pages}, managed {w.managed}\n"
            f"watermark_boost {w.boost}"
            + (" (marks used: _watermark + boost)" if w.boost else "")
            + f", nr_reserved_highatomic {w.nr_reserved_highatomic}\n"
            f"lowmem_reserve {w.lowmem_reserve}")
        ft = Table(title="fragmentation (mm/vmstat.c)", title_justify="left", box=None,
                   padding=(0, 1))
        ft.add_column("order", justify="right")
        ft.add_column("suitable", justify="right")
        ft.add_column("unusable", justify="right")
        ft.add_column("extfrag", justify="right")
        for r in rows:
            ft.add_row(str(r.order), str(r.suitable), _thousandths(r.unusable),
                       Text(_thousandths(r.extfrag), style="dim" if r.extfrag < 0 else "bold"))
        self.query_one("#wm-marks", Static).update(Group(wt, summary))
        self.query_one("#wm-frag", Static).update(ft)
        self.query_one("#wm-note", Static).update(Text(
            "unusable: unusable_free_index, the share of free memory in blocks too small for "
            "the order; extfrag: __fragmentation_index, -1.000 when the order would succeed, "
            "else towards 0 a failure is lack of memory, towards 1 fragmentation", style="dim"))

    def watch_marks(self) -> None:
        self._refresh_body()

    def watch_frag(self) -> None:
        self._refresh_body()


def _thousandths(v: int) -> str:
    # The kernel prints index / 1000 "." index % 1000 (C division).
    sign = "-" if v < 0 else ""
    return f"{sign}{abs(v) // 1000}.{abs(v) % 1000:03d}"


_MT_CLASSES = {"unmovable", "movable", "reclaimable", "highatomic", "cma", "isolate"}


class PageblockMap(ScrollView, can_focus=True):
    """The zone, one cell per pageblock, coloured by its migratetype; the
    glyph says how much of it is on the free lists."""

    COMPONENT_CLASSES = {f"pageblock--{n}" for n in _MT_CLASSES} | {"pageblock--other",
                                                                     "pageblock--label"}
    LABEL = 10

    view: reactive[Optional[PageblockView]] = reactive(None, always_update=True)

    def watch_view(self) -> None:
        self._resize()

    def on_resize(self) -> None:
        self._resize()

    def _per_row(self) -> int:
        # A power of two, so that rows start at round PFNs.
        w = max(8, self.size.width - self.LABEL - 1)
        return 1 << (w.bit_length() - 1)

    def _resize(self) -> None:
        n = len(self.view) if self.view is not None else 0
        rows = -(-n // self._per_row()) if n else 0
        self.virtual_size = Size(self.size.width, rows)
        self.refresh()

    def glyph(self, i: int) -> str:
        """How much of pageblock *i* is on the free lists: ``▒`` all of it,
        ``░`` half or more, ``·`` some, blank none (the colour stays
        readable under each)."""
        v = self.view
        if v is None or v.free is None:
            return " "
        f = v.free[i]
        if f >= v.pageblock_pages:
            return "▒"
        if f * 2 >= v.pageblock_pages:
            return "░"
        return "·" if f else " "

    def mt_style(self, t: int) -> Style:
        v = self.view
        name = v.migratetypes[t].lower() if v is not None and 0 <= t < len(v.migratetypes) \
            else "other"
        return self.get_component_rich_style(
            f"pageblock--{name if name in _MT_CLASSES else 'other'}")

    def render_line(self, y: int) -> Strip:
        v = self.view
        width = self.size.width
        row = y + int(self.scroll_offset.y)
        per = self._per_row()
        if v is None or row * per >= len(v):
            return Strip.blank(width, self.rich_style)
        first = row * per
        label = self.get_component_rich_style("pageblock--label")
        segs = [Segment(f"{v.first_pfn + first * v.pageblock_pages:#09x} ", label)]
        for i in range(first, min(len(v), first + per)):
            segs.append(Segment(self.glyph(i), self.mt_style(v.types[i])))
        return Strip(segs).extend_cell_length(width, self.rich_style).crop(0, width)


class PageblockPanel(Vertical):
    """A legend (in the map's colours) above the map."""

    view: reactive[Optional[PageblockView]] = reactive(None, always_update=True)
    title: reactive[str] = reactive("")
    #: Pageblocks per type when only counted (/proc/pagetypeinfo).
    counts: Optional[dict] = None

    def compose(self):
        yield Static(id="blocks-legend")
        yield PageblockMap(id="blocks-map")

    def watch_view(self, v: Optional[PageblockView]) -> None:
        m = self.query_one(PageblockMap)
        m.view = v
        legend = Text(self.title + "\n")
        if v is None:
            if self.counts:
                legend.append("pageblocks per type (/proc/pagetypeinfo, \"Number of blocks "
                              "type\"): ")
                legend.append("  ".join(f"{k} {n}" for k, n in self.counts.items()))
                legend.append("\nwhere each one lies needs PFNs (not in procfs)", style="dim")
            else:
                legend.append("this source has no pageblock migratetypes")
        else:
            legend.append(f"{len(v)} pageblocks of {v.pageblock_pages} pages: ")
            for t, (name, c) in enumerate(v.counts().items()):
                if c:
                    legend.append(f" {name} {c} ", style=m.mt_style(t))
                    legend.append(" ")
            legend.append("  free pages: ▒ all ░ half or more · some" if v.free is not None
                          else "  (no PFNs: free pages not known)")
        self.query_one("#blocks-legend", Static).update(legend)


class PredictPanel(Vertical):
    """The request (order, gfp or migratetype, CPU, how many) and the model's
    answer: each result with its path."""

    class Submitted(Message):
        def __init__(self, order: str, what: str, cpu: str, n: str) -> None:
            super().__init__()
            self.order, self.what, self.cpu, self.n = order, what, cpu, n

    BINDINGS = [Binding("escape", "leave_form", "Leave field"),
                Binding("o", "edit", "Edit request")]

    def action_edit(self) -> None:
        self.query_one("#predict-order", Input).focus()

    def check_action(self, action: str, parameters) -> Optional[bool]:
        if action == "edit":
            return not isinstance(self.screen.focused, Input)
        if action == "leave_form":
            return isinstance(self.screen.focused, (Input, Button))
        return True

    prediction: reactive[Optional[Prediction]] = reactive(None, always_update=True)
    error: reactive[str] = reactive("")

    def action_leave_form(self) -> None:
        # Out of the inputs, so that the number keys switch tabs again.
        self.query_one("#predict-results", DataTable).focus()

    def compose(self):
        with Horizontal(id="predict-form"):
            yield Label("order")
            yield Input("0", id="predict-order", compact=True)
            yield Label("gfp or type")
            yield Input("Movable", id="predict-what", compact=True)
            yield Label("cpu")
            yield Input("0", id="predict-cpu", compact=True)
            yield Label("n")
            yield Input("8", id="predict-n", compact=True)
            yield Button("Predict", id="predict-go", compact=True)
        yield Static(id="predict-status")
        yield Static(id="predict-why")
        yield DataTable(id="predict-results", cursor_type="row", zebra_stripes=True)
        yield Static(id="predict-steps")

    def on_mount(self) -> None:
        self.query_one("#predict-results", DataTable).add_columns(
            "#", "pfn", "zone", "path", "first step")

    def submit(self) -> None:
        q = lambda i: self.query_one(f"#predict-{i}", Input).value  # noqa: E731
        self.post_message(self.Submitted(q("order"), q("what"), q("cpu"), q("n")))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.submit()

    def watch_error(self, error: str) -> None:
        if error:
            self.query_one("#predict-status", Static).update(Text(error, style="bold red"))
            # No stale answer under the error.
            self.query_one("#predict-results", DataTable).clear()
            self.query_one("#predict-steps", Static).update("")

    def watch_prediction(self, p: Optional[Prediction]) -> None:
        t = self.query_one("#predict-results", DataTable)
        t.clear()
        if p is None:
            self.query_one("#predict-why", Static).update("")
            return
        r = p.resolved
        self.query_one("#predict-status", Static).update(Text(
            f"profile {p.profile}: order {r.order} {r.gfp_text} on cpu {r.cpu}; "
            f"{len(p.outcomes)} results (arrows: each one's steps below; 6 Compare: the state "
            f"they leave)"))
        self.query_one("#predict-why", Static).update(Text(p.why))
        for i, pfn, zone, kind, first in p.rows():
            t.add_row(str(i), pfn, zone, kind, Text(first), key=str(i))
        self._show_steps(0)

    def _show_steps(self, i: int) -> None:
        p = self.prediction
        if p is None or not 0 <= i < len(p.outcomes):
            return
        o = p.outcomes[i]
        lines = [f"#{i}: " + ("FAILED" if o.pfn is None else f"pfn {o.pfn:#x} in {o.zone}")
                 + f" by {o.kind}"] + [f"  {s.describe()}" for s in o.path]
        self.query_one("#predict-steps", Static).update(Text("\n".join(lines)))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key is not None and event.row_key.value is not None:
            self._show_steps(int(event.row_key.value))


def _free_area_table(title: str, v: FreeAreaView, changed, other: Optional[FreeAreaView],
                     hi: Style) -> Table:
    t = Table(title=title, title_justify="left", box=None, padding=(0, 1))
    t.add_column("o", justify="right", no_wrap=True)
    for name in v.migratetypes:
        t.add_column(mt_short(name)[:3], justify="right", no_wrap=True)
    t.add_column("nr_free", justify="right", no_wrap=True)
    for o, row in enumerate(v.counts):
        cells = [str(o)]
        for mt, c in enumerate(row):
            mark = (o, mt) in changed
            txt = _num(c)
            if mark and other is not None:
                d = (c or 0) - (other.counts[o][mt] or 0)
                txt = f"{txt} ({d:+d})" if d else txt
            cells.append(Text(txt, style=hi if mark else ("dim" if c == 0 else "")))
        cells.append(Text(str(v.nr_free[o]), style=hi if (o, -1) in changed else ""))
        t.add_row(*cells)
    return t


class ComparePanel(VerticalScroll, can_focus=True):
    """The state now beside the state the prediction leaves; what differs
    is highlighted. Narrow, one above the other (rows never wrap)."""

    def on_resize(self) -> None:
        self.set_class(self.size.width < 110, "-narrow")

    COMPONENT_CLASSES = {"compare--changed"}

    compare: reactive[Optional[CompareView]] = reactive(None, always_update=True)
    titles: reactive[tuple] = reactive(("now", "predicted"))
    check: reactive[str] = reactive("")

    def compose(self):
        with Horizontal(id="compare-sides"):
            yield Static(id="compare-before")
            yield Static(id="compare-after")
        yield Static(id="compare-summary")
        yield Static(id="compare-check")

    def _update(self) -> None:
        c = self.compare
        hi = self.get_component_rich_style("compare--changed")
        if c is None:
            self.query_one("#compare-before", Static).update("no prediction yet")
            self.query_one("#compare-after", Static).update("")
            self.query_one("#compare-summary", Static).update("")
        else:
            self.query_one("#compare-before", Static).update(
                _free_area_table(self.titles[0], c.before, c.changed, None, hi))
            self.query_one("#compare-after", Static).update(
                _free_area_table(self.titles[1], c.after, c.changed, c.before, hi))
            pcp = "  ".join(f"cpu{cpu} {b}" + (f"→{a}" if a != b else "") for cpu, b, a in c.pcp)
            lines = [
                f"free pages {c.free_pages[0]} → {c.free_pages[1]} "
                f"({c.free_pages[1] - c.free_pages[0]:+d})   pcp count: {pcp}",
                f"free-list entries gone {c.left_lists}, new {c.joined_lists}; "
                f"pageblocks retyped {len(c.pageblocks)}; "
                f"{len(c.changed)} counts differ (highlighted)",
            ]
            self.query_one("#compare-summary", Static).update(Text("\n".join(lines)))
        self.query_one("#compare-check", Static).update(Text(self.check))

    def watch_compare(self) -> None:
        self._update()

    def watch_titles(self) -> None:
        self._update()

    def watch_check(self) -> None:
        self._update()


class ReplayPanel(Vertical):
    """Replay of a recording: where the model is, the event it just applied,
    the next one with the model's prediction, and every allocation scored
    so far."""

    status: reactive[str] = reactive("")
    records: reactive[tuple] = reactive((0, str), always_update=True)

    def compose(self):
        yield Static(id="replay-status")
        yield Static("naive: guessing the head of the snapshot's list for the order and "
                     "migratetype, the baseline the model is measured against",
                     id="replay-naive")
        yield LinesView(id="replay-records")

    def watch_status(self, status: str) -> None:
        self.query_one("#replay-status", Static).update(Text(status))

    def watch_records(self, records) -> None:
        count, line = records
        v = self.query_one("#replay-records", LinesView)
        v.follow_end = True
        v.set_lines(count, line)
        v.call_after_refresh(v.scroll_end, animate=False)


class TracePanel(Vertical):
    """A traced source (``tui --lab``): the running hit rate, the last
    window's score, and each allocation of that window with the model's
    prediction (misses in red)."""

    status: reactive[str] = reactive("waiting for the second refresh: a window is the "
                                     "events between two refreshes")
    records: reactive[tuple] = reactive((0, str), always_update=True)

    def compose(self):
        yield Static(id="trace-status")
        yield LinesView(id="trace-records")

    def watch_status(self, status: str) -> None:
        self.query_one("#trace-status", Static).update(Text(status))

    def watch_records(self, records) -> None:
        # A new window is a new list: from its top, nothing marked.
        count, line = records
        v = self.query_one("#trace-records", LinesView)
        v.mark = None
        v.set_lines(count, line)
        v.scroll_home(animate=False, immediate=True)

    @property
    def marked(self) -> Optional[int]:
        """The allocation highlighted (by m), or None."""
        return self.query_one("#trace-records", LinesView).mark

    def show_record(self, i: int) -> None:
        self.query_one("#trace-records", LinesView).show_line(i)
