"""
Views
-----

What each panel of the TUI shows, computed from a
:class:`~buddyscope.model.snapshot.Snapshot` (or the model's state) as plain
data: the header line, free blocks per order x migratetype, pcp lists,
watermarks, the kernel's fragmentation indices, the pageblock map, the
difference between two states, and the model's prediction for a request.

Pure Python: imports neither textual nor drgn, so every number a panel shows
can be tested without a terminal. The widgets in :mod:`buddyscope.tui.widgets`
only turn these into text.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import operator
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from buddyscope.errors import BuddyscopeError
from buddyscope.model.fragmentation import (  # noqa: F401  (re-exported)
    ContigPageInfo, FragRow, contig_page_info, fragmentation_index, fragmentation_rows,
    unusable_free_index,
)
from buddyscope.model.pfnarray import slices
from buddyscope.model.unpredictable import unpredictable_short
from buddyscope.model.snapshot import (
    Capture, FreeArea, Pcp, Snapshot, Zone,
)

__all__ = (
    "CompareView", "ContigPageInfo", "FreeAreaView", "FragRow", "HeaderView", "PageblockView",
    "PcpCpuRow", "PcpListRow", "Prediction", "PredictionRequest", "WatermarkView",
    "ZoneViews", "compare_view", "contig_page_info", "fragmentation_index", "fragmentation_rows",
    "free_area_view", "header_view", "mt_short", "model_snapshot", "pageblock_type",
    "pageblock_view", "pfn_lines",
    "parse_request", "pcp_view", "run_prediction", "source_label", "unusable_free_index",
    "watermark_view", "why_sentence", "zone_views",
)

#: Source kinds (``Source.kind`` and ``Capture.source``) in words.
_KINDS = {
    "live": "live kernel",
    "qmp": "QEMU guest",
    "lab": "lab guest (traced)",
    "vmcore": "vmcore",
    "procfs": "procfs counts",
    "file": "snapshot file",
    "fixture": "fixture",
    "model": "model",
}

_SHORT = {"Unmovable": "Unmov", "Movable": "Mov", "Reclaimable": "Recl",
          "HighAtomic": "HiAtm", "CMA": "CMA", "Isolate": "Iso"}


def mt_short(name: str) -> str:
    """A migratetype name short enough for a table column."""
    return _SHORT.get(name, name[:5])


def source_label(kind: str, capture: Optional[Capture] = None) -> str:
    """``QEMU guest``, ``snapshot file (of a QEMU guest)``, ``fixture (of a
    QEMU guest)``: what the user is looking at."""
    what = _KINDS.get(kind, kind)
    if kind in ("file", "fixture") and capture is not None:
        return f"{what} ({_KINDS.get(capture.source, capture.source)})"
    return what


# -- header ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HeaderView:
    source: str
    release: str
    #: ``kernel stopped while read: consistent``, ``... 2 anomalies`` or
    #: ``read while running: ...``.
    state: str
    consistent: bool
    #: When and how fast it was read.
    read: str
    #: ``exact prediction off: ...`` when the kernel makes it impossible, else "".
    unpredictable: str = ""


def header_view(kind: str, snap: Snapshot) -> HeaderView:
    c = snap.capture
    # "stopped", not "paused": the TUI's own pause (p) freezes the view.
    if c.consistent:
        state = "kernel stopped while read: consistent"
    elif c.paused:
        n = len(c.anomalies)
        state = f"kernel stopped while read, {n} anomal{'y' if n == 1 else 'ies'}"
    elif c.source == "procfs":
        state = "read while running: /proc files read one after another"
    else:
        state = "read while running: lists may disagree with counters"
    return HeaderView(source_label(kind, c), snap.kernel.release, state, c.consistent,
                      f"{c.time} in {c.read_seconds:.3f} s",
                      unpredictable_short(snap.kernel.unpredictable))


# -- free area --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FreeAreaView:
    """``zone->free_area[]``: one row per order."""

    migratetypes: List[str]
    #: [order][migratetype]: free blocks, None where the source does not say.
    counts: List[List[Optional[int]]]
    #: ``free_area[order].nr_free``.
    nr_free: List[int]
    #: Free pages held at each order: ``nr_free << order``.
    pages: List[int]
    #: Each list's PFNs are known (the lists can be opened).
    has_lists: bool

    @property
    def total_pages(self) -> int:
        return sum(self.pages)


def free_area_view(snap: Snapshot, zone: Zone) -> FreeAreaView:
    k = snap.kernel
    counts = [[a.count(mt) for mt in range(len(k.migratetypes))] for a in zone.free_area]
    return FreeAreaView(list(k.migratetypes), counts, [a.nr_free for a in zone.free_area],
                        [a.nr_free << o for o, a in enumerate(zone.free_area)],
                        all(a.free_list is not None for a in zone.free_area))


# -- pcp ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PcpCpuRow:
    cpu: int
    count: int
    high: int
    batch: int
    #: The kernel's other members where it has them (free_factor, high_min, ...).
    fields: Dict[str, int]


@dataclasses.dataclass(frozen=True)
class PcpListRow:
    cpu: int
    pindex: int
    order: int
    #: The migratetypes the list holds, ``/``-separated.
    migratetypes: str
    #: Entries on the list (None: the source has no lists).
    length: Optional[int]
    head: Optional[int]


def pcp_view(snap: Snapshot, zone: Zone) -> Tuple[List[PcpCpuRow], List[PcpListRow]]:
    """Per CPU count/high/batch, and each pcp list with its length and head."""
    k = snap.kernel
    cpus, lists = [], []
    for p in zone.pcp:
        cpus.append(PcpCpuRow(p.cpu, p.count, p.high, p.batch, dict(p.fields)))
        for pindex, pl in enumerate(k.pcp_lists):
            lst = p.lists[pindex] if p.lists is not None and pindex < len(p.lists) else None
            lists.append(PcpListRow(p.cpu, pindex, pl.order,
                                    "/".join(k.migratetypes[m] for m in pl.migratetypes),
                                    None if lst is None else len(lst),
                                    lst[0] if lst else None))
    return cpus, lists


# -- watermarks ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WatermarkView:
    #: ``vm_stat[NR_FREE_PAGES]``.
    free_pages: int
    #: Pages on the free lists (sum of ``nr_free << order``).
    on_lists: int
    pcp_pages: int
    #: (name, ``_watermark[]``, ``wmark_pages()`` = + ``watermark_boost``).
    marks: List[Tuple[str, int, int]]
    boost: int
    lowmem_reserve: List[int]
    nr_reserved_highatomic: int
    managed: int

    @property
    def level(self) -> str:
        """Where NR_FREE_PAGES stands against the boosted watermarks."""
        marks = {n: w for n, _, w in self.marks}
        f = self.free_pages
        for name in ("high", "low", "min"):
            if name in marks and f > marks[name]:
                return f"above {name}"
        return "at or below min"


def watermark_view(zone: Zone) -> WatermarkView:
    marks = [(n, v, v + zone.watermark_boost) for n, v in zone.watermarks.items()]
    return WatermarkView(zone.nr_free_pages, zone.pages_on_free_lists(), zone.pcp_pages(), marks,
                         zone.watermark_boost, list(zone.lowmem_reserve),
                         zone.nr_reserved_highatomic, zone.managed_pages)


# -- fragmentation (mm/vmstat.c): in model/fragmentation.py, shared with metrics.


# -- pageblocks ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PageblockView:
    """The zone's physical range, one cell per pageblock."""

    #: First PFN of the first pageblock (aligned down from ``start_pfn``).
    first_pfn: int
    pageblock_pages: int
    migratetypes: List[str]
    #: Migratetype index of each pageblock.
    types: List[int]
    #: Pages of each pageblock that are on the buddy free lists (None: no PFNs).
    free: Optional[List[int]]

    def __len__(self) -> int:
        return len(self.types)

    def counts(self) -> Dict[str, int]:
        """Pageblocks per migratetype."""
        out = {n: 0 for n in self.migratetypes}
        for t in self.types:
            if 0 <= t < len(self.migratetypes):
                out[self.migratetypes[t]] += 1
        return out


