"""
Boundary
--------

A live kernel cannot be paused: its free lists are read one after another
while it runs, so the kmem events traced *during* the read (``record
--live``'s ``boundary_overlap_events``) may or may not show in the snapshot.
Dropping them all (as if before the snapshot) loses every change the read
did not see; keeping them all applies twice every change it did.

:func:`not_yet_shown` decides per page instead, from where the snapshot has
the page: each event moves a block between three places (on a free list,
on a pcp list, allocated), so the snapshot shows either the place before an
event or the place after it. For each PFN, the events of the read are taken
in order and the snapshot is matched to the earliest point among them whose
place it shows; the later ones had not happened yet where the read looked,
and are kept in the trace. An event that moves no block (a fallback, the kprobe
events) or a PFN the snapshot cannot place stays dropped, as before.

Pure Python over a :class:`~buddyscope.model.snapshot.Snapshot` and
:class:`~buddyscope.model.ftrace.PageEvent`.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

from buddyscope.model.events import (
    MM_PAGE_ALLOC,
    MM_PAGE_ALLOC_ZONE_LOCKED,
    MM_PAGE_FREE,
    MM_PAGE_FREE_BATCHED,
    MM_PAGE_PCPU_DRAIN,
)
from buddyscope.model.ftrace import PageEvent
from buddyscope.model.snapshot import Snapshot

__all__ = ("not_yet_shown", "place_of")

BUDDY, PCP, ALLOCATED = "buddy", "pcp", "allocated"
_FREE = frozenset({BUDDY, PCP})


def _places(snapshot: Snapshot) -> tuple[dict[int, int], set[int]]:
    """Free-list block heads (PFN -> order) and pcp block heads."""
    buddy: dict[int, int] = {}
    pcp: set[int] = set()
    for z in snapshot.zones:
        for order, area in enumerate(z.free_area):
            for lst in area.free_list or ():
                for head in lst:
                    buddy[head] = order
        for p in z.pcp:
            for lst in p.lists or ():
                pcp.update(lst)
    return buddy, pcp


def place_of(pfn: int, buddy: dict[int, int], pcp: set[int], max_order: int) -> str:
    """Where *pfn* is: on a pcp list (as a block head), inside a free-list
    block, or neither (allocated)."""
    if pfn in pcp:
        return PCP
    for order in range(max_order + 1):
        head = pfn & ~((1 << order) - 1)
        if buddy.get(head, -1) >= order:
            return BUDDY
    return ALLOCATED


def _before_after(e: PageEvent) -> Optional[tuple[frozenset, frozenset]]:
    """Where a block is before and after event *e* (kernel semantics of the
    tracepoints, include/trace/events/kmem.h); None: *e* moves no block."""
    if e.pfn is None:
        return None
    if e.name == MM_PAGE_ALLOC:  # rmqueue handed it out (from a pcp list or the buddy)
        return _FREE, frozenset({ALLOCATED})
    if e.name == MM_PAGE_ALLOC_ZONE_LOCKED:  # taken off a free list: to a pcp list or the caller
        return frozenset({BUDDY}), frozenset({PCP, ALLOCATED})
    if e.name in (MM_PAGE_FREE, MM_PAGE_FREE_BATCHED):  # freed: to a pcp list or the buddy
        return frozenset({ALLOCATED}), _FREE
    if e.name == MM_PAGE_PCPU_DRAIN:  # from a pcp list to the buddy
        return frozenset({PCP}), frozenset({BUDDY})
    return None


def not_yet_shown(snapshot: Snapshot, events: Sequence[PageEvent]) -> list[bool]:
    """For each of *events* (traced while *snapshot* was read, in trace
    order), whether the snapshot does not show it yet (keep it in the trace,
    after the snapshot). False for events it shows, and for those it cannot
    tell (no block moved, or a place that fits no point of the PFN's
    events)."""
    buddy, pcp = _places(snapshot)
    max_order = len(snapshot.zones[0].free_area) - 1 if snapshot.zones else 0
    keep = [False] * len(events)
    by_pfn: dict[int, list[int]] = {}
    for i, e in enumerate(events):
        if _before_after(e) is not None:
            by_pfn.setdefault(e.pfn, []).append(i)
    for pfn, idx in by_pfn.items():
        where = place_of(pfn, buddy, pcp, max_order)
        moves = [_before_after(events[i]) for i in idx]
        # The earliest point (after event j; -1: before the first) whose
        # place the snapshot shows. A page that went and came back during the
        # read (allocated and freed) fits several points; the earliest keeps
        # its events, which take it out and put it back where it was.
        shown = None
        for j in range(-1, len(idx)):
            place = moves[j][1] if j >= 0 else moves[0][0]
            if where in place:
                shown = j
                break
        if shown is None:
            continue
        for j in range(shown + 1, len(idx)):
            keep[idx[j]] = True
    return keep


def split_overlap(snapshot: Snapshot, events: Iterable[PageEvent]) -> tuple[list[PageEvent], list[PageEvent]]:
    """(shown, not shown) of *events*, each in trace order."""
    events = list(events)
    keep = not_yet_shown(snapshot, events)
    return ([e for e, k in zip(events, keep) if not k], [e for e, k in zip(events, keep) if k])
