"""
Overview and history
--------------------

What the Zones and History panels show, as plain data: every zone at once,
as ``/proc/buddyinfo`` prints them, and for a source that is read again and
again, free pages and ``nr_free`` per order over the last reads, with the
reads where free pages crossed a watermark.

Pure Python (neither textual nor drgn), like :mod:`buddyscope.tui.views`.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Deque, Dict, List, Optional, Sequence, Tuple

from buddyscope.model.snapshot import Snapshot

__all__ = ("History", "ZoneRow", "crossings", "sparkline", "zone_rows")


@dataclasses.dataclass(frozen=True)
class ZoneRow:
    """One line of the Zones panel: a zone as ``/proc/buddyinfo`` prints it,
    with what the other files add."""

    node: int
    name: str
    #: ``free_area[order].nr_free``.
    nr_free: List[int]
    #: ``NR_FREE_PAGES`` and where it stands against the boosted watermarks.
    free_pages: int
    level: str
    pcp_pages: int
    managed: int
    #: Pageblocks per migratetype, when the source has them (the pageblock
    #: bitmap, or ``/proc/pagetypeinfo``'s "Number of blocks type").
    pageblocks: Optional[Dict[str, int]]


def _level(free: int, marks: Dict[str, int], boost: int) -> str:
    for name in ("high", "low", "min"):
        if name in marks and free > marks[name] + boost:
            return f"> {name}"
    return "<= min"


def zone_rows(snap: Snapshot) -> List[ZoneRow]:
    """Every zone of *snap*, in the snapshot's order (node, then zone)."""
    names = snap.kernel.migratetypes
    out = []
    for z in snap.zones:
        if z.pageblock_migratetypes is not None:
            blocks: Optional[Dict[str, int]] = {n: 0 for n in names}
            for t in z.pageblock_migratetypes:
                if 0 <= t < len(names):
                    blocks[names[t]] += 1
        elif any(k.startswith("pageblocks_") for k in z.fields):
            blocks = {k[len("pageblocks_"):]: v for k, v in z.fields.items()
                      if k.startswith("pageblocks_")}
        else:
            blocks = None
        out.append(ZoneRow(z.node, z.name, [a.nr_free for a in z.free_area], z.nr_free_pages,
                           _level(z.nr_free_pages, z.watermarks, z.watermark_boost),
                           z.pcp_pages(), z.managed_pages, blocks))
    return out


# -- history -------------------------------------------------------------------------

_TICKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int], low: Optional[int] = None,
              high: Optional[int] = None) -> str:
    """One cell per value, ``▁`` (lowest) to ``█`` (highest)."""
    if not values:
        return ""
    lo = min(values) if low is None else low
    hi = max(values) if high is None else high
    if hi <= lo:
        return _TICKS[0] * len(values)
    span = hi - lo
    return "".join(_TICKS[max(0, min(7, (v - lo) * 7 // span))] for v in values)


def crossings(free: Sequence[int], mark: int) -> List[Tuple[int, str]]:
    """(read index, ``down``/``up``) of each read where *free* went from
    above *mark* to at or below it, or back."""
    out = []
    for i in range(1, len(free)):
        was, now = free[i - 1] > mark, free[i] > mark
        if was and not now:
            out.append((i, "down"))
        elif now and not was:
            out.append((i, "up"))
    return out


@dataclasses.dataclass(frozen=True)
class Sample:
    """One read of one zone."""

    time: str
    free_pages: int
    nr_free: Tuple[int, ...]
    #: Boosted watermarks (``wmark_pages()``) by name.
    marks: Dict[str, int]


class History:
    """The last *size* reads of every zone, keyed by ``node/name``."""

    def __init__(self, size: int = 120) -> None:
        self.size = size
        self.zones: Dict[str, Deque[Sample]] = {}

    def add(self, snap: Snapshot) -> None:
        for z in snap.zones:
            key = f"{z.node}/{z.name}"
            q = self.zones.setdefault(key, deque(maxlen=self.size))
            q.append(Sample(snap.capture.time, z.nr_free_pages,
                            tuple(a.nr_free for a in z.free_area),
                            {n: v + z.watermark_boost for n, v in z.watermarks.items()}))

    def __len__(self) -> int:
        return max((len(q) for q in self.zones.values()), default=0)

    def samples(self, key: str) -> List[Sample]:
        return list(self.zones.get(key, ()))
