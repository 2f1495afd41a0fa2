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

import itertools
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from buddyscope.model.events import (
    ALLOC_PAGES_BULK as BULK, ALLOC_PAGES_BULK_RET as BULK_RET, MM_PAGE_ALLOC as ALLOC,
    MM_PAGE_ALLOC_EXTFRAG as EXTFRAG, MM_PAGE_ALLOC_ZONE_LOCKED as ZONE_LOCKED,
    MM_PAGE_FREE as FREE, MM_PAGE_FREE_BATCHED as FREE_BATCHED, MM_PAGE_PCPU_DRAIN as DRAIN,
)
from buddyscope.model.ftrace import PageEvent

__all__ = ("alloc_takes", "contig_chunks", "contig_free_runs", "deferred_frees", "drains_then_migrated",
           "frees_maybe_under_pcp_lock", "frees_under_pcp_lock", "removal_for")


def deferred_frees(events: Sequence[PageEvent]) -> Tuple[set, Dict[int, int]]:
    """Frees that commit later, at their ``mm_page_free_batched``
    (``free_unref_page_list`` / ``free_unref_folios`` trace every page in a
    first loop, then commit each in a second). Returns the indices of those
    ``mm_page_free`` events, and batched-event index -> order of its free
    (the batched event prints ``order=0`` whatever the folio's order).
    A pair is matched by pfn and task, not CPU: the task can be migrated
    between the two loops (``free_unref_folios``, L3001, takes no lock
    before its second loop), and the commit then goes to the pcp of the
    CPU of the batched event."""
    pending: Dict[int, int] = {}
    deferred, batched_order = set(), {}
    for i, e in enumerate(events):
        n = e.name
        if n == FREE:
            pending[e.pfn] = i
        elif n == FREE_BATCHED:
            j = pending.get(e.pfn)
            if j is not None and events[j].pid == e.pid \
                    and (e.pid or events[j].cpu == e.cpu):   # (pid 0: each CPU's idle task)
                del pending[e.pfn]
                deferred.add(j)
                batched_order[i] = events[j].order
        elif n == ALLOC and e.pfn is not None:
            pending.pop(e.pfn, None)
    return deferred, batched_order


def drains_then_migrated(events: Sequence[PageEvent]) -> set:
    """Indices of ``mm_page_pcpu_drain`` events whose task's next event is
    on another CPU: the task was migrated right after that drain. 7.2's
    ``free_frozen_page_commit`` (L2885-2911) drains in ``free_pcppages_bulk``
    calls of at most ``batch`` pages, drops the pcp lock between them and
    gives up when it finds itself on another CPU, so such a drain can stop
    at a chunk boundary. (Pid 0 is each CPU's idle task: never counted.)"""
    last: Dict[int, int] = {}   # pid -> index of its last drain event, if its last event
    out = set()
    for i, e in enumerate(events):
        if not e.pid:
            continue
        j = last.pop(e.pid, None)
        if j is not None and events[j].cpu != e.cpu:
            out.add(j)
        if e.name == DRAIN:
            last[e.pid] = i
    return out


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