def pageblock_view(snap: Snapshot, zone: Zone) -> Optional[PageblockView]:
    """None when the source has no pageblock migratetypes (procfs)."""
    if zone.pageblock_migratetypes is None:
        return None
    pbo = snap.kernel.pageblock_order
    base = zone.start_pfn >> pbo
    n = len(zone.pageblock_migratetypes)
    free: Optional[List[int]] = None
    if all(a.free_list is not None for a in zone.free_area):
        free = [0] * n
        for order, area in enumerate(zone.free_area):
            size = 1 << order
            if order <= pbo:
                # Blocks per pageblock counted at C speed (map, Counter):
                # a loop over 10 M entries took seconds. (In slices: the UI
                # thread gets the GIL between two.)
                blocks: collections.Counter = collections.Counter()
                for lst in area.free_list or ():
                    for piece in slices(lst):
                        blocks.update(map(operator.rshift, piece, itertools.repeat(pbo)))
                for b, count in blocks.items():
                    if 0 <= b - base < n:
                        free[b - base] += count * size
                continue
            for lst in area.free_list or ():
                for pfn in lst:
                    for i in range((pfn >> pbo) - base, ((pfn + size - 1) >> pbo) - base + 1):
                        if 0 <= i < n:
                            free[i] += 1 << pbo
    return PageblockView(base << pbo, 1 << pbo, list(snap.kernel.migratetypes),
                         list(zone.pageblock_migratetypes), free)


