"""
Compaction's fast free search, from its tracepoint
--------------------------------------------------

``fast_isolate_freepages`` (mm/compaction.c; 6.12 L1540, 7.2 L1553) takes
one MOVABLE free block for compaction's migration targets, straight off
the free lists, and rotates every list it looked at (``move_freelist_head``).
No kmem event shows either. Its tracepoint,
``mm_compaction_fast_isolate_freepages`` (6.12 L1667, 7.2 L1680), gives
``min_pfn``, the free scanner's ``free_pfn``, the entries it scanned and the
pages it took; the rest of its input is compaction's own state
(``search_order``, ``fast_search_fail``, the migrate scanner's PFN, the
order compacted for). :func:`fast_isolate_freepages` runs the search over
the model's lists for every value that state can have, and keeps what the
runs that scan and take as the tracepoint says agree on.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterator, Optional, Tuple

from buddyscope.model.allocator import MIGRATE_MOVABLE

__all__ = ("FastSearch", "fast_isolate_freepages")

#: COMPACT_CLUSTER_MAX (SWAP_CLUSTER_MAX).
COMPACT_CLUSTER_MAX = 32


@dataclasses.dataclass(frozen=True)
class FastSearch:
    """What one ``fast_isolate_freepages`` call did to the free lists."""

    #: (order, PFN) per list it rotated to start at PFN, in the order done.
    rotations: Tuple[Tuple[int, int], ...]
    #: The block it isolated, (PFN, order), or None.
    taken: Optional[Tuple[int, int]]


def _limits(pageblock_nr_pages: int) -> Tuple[int, ...]:
    """The scan limits a search starts with: ``freelist_scan_limit(cc) >> 1``
    (at least 1) for each ``fast_search_fail``, or ``pageblock_nr_pages >> 1``
    when the free scanner is at its start (``scan_start``)."""
    out = {max(1, ((COMPACT_CLUSTER_MAX >> fail) + 1) >> 1) for fail in range(7)}
    out.add(pageblock_nr_pages >> 1)
    return tuple(sorted(out, reverse=True))


def _low_pfns(min_pfn: int, free_pfn: int, nr: int) -> Tuple[int, ...]:
    """The ``low_pfn`` values that go with a traced ``min_pfn``:
    ``pageblock_start_pfn(free_pfn - (distance >> 2))`` for every
    ``distance`` (``free_pfn - migrate_pfn``) whose ``min_pfn``,
    ``pageblock_start_pfn(free_pfn - (distance >> 1))``, is the traced one."""
    out = set()
    for half in range(max(0, free_pfn - min_pfn - nr + 1), free_pfn - min_pfn + 1):
        low = free_pfn - (half >> 1)
        low -= low % nr
        out.add(max(low, min_pfn))
    return tuple(sorted(out))


def _scan_order(entries: Iterator[int], limit: int, low_pfn: int,
                min_pfn: int) -> Tuple[int, Optional[int], Optional[int], int]:
    """One order's ``list_for_each_entry_reverse`` of the search: entries
    visited, the page found (one at ``low_pfn`` or above, else the highest
    one at ``min_pfn`` or above), the entry ``move_freelist_head`` rotates
    to (None: no change), and the limit after it."""
    scanned, high, page, stop = 0, 0, None, None
    for pfn in entries:
        scanned += 1
        if pfn >= low_pfn:
            page = stop = pfn
            break
        if pfn >= min_pfn and pfn > high:
            high = pfn
            limit >>= 1     # a candidate shortens the scan
        if scanned >= limit:
            stop = pfn
            break
    if page is None and high:
        page = stop = high
    if scanned >= limit:
        limit = max(1, limit >> 1)
    return scanned, page, stop, limit


def fast_isolate_freepages(alloc, zi: int, min_pfn: int, free_pfn: int, nr_scanned: int,
                           nr_taken: int) -> Optional[FastSearch]:
    """The search ``mm_compaction_fast_isolate_freepages`` traced (range
    ``min_pfn ~ free_pfn``, ``nr_scanned``, ``nr_taken``), run over the
    MOVABLE free lists of zone *zi* of the model *alloc* (an
    :class:`~buddyscope.model.allocator.Allocator`) for every start order,
    compaction order, scan limit and
    ``low_pfn`` it can have had; the search all runs that scan and take as
    traced agree on, else None. A call that took nothing is only resolved
    when no run found a page (``__isolate_free_page`` refusing one, by the
    watermark, is not modelled)."""
    if nr_taken < 0 or nr_taken & (nr_taken - 1):
        return None
    nr_orders, pageblock_nr_pages = alloc.nr_orders, alloc.pageblock_nr_pages
    lows = _low_pfns(min_pfn, free_pfn, pageblock_nr_pages)
    cache: Dict[tuple, tuple] = {}

    def scan(order: int, limit: int, low: int):
        key = (order, limit, low)
        r = cache.get(key)
        if r is None:
            r = _scan_order(alloc.free_list_from_tail(zi, order, MIGRATE_MOVABLE), limit, low, min_pfn)
            if r[2] is not None and r[2] == alloc.head(zi, order, MIGRATE_MOVABLE):
                # move_freelist_head to the first entry changes nothing.
                r = r[:2] + (None,) + r[3:]
            cache[key] = r
        return r

    found = set()

    def run(orders, limit, scanned, rotations):
        """Carry on over *orders*: (limit, entries scanned, rotations, the
        block found or None)."""
        for order in orders:
            n, page, stop, limit = scan(order, limit, low)
            scanned += n
            if stop is not None:
                rotations = rotations + ((order, stop),)
            if page is not None:
                return limit, scanned, rotations, (page, order)
        return limit, scanned, rotations, None

    def outcome(scanned, rotations, taken):
        if taken is None:
            if not nr_taken and scanned == nr_scanned:
                found.add(FastSearch(rotations, None))
        elif nr_taken == 1 << taken[1] and scanned + nr_taken - 1 == nr_scanned:
            found.add(FastSearch(rotations, taken))
        elif not nr_taken and scanned == nr_scanned:
            found.add(None)   # the same search, its isolation refused: not modelled

    nr_free = alloc.zones[zi].nr_free
    for low in lows:
        for limit0 in _limits(pageblock_nr_pages):
            for start in range(nr_orders - 1):
                # With the migration targets it wants already isolated
                # (6.12 L1656, 7.2 L1669: cc->nr_freepages >=
                # cc->nr_migratepages), the search ends after the first
                # order whose free_area holds any block, page or not.
                first = next((o for o in range(start, -1, -1) if nr_free[o]), None)
                if first is not None:
                    outcome(*run(range(first, first - 1, -1), limit0, 0, ())[1:])
                # Orders start, start-1, ..., 0; then, when none had a page,
                # next_search_order wraps to cc->order - 1, down to start + 1.
                limit, scanned, rotations, taken = run(range(start, -1, -1), limit0, 0, ())
                if taken is not None:
                    outcome(scanned, rotations, taken)
                    continue
                for cc_order in range(start + 1, nr_orders):
                    outcome(*run(range(cc_order - 1, start, -1), limit, scanned, rotations)[1:])
    if len(found) != 1:
        return None
    return found.pop()
