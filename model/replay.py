"""
Replay
------

One-step-ahead scoring of the model against the kernel's own kmem events.

The events one allocation causes (the ``mm_page_alloc_zone_locked`` of its pcp
refill or buddy allocation, any ``mm_page_alloc_extfrag``, and its
``mm_page_alloc``) are its outcome. They are held back per CPU until that
CPU's ``mm_page_alloc`` arrives; the prediction is made from the state before
any of them is applied; then the real outcome is applied, so one miss does
not cascade. Frees, batched frees and drains are applied as they come; the
drain each pcp free triggers is predicted too and scored on its own.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from buddyscope.errors import BuddyscopeError
from buddyscope.model.allocator import (
    ALLOC_CMA, Allocator, ModelError, Outcome,
)
from buddyscope.model.ftrace import PageEvent
from buddyscope.model.profile import Profile
from buddyscope.model.request import Request, RequestError, make_request
from buddyscope.model.snapshot import Snapshot

__all__ = ("AllocRecord", "ReplayError", "ReplayReport", "Replayer", "replay")

ALLOC, ZONE_LOCKED, EXTFRAG = "mm_page_alloc", "mm_page_alloc_zone_locked", "mm_page_alloc_extfrag"
FREE, FREE_BATCHED, DRAIN = "mm_page_free", "mm_page_free_batched", "mm_page_pcpu_drain"


class ReplayError(BuddyscopeError):
    """An event that contradicts the state, in strict mode; or a trace that
    cannot be replayed against this snapshot."""


@dataclasses.dataclass
class AllocRecord:
    """One scored allocation (the ``--json`` records)."""

    index: int
    cpu: int
    order: int
    migratetype: int
    gfp: str
    predicted_pfn: Optional[int]
    actual_pfn: Optional[int]
    hit: bool
    #: The predicted path in one word (pcp, refill, buddy, fallback, failed).
    path: str
    #: What the events say happened, in the same words.
    actual_path: str
    predicted_zone: Optional[str] = None
    #: For a miss: why, as classified after the fact.
    reason: Optional[str] = None
    #: Line number of the mm_page_alloc event.
    lineno: int = 0
    steps: Optional[List[str]] = None

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["steps"] is None:
            del d["steps"]
        return d


@dataclasses.dataclass
class ReplayReport:
    kernel: str
    profile: str
    events: int = 0
    allocations: int = 0
    hits: int = 0
    failed_allocations: int = 0
    refills: int = 0
    refills_exact: int = 0
    drains: int = 0
    drains_exact: int = 0
    unprompted_drains: int = 0
    naive_hits: int = 0
    contradictions: "collections.Counter[str]" = dataclasses.field(default_factory=collections.Counter)
    reasons: "collections.Counter[str]" = dataclasses.field(default_factory=collections.Counter)
    records: List[AllocRecord] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        return self.hits / self.allocations if self.allocations else 1.0

    @property
    def naive_accuracy(self) -> float:
        return self.naive_hits / self.allocations if self.allocations else 0.0

    def misses(self) -> List[AllocRecord]:
        return [r for r in self.records if not r.hit]

    def to_dict(self, records: bool = True) -> Dict[str, Any]:
        d = {
            "kernel": self.kernel, "profile": self.profile, "events": self.events,
            "allocations": self.allocations, "hits": self.hits,
            "accuracy": round(self.accuracy, 6),
            "naive_hits": self.naive_hits, "naive_accuracy": round(self.naive_accuracy, 6),
            "failed_allocations": self.failed_allocations,
            "refills": self.refills, "refills_exact": self.refills_exact,
            "drains": self.drains, "drains_exact": self.drains_exact,
            "unprompted_drains": self.unprompted_drains,
            "contradictions": dict(self.contradictions), "miss_reasons": dict(self.reasons),
        }
        if records:
            d["records"] = [r.to_dict() for r in self.records]
        return d


def _deferred_frees(events: Sequence[PageEvent]) -> Tuple[set, Dict[int, int]]:
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


class Replayer:
    """Steps a model through a kmem event stream, scoring each allocation."""

    def __init__(self, snapshot: Snapshot, profile: Optional[Profile] = None,
                 strict: bool = False, keep_steps: bool = False):
        self.alloc = Allocator(snapshot, profile)
        self._naive_lists = self._naive_state(snapshot)
        self.strict = strict
        self.keep_steps = keep_steps
        self.report = ReplayReport(snapshot.kernel.release, self.alloc.profile.name)
        self._requests: Dict[tuple, Request] = {}
        self._open: Dict[int, List[PageEvent]] = collections.defaultdict(list)
        #: cpu -> (predicted drain, actual drain so far)
        self._pending_drain: Dict[int, Tuple[list, list]] = {}
        #: Called after each event with (index, event): for tools and tests.
        self.after_event = None
        # Sequence numbers: when each pcp page was freed onto its list, and
        # each CPU's last traced allocation.
        self._index = 0
        self._pushed: Dict[int, int] = {}
        self._last_alloc: Dict[int, int] = {}

    # -- requests ------------------------------------------------------------
    def request_for(self, e: PageEvent) -> Request:
        key = (e.gfp, e.order, e.migratetype, e.cpu)
        r = self._requests.get(key)
        if r is None:
            r = make_request(self.alloc, e.order, e.cpu, gfp=e.gfp)
            if r.migratetype != e.migratetype:
                # ac.migratetype after current_gfp_context (scoped flags):
                # the event is what the kernel used.
                r = dataclasses.replace(r, migratetype=e.migratetype,
                                        alloc_flags=r.alloc_flags & ~ALLOC_CMA,
                                        slow_flags=r.slow_flags & ~ALLOC_CMA)
            self._requests[key] = r
        return r

    # -- the loop --------------------------------------------------------------
    def run(self, events: Sequence[PageEvent]) -> ReplayReport:
        t0 = time.perf_counter()
        deferred, batched_order = _deferred_frees(events)
        nr_cpus = self.alloc.nr_cpus
        rep = self.report
        for i, e in enumerate(events):
            if e.cpu >= nr_cpus:
                raise ReplayError(f"line {e.lineno}: event on cpu {e.cpu}, but the snapshot "
                                  f"has {nr_cpus} cpus: the trace is from another kernel or machine")
            n = e.name
            pd = self._pending_drain.get(e.cpu)
            if pd is not None and n != DRAIN:
                self._close_drain(e.cpu)
            if n == ALLOC:
                self._on_alloc(e)
                self._after_alloc(e)
            elif n == ZONE_LOCKED or n == EXTFRAG:
                self._open[e.cpu].append(e)
            elif n == FREE:
                if i not in deferred:
                    self._on_free(e, e.order)
            elif n == FREE_BATCHED:
                self._on_free(e, batched_order.get(i, 0))
            elif n == DRAIN:
                self._on_drain(e)
            if self.after_event is not None:
                self.after_event(i, e)
        for cpu in list(self._pending_drain):
            self._close_drain(cpu)
        for cpu, group in self._open.items():
            if group:
                # Blocks taken with no mm_page_alloc after them: the bulk
                # allocator (6.1+) or a trace cut short.
                self._apply_removals(group, cpu, None)
                rep.contradictions["removal_without_alloc"] += len(group)
        self._open.clear()
        rep.events = len(events)
        rep.seconds = time.perf_counter() - t0
        return rep

    def _contradiction(self, kind: str, e: PageEvent, what: str) -> None:
        if self.strict:
            raise ReplayError(f"line {e.lineno}: {e.name} pfn {e.pfn:#x}: {what}")
        self.report.contradictions[kind] += 1

    # -- allocations -------------------------------------------------------------
    def _on_alloc(self, e: PageEvent) -> None:
        a = self.alloc
        rep = self.report
        self._index += 1
        group = self._take_group(e)
        try:
            req = self.request_for(e)
        except RequestError as err:
            raise ReplayError(f"line {e.lineno}: {err}") from None
        naive = self._naive(req)
        with a.trial():
            predicted = a.allocate(req.cpu, req.order, req.migratetype, req.highest_zoneidx,
                                   req.alloc_flags, req.slow_flags)
            actual_events = self._removal_signature(group)
            same = (predicted.pfn == e.pfn and predicted.events == actual_events)
            if same:
                a.commit()
        if e.pfn is None:
            rep.failed_allocations += 1
        if not same:
            self._apply_removals(group, e.cpu, e)
        actual_path = self._actual_path(group, e, predicted)
        if e.pfn is None:
            return
        hit = predicted.pfn == e.pfn
        rep.allocations += 1
        rep.hits += hit
        rep.naive_hits += naive == e.pfn
        if predicted.refill is not None or actual_path == "refill":
            rep.refills += 1
            actual_refill = [g.pfn for g in group if g.name == ZONE_LOCKED]
            rep.refills_exact += predicted.refill == actual_refill
        rec = AllocRecord(rep.allocations - 1, e.cpu, e.order, e.migratetype, e.gfp or "",
                          predicted.pfn, e.pfn, hit, predicted.kind, actual_path,
                          predicted.zone, lineno=e.lineno)
        if self.keep_steps:
            rec.steps = [s.describe() for s in predicted.path]
        if not hit:
            rec.reason = self._why(predicted, e, group)
            rep.reasons[rec.reason] += 1
        rep.records.append(rec)

    def _take_group(self, e: PageEvent) -> List[PageEvent]:
        """The held-back removal events of *e*'s CPU that belong to *e*:
        those of its order (``mm_page_alloc_zone_locked`` prints the
        requested order; 5.10 also the requested migratetype). Others stay
        open: an interrupt's allocation can be traced between a refill and
        the ``mm_page_alloc`` it served (kmem events are emitted outside the
        locks), and the bulk allocator refills with no ``mm_page_alloc``."""
        held = self._open.get(e.cpu)
        if not held:
            return []
        strict_mt = self.alloc.profile.zone_locked_in_rmqueue
        mine, rest = [], []
        for g in held:
            order = g.order if g.name == ZONE_LOCKED else g.alloc_order
            mt = g.migratetype if g.name == ZONE_LOCKED else g.alloc_migratetype
            if order == e.order and (mt == e.migratetype or (not strict_mt and mt >= 3)):
                mine.append(g)
            else:
                rest.append(g)
        if rest:
            self._open[e.cpu] = rest
        else:
            del self._open[e.cpu]
        return mine

    def _naive(self, req: Request) -> Optional[int]:
        """The naive predictor the model is measured against: the head of
        the matching list in the snapshot (the pcp list for pcp orders, else
        the lowest non-empty free list of the migratetype, preferred zone),
        popping heads only: no refills, splits, frees or merges."""
        a = self.alloc
        z = a.zonelist(req.highest_zoneidx)[0]
        pindex = a.pindex.get((req.order, req.migratetype))
        if pindex is not None:
            lst = self._naive_lists.get((z.index, req.cpu, pindex))
            return lst.popleft() if lst else None
        for o in range(req.order, a.nr_orders):
            lst = self._naive_lists.get((z.index, o, req.migratetype, "buddy"))
            if lst:
                return lst.popleft()
        return None

    def _naive_state(self, snapshot: Snapshot) -> Dict[tuple, "collections.deque[int]"]:
        lists: Dict[tuple, "collections.deque[int]"] = {}
        for zi, z in enumerate(snapshot.zones):
            for p in z.pcp:
                for pindex, pfns in enumerate(p.lists or []):
                    lists[(zi, p.cpu, pindex)] = collections.deque(pfns)
            for o, area in enumerate(z.free_area):
                for mt, pfns in enumerate(area.free_list or []):
                    lists[(zi, o, mt, "buddy")] = collections.deque(pfns)
        return lists

    def _removal_signature(self, group: List[PageEvent]) -> List[tuple]:
        out = []
        for g in group:
            if g.name == ZONE_LOCKED:
                out.append(("zone_locked", g.pfn))
            else:
                out.append(("extfrag", g.pfn, g.fallback_order, bool(g.change_ownership)))
        return out

    def _actual_path(self, group: List[PageEvent], e: PageEvent, predicted: Outcome) -> str:
        if e.pfn is None:
            return "failed"
        if any(g.name == EXTFRAG for g in group):
            return "fallback"
        removed = [g.pfn for g in group if g.name == ZONE_LOCKED]
        if not removed:
            return "pcp" if (e.order, e.migratetype) in self.alloc.pindex else "buddy"
        if (e.order, e.migratetype) in self.alloc.pindex and (len(removed) > 1
                                                              or predicted.kind == "refill"):
            return "refill"
        return "buddy"

    def _why(self, predicted: Outcome, e: PageEvent, group: List[PageEvent]) -> str:
        """Classify a miss after the fact, from the actual outcome."""
        a = self.alloc
        actual = e.pfn
        if predicted.pfn is None:
            return "model_failed"
        zp = a.zone_of(actual)
        if zp is None or zp.name != predicted.zone:
            return "zone"
        if any(g.name == EXTFRAG for g in group):
            return "fallback"
        note = self._last_note
        if note:
            return note
        if predicted.kind == "pcp" and group:
            return "pcp_empty_in_kernel"
        if predicted.kind == "refill" and not group:
            return "pcp_nonempty_in_kernel"
        return "buddy_list_order" if group else "pcp_list_order"

    _last_note: Optional[str] = None

    def _apply_removals(self, group: List[PageEvent], cpu: int, e: Optional[PageEvent]) -> None:
        """Apply the real outcome: each removal from the buddy, the refill
        onto the pcp tail, and the block handed out."""
        a = self.alloc
        self._last_note = None
        removed: List[int] = []
        seen = set()
        for k, g in enumerate(group):
            if g.name == ZONE_LOCKED:
                nxt = group[k + 1] if k + 1 < len(group) else None
                if (nxt is not None and nxt.name == EXTFRAG and nxt.pfn == g.pfn
                        and a.profile.fallback == "claim"):
                    self._claim_block(nxt)
                self._take_block(g, g.pfn, g.order)
                removed.append(g.pfn)
                seen.add(g.pfn)
            elif g.name == EXTFRAG:
                if a.profile.fallback == "steal":
                    self._steal_fallback(g)
                elif g.pfn not in seen:
                    self._claim_or_steal_big(g)
                    removed.append(g.pfn)
                    seen.add(g.pfn)
        if e is None:
            return
        pfn = e.pfn
        if pfn is None:
            # A failed allocation (or a memcg charge failure: the page came
            # and went, its free already applied).
            return
        z = a.zone_of(pfn)
        if z is None:
            self._contradiction("pfn_outside_zones", e, "is in no zone of the snapshot")
            return
        pindex = a.pindex.get((e.order, e.migratetype))
        if removed and pindex is not None and e.cpu in z.pcp:
            for r in removed:
                if r in a.on_pcp or a.is_free(r):
                    continue
                a._pcp_add(z.index, e.cpu, pindex, r, True, e.migratetype)
        where = a.on_pcp.get(pfn)
        if where is not None:
            zi, c, pi = where
            lst = a.zones[zi].pcp[c].lists[pi]
            pos = lst.index(pfn)
            if (zi, c, pi) != (z.index, e.cpu, pindex):
                self._last_note = "other_pcp_list"
            elif pos:
                ahead = list(lst)[:pos]
                since = self._last_alloc.get(e.cpu, -1)
                if all(self._pushed.get(x, -1) > since for x in ahead):
                    # Everything ahead of it was freed after this CPU's last
                    # traced allocation: the block left the list before
                    # those frees (an interrupt or softirq freeing between
                    # the take and the mm_page_alloc, traced after them).
                    self._last_note = "free_traced_before_alloc"
                elif a.profile.bulk_allocator:
                    # Pages ahead of it left with no mm_page_alloc: the bulk
                    # allocator (alloc_pages_bulk) takes pcp heads untraced.
                    for stale in list(lst)[:pos]:
                        a._pcp_take(stale)
                    self.report.contradictions["pcp_pages_taken_untraced"] += pos
                    self._last_note = "bulk_allocator"
                else:
                    self._last_note = "pcp_list_order"
            a._pcp_take(pfn)
        elif pfn not in removed:
            if a.is_free(pfn):
                self._take_block(e, pfn, e.order)
                self._last_note = "untraced_buddy_removal"
            else:
                self._contradiction("alloc_of_page_not_free", e, "allocated but not free in the model")
                self._last_note = "page_not_free_in_model"
        a._mark_allocated(pfn, e.order, e.migratetype)

    def _after_alloc(self, e: PageEvent) -> None:
        self._last_alloc[e.cpu] = self._index

    def _take_block(self, e: PageEvent, pfn: int, order: int) -> None:
        """Take the block *pfn* of *order* out of the free lists, splitting
        the free block that holds it as ``expand`` would (halves not taken
        go to the heads of the block's list)."""
        a = self.alloc
        h = a.containing_free_block(pfn)
        if h is None:
            if pfn in a.on_pcp:
                a._pcp_take(pfn)
                self._contradiction("buddy_removal_of_pcp_page", e, "taken from the buddy but on a pcp list in the model")
            else:
                self._contradiction("buddy_removal_of_page_not_free", e, "taken from the buddy but not free in the model")
            return
        ho, mt, zi = a._del(h)
        if ho < order:
            # The model holds a smaller free block here: take the rest too.
            self._contradiction("buddy_removal_larger_than_free_block", e,
                                f"order {order} taken, the model has order {ho} free")
            for p in range(pfn, pfn + (1 << order), 1 << ho):
                if p != h and a.buddy.get(p):
                    a._del(p)
            return
        while ho > order:
            ho -= 1
            half = 1 << ho
            if pfn >= h + half:
                a._add(zi, h, ho, mt)
                h += half
            else:
                a._add(zi, h + half, ho, mt)

    def _steal_fallback(self, g: PageEvent) -> None:
        """5.10/6.1: apply ``steal_suitable_fallback`` to the fallback block
        the extfrag event names; ``change_ownership`` says if it was claimed."""
        a = self.alloc
        z = a.zone_of(g.pfn)
        info = a.buddy.get(g.pfn)
        if z is None or info is None or info[0] != g.fallback_order:
            self._contradiction("extfrag_block_not_free", g, "fallback block not free in the model")
            return
        a._steal_suitable_fallback(z, g.pfn, g.fallback_order, 0, g.alloc_migratetype,
                                   a.can_steal_fallback(g.fallback_order, g.alloc_migratetype),
                                   claim=bool(g.change_ownership))
        if g.change_ownership:
            a._set_pageblock(z, g.pfn, g.alloc_migratetype)

    def _claim_block(self, g: PageEvent) -> None:
        """6.12+: a claim below pageblock_order moved the block's free pages
        to the start type and retyped the block, before its zone_locked."""
        a = self.alloc
        z = a.zone_of(g.pfn)
        if z is None:
            return
        start, end = a._block_range(z, g.pfn)
        a._count_block(z, start, end, g.alloc_migratetype)
        a._set_pageblock(z, start, g.alloc_migratetype)

    def _claim_or_steal_big(self, g: PageEvent) -> None:
        """6.12+ extfrag with no zone_locked: a claim at or above
        pageblock_order, or a steal (remainders stay on the fallback lists)."""
        a = self.alloc
        z = a.zone_of(g.pfn)
        if z is None:
            self._contradiction("pfn_outside_zones", g, "is in no zone of the snapshot")
            return
        if g.change_ownership and g.fallback_order >= a.pageblock_order:
            info = a.buddy.get(g.pfn)
            if info is None:
                self._contradiction("extfrag_block_not_free", g, "claimed block not free in the model")
                return
            a._del(g.pfn)
            a._change_pageblock_range(z, g.pfn, g.fallback_order, g.alloc_migratetype)
            a._expand(z, g.pfn, g.alloc_order, g.fallback_order, g.alloc_migratetype)
            return
        self._take_block(g, g.pfn, g.alloc_order)

    # -- frees ---------------------------------------------------------------------
    def _on_free(self, e: PageEvent, order: int) -> None:
        a = self.alloc
        pfn = e.pfn
        if pfn in a.on_pcp:
            # Freed while the model holds it on a pcp list: it left untraced
            # (bulk allocator) or through a path the model missed.
            a._pcp_take(pfn)
            self._contradiction("free_of_pcp_page", e, "freed but on a pcp list in the model")
        elif a.is_free(pfn):
            # Freed while the model holds it free: taken off the lists with
            # no event (compaction isolation, page reporting) and given back.
            self._take_block(e, pfn, order)
            self._contradiction("free_of_free_page", e, "freed but already free in the model")
        try:
            drain = a.free(e.cpu, pfn, order, apply_drain=False)
        except ModelError as err:
            raise ReplayError(f"line {e.lineno}: {err}") from None
        self._index += 1
        if pfn in a.on_pcp:
            self._pushed[pfn] = self._index
        if drain:
            self._pending_drain[e.cpu] = (drain, [])
        elif e.cpu not in self._pending_drain:
            self._pending_drain[e.cpu] = ([], [])

    def _on_drain(self, e: PageEvent) -> None:
        a = self.alloc
        pd = self._pending_drain.get(e.cpu)
        if pd is None:
            self.report.unprompted_drains += 1
        else:
            pd[1].append((e.pfn, e.order, e.migratetype))
        pfn = e.pfn
        z = a.zone_of(pfn)
        if z is None:
            self._contradiction("pfn_outside_zones", e, "is in no zone of the snapshot")
            return
        if pfn in a.on_pcp:
            a._pcp_take(pfn)
        elif a.is_free(pfn):
            self._take_block(e, pfn, e.order)
            self._contradiction("drain_of_free_page", e, "drained but free in the model")
        else:
            self._contradiction("drain_of_page_not_on_pcp", e, "drained but not on a pcp list in the model")
        a.free_one_page(z, pfn, e.order, e.migratetype)

    def _close_drain(self, cpu: int) -> None:
        predicted, actual = self._pending_drain.pop(cpu)
        if predicted or actual:
            self.report.drains += 1
            self.report.drains_exact += [p[:2] for p in predicted] == [x[:2] for x in actual]


def replay(snapshot: Snapshot, events: Iterable[PageEvent], profile: Optional[Profile] = None,
           strict: bool = False, keep_steps: bool = False) -> ReplayReport:
    """Score the model against *events* (kmem page events after *snapshot*,
    in total order). See the module docstring."""
    return Replayer(snapshot, profile, strict, keep_steps).run(list(events))


#: What each miss reason means, for the report.
REASONS = {
    "bulk_allocator": "pcp pages ahead of it left with no mm_page_alloc (alloc_pages_bulk, "
                      "e.g. vmalloc'd kernel stacks at fork): a state change no event shows",
    "free_traced_before_alloc": "frees traced between its take and its mm_page_alloc "
                                "(an interrupt or softirq freeing in between)",
    "other_pcp_list": "the block was on another CPU's or list's pcp in the model "
                      "(the task moved between CPUs around the event)",
    "page_not_free_in_model": "the block was not free in the model: it was freed or moved by "
                              "a path with no event, or an earlier event was misattributed",
    "untraced_buddy_removal": "taken from the buddy with no mm_page_alloc_zone_locked",
    "pcp_list_order": "the pcp list order differs from the kernel's",
    "buddy_list_order": "the free list order differs from the kernel's (compaction and page "
                        "reporting reorder lists with no event)",
    "pcp_empty_in_kernel": "the model had pcp pages, the kernel refilled: pages left untraced",
    "pcp_nonempty_in_kernel": "the model's pcp list was empty, the kernel's was not",
    "zone": "served from another zone (watermarks use lagging counters)",
    "fallback": "a fallback (steal/claim) the model took differently; claim thresholds read "
                "PageLRU, which no event shows",
    "model_failed": "the model found no page (reclaim and compaction are not modelled)",
}


def format_report(rep: ReplayReport, misses: int = 20) -> str:
    """The replay report as text."""
    pct = lambda n, d: f"{100.0 * n / d:.2f} %" if d else "n/a"  # noqa: E731
    lines = [
        f"kernel {rep.kernel}  profile {rep.profile}  {rep.events} events  "
        f"replayed in {rep.seconds:.2f} s",
        f"allocations      {rep.allocations:7}   exact PFN hits {rep.hits:7}   "
        f"accuracy {pct(rep.hits, rep.allocations)}",
        f"naive predictor  {'':7}   exact PFN hits {rep.naive_hits:7}   "
        f"accuracy {pct(rep.naive_hits, rep.allocations)}   (snapshot list heads, popping only)",
        f"pcp refills      {rep.refills:7}   exact sets     {rep.refills_exact:7}   "
        f"{pct(rep.refills_exact, rep.refills)}",
        f"pcp drains       {rep.drains:7}   exact sets     {rep.drains_exact:7}   "
        f"{pct(rep.drains_exact, rep.drains)}   (+{rep.unprompted_drains} drain events with no "
        f"free before them: vmstat decay, drain_all_pages)",
    ]
    if rep.failed_allocations:
        lines.append(f"failed allocations in the trace: {rep.failed_allocations}")
    if rep.reasons:
        lines.append("misses by reason:")
        for reason, n in rep.reasons.most_common():
            lines.append(f"  {n:6}  {reason}: {REASONS.get(reason, '')}")
    if rep.contradictions:
        lines.append("events that contradicted the model (applied anyway):")
        for kind, n in rep.contradictions.most_common():
            lines.append(f"  {n:6}  {kind}")
    shown = rep.misses()[:misses]
    if shown:
        lines.append(f"first {len(shown)} misses:")
        for r in shown:
            pred = f"{r.predicted_pfn:#x}" if r.predicted_pfn is not None else "none"
            lines.append(f"  #{r.index} line {r.lineno} cpu {r.cpu} order {r.order} "
                         f"mt {r.migratetype} {r.gfp}: predicted {pred} ({r.path}), "
                         f"kernel {r.actual_pfn:#x} ({r.actual_path}): {r.reason}")
    return "\n".join(lines)