def frees_under_pcp_lock(events: Sequence[PageEvent], deferred: set,
                         zone_of: Optional[Callable[[int], object]] = None) -> set:
    """Frees that find their CPU's pcp lock taken and go to the buddy.
    The lock is per CPU and per zone (``zone->per_cpu_pageset``) and is held
    with interrupts on; an interrupt or softirq freeing a page of that zone
    on that CPU meanwhile fails ``pcp_spin_trylock`` and calls
    ``free_one_page`` (``__free_frozen_pages`` L2977-L2984): no event says
    so. The trace shows the lock held only where an event is traced inside
    it, on the CPU of the task the interrupt preempted (the interrupt's own
    events carry that task's pid):

    - ``free_unref_folios`` traces ``mm_page_free_batched`` under the lock of
      the folio's zone (L3064-L3081) and keeps it to the next folio of that
      zone: frees between two batched events of one task, nothing of another
      task between them, in the zone of the first.
    - ``rmqueue_pcplist`` (L3370-L3382) refills under it: ``rmqueue_bulk``
      traces ``mm_page_alloc_zone_locked`` with the zone lock taken
      irqsave (L2531-L2555); interrupts that came meanwhile run at its
      ``spin_unlock_irqrestore``, still under the pcp lock, and
      ``mm_page_alloc`` comes after ``pcp_spin_unlock``. The flags column
      tells them apart: the refill is traced at the allocation's preempt
      count + 3 (``pcpu_task_pin``, the pcp lock, the zone lock), and an
      interrupt under the pcp lock counts at least the allocation's + 2;
      one after the unlock may count less.

    A free inside ``free_frozen_page_commit`` or a refill-less
    ``rmqueue_pcplist`` has no event inside the lock: the trace cannot
    tell, and the free is taken to reach the pcp. *zone_of* maps a PFN to
    its zone (None: all one zone)."""
    out: set = set()
    same_zone = ((lambda a, b: zone_of(a) is zone_of(b)) if zone_of is not None
                 else (lambda a, b: True))
    last: Dict[int, int] = {}       # cpu -> its last task-context event
    # pid -> (the event that opened the window, the frees in it, whether
    # another task ran on that CPU since).
    pending: Dict[int, Tuple[int, List[int], bool]] = {}
    for i, e in enumerate(events):
        c = e.cpu
        irq = e.in_interrupt
        if e.name == FREE and i not in deferred and irq is not False:
            j = last.get(c)
            if j is not None:
                opener = events[j]
                if (opener.name == FREE_BATCHED and (irq is None or opener.pid == e.pid)
                        or opener.name == ZONE_LOCKED and irq and opener.pid == e.pid):
                    pending.setdefault(opener.pid, (j, [], False))[1].append(i)
            continue
        if irq:
            continue        # the preempted task still holds what it held
        j = last.get(c)
        if j is not None and events[j].pid != e.pid:
            p = pending.get(events[j].pid)
            if p is not None:
                pending[events[j].pid] = (p[0], p[1], True)
        last[c] = i
        p = pending.pop(e.pid, None)
        if p is None:
            continue
        j, frees, switched = p
        opener = events[j]
        if opener.name == FREE_BATCHED:
            # A batched free of the same call: nothing of another task
            # between (the lock pins the task).
            if e.name == FREE_BATCHED and not switched and e.cpu == opener.cpu:
                out.update(k for k in frees if same_zone(events[k].pfn, opener.pfn))
        elif e.name == ALLOC:
            zl, al = opener.preempt_depth, e.preempt_depth
            if zl is not None and al is not None and zl - al >= 3:
                out.update(k for k in frees
                           if (events[k].preempt_depth or 0) >= al + 2
                           and same_zone(events[k].pfn, opener.pfn))
    return out


def frees_maybe_under_pcp_lock(events: Sequence[PageEvent], deferred: set, locked: set,
                               zone_of: Callable[[int], object], pcp_orders) -> set:
    """Interrupt frees that may have found the pcp lock of their zone taken
    in a window with no event inside it: the task they interrupted had just
    traced its own pcp free (``free_frozen_page_commit`` takes the lock
    after ``mm_page_free``, L2977) or traces a pcp allocation next with no
    refill (``rmqueue_pcplist``, L3370-L3382, traces nothing under the
    lock), and their preempt count is at least that event's + 2, as under
    the task's pin and pcp lock. The same count is seen when the task holds
    two other locks or the handler takes them, so these go to the pcp as
    traced; a later allocation that shows them gone names the cause
    (:meth:`Replayer._apply_removals`). Needs the flags column."""
    out: set = set()
    last: Dict[int, int] = {}
    pending: Dict[int, List[int]] = {}     # pid -> frees waiting on its next event
    for i, e in enumerate(events):
        irq = e.in_interrupt
        if irq is None:
            return out
        if irq:
            if e.name != FREE or i in deferred or i in locked:
                continue
            j = last.get(e.cpu)
            if j is None or events[j].pid != e.pid:
                continue
            t, d = events[j], e.preempt_depth
            if d is None or t.preempt_depth is None:
                continue
            if (t.name == FREE and j not in deferred and t.order in pcp_orders
                    and d >= t.preempt_depth + 2 and zone_of(t.pfn) is zone_of(e.pfn)):
                out.add(i)
            elif t.name != ZONE_LOCKED:
                pending.setdefault(e.pid, []).append(i)
            continue
        last[e.cpu] = i
        frees = pending.pop(e.pid, None)
        if (frees and e.name == ALLOC and e.pfn and e.order in pcp_orders
                and e.preempt_depth is not None):
            out.update(k for k in frees if events[k].preempt_depth >= e.preempt_depth + 2
                       and zone_of(events[k].pfn) is zone_of(e.pfn))
    return out


