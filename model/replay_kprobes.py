"""
Replay: kprobe events and what their absence shows
---------------------------------------------------

The part of :class:`~buddyscope.model.replay.Replayer` that applies what
``record``'s kprobe events show and the kmem tracepoints do not: the bulk
allocator's pcp takes (``alloc_pages_bulk``), kswapd's reclaim window
(``balance_pgdat``), vmstat's pcp->high decay (``decay_pcp_high``),
compaction's free page isolation (``__isolate_free_page``) and watermarks
set anew (``setup_per_zone_wmarks``); and, in a trace without them, what a
free's drain (or its absence) and an allocation served from a lower zone
tell of that untraced state, and what compaction's free scanner
tracepoints (``mm_compaction_isolate_freepages``, a range and a count)
tell of the blocks it took.

Line references are as in :mod:`buddyscope.model.replay` (Debian's
``linux-source`` 5.10.262-1, 6.1.192-3, 6.12.118-1 and 7.2.13-1).
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Dict, List, Optional, Tuple

from buddyscope.model.allocator import (
    ALLOC_WMARK_HIGH, ALLOC_WMARK_LOW, ALLOC_WMARK_MASK, ALLOC_WMARK_MIN, MIGRATE_MOVABLE, Outcome,
)
from buddyscope.model.compaction import fast_isolate_freepages
from buddyscope.model.events import (
    DECAY_EVENTS, FAST_SEARCH_CALLERS, ISOLATE_EVENTS, MM_PAGE_ALLOC_ZONE_LOCKED, RECLAIM_EVENTS,
    WATERMARK_EVENTS,
)
from buddyscope.model.ftrace import PageEvent, RangeEvent
from buddyscope.model.gfp import GfpError, gfp_names
from buddyscope.model.request import Request, RequestError, make_request

__all__ = ("KprobeEvents",)

RECLAIM, RECLAIM_RET = RECLAIM_EVENTS
(DECAY,) = DECAY_EVENTS
ISOLATE, ISOLATE_RET = ISOLATE_EVENTS
(WMARKS,) = WATERMARK_EVENTS
ZONE_LOCKED = MM_PAGE_ALLOC_ZONE_LOCKED


#: The strides ``isolate_freepages`` walks with: 1 up to
#: COMPACT_CLUSTER_MAX (SWAP_CLUSTER_MAX, 32), doubling.
_STRIDES = (1, 2, 4, 8, 16, 32)


def _isolate_walk(heads: Dict[int, int], start: int, end: int, stride: int,
                  block_pages: bool = True) -> Tuple[Tuple[Tuple[int, int], ...], int, int, bool]:
    """``isolate_freepages_block``'s walk from *start* to *end* with
    *stride*, *heads* being the free blocks' first pages: the blocks (PFN,
    order) it takes, the pages taken, its ``nr_scanned`` (one per step,
    and with *block_pages* a taken block's pages after its first), and
    whether its next step is a free block at *end* (a block
    ``__isolate_free_page`` refused: counted, and the walk ends there).
    After a block it goes on from its last page (``blockpfn += isolated -
    1``, then the stride)."""
    taken = []
    p, pages, scanned = start, 0, 0
    while p < end:
        scanned += 1
        order = heads.get(p)
        if order is None:
            p += stride
        else:
            taken.append((p, order))
            pages += 1 << order
            if block_pages:
                scanned += (1 << order) - 1
            p += (1 << order) - 1 + stride
    return tuple(taken), pages, scanned, p == end and end in heads


def _walk_explains(walk, nr_taken: int, nr_scanned: int) -> bool:
    """*walk* (:func:`_isolate_walk`) takes ``nr_taken`` pages in
    ``nr_scanned`` steps, one more if it stopped at a refused block."""
    _, pages, scanned, refused = walk
    return pages == nr_taken and (scanned == nr_scanned or (refused and scanned + 1 == nr_scanned))


@dataclasses.dataclass
class _BulkCall:
    """One ``alloc_pages_bulk`` call under way on a CPU: its entry kprobe
    event, the pcp refills traced during it, and the order-0 allocations
    traced during it (the ``failed:`` path's single page among them)."""

    entry: PageEvent
    #: Its ``mm_page_alloc_zone_locked`` (and ``mm_page_alloc_extfrag``) events.
    refills: List[PageEvent] = dataclasses.field(default_factory=list)
    singles: int = 0


@dataclasses.dataclass
class _DrainWindow:
    """The ``mm_page_pcpu_drain`` events expected next on a CPU, and those
    seen. A pcp free opens one (``kind`` ``"free"``: the drain of its commit,
    traced by the same task right after its ``mm_page_free``, under the zone
    lock, so nothing else on that CPU comes in between); a drain with no
    free of the same task before it opens one of its own (``"vmstat"``:
    ``decay_pcp_high`` from vmstat's ``refresh_cpu_vm_stats`` on that CPU's
    kworker, or ``drain_pages_zone`` of ``drain_all_pages``)."""

    kind: str
    pid: int
    predicted: list
    actual: list = dataclasses.field(default_factory=list)
    #: The pcp the free went to (zone index, cpu), None if to the buddy.
    pcp: Optional[Tuple[int, int]] = None
    #: pcp->count after the free's list_add (before any drain), or before a
    #: vmstat drain.
    count: int = 0
    #: A vmstat prediction's pcp->high after it (None: drain_pages_zone).
    high: Optional[int] = None
    #: The task's next event after the last drain seen is on another CPU.
    migrated: bool = False


class KprobeEvents:
    """Mixed into :class:`~buddyscope.model.replay.Replayer` (its state:
    ``alloc``, ``report``, the per-CPU event groups)."""

    # -- kswapd's reclaim window (balance_pgdat kprobe events) ------------------
    def _on_reclaim(self, e: PageEvent) -> None:
        """``balance_pgdat`` entry sets ZONE_RECLAIM_ACTIVE on the zones up
        to its ``highest_zoneidx`` (``set_reclaim_active``), its return
        clears them (``clear_reclaim_active``): the pcp free path keeps
        fewer pages meanwhile (``nr_pcp_high``)."""
        a = self.alloc
        if e.name == RECLAIM:
            self._reclaim[e.pid] = e.count
            a.set_reclaim_active(e.count, True)
            # The boosts it will reclaim for (5.10 vmscan.c L3593, 6.1 L7061,
            # 6.12 L6901, 7.2 L7087): each managed zone's up to its
            # highest_zoneidx, as they are now.
            self._reclaim_boosts[e.pid] = {z.index: z.boost for z in a.zones
                                           if z.managed and z.zone_idx <= e.count}
        else:
            # An entry before the snapshot: every zone it could have set.
            zoneidx = self._reclaim.pop(e.pid, max(z.zone_idx for z in a.zones))
            a.set_reclaim_active(zoneidx, False)
            # (With no entry, the boosts it saw are not known: left.)
            for zi, boost in self._reclaim_boosts.pop(e.pid, {}).items():
                if boost:
                    a.boost_reclaimed(a.zones[zi], boost)

    def _on_decay(self, e: PageEvent) -> None:
        """vmstat's ``decay_pcp_high`` of this CPU's pcp in the zone that
        starts at ``count`` (6.12 L2412, 7.2 L2564): lower pcp->high now,
        and expect the drain it makes, if any, from the same task next."""
        a = self.alloc
        z = a.zone_of(e.count) if e.count is not None else None
        pcp = z.pcp.get(e.cpu) if z is not None else None
        if pcp is None:
            return
        # refresh_cpu_vm_stats folds this CPU's deltas of each zone before
        # that zone's decay_pcp_high (6.12 mm/vmstat.c L808).
        a.fold_vm_diffs(e.cpu, z)
        w = _DrainWindow("vmstat", e.pid, a.decay_pcp_high(z, pcp))
        w.pcp, w.count, w.high = (z.index, e.cpu), pcp.count, pcp.high
        self._pending_drain[e.cpu] = w

    # -- compaction's free page isolation (__isolate_free_page kprobe events) -----
    def _on_isolated(self, e: PageEvent) -> None:
        """``__isolate_free_page`` returned: unless its watermark check
        refused (0), the free block left its list with no kmem event
        (compaction's free scanner, ``isolate_freepages_block``), and one of
        at least half a pageblock made its blocks MOVABLE. The block comes
        back as migration targets (freed later as the pages they hold) or
        through ``release_free_list``, whose frees are traced."""
        entry = self._isolating.pop(e.cpu, None)
        a = self.alloc
        k = a.snapshot_kernel
        if entry is None or not e.count or k.vmemmap is None or not k.sizeof_page:
            return
        pfn, rem = divmod(entry.count - k.vmemmap, k.sizeof_page)
        if rem or not a.is_free(pfn):
            self.report.contradictions["isolated_page_not_free"] += 1
            return
        if e.gfp in FAST_SEARCH_CALLERS and pfn in a.buddy:
            # fast_isolate_freepages (6.1 L1490, 7.2 L1647): the list it
            # found the block on is rotated to start at it, then the block
            # is taken.
            a.move_freelist_head(pfn)
        self._isolate_block(entry, pfn, entry.order)

    def _isolate_block(self, e: PageEvent, pfn: int, order: int) -> None:
        """``__isolate_free_page`` of the free block *pfn* of *order*: off
        its list, and MOVABLE pageblocks when it is half a pageblock or
        more; the block is compaction's now (a migration target, or freed
        by ``release_free_list``)."""
        a = self.alloc
        z = a.zone_of(pfn)
        self._take_block(e, pfn, order)
        for p in range(pfn, pfn + (1 << order), a.pageblock_nr_pages):
            a.isolate_free_page_retype(z, p, order)
        a.mark_allocated(pfn, order, MIGRATE_MOVABLE)
        self.report.isolated_pages += 1 << order

    # -- compaction's free scanner, by its tracepoints (no kprobes) ---------------
    def _on_isolate_range(self, e: RangeEvent) -> None:
        """``mm_compaction_isolate_freepages``: ``isolate_freepages_block``
        (5.10 L553, 6.1 L541, 6.12 L589, 7.2 L574) stepped from ``start_pfn`` to
        ``end_pfn``, ``nr_scanned`` steps and pages, and took ``nr_taken``
        pages: every free block whose first page it stepped on, with
        ``__isolate_free_page``, until the watermark check refused one (the
        walk stops there: ``end_pfn``) or it had enough. Its stride is not
        traced: 1 in sync compaction and once a block gave pages, up to
        COMPACT_CLUSTER_MAX in async (``isolate_freepages``). The blocks
        taken are those of a walk over the model's free blocks that takes
        ``nr_taken`` pages in ``nr_scanned`` steps, when all such walks
        agree; else the range is marked as isolated untraced. With the
        kprobes on ``__isolate_free_page`` traced, they have applied it."""
        fast = self._fast_pending.pop(e.cpu, None)
        if self._isolate_traced:
            return
        a = self.alloc
        start, end = e.start_pfn, e.end_pfn
        # One pageblock at most (an order above pageblock_order is clamped
        # to its end): a bigger range is no range of this kernel's.
        if not 0 <= end - start <= 1 << (a.nr_orders - 1) or a.zone_of(start) is None:
            self.report.contradictions["isolated_range_not_in_model"] += 1
            if fast is not None:
                self._fast_unresolved(fast)
            return
        # The free blocks, and one at end: a block refused there ends a walk.
        heads = a.buddy_heads(start, end + 1)
        counts = a.profile.free_scan_counts_block_pages
        walks = {w[0] for w in (_isolate_walk(heads, start, end, s, counts) for s in _STRIDES)
                 if _walk_explains(w, e.count, e.nr_scanned)}
        rotate = None
        if fast is not None:
            # fast_isolate_around (6.12 L1494, 7.2 L1507): right after the
            # fast search took its block, the block's pageblock with stride
            # 1. The model still holds that block free: its walk takes it
            # too, in as many steps (2^order either way, 6.12+).
            w = _isolate_walk(heads, start, end, 1, counts)
            fits = [pfn for pfn, o in w[0] if 1 << o == fast.count]
            if (start >= fast.start_pfn - fast.start_pfn % a.pageblock_nr_pages and fits
                    and _walk_explains(w, e.count + fast.count, e.nr_scanned)):
                walks = {w[0]}
                # Its list was rotated to start at it (move_freelist_head):
                # known when it is the walk's one block of its order.
                rotate = fits[0] if len(fits) == 1 else None
            else:
                self._fast_unresolved(fast)
        if len(walks) == 1:
            if rotate is not None:
                a.move_freelist_head(rotate)
            for pfn, order in walks.pop():
                self._isolate_block(e, pfn, order)
            return
        self.report.contradictions["isolated_range_not_in_model" if not walks
                                   else "isolated_range_ambiguous"] += 1
        if e.count:
            self._isolated_untraced(e, [start])

    def _on_fast_isolate(self, e: RangeEvent) -> None:
        """``mm_compaction_fast_isolate_freepages`` (6.12 L1667, 7.2 L1680):
        ``fast_isolate_freepages`` took one MOVABLE free block of
        ``nr_taken`` pages at ``min_pfn`` (``start_pfn``) or above, which the
        tracepoint does not name (the search's bounds and order came from
        compaction's own state). The isolate range traced next on the CPU,
        if any, is its ``fast_isolate_around``, which names it; else the
        blocks it may have taken are marked as isolated untraced."""
        if self._isolate_traced:
            return
        a = self.alloc
        # (min_pfn is a pageblock start, below DMA's first PFN there.)
        z = a.zone_of(e.end_pfn) or a.zone_of(e.start_pfn)
        search = None
        if z is not None:
            search = fast_isolate_freepages(a, z.index, e.start_pfn, e.end_pfn, e.nr_scanned, e.count)
        if search is not None:
            # Every run of the search that scans and takes as traced does
            # the same: done as it did it.
            for _, pfn in search.rotations:
                a.move_freelist_head(pfn)
            if search.taken is not None:
                self._isolate_block(e, *search.taken)
            self.report.fast_searches_resolved += 1
            return
        if not e.count or e.count & (e.count - 1):
            return
        self._fast_pending[e.cpu] = e

    def _fast_unresolved(self, e: RangeEvent) -> None:
        """The block a fast search took stays unknown: any MOVABLE free
        block at ``min_pfn`` or above in its zone may be it (or sit on a
        list it rotated). The next miss of a MOVABLE request predicting a
        block there is compaction's (:meth:`_fast_search_explains`)."""
        z = self.alloc.zone_of(e.start_pfn)
        if z is None:
            return
        floor = self._fast_floor.get(z.index)
        if floor is None or e.start_pfn < floor:
            self._fast_floor[z.index] = e.start_pfn
            self.report.windows.append(("compaction", e.cpu, e.lineno, e.lineno))

    def _fast_search_explains(self, pfn: Optional[int], e: PageEvent) -> bool:
        """*pfn*, predicted for *e*, lies where a fast free search took a
        block the trace does not name: that search explains this one miss
        (and no later one)."""
        if pfn is None or e.migratetype != MIGRATE_MOVABLE or not self._fast_floor:
            return False
        z = self.alloc.zone_of(pfn)
        if z is None or pfn < self._fast_floor.get(z.index, pfn + 1):
            return False
        del self._fast_floor[z.index]
        return True

    # -- watermarks set anew (setup_per_zone_wmarks kprobe event) ---------------
    def _on_wmarks(self, e: PageEvent) -> None:
        """New watermarks, lowmem reserves and pcp sizes of every zone with
        pages, as the kernel had them when ``setup_per_zone_wmarks``
        returned (``min_free_kbytes`` changed: turning THP on raises it)."""
        per_zone: Dict[int, Dict[str, int]] = collections.defaultdict(dict)
        for word in (e.gfp or "").split():
            key, _, value = word.partition("=")
            m = re.match(r"z(\d+)(.+)$", key)
            if m and value:
                per_zone[int(m.group(1))][m.group(2)] = int(value, 0)
        for zi, f in per_zone.items():
            marks = [f[f"w{i}"] for i in range(4) if f"w{i}" in f]
            reserve = [f[f"r{i}"] for i in range(8) if f"r{i}" in f]
            pageset = {k[1:]: v for k, v in f.items() if k.startswith("_")}
            self.alloc.setup_zone_wmarks(zi, marks, reserve, pageset)
        self.report.watermark_changes += 1

    def _zone_changed_untraced(self, req: Request, predicted: Outcome, e: PageEvent) -> bool:
        """The kernel skipped the zone the model chose although, in the
        model, it passes the low watermark (the highest mark an allocation
        checks: ``get_page_from_freelist``'s first pass) with more to spare
        than lagging counters can hide: ``zone_page_state(NR_FREE_PAGES)``
        lacks at most each CPU's ``vm_stat_diff``, each within its
        ``stat_threshold``. In a trace without the setup_wmarks events the
        zone's watermarks were raised with no event (``min_free_kbytes``,
        e.g. ``set_recommended_min_free_kbytes`` when THP is turned on);
        not a miss of the lagging counters."""
        if not self._wmarks_untraced:
            return False
        z = self._skipped_zone(req, predicted, e)
        if z is None:
            return False
        a = self.alloc
        lag = sum(z.stat_threshold) if a.profile.watermark_lagging_free else 0
        return a.zone_watermark_ok(z, e.order, a.wmark(z, ALLOC_WMARK_LOW) + lag,
                                    req.highest_zoneidx, req.alloc_flags, free_pages=z.free_pages)

    def _zone_skipped(self, req: Request, predicted: Outcome, e: PageEvent) -> None:
        """The kernel served from a zone after the one the model chose in
        the zonelist: it found that zone below the mark of the pass its own
        zone passed (the fast path's low, else the slowpath's min). Without
        the setup_wmarks events, ``min_free_kbytes`` was raised with no
        event (turning THP on: ``set_recommended_min_free_kbytes``): the
        smallest one with which the model's zone fails that check is taken,
        and every zone's watermarks set from it as
        ``__setup_per_zone_wmarks`` does."""
        if self._wmarks_traced:
            return
        z = self._skipped_zone(req, predicted, e)
        if z is None:
            return
        a = self.alloc
        flags = self._pass_taken(req, e)
        actual = a.zone_of(e.pfn)
        start = self._pages_min if self._pages_min is not None else a.pages_min()
        if start is None:
            self._zone_resync(req, predicted, e)
            return
        # The count against the mark, as an order-0 check reads it: a
        # higher order's check can fail for want of a free block, which
        # says nothing of min_free_kbytes.
        fails = lambda: not self._passes(z, req, e, flags, order=0)  # noqa: E731
        found = self._thp_pages_min(lambda: fails() and self._passes(actual, req, e, flags))
        if found is None:
            found = self._search_pages_min(start, start << 10, fails)
        if found is not None and self._holds(found, lambda: self._passes(actual, req, e, flags)):
            self._infer_pages_min(found)
        else:
            # No min_free_kbytes makes the kernel's choice: its count.
            self._zone_resync(req, predicted, e)

    def _thp_pages_min(self, ok) -> Optional[int]:
        """The ``min_free_kbytes`` turning THP on sets
        (``set_recommended_min_free_kbytes``), in pages, if it is a raise
        no earlier inference made and it makes *ok*() true: the usual
        untraced raise, taken before the smallest one that fits."""
        a = self.alloc
        now = a.pages_min()
        if self._pages_min is not None or now is None:
            return None
        thp = a.recommended_min_free_pages()
        return thp if thp > now and self._holds(thp, ok) else None

    @property
    def _wmarks_untraced(self) -> bool:
        """Watermark changes are not in the trace (no setup_wmarks event
        traced or enabled): min_free_kbytes may move with no event."""
        return not (self._wmarks_traced or self._wmarks_enabled)

    def _raise_to_thp(self, z, ok) -> bool:
        """At a free of *z*'s pcp: infer THP's ``min_free_kbytes`` raise if
        with it *ok*() holds and *z*, which the kernel frees to and
        allocates from, stays above its new min watermark."""
        a = self.alloc
        found = self._thp_pages_min(lambda: ok() and a.zone_watermark_ok(
            z, 0, a.wmark(z, ALLOC_WMARK_MIN), z.zone_idx, 0))
        if found is None:
            return False
        self._infer_pages_min(found)
        return True

    def _infer_pages_min(self, pages_min: int) -> None:
        """``setup_per_zone_wmarks`` for an untraced ``min_free_kbytes`` of
        *pages_min* pages: every zone's watermarks and pcp sizes."""
        a = self.alloc
        if self._pages_min_before is None:
            self._pages_min_before = a.pages_min()
        self._pages_min = pages_min
        a.setup_per_zone_wmarks(pages_min)
        self.report.inferred_watermarks += 1

    def _passes(self, z, req: Request, e: PageEvent, flags: int, order: Optional[int] = None) -> bool:
        """*z* passes *e*'s watermark check with *flags* in the model."""
        a = self.alloc
        return a.zone_watermark_ok(z, e.order if order is None else order,
                                   a.wmark(z, flags & ALLOC_WMARK_MASK), req.highest_zoneidx, flags)

    def _search_pages_min(self, lo: int, hi: int, ok) -> Optional[int]:
        """The smallest pages_min in [*lo*, *hi*] whose watermarks make
        *ok*() true (it turns true once, as watermarks grow), or None."""
        if lo > hi or not self._holds(hi, ok):
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            if self._holds(mid, ok):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _holds(self, pages_min: int, ok) -> bool:
        """*ok*() with every zone's watermarks set from *pages_min*
        (tried, then undone)."""
        a = self.alloc
        with a.trial():
            a.setup_per_zone_wmarks(pages_min)
            return ok()

    def _zone_resync(self, req: Request, predicted: Outcome, e: PageEvent) -> None:
        """The kernel and the model chose different zones for *e* (reason
        ``zone``, or ``model_failed``): the kernel's NR_FREE_PAGES
        (``zone_page_state``, each CPU's deltas unfolded; lagging, or short
        of pages the trace took untraced) said otherwise, and is taken at
        its word, so that one miss does not become a run. A zone it skipped: its
        count is brought down to the mark of the pass the kernel's zone
        passed (low, else min). A zone before the model's that the kernel
        served from: watermarks inferred raised from an earlier skip are
        lowered until it passes the slowpath's min (not below where they
        were), or else its count is brought up just past the mark of the
        pass the model's zone passed (the fast path's low, else min)."""
        a = self.alloc
        actual = a.zone_of(e.pfn)
        zl = a.zonelist(req.highest_zoneidx)
        mine = next((z for z in zl if z.name == predicted.zone), None)
        if actual not in zl or actual is mine:
            return
        if (actual.boost and not self._reclaim_traced
                and (mine is None or zl.index(mine) > zl.index(actual))):
            # A zone the model skipped for its boosted watermark, which the
            # kernel served from: kswapd's balance_pgdat, untraced, had
            # reclaimed for the boost and taken it off, if without it the
            # zone passes the fast path's mark.
            with a.trial():
                a.boost_reclaimed(actual, actual.boost)
                cleared = self._passes(actual, req, e, req.alloc_flags)
            if cleared:
                a.boost_reclaimed(actual, actual.boost)
                self.report.inferred_reclaim += 1
                return
        if (mine is None or zl.index(mine) > zl.index(actual)) and self._lower_pages_min(actual, req, e):
            return
        if mine is None or not a.profile.watermark_lagging_free:
            return   # the checks read the exact count: nothing lags
        if zl.index(mine) < zl.index(actual):
            z, flags, step = mine, self._pass_taken(req, e), -1
        elif any(s.kind == "slowpath" for s in predicted.path):
            z, flags, step = actual, req.slow_flags, 1
        else:
            # The model's zone passed the fast path's mark: the kernel's
            # zone, before it, passed that mark too (else it had tried the
            # model's zone next).
            z, flags, step = actual, req.alloc_flags, 1
        # The count against the mark, as an order-0 check reads it (see
        # _zone_skipped).
        bar = (a.wmark(z, flags & ALLOC_WMARK_MASK) + a.lowmem_reserve_for(z, req.highest_zoneidx)
               + a.unusable_free(z, 0, flags))
        # Passes when above bar: down to bar, or up to bar + 1.
        delta = bar - a.zone_page_state(z) + (step > 0)
        if delta * step > 0:
            a.correct_zone_page_state(z, delta)
            self.report.counter_resyncs += 1

    def _lower_pages_min(self, z, req: Request, e: PageEvent) -> bool:
        """The kernel served from *z*, which fails the slowpath's min in the
        model, after replay inferred ``min_free_kbytes`` raised: raised too
        far. The highest pages_min (not below where it was) with which *z*
        passes is the lowest with which it fails, less one."""
        before, now = self._pages_min_before, self._pages_min
        if before is None or now is None or self._passes(z, req, e, req.slow_flags):
            return False
        a = self.alloc
        first_fail = self._search_pages_min(before, now,
                                            lambda: not self._passes(z, req, e, req.slow_flags))
        if first_fail is None or first_fail <= before:
            return False
        self._pages_min = first_fail - 1
        a.setup_per_zone_wmarks(self._pages_min)
        if self._pages_min == before:
            self._pages_min_before = self._pages_min = None
        return True

    def _pass_taken(self, req: Request, e: PageEvent) -> int:
        """The alloc_flags of the pass *e*'s zone passed in the model: the
        fast path's (low mark), else the slowpath's (min)."""
        z = self.alloc.zone_of(e.pfn)
        return req.alloc_flags if self._passes(z, req, e, req.alloc_flags) else req.slow_flags

    def _skipped_zone(self, req: Request, predicted: Outcome, e: PageEvent):
        """The zone the model chose, when the kernel served *e* from a zone
        after it in the request's zonelist (it found the model's zone below
        its watermark), else None."""
        a = self.alloc
        actual = a.zone_of(e.pfn)
        zl = a.zonelist(req.highest_zoneidx)
        if actual not in zl:
            return None
        return next((z for z in zl[:zl.index(actual)] if z.name == predicted.zone), None)

    # -- the bulk allocator ------------------------------------------------------
    def _on_bulk_return(self, e: PageEvent) -> None:
        """Apply what one ``alloc_pages_bulk`` call did, from its kprobe
        events: it took pcp heads of its zone's order-0 list of its
        migratetype, one after another (``__rmqueue_pcplist``), and when the
        list ran empty ``rmqueue_bulk`` refilled it (the traced
        ``mm_page_alloc_zone_locked`` events, put on the tail in order).
        The caller's array is taken to be empty on entry (vmalloc's is), so
        ``nr_populated`` counts the pages it handed out; one of them came
        from the ``failed:`` path, traced, when an order-0 ``mm_page_alloc``
        fell inside the call."""
        a = self.alloc
        call = self._bulk.pop(e.cpu, None)
        if call is None:
            # Its entry came before the snapshot: what it asked is unknown.
            self.report.contradictions["bulk_return_without_call"] += 1
            return
        taken = e.count - (1 if call.singles else 0)
        refills = call.refills
        if taken <= 0 and not refills:
            return
        req = self._bulk_request(call.entry)
        if req is None:
            self.report.contradictions["bulk_gfp_unreadable"] += 1
            return
        pindex = a.pindex.get((0, req.migratetype))
        if refills:
            z = a.zone_of(refills[-1].pfn)
        else:
            # The first zone that meets the low watermark plus the pages asked.
            z = a.bulk_zone(req.highest_zoneidx, call.entry.count, req.alloc_flags)
        if z is None or pindex is None or e.cpu not in z.pcp:
            self.report.contradictions["bulk_zone_unknown"] += 1
            return

        def refill() -> bool:
            nonlocal refills
            if not refills:
                return False
            refills = self._bulk_refill(z, e.cpu, pindex, req.migratetype, refills)
            return True

        if a.take_pcp_heads(z, e.cpu, pindex, max(taken, 0), req.migratetype, refill) < taken:
            self.report.contradictions["bulk_took_more_than_pcp_held"] += 1
        while refills:
            refills = self._bulk_refill(z, e.cpu, pindex, req.migratetype, refills)
        self.report.bulk_calls += 1
        self.report.bulk_pages += max(taken, 0)
        self._index += 1
        self._last_alloc[e.cpu] = self._index

    def _bulk_refill(self, z, cpu: int, pindex: int, mt: int, refills: List[PageEvent]
                     ) -> List[PageEvent]:
        """One refill of the bulk allocator's list: ``alloc_pages_bulk``
        (6.12 L4774, 7.2 L5260) takes pages with ``__rmqueue_pcplist``, which
        asks ``nr_pcp_alloc`` (6.12 L3021, 7.2 L3264: it raises pcp->high
        and alloc_factor as for any refill; 5.10/6.1 change nothing) how
        many blocks, then ``rmqueue_bulk`` takes them off the buddy lists
        (with any fallback steal or claim its extfrag events show) onto the
        pcp tail in order. Returns the events of later refills (the list
        ran empty again within the call)."""
        a = self.alloc
        n = a.pcp_refill_count(z, z.pcp[cpu], 0)
        # The events of each block taken: 6.12+ a zone_locked and the
        # extfrag of a claim below pageblock_order after it, or an extfrag
        # alone; 5.10/6.1 any extfrag before the zone_locked it led to.
        claim = a.profile.fallback == "claim"
        units: List[List[PageEvent]] = []
        ahead: List[PageEvent] = []
        for g in refills:
            if g.name == ZONE_LOCKED:
                units.append(ahead + [g])
                ahead = []
            elif not claim:
                ahead.append(g)
            elif units and units[-1][-1].name == ZONE_LOCKED and units[-1][-1].pfn == g.pfn:
                units[-1].append(g)
            else:
                units.append([g])
        if ahead:
            units.append(ahead)
        mine = [g for u in units[:n] for g in u]
        self._apply_removals(mine, cpu, None)
        a.pcp_refill(z.index, cpu, pindex,
                     (p for p in self._removed_pfns(mine) if p not in a.on_pcp), mt)
        return [g for u in units[n:] for g in u]

    def _bulk_request(self, entry: PageEvent) -> Optional[Request]:
        key = (entry.gfp, entry.cpu)
        r = self._requests.get(key)
        if r is None:
            try:
                names = gfp_names(int(entry.gfp, 16), self.alloc.profile.gfp_table)
                r = make_request(self.alloc, 0, entry.cpu, gfp=names)
            except (GfpError, RequestError, ValueError):
                return None
            self._requests[key] = r
        return r

    # -- what a free's drain, or its absence, tells of untraced state ------------
    #
    # Traces without the balance_pgdat and decay_pcp_high kprobe events (a
    # user's own trace-cmd recording) do not show kswapd's reclaim window nor
    # vmstat's pcp->high decay. Whether the kernel drained at a free, and at
    # which count, is evidence of both: the model takes the one explanation
    # the kernel's nr_pcp_high allows, and drops it when a later free refutes
    # it. With the kprobe events in the trace, nothing is guessed.

    def _resync_free_drain(self, w: _DrainWindow) -> None:
        a = self.alloc
        zi, c = w.pcp
        z = a.zones[zi]
        pcp = z.pcp[c]
        p = a.profile
        if w.actual:
            # The kernel drained where the model had room.
            if p.pcp_high_reclaim_active and not self._reclaim_traced and not z.reclaim_active \
                    and w.count < (pcp.high_min if p.pcp_high_decays else pcp.high):
                # Below pcp->high (6.1: no decay) or high_min (6.7+: neither
                # a decay nor ZONE_BELOW_HIGH drains there): only kswapd's
                # ZONE_RECLAIM_ACTIVE (nr_pcp_high) does.
                a.set_reclaim_active(z.zone_idx, True)
                if p.pcp_free_batch == "free_factor":
                    # The drain's own nr_pcp_free grew free_factor.
                    a.nr_pcp_free_factor(pcp, min(pcp.batch << 2, pcp.high))
                self._reclaim_inferred = True
                self.report.inferred_reclaim += 1
                return
            if self._wmarks_untraced and p.below_high_flag and not z.below_high \
                    and self._raise_to_thp(z, lambda: w.count >= pcp.high_min and not a.zone_watermark_ok(
                        z, 0, a.wmark(z, ALLOC_WMARK_HIGH), z.zone_idx, 0)):
                # 6.7+: THP's untraced raise put the zone under its new high
                # watermark; the next allocation's check set ZONE_BELOW_HIGH,
                # with which nr_pcp_high drains at high_min (the new one).
                a.set_below_high(z, True)
                return
            if not self._decay_traced and p.pcp_high_decays:
                # The kernel found count >= high: its pcp->high had decayed
                # with no event (vmstat decay_pcp_high, count <= high then).
                before = pcp.high
                prev = self._last_free.get(w.pcp)
                if prev is not None and prev[1] and not prev[2] and prev[0] < w.count <= pcp.high:
                    # The free before, at a lower count, kept its pages: the
                    # kernel's high lay above that count and at most this
                    # one; nr_pcp_high then raised it to hold free_count +
                    # batch (6.12 L2666, 7.2 L2815).
                    a.set_pcp_high_drained_at(pcp, w.count)
                    self.report.silent_decays += 1
                    self._assumed_decay[w.pcp] = before
                elif a.untraced_decays(z, pcp, w.count):
                    # Bring it down as those decays would have.
                    self.report.silent_decays += 1
                    self._assumed_decay[w.pcp] = before
            return
        # The model foresaw a drain the kernel did not make.
        if z.reclaim_active and self._reclaim_inferred:
            a.set_reclaim_active(max(x.zone_idx for x in a.zones), False)
            self._reclaim_inferred = False
        elif w.pcp in self._assumed_decay:
            # The decay assumed at an earlier drain did not happen (the
            # model's count was short, not the kernel's high): undo it.
            a.set_pcp_high(pcp, max(pcp.high, self._assumed_decay.pop(w.pcp)))
        elif z.below_high and p.below_high_flag and w.count >= pcp.high_min \
                and zi not in self._below_high_known:
            # With ZONE_BELOW_HIGH the kernel drains whenever count >=
            # high_min (nr_pcp_high): its flag was clear. (Not a flag the
            # kernel is known to have, which only a drain's check clears.)
            a.set_below_high(z, False)
        elif self._wmarks_untraced:
            # Its pcp was larger: zone_pcp_update after an untraced
            # setup_per_zone_wmarks (6.1+ size pcp->high from the low
            # watermark, zone_highsize), if THP's min_free_kbytes makes
            # this free keep its page.
            self._raise_to_thp(z, lambda: w.count < a.free_high_now(z, pcp))

    def _vmstat_resync(self, w: _DrainWindow, exact: bool) -> None:
        """After a vmstat drain the kernel's pcp->high is known: the model's
        decay when it foresaw the drain; else decay_pcp_high left count at
        high (to_drain = count - high), and drain_pages_zone left it alone."""
        if w.pcp is None or w.high is None or not w.actual or (self._decay_traced and not exact):
            # (A traced decay's change of pcp->high is applied at its event.)
            return
        a = self.alloc
        zi, c = w.pcp
        pcp = a.zones[zi].pcp[c]
        if exact:
            a.set_pcp_high(pcp, w.high)
        elif pcp.count:
            a.set_pcp_high(pcp, max(pcp.count, pcp.high_min))