def pageblock_type(snap: Snapshot, zone: Zone, pfn: int) -> str:
    """The migratetype name of the pageblock holding *pfn* (``?`` unknown)."""
    pbs = zone.pageblock_migratetypes
    if pbs is None:
        return "?"
    pbo = snap.kernel.pageblock_order
    i = (pfn >> pbo) - (zone.start_pfn >> pbo)
    if 0 <= i < len(pbs) and 0 <= pbs[i] < len(snap.kernel.migratetypes):
        return snap.kernel.migratetypes[pbs[i]]
    return "?"


def pfn_lines(pfns: Sequence[int], order: int,
              describe: Callable[[int], str]) -> Callable[[int], str]:
    """Line *i* of a list view: position, PFN, the pages it covers, and
    *describe(pfn)* (e.g. its pageblock's migratetype)."""
    size = 1 << order

    def line(i: int) -> str:
        p = pfns[i]
        return f"{i:>9}  {p:#010x}  {p:#x}-{p + size - 1:#x}  pageblock {describe(p)}"
    return line


# -- all of a zone -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ZoneViews:
    """Everything the panels show of one zone, computed off the UI thread."""

    name: str
    node: int
    title: str
    free_area: FreeAreaView
    pcp_cpus: List[PcpCpuRow]
    pcp_lists: List[PcpListRow]
    watermarks: WatermarkView
    fragmentation: List[FragRow]
    pageblocks: Optional[PageblockView]


def zone_views(snap: Snapshot) -> List[ZoneViews]:
    out = []
    for z in snap.zones:
        cpus, lists = pcp_view(snap, z)
        out.append(ZoneViews(
            z.name, z.node,
            f"Node {z.node}, zone {z.name}: pfn {z.start_pfn:#x}-{z.end_pfn:#x}, "
            f"managed {z.managed_pages} pages",
            free_area_view(snap, z), cpus, lists, watermark_view(z), fragmentation_rows(z),
            pageblock_view(snap, z)))
    return out


