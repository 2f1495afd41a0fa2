"""
Stream
------

Passes over a whole kmem event stream, made before it is replayed: what no
single event says but the events after it do. A free that commits later,
at its ``mm_page_free_batched``; a run of order-0 frees committed as aligned
chunks (7.2 ``__free_contig_range``); a free that found its CPU's pcp lock
taken and went to the buddy. :class:`~buddyscope.model.replay.Replayer`
asks its profile which of them the kernel does.

Line references (``L1234``) are to ``mm/page_alloc.c``, unless another file
is named, of Debian's ``linux-source-7.2`` 7.2.13-1.

Pure Python: imports neither drgn nor textual.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from buddyscope.model.events import (
    MM_PAGE_ALLOC as ALLOC, MM_PAGE_FREE as FREE, MM_PAGE_FREE_BATCHED as FREE_BATCHED,
)
from buddyscope.model.ftrace import PageEvent

__all__ = ("contig_chunks", "contig_free_runs", "deferred_frees", "frees_under_pcp_lock")


def deferred_frees(events: Sequence[PageEvent]) -> Tuple[set, Dict[int, int]]:
    """Frees that commit later, at their ``mm_page_free_batched``
    (``free_unref_page_list`` / ``free_unref_folios`` trace every page in a
    first loop, then commit each in a second). Returns the indices of those
    ``mm_page_free`` events, and batched-event index -> order of its free
    (the batched event prints ``order=0`` whatever the folio's order)."""
    pending: Dict[Tuple[int, int], int] = {}
    deferred, batched_order = set(), {}
    for i, e in enumerate(events):
        n = e.name
        if n == FREE:
            pending[(e.cpu, e.pfn)] = i
        elif n == FREE_BATCHED:
            j = pending.pop((e.cpu, e.pfn), None)
            if j is not None:
                deferred.add(j)
                batched_order[i] = events[j].order
        elif n == ALLOC and e.pfn is not None:
            pending.pop((e.cpu, e.pfn), None)
    return deferred, batched_order


def contig_chunks(pfn: int, n: int, max_order: int) -> List[Tuple[int, int]]:
    """7.2 ``free_prepared_contig_range`` (mm/page_alloc.c L6902): the
    blocks a run of *n* order-0 pages from *pfn* is committed as: naturally
    aligned, no larger than what is left, at most ``MAX_PAGE_ORDER``."""
    out = []
    while n:
        order = (pfn & -pfn).bit_length() - 1 if pfn else max_order
        order = min(order, n.bit_length() - 1, max_order)
        out.append((pfn, order))
        pfn += 1 << order
        n -= 1 << order
    return out


#: A page of no traced allocation (allocated before the snapshot, or taken
#: by the bulk allocator).
_UNTRACED = -1


def contig_free_runs(events: Sequence[PageEvent], deferred: set, max_order: int
                      ) -> Dict[int, Optional[List[Tuple[int, int]]]]:
    """7.2 ``vfree`` -> ``free_pages_bulk`` -> ``__free_contig_range``
    (mm/vmalloc.c L3461; mm/page_alloc.c L5308, L6928, called from the
    per-CPU ``delayed_vfree_work`` kworker for stacks freed from RCU
    callbacks): ``free_pages_prepare`` traces each page
    of a PFN-contiguous run as an order-0 ``mm_page_free``, and only after
    the run are the pages committed, in aligned chunks
    (``free_prepared_contig_range``): a vmalloc area whose pages came from
    one large-order ``alloc_pages`` and ``split_page`` (``vm_area_alloc_pages``,
    mm/vmalloc.c L3687; 16 KiB kernel stacks are one order-2 block) goes back
    to the order-2 pcp list as one block. A run, as the trace shows it:
    order-0 ``mm_page_free`` events not later batched, consecutive in their
    CPU's stream, same task, each PFN one above the last, all inside one
    traced allocation of order >= 1, or all of no traced allocation and
    then exactly one naturally aligned block (order-0 frees of adjacent
    pages that were allocated one by one, e.g. page tables freed by RCU, are
    committed one by one). Frees traced in interrupt context (the flags
    column's ``s``/``h``: RCU callbacks freeing page tables in softirq) are
    never in a run: ``vfree`` hands an interrupt's free to the kworker
    (``vfree_atomic``, mm/vmalloc.c L3488-L3491) and ``free_pages_bulk`` is
    process context only (mm/page_alloc.c L5306); they commit at once and
    do not break the run of the task they interrupted. Returns event index
    -> None for a traced page committed later, or the chunks committed at
    the run's last event."""
    out: Dict[int, Optional[List[Tuple[int, int]]]] = {}
    runs: Dict[int, List[int]] = {}
    runs_head: Dict[int, int] = {}
    block_of: Dict[int, int] = {}

    def close(cpu: int) -> None:
        run = runs.pop(cpu, None)
        if not run or len(run) < 2:
            return
        n, first = len(run), events[run[0]].pfn
        if runs_head[cpu] == _UNTRACED and (n & (n - 1) or first & (n - 1)):
            return
        for j in run[:-1]:
            out[j] = None
        out[run[-1]] = contig_chunks(first, n, max_order)

    def track(i: int, e: PageEvent) -> None:
        # Each page's traced allocation of order >= 1 (its index), if any.
        if e.name == ALLOC and e.pfn is not None:
            for p in range(e.pfn, e.pfn + (1 << e.order)):
                block_of[p] = i if e.order else None
        elif e.name in (FREE, FREE_BATCHED) and e.pfn is not None:
            for p in range(e.pfn, e.pfn + (1 << e.order)):
                block_of[p] = None

    for i, e in enumerate(events):
        if e.in_interrupt:
            # Not the task's: committed as it comes, the run goes on.
            track(i, e)
            continue
        run = runs.get(e.cpu)
        if e.name == FREE and e.order == 0 and e.pfn is not None and i not in deferred:
            # The traced allocation the page belongs to: one of order >= 1
            # (its index), UNTRACED (allocated before the snapshot, or taken
            # untraced by the bulk allocator), or None (order 0).
            head = block_of.pop(e.pfn, _UNTRACED)
            if run:
                last = events[run[-1]]
                if (head is not None and last.pid == e.pid and last.pfn + 1 == e.pfn
                        and runs_head[e.cpu] == head):
                    run.append(i)
                    continue
            close(e.cpu)
            if head is not None:
                runs[e.cpu] = [i]
                runs_head[e.cpu] = head
            block_of[e.pfn] = None
            continue
        if run is not None:
            close(e.cpu)
        track(i, e)
    for cpu in list(runs):
        close(cpu)
    return out


def frees_under_pcp_lock(events: Sequence[PageEvent], deferred: set) -> set:
    """Frees that find their CPU's pcp lock taken and go to the buddy.
    ``free_unref_folios`` holds the pcp lock across its commit loop, where
    it traces ``mm_page_free_batched`` (7.2 L3064-L3081) with interrupts
    on; an interrupt or softirq freeing on that CPU meanwhile fails
    ``pcp_spin_trylock`` and calls ``free_one_page`` (``__free_frozen_pages``
    L2977-L2984; the softirq frees carry ``s`` and a deeper preempt count in
    the trace): no event says so. In the trace: ``mm_page_free`` events
    (not batched later) between two ``mm_page_free_batched`` of their CPU."""
    out: set = set()
    prev: Dict[int, str] = {}
    pending: Dict[int, List[int]] = {}
    for i, e in enumerate(events):
        c = e.cpu
        if e.name == FREE and i not in deferred:
            if prev.get(c) == FREE_BATCHED:
                pending.setdefault(c, []).append(i)
                continue
        elif e.name == FREE_BATCHED and c in pending:
            out.update(pending.pop(c))
        else:
            pending.pop(c, None)
        prev[c] = e.name
    return out