def removal_for(g: PageEvent, e: PageEvent, strict_mt: bool) -> bool:
    """Whether the removal event *g* (``mm_page_alloc_zone_locked`` or
    ``mm_page_alloc_extfrag``) held on *e*'s CPU belongs to the
    ``mm_page_alloc`` *e*: same order (the zone_locked event prints the
    requested order), and with *strict_mt* (5.10: it prints the requested
    migratetype) the same migratetype; else any type from
    ``MIGRATE_PCPTYPES`` up (HIGHATOMIC, CMA: the list's type) matches too."""
    if g.name == ZONE_LOCKED:
        order, mt = g.order, g.migratetype
    else:
        order, mt = g.alloc_order, g.alloc_migratetype
    return order == e.order and (mt == e.migratetype or (not strict_mt and mt >= 3))


def _traced_own(events: Sequence[PageEvent], t: int, i: int) -> bool:
    """Whether the task of event *i* traced an event in its own context
    (its CPU, its pid, the same interrupt or task context) between *t* and *i*."""
    e = events[i]
    irq = bool(e.in_interrupt)
    return any(g.cpu == e.cpu and g.pid == e.pid and bool(g.in_interrupt) == irq
               for g in itertools.islice(events, t + 1, i))


def alloc_takes(events: Sequence[PageEvent], strict_mt: bool) -> Dict[int, int]:
    """Allocations whose ``mm_page_alloc`` is traced after other events that
    followed their take. An allocation that takes blocks off the buddy
    lists does it, and takes its page, under the locks its
    ``mm_page_alloc_zone_locked`` (and ``mm_page_alloc_extfrag``) events are
    traced in: ``rmqueue_bulk`` under ``zone->lock`` with the pcp head
    taken before interrupts are back on (5.10 ``rmqueue_pcplist`` L3401,
    ``local_irq_save``) or the pcp lock is dropped (6.1 L3833, 6.12 L3104,
    7.2 L3361), or ``__rmqueue`` under ``zone->lock`` for the buddy path
    (5.10 ``rmqueue`` L3426, ``rmqueue_buddy`` 6.1 L3745, 6.12 L2981, 7.2
    L3212). Its ``mm_page_alloc`` comes only when ``__alloc_pages``
    returns (5.10 ``__alloc_pages_nodemask`` L5057, 6.1 L5680, 6.12 L4881,
    7.2 L5382), after interrupts, other CPUs' events and, if the task was
    preempted, other tasks'. Those all came after the take; the task
    itself (in its own context) traces nothing in between: when it did,
    the removal events were not this allocation's take (the bulk
    allocator's refill, in a trace without its kprobe events). Returns the
    index of the allocation's last removal event -> the index of its
    ``mm_page_alloc``, for those with events in between. The removal
    events are grouped with their allocation as
    :meth:`~buddyscope.model.replay.Replayer._take_group` does (the bulk
    allocator's order-0 refills are its own)."""
    held: Dict[int, List[int]] = {}
    bulk: set = set()
    out: Dict[int, int] = {}
    for i, e in enumerate(events):
        n = e.name
        if n == ZONE_LOCKED or n == EXTFRAG:
            order = e.order if n == ZONE_LOCKED else e.alloc_order
            if not (e.cpu in bulk and order == 0):
                held.setdefault(e.cpu, []).append(i)
        elif n == ALLOC:
            group = held.get(e.cpu)
            if not group:
                continue
            mine = [k for k in group if removal_for(events[k], e, strict_mt)]
            if mine:
                taken = set(mine)
                held[e.cpu] = [k for k in group if k not in taken]
                t = mine[-1]
                if t + 1 < i and not _traced_own(events, t, i):
                    out[t] = i
        elif n == BULK:
            bulk.add(e.cpu)
        elif n == BULK_RET:
            bulk.discard(e.cpu)
    return out