# -- the model's state as a snapshot ------------------------------------------------


def model_snapshot(alloc, base: Snapshot) -> Snapshot:
    """The state of *alloc* (a :class:`~buddyscope.model.allocator.Allocator`
    built from *base*) as a Snapshot, so the panels can show what the model
    holds: free lists in list order, pcp lists, pageblock types, counters."""
    zones = []
    nr_mt = len(base.kernel.migratetypes)
    for zi, (z, zs) in enumerate(zip(base.zones, alloc.zones)):
        areas = [FreeArea(zs.nr_free[o], [alloc.free_list(zi, o, mt) for mt in range(nr_mt)])
                 for o in range(alloc.nr_orders)]
        pcps = []
        for p in z.pcp:
            mp = zs.pcp.get(p.cpu)
            if mp is None:
                pcps.append(p)
                continue
            pcps.append(Pcp(p.cpu, mp.count, mp.high, mp.batch, dict(p.fields),
                            [list(lst) for lst in mp.lists]))
        zones.append(dataclasses.replace(
            z, nr_free_pages=zs.free_pages, watermark_boost=zs.boost,
            nr_reserved_highatomic=zs.nr_reserved_highatomic, free_area=areas, pcp=pcps,
            pageblock_migratetypes=list(zs.pageblocks) if z.pageblock_migratetypes is not None
            else None))
    capture = dataclasses.replace(base.capture, source="model", anomalies=[])
    return Snapshot(base.kernel, capture, zones, base.format)


# -- comparing two states ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CompareView:
    """Two states of one zone, and what differs."""

    before: FreeAreaView
    after: FreeAreaView
    #: (order, migratetype index) of the counts that differ; migratetype
    #: index ``-1`` is ``nr_free``.
    changed: frozenset
    #: (cpu, count before, count after) of each pcp.
    pcp: List[Tuple[int, int, int]]
    free_pages: Tuple[int, int]
    #: Pageblocks whose migratetype differs: (index, before, after).
    pageblocks: List[Tuple[int, int, int]]
    #: Free-list entries in one state and not the other (head PFNs).
    left_lists: int
    joined_lists: int


def _heads(lists) -> set:
    out: set = set()
    for lst in lists:
        for piece in slices(lst):
            out.update(piece)
    return out


def compare_view(before: Snapshot, after: Snapshot, zone_index: int) -> CompareView:
    zb, za = before.zones[zone_index], after.zones[zone_index]
    fb, fa = free_area_view(before, zb), free_area_view(after, za)
    changed = set()
    for o, (rb, ra) in enumerate(zip(fb.counts, fa.counts)):
        for mt, (cb, ca) in enumerate(zip(rb, ra)):
            if cb != ca:
                changed.add((o, mt))
        if fb.nr_free[o] != fa.nr_free[o]:
            changed.add((o, -1))
    pa = {p.cpu: p.count for p in za.pcp}
    pcp = [(p.cpu, p.count, pa.get(p.cpu, p.count)) for p in zb.pcp]
    blocks = []
    if zb.pageblock_migratetypes is not None and za.pageblock_migratetypes is not None:
        blocks = [(i, b, a) for i, (b, a) in
                  enumerate(zip(zb.pageblock_migratetypes, za.pageblock_migratetypes)) if b != a]
    left = joined = 0
    if fb.has_lists and fa.has_lists:
        # Free blocks (head PFN, order) in one state and not the other,
        # counted order by order: sets of ints, built at C speed (a set of
        # 10 M (pfn, order) tuples took 20 s and stalled the UI thread's
        # garbage collections).
        for ab, aa in zip(zb.free_area, za.free_area):
            heads_b, heads_a = _heads(ab.free_list), _heads(aa.free_list)
            left += len(heads_b - heads_a)
            joined += len(heads_a - heads_b)
    return CompareView(fb, fa, frozenset(changed), pcp, (zb.nr_free_pages, za.nr_free_pages),
                       blocks, left, joined)


# -- prediction --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PredictionRequest:
    """What the user asked for in the prediction panel."""

    order: int
    #: A gfp mask (``GFP_KERNEL|__GFP_ZERO``) or None.
    gfp: Optional[str]
    #: A migratetype name or None.
    migratetype: Optional[str]
    cpu: int
    n: int

    @property
    def text(self) -> str:
        return (f"order {self.order} {self.gfp or self.migratetype} cpu {self.cpu}, "
                f"next {self.n}")


def _int(text: str, what: str, low: int, high: Optional[int] = None) -> int:
    try:
        v = int(text.strip(), 0)
    except ValueError:
        raise BuddyscopeError(f"{what}: not a number: {text.strip()!r}") from None
    if v < low or (high is not None and v > high):
        raise BuddyscopeError(f"{what} must be {low}..{high}" if high is not None
                              else f"{what} must be at least {low}")
    return v


def parse_request(order: str, what: str, cpu: str, n: str) -> PredictionRequest:
    """The prediction panel's fields, checked: *what* is a gfp mask when it
    looks like one (``GFP_``, ``__GFP_``, ``|``), else a migratetype name."""
    what = what.strip()
    if not what:
        raise BuddyscopeError("give a gfp mask (GFP_KERNEL) or a migratetype (Movable)")
    is_gfp = "GFP" in what.upper() or "|" in what
    return PredictionRequest(_int(order, "order", 0), what if is_gfp else None,
                             None if is_gfp else what, _int(cpu, "cpu", 0),
                             _int(n, "count", 1, 1000))


@dataclasses.dataclass
class Prediction:
    """The model's next results for one request, and the state they leave."""

    request: PredictionRequest
    #: :class:`~buddyscope.model.request.Request` as resolved for the kernel.
    resolved: object
    #: :class:`~buddyscope.model.allocator.Outcome` of each allocation.
    outcomes: list
    profile: str
    before: Snapshot
    after: Snapshot
    #: ``buddyscope why`` for the request on *before*: its closing sentence.
    why: str = ""

    def rows(self) -> List[Tuple[int, str, str, str, str]]:
        """(#, pfn, zone, path, first step) per result."""
        out = []
        for i, o in enumerate(self.outcomes):
            first = o.path[0].describe() if o.path else ""
            out.append((i, "FAILED" if o.pfn is None else f"{o.pfn:#x}", o.zone or "-",
                        o.kind, first))
        return out


def run_prediction(alloc, base: Snapshot, req: PredictionRequest,
                   before: Optional[Snapshot] = None) -> Prediction:
    """Predict *req* on *alloc* and roll the model back after: *alloc* is
    left as it was. *base* is the snapshot *alloc* was built from (for the
    kernel's facts); *before* the state *alloc* holds, when already known."""
    from buddyscope.model.predict import predict_request
    from buddyscope.model.request import make_request

    resolved = make_request(alloc, req.order, req.cpu, gfp=req.gfp, migratetype=req.migratetype)
    if before is None:
        before = model_snapshot(alloc, base)
    with alloc.trial():
        outcomes = predict_request(alloc, resolved, req.n)
        after = model_snapshot(alloc, base)
    return Prediction(req, resolved, outcomes, alloc.profile.name, before, after,
                      why_sentence(before, alloc.profile, req))


def why_sentence(snap: Snapshot, profile, req: PredictionRequest) -> str:
    """``buddyscope why``'s verdict for *req* on *snap*, in one sentence;
    the model's state counts its free pages from the lists, as the
    predictions beside it do."""
    from buddyscope.model.why import explain

    try:
        e = explain(snap, profile, req.order, gfp=req.gfp, cpu=req.cpu,
                    migratetype=req.migratetype, free_source="lists")
    except BuddyscopeError as err:
        return f"why: {err}"
    return f"why: {e.sentence}"
