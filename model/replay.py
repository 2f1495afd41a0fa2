"""
Replay
------

One-step-ahead scoring of the model against the kernel's own kmem events.

The events one allocation causes (the ``mm_page_alloc_zone_locked`` of its pcp
refill or buddy allocation, any ``mm_page_alloc_extfrag``, and its
``mm_page_alloc``) are its outcome. They are held back per CPU until that
CPU's ``mm_page_alloc`` arrives; the prediction is made from the state before
any of them is applied; then the real outcome is applied, so one miss does
not cascade. An allocation with such events is stepped at its last one, the
take, when events (another CPU's, an interrupt's) were traced between it and
its ``mm_page_alloc`` (see :func:`~buddyscope.model.stream.alloc_takes`). Frees, batched frees and drains are applied as they come; the
drain each pcp free triggers is predicted too and scored on its own, and so
is each run of drain events no free of the same task explains (6.12+:
vmstat's ``decay_pcp_high``; ``drain_all_pages``).

Line references (``L1234``) are to ``mm/page_alloc.c``, unless another file
is named, of Debian's ``linux-source`` packages 5.10.262-1, 6.1.192-3,
6.12.118-1 and 7.2.13-1.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from buddyscope.errors import BuddyscopeError
from buddyscope.model.allocator import (
    ALLOC_CMA, ALLOC_WMARK_LOW, MIGRATE_MOVABLE, Allocator, ModelError, Outcome, Step,
)
from buddyscope.model.events import (
    ALLOC_PAGES_BULK, ALLOC_PAGES_BULK_RET, DECAY_EVENTS, ISOLATE_EVENTS, VMSTAT_EVENTS,
    MM_COMPACTION_FAST_ISOLATE_FREEPAGES, MM_COMPACTION_ISOLATE_FREEPAGES, MM_PAGE_ALLOC,
    MM_PAGE_ALLOC_EXTFRAG, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_FREE, MM_PAGE_FREE_BATCHED,
    MM_PAGE_PCPU_DRAIN, RECLAIM_EVENTS, WATERMARK_EVENTS,
)
from buddyscope.model.ftrace import PageEvent
from buddyscope.model.profile import Profile
from buddyscope.model.replay_kprobes import KprobeEvents, _BulkCall, _DrainWindow
from buddyscope.model.replay_windows import WindowEvents
from buddyscope.model.replay_report import (
    REASONS, AllocRecord, NaivePredictor, ReplayReport, format_report,
)
from buddyscope.model.request import Request, RequestError, make_request
from buddyscope.model.screen import REFUSED, Limits, screened_list
from buddyscope.model.snapshot import Snapshot
from buddyscope.model.stream import (
    alloc_takes, contig_free_runs, deferred_frees, drains_then_migrated, frees_maybe_under_pcp_lock,
    frees_under_pcp_lock, removal_for,
)

# AllocRecord, ReplayReport, REASONS and format_report live in replay_report;
# they are imported here for the callers that take them from replay.
__all__ = ("REASONS", "AllocRecord", "ReplayError", "ReplayReport", "Replayer", "format_report",
           "replay")

ALLOC, ZONE_LOCKED, EXTFRAG = MM_PAGE_ALLOC, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_ALLOC_EXTFRAG
FREE, FREE_BATCHED, DRAIN = MM_PAGE_FREE, MM_PAGE_FREE_BATCHED, MM_PAGE_PCPU_DRAIN
BULK, BULK_RET = ALLOC_PAGES_BULK, ALLOC_PAGES_BULK_RET
RECLAIM, RECLAIM_RET = RECLAIM_EVENTS
(DECAY,) = DECAY_EVENTS
(REFRESH,) = VMSTAT_EVENTS
ISOLATE, ISOLATE_RET = ISOLATE_EVENTS
(WMARKS,) = WATERMARK_EVENTS
ISOLATE_RANGE, FAST_ISOLATE = MM_COMPACTION_ISOLATE_FREEPAGES, MM_COMPACTION_FAST_ISOLATE_FREEPAGES


class ReplayError(BuddyscopeError):
    """An event that contradicts the state, in strict mode; or a trace that
    cannot be replayed against this snapshot."""


class Replayer(KprobeEvents, WindowEvents):
    """Steps a model through a kmem event stream, scoring each allocation."""

    def __init__(self, snapshot: Snapshot, profile: Optional[Profile] = None,
                 strict: bool = False, keep_steps: bool = False,
                 events_enabled: Optional[Iterable[str]] = None,
                 skip_bad: Optional[bool] = None):
        self.alloc = Allocator(snapshot, profile)
        #: The recording traced the bulk allocator (its provenance's
        #: events_enabled): pcp pages cannot leave through it untraced.
        #: What the recording says it traced (its provenance's
        #: events_enabled): a kprobe enabled and never hit was never called.
        self._enabled = frozenset(events_enabled or ())
        self._bulk_traced = BULK in self._enabled
        #: The recording traced watermark changes (setup_wmarks): a zone's
        #: watermarks cannot rise with no event.
        self._wmarks_enabled = WMARKS in set(events_enabled or ())
        self._naive = NaivePredictor(snapshot)
        self.strict = strict
        #: An event that cannot be replayed (a CPU or PFN the snapshot does
        #: not have, a gfp the kernel does not know) is counted in the
        #: report's skipped lines and replay goes on; by default unless strict.
        self.skip_bad = not strict if skip_bad is None else skip_bad
        self._at: Optional[PageEvent] = None
        self.keep_steps = keep_steps
        self.report = ReplayReport(snapshot.kernel.release, self.alloc.profile.name)
        self._requests: Dict[tuple, Request] = {}
        self._open: Dict[int, List[PageEvent]] = collections.defaultdict(list)
        #: cpu -> the drain events expected next there (see _DrainWindow)
        self._pending_drain: Dict[int, _DrainWindow] = {}
        #: Called after each event with (index, event): for tools and tests.
        self.after_event = None
        # Sequence numbers: when each pcp page was freed onto its list, and
        # each CPU's last traced allocation.
        self._index = 0
        self._pushed: Dict[int, int] = {}
        self._last_alloc: Dict[int, int] = {}
        #: Interrupt frees (ids) that may have met their pcp lock taken, and
        #: the pages they put on a pcp list (stream.frees_maybe_under_pcp_lock).
        self._maybe_locked: set = set()
        self._maybe_locked_pfns: set = set()
        #: Drain events (ids) whose task's next event is on another CPU.
        self._migrated_after: set = set()
        # Pages replay put on the buddy by that inference, until an event names them.
        self._inferred_buddy: set = set()
        #: cpu -> the bulk allocator call under way there
        self._bulk: Dict[int, _BulkCall] = {}
        #: kswapd pid -> highest_zoneidx of its balance_pgdat under way.
        self._reclaim: Dict[int, int] = {}
        #: kswapd pid -> zone index -> the watermark boost at its start.
        self._reclaim_boosts: Dict[int, Dict[int, int]] = {}
        #: cpu -> the __isolate_free_page entry event under way there.
        self._isolating: Dict[int, PageEvent] = {}
        #: min_free_kbytes (pages) before replay inferred it raised, and
        #: what it inferred.
        self._pages_min_before: Optional[int] = None
        self._pages_min: Optional[int] = None
        #: Tasks (pids) with a mm_page_free since their last mm_page_alloc.
        self._freed_since_alloc: set = set()
        #: A compaction tracepoint was traced (compaction at work).
        self._compaction_seen = False
        #: cpu -> a fast free search's event whose block is not known yet.
        self._fast_pending: Dict[int, PageEvent] = {}
        #: cpu -> pid of the last event traced on it (the task running there).
        self._last_pid: Dict[int, int] = {}
        #: cpu -> pid of the task traced there before the current one.
        self._prev_pid: Dict[int, int] = {}
        #: (cpu, pid) pairs with an event traced, and the PFNs events named.
        self._traced_tasks: set = set()
        self._named: set = set()
        #: Pages left ahead of a traced allocation while another task was
        #: between its take and its mm_page_alloc (preempted there; 7.2 is
        #: PREEMPT_LAZY): pfn -> (cpu, pindex, that task's pid, the record
        #: of the allocation that skipped them).
        self._late: Dict[int, Tuple[int, int, Optional[int], Optional[int]]] = {}
        #: cpu -> each zone's free pages after the last event traced there.
        self._cpu_free: Dict[int, List[int]] = {}
        #: mm_page_alloc events already stepped at their take: index -> record.
        self._stepped: Dict[int, Optional[AllocRecord]] = {}

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
    def run(self, events: Sequence[PageEvent], start: int = 0) -> ReplayReport:
        """Apply *events* (from index *start*: a copy of a replayer stopped
        after event *start* - 1 of the same list resumes there) and settle."""
        t0 = time.perf_counter()
        passes = getattr(self, "passes", None)
        if passes is None or passes[-1] is not events:
            given = events
            # Events the snapshot cannot take stand in as Refused ones,
            # before any pass reads them (screen.py).
            events = screened_list(events, Limits.of(self.alloc))
            # Look-ahead over the whole trace, once per list of events.
            deferred, batched_order = deferred_frees(events)
            contig = (contig_free_runs(events, deferred, self.alloc.nr_orders - 1)
                      if self.alloc.profile.contig_free_runs else {})
            locked = (frees_under_pcp_lock(events, deferred, self.alloc.zone_of)
                      if self.alloc.profile.pcp_trylock_free else set())
            self._maybe_locked = ({id(events[k]) for k in frees_maybe_under_pcp_lock(
                events, deferred, locked, self.alloc.zone_of, {o for o, _ in self.alloc.pindex})}
                if self.alloc.profile.pcp_trylock_free else set())
            self._migrated_after = ({id(events[k]) for k in drains_then_migrated(events)}
                                    if self.alloc.profile.drain_in_batch_chunks else set())
            # (The list given last: a copy of this replayer shares them all.)
            self.passes = passes = (events, deferred, batched_order, contig, locked, given)
            self._takes = alloc_takes(events, self.alloc.profile.zone_locked_in_rmqueue)
        events, deferred, batched_order, contig, locked, _ = passes
        if start == 0:
            # With decay_pcp_high traced, no decay is silent; with
            # balance_pgdat traced, kswapd's reclaim window is known. (A
            # replayer resumed from a checkpoint keeps what it had learnt.)
            self._decay_traced = DECAY in self._enabled or any(e.name == DECAY for e in events)
            self._refresh_traced = REFRESH in self._enabled or any(e.name == REFRESH for e in events)
            self._reclaim_traced = RECLAIM in self._enabled or any(
                e.name == RECLAIM or e.name == RECLAIM_RET for e in events)
            self._reclaim_inferred = False
            self._wmarks_traced = any(e.name == WMARKS for e in events)
            #: (zone index, cpu) -> pcp->high before a decay assumed at a drain.
            self._assumed_decay: Dict[Tuple[int, int], int] = {}
            #: (zone index, cpu) -> the last pcp free there: its count, whether
            #: the model foresaw no drain, whether the kernel drained.
            self._last_free: Dict[Tuple[int, int], Tuple[int, bool, bool]] = {}
            #: Zones whose ZONE_BELOW_HIGH the kernel is known to have (the
            #: snapshot read it, or an allocation skipped the zone), no
            #: drain's check made since.
            self._below_high_known = {z.index for z in self.alloc.zones if z.below_high}
            self._start_windows(events)
        numbered = enumerate(itertools.islice(events, start, None), start)
        while True:
            try:
                self._run_events(numbered, deferred, batched_order, contig, locked)
                break
            except BuddyscopeError as err:
                if not self.skip_bad or self._at is None:
                    raise
                # _run_events resumes on the same iterator, after this event.
                self.report.skip_line(self._at.lineno, str(err))
        return self._finish(events, t0)

    def _run_events(self, numbered, deferred, batched_order, contig, locked) -> None:
        for i, e in numbered:
            self._at = e
            if e.name == REFUSED:
                # A CPU, order, migratetype or page the snapshot cannot take.
                raise ReplayError(e.why)
            if e.pid == 0 and not self._refresh_traced and self._last_pid.get(e.cpu, 0) != 0:
                # The CPU had gone idle (an interrupt in its idle task):
                # quiet_vmstat folded its deltas when the tick stopped
                # (tick_nohz_stop_tick; refresh_cpu_vm_stats(false)).
                self.alloc.fold_vm_diffs(e.cpu, self.alloc.zones[-1])
            # Its NR_FREE_PAGES changes go to this CPU's vm_stat_diff.
            self.alloc.set_vm_cpu(e.cpu)
            n = e.name
            pd = self._pending_drain.get(e.cpu)
            # compaction_capture (7.2 L728) in the middle of a drain: the
            # block a merge of free_pcppages_bulk completed goes to the
            # compacting task, and 7.2 traces a fallback when its migratetype
            # is not the one compaction asked for (L751; older series trace
            # nothing there). Under the zone lock: no allocation's removal,
            # and the drain goes on.
            captured = (n == EXTFRAG and pd is not None and pd.kind == "free" and bool(pd.actual)
                        and pd.pid == e.pid)
            if pd is not None and n != DRAIN and not captured:
                self._close_drain(e.cpu)
            if self._fast_pending and n != ISOLATE_RANGE and e.cpu in self._fast_pending:
                self._fast_unresolved(self._fast_pending.pop(e.cpu))
            if n != ALLOC and self._late and e.pfn in self._late:
                # Freed, drained or taken from the buddy: not a late trace.
                del self._late[e.pfn]
            if n == ALLOC:
                call = self._bulk.get(e.cpu)
                if call is not None and e.order == 0:
                    call.singles += 1
                if i not in self._stepped:   # (else stepped at its take)
                    self._on_alloc(e)
                    self._after_alloc(e)
            elif captured:
                pass   # (counted as a capture at the task's mm_page_alloc)
            elif n == ZONE_LOCKED or n == EXTFRAG:
                call = self._bulk.get(e.cpu)
                if call is not None and (e.order if n == ZONE_LOCKED else e.alloc_order) == 0:
                    call.refills.append(e)
                else:
                    self._open[e.cpu].append(e)
            elif n == FREE:
                self._freed_since_alloc.add(e.pid)
                if i in locked:
                    self._on_free_to_buddy(e)
                elif i in contig:
                    self._on_contig_free(e, contig[i])
                elif i not in deferred:
                    self._on_free(e, e.order)
            elif n == FREE_BATCHED:
                self._on_free(e, batched_order.get(i, 0))
            elif n == DRAIN:
                self._on_drain(e)
            elif n == BULK:
                if i not in self._unpaired:   # (a call cut in half: replay_windows)
                    self._bulk[e.cpu] = _BulkCall(e)
            elif n == BULK_RET:
                if i not in self._unpaired:
                    self._on_bulk_return(e)
            elif n == RECLAIM or n == RECLAIM_RET:
                self._on_reclaim(e)
            elif n == DECAY:
                self._on_decay(e)
            elif n == REFRESH:
                # refresh_cpu_vm_stats: the CPU's deltas of every zone fold
                # (zone by zone, each before its decay_pcp_high, which only
                # moves its own zone's).
                self.alloc.fold_vm_diffs(e.cpu, self.alloc.zones[-1])
            elif n == ISOLATE:
                if i not in self._unpaired:
                    self._isolating[e.cpu] = e
            elif n == ISOLATE_RET:
                if i not in self._unpaired:
                    self._on_isolated(e)
            elif n == WMARKS:
                self._on_wmarks(e)
            elif n == ISOLATE_RANGE:
                self._compaction_seen = True
                self._on_isolate_range(e)
            elif n == FAST_ISOLATE:
                self._compaction_seen = True
                self._on_fast_isolate(e)
            self._traced_tasks.add((e.cpu, e.pid))
            if e.pfn is not None:
                self._named.add(e.pfn)
            last = self._last_pid.get(e.cpu)
            if last is not None and last != e.pid:
                self._prev_pid[e.cpu] = last
            self._last_pid[e.cpu] = e.pid
            self._note_task(i, e)
            self._cpu_free[e.cpu] = [z.free_pages for z in self.alloc.zones]
            if i in self._takes:
                self._alloc_at_take(self._takes[i])
            if self.after_event is not None:
                self.after_event(i, e)

    def _finish(self, events: Sequence[PageEvent], t0: float) -> ReplayReport:
        rep = self.report
        for cpu in list(self._pending_drain):
            self._close_drain(cpu)
        for e in self._fast_pending.values():
            self._fast_unresolved(e)
        self._fast_pending.clear()
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
        naive = self._naive.predict(self.alloc, req)
        late = self._late_page_for(e)
        if late is not None:
            # This task took the page before it was preempted; the
            # allocations traced since skipped it. Nothing more to predict.
            zp = a.zone_of(late)
            predicted = Outcome(late, e.order, zp.name if zp else None,
                                [Step("pcp_hit", {"cpu": e.cpu, "zone": zp.name if zp else "?",
                                                  "pindex": a.pindex.get((e.order, e.migratetype)),
                                                  "late_trace": True})], [])
            same = False
        else:
            with a.trial():
                predicted = a.allocate(req.cpu, req.order, req.migratetype, req.highest_zoneidx,
                                       req.alloc_flags, req.slow_flags)
                actual_events = self._removal_signature(group)
                same = (predicted.pfn == e.pfn and predicted.events == actual_events)
                if same:
                    a.commit()
        if e.pfn is None:
            rep.failed_allocations += 1
        if late is not None and e.pfn != late:
            # Not this task's page after all: a bulk allocation took it. A
            # page a drain showed gone (no task known) is still gone: no
            # longer predicted, its late trace still its own.
            cpu, pi, pid, rec = self._late.pop(late)
            if pid is None:
                self._late[late] = (cpu, pi, -1, rec)
        # compaction_capture (5.10 L849, 6.1 L989, 6.12 L623, 7.2 L728):
        # direct compaction (order > 0 only) freed a migrated page that
        # completed a free block of the order it compacts for, which
        # __free_one_page handed to the task instead of a free list. The
        # model put it on one: a block it holds free, allocated with no
        # removal event, by a task that freed pages since its last
        # allocation.
        moved = None if group or same or late is not None else self._moved_take(e)
        traced_cpu = e.cpu
        if moved is not None:
            # Its blocks were taken on another CPU, by this task, whose
            # mm_page_alloc (after the take, outside the locks) is traced
            # where the scheduler moved it: applied where it took them.
            group, e = moved[1], dataclasses.replace(e, cpu=moved[0])
        captured = (e.order > 0 and not group and late is None and e.pfn is not None and not same
                    and e.pid in self._freed_since_alloc and a.is_free(e.pfn))
        self._freed_since_alloc.discard(e.pid)
        if not same:
            if late is None:
                self._pcplist_effects(group, e)
            self._apply_removals(group, e.cpu, e)
        actual_path = "capture" if captured else self._actual_path(group, e, predicted)
        if e.pfn is None:
            return
        if a.profile.below_high_flag:
            self._zones_skipped(req, e, captured)
        hit = predicted.pfn == e.pfn
        rep.allocations += 1
        rep.hits += hit
        rep.naive_hits += naive == e.pfn
        if captured:
            rep.captures += 1
        elif predicted.refill is not None or actual_path == "refill":
            rep.refills += 1
            actual_refill = self._removed_pfns(group)
            rep.refills_exact += predicted.refill == actual_refill
        rec = AllocRecord(rep.allocations - 1, traced_cpu, e.order, e.migratetype, e.gfp or "",
                          predicted.pfn, e.pfn, hit, predicted.kind, actual_path,
                          predicted.zone, lineno=e.lineno)
        if self.keep_steps:
            rec.steps = [s.describe() for s in predicted.path]
        if not hit and captured:
            rec.reason = "compaction"
            rep.reasons[rec.reason] += 1
        elif not hit and moved is not None:
            rec.reason = "task_moved_after_take"
            rep.reasons[rec.reason] += 1
        elif not hit:
            rec.reason = self._why(predicted, e, group)
            self._label_miss(rec, e, late, group)
            if rec.reason == "zone" and self._zone_changed_untraced(req, predicted, e):
                rec.reason = "watermarks_untraced"
            elif rec.reason == "zone" and actual_path == "pcp" and self._taken_before_stall(req, predicted, e):
                rec.reason = "take_before_stall"
            rep.reasons[rec.reason] += 1
            if rec.reason == "watermarks_untraced":
                self._zone_skipped(req, predicted, e)
            elif rec.reason in ("zone", "model_failed"):
                self._zone_resync(req, predicted, e)
        rep.records.append(rec)

    def _taken_before_stall(self, req: Request, predicted: Outcome, e: PageEvent) -> bool:
        """A pcp hit the kernel served from a zone the model skipped (below
        its low watermark now), which passed that watermark after the last
        event this CPU traced: the take (``rmqueue_pcplist``, no event) may
        have come then, and the CPU traced nothing more until this
        ``mm_page_alloc`` (a vCPU the host did not run, a task preempted
        between its take and its trace) while other CPUs' allocations took
        the zone below its mark. Its zone check is not in the trace. Only
        where lagging counters cannot explain it: ``zone_page_state`` reads
        ``vm_stat`` plus whichever CPUs' ``vm_stat_diff`` vmstat folded with
        no event, and even with every positive diff folded the zone fails."""
        a = self.alloc
        before = self._cpu_free.get(e.cpu)
        actual = a.zone_of(e.pfn)
        zl = a.zonelist(req.highest_zoneidx)
        chosen = next((z for z in zl if z.name == predicted.zone), None)
        if before is None or actual not in zl or chosen is None \
                or zl.index(actual) >= zl.index(chosen):
            return False
        if a.profile.watermark_lagging_free:
            most = actual.vm_global + sum(d for d in actual.vm_diff if d > 0) \
                + max(actual.vm_pending, 0)
            if a.zone_watermark_ok(actual, e.order, a.wmark(actual, ALLOC_WMARK_LOW),
                                   req.highest_zoneidx, req.alloc_flags, free_pages=most):
                return False
        return a.zone_watermark_ok(actual, e.order, a.wmark(actual, ALLOC_WMARK_LOW),
                                    req.highest_zoneidx, req.alloc_flags,
                                    free_pages=before[actual.index])

    def _alloc_at_take(self, j: int) -> None:
        """Step the allocation traced at event *j* now, at its last removal
        event: its take came before the events traced since."""
        e = self.passes[0][j]
        self._stepped[j] = None
        self._at = e
        n = len(self.report.records)
        self._on_alloc(e)
        self._after_alloc(e)
        if len(self.report.records) > n:
            self._stepped[j] = self.report.records[-1]

    def stepped_at_take(self, j: int) -> Optional[AllocRecord]:
        """The record of the allocation traced at event *j* if it was
        already stepped at its take (its prediction was made then)."""
        return self._stepped.get(j)

    def _pcplist_effects(self, group: List[PageEvent], e: PageEvent) -> None:
        """After a miss: the pcp changes the kernel's ``rmqueue_pcplist``
        made whichever page it found (a pcp order and type: every such
        allocation goes there first; a refill when blocks were taken). The
        model's own attempt, which made them too, was rolled back."""
        a = self.alloc
        if e.pfn is None or (e.order, e.migratetype) not in a.pindex:
            return
        z = a.zone_of(e.pfn)
        if z is None:
            return
        refill = any(g.name == ZONE_LOCKED or g.name == EXTFRAG for g in group)
        a.pcplist_effects(z, e.cpu, e.order, refill)

    def _late_page_for(self, e: PageEvent) -> Optional[int]:
        pindex = self.alloc.pindex.get((e.order, e.migratetype))
        for pfn, (cpu, pi, pid, _) in self._late.items():
            if cpu == e.cpu and pi == pindex and (pid == e.pid or (pid is None and not e.in_interrupt)):
                return pfn
        return None

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
            if removal_for(g, e, strict_mt):
                mine.append(g)
            else:
                rest.append(g)
        if rest:
            self._open[e.cpu] = rest
        else:
            del self._open[e.cpu]
        return mine

    def _moved_take(self, e: PageEvent) -> Optional[Tuple[int, List[PageEvent]]]:
        """After the model's prediction for *e*, which had no removal event
        on its CPU: the removal events held on another CPU, all by *e*'s
        task in task context, whose take is the block *e* got (the task was
        moved between its take and its mm_page_alloc). (cpu, them), taken
        out of what is held there; else None."""
        if e.pfn is None or not e.pid or e.in_interrupt:
            return None
        strict_mt = self.alloc.profile.zone_locked_in_rmqueue
        for cpu, held in self._open.items():
            if cpu == e.cpu or not held or not all(g.pid == e.pid and not g.in_interrupt
                                                   for g in held):
                continue
            mine = [g for g in held if removal_for(g, e, strict_mt)]
            if any(g.name == ZONE_LOCKED and g.pfn == e.pfn for g in mine):
                rest = [g for g in held if g not in mine]
                if rest:
                    self._open[cpu] = rest
                else:
                    del self._open[cpu]
                self.report.moved_takes += 1
                return cpu, mine
        return None

    def _removal_signature(self, group: List[PageEvent]) -> List[tuple]:
        out = []
        for g in group:
            if g.name == ZONE_LOCKED:
                out.append(("zone_locked", g.pfn))
            else:
                out.append(("extfrag", g.pfn, g.fallback_order, bool(g.change_ownership)))
        return out

    def _removed_pfns(self, group: List[PageEvent]) -> List[int]:
        """The blocks a group of removal events took off the buddy, in order:
        each ``mm_page_alloc_zone_locked``, and on 6.12+ each
        ``mm_page_alloc_extfrag`` with none of its own: a claim at or above
        pageblock_order and a steal take their block with no
        ``__rmqueue_smallest`` (6.12 ``try_to_steal_block`` L1973, 7.2
        ``try_to_claim_block`` L2294; ``__rmqueue_steal`` 6.12 L2286, 7.2
        L2434). 5.10/6.1's extfrag names the fallback
        block, then ``__rmqueue_smallest`` traces what is taken."""
        claim = self.alloc.profile.fallback == "claim"
        out: List[int] = []
        seen = set()
        for g in group:
            if g.name == ZONE_LOCKED:
                out.append(g.pfn)
                seen.add(g.pfn)
            elif g.name == EXTFRAG and claim and g.pfn not in seen:
                out.append(g.pfn)
                seen.add(g.pfn)
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
        takes = [g.pfn for g in group if g.name == ZONE_LOCKED]
        if group and len(takes) == len(group) and not self._isolate_traced and (
                self._compaction_seen or self._untraced_isolation or self._kcompactd is not None):
            # rmqueue_bulk takes list heads one after another: blocks the
            # model holds between two of them were not on the kernel's list.
            # With compaction seen at work (its tracepoints, kcompactd, frees
            # of pages the model held free) and its isolation untraced (6.1's
            # fast search has no tracepoint at all), they are its: isolated.
            skipped = a.run_with_gaps(takes, group[0].order, max(2, len(takes) >> 3))
            if skipped and (set(skipped) & self._late.keys() or any(
                    g.name == ZONE_LOCKED and g.pfn in skipped for h in self._open.values() for g in h)):
                skipped = None   # taken by another CPU, its events still held
            if skipped:
                for pfn in skipped:
                    self._take_block(group[0], pfn, group[0].order)
                    a.mark_allocated(pfn, group[0].order, MIGRATE_MOVABLE)
                self.report.contradictions["isolated_untraced_between_takes"] += len(skipped)
                self._isolated_untraced(group[0], skipped)
        if group and a.run_mid_list(takes, group[0].order) and len(takes) == len(group):
            # The kernel took a run of the list from the middle, in list
            # order: its list started there. Something rotated it with no
            # event (compaction's fast free search, move_freelist_head,
            # also where it takes nothing): rotated as it was.
            a.move_freelist_head(takes[0])
            self.report.inferred_rotations += 1
        for k, g in enumerate(group):
            nxt = group[k + 1] if k + 1 < len(group) else None
            # A fallback of this allocation (next to one of its takes; a
            # capture's extfrag, traced from a free, has none), applied where
            # the kernel made it: before the take it is traced after (6.12+
            # claim below pageblock_order), else at the extfrag.
            if g.name == ZONE_LOCKED and nxt is not None and nxt.name == EXTFRAG and nxt.pfn == g.pfn:
                self._fallback_found_lists_empty(nxt)
            elif (g.name == EXTFRAG and nxt is not None and nxt.name == ZONE_LOCKED
                    and not (k and group[k - 1].name == ZONE_LOCKED and group[k - 1].pfn == g.pfn)):
                self._fallback_found_lists_empty(g)
            if g.name == ZONE_LOCKED:
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
            # Read lazily: a block listed twice is on the pcp the second time.
            a.pcp_refill(z.index, e.cpu, pindex,
                         (r for r in removed if not (r in a.on_pcp or a.is_free(r))), e.migratetype)
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
                elif all(x in self._maybe_locked_pfns for x in ahead):
                    # Every page ahead was freed by an interrupt that may
                    # have found the pcp lock taken where no event shows it;
                    # the kernel's pick shows it did: free_one_page, in the
                    # order they were freed (the list has the last first).
                    for x in reversed(ahead):
                        a.pcp_take(x)
                        a.free_to_buddy(z, x, e.order)
                        self._inferred_buddy.add(x)
                    self.report.contradictions["free_to_buddy_pcp_locked_inferred"] += len(ahead)
                    self._last_note = "free_under_pcp_lock"
                else:
                    # Pages ahead of it left with no mm_page_alloc: the bulk
                    # allocator (alloc_pages_bulk) takes pcp heads untraced,
                    # or the task that ran before this one on the CPU took
                    # them and was preempted before its mm_page_alloc (the
                    # one traced last on the CPU, or, when that is this task,
                    # the one traced before this task's run began), or the
                    # trace lost their events (any series: left on the
                    # list, they would be predicted again and again).
                    prev_pid = self._last_pid.get(e.cpu)
                    if prev_pid == e.pid:
                        prev_pid = self._prev_pid.get(e.cpu)
                    taken = 0
                    for stale in list(lst)[:pos]:
                        if self._pushed.get(stale, -1) > since:
                            # Freed after this CPU's last traced allocation:
                            # maybe after this one's take too (traced before
                            # its mm_page_alloc). No event shows it taken:
                            # it stays where it is.
                            continue
                        self._note_stale(stale, e.lineno, taken)
                        a.pcp_take(stale)
                        taken += 1
                        if (a.profile.preemptible_alloc_window and prev_pid is not None
                                and prev_pid != e.pid):
                            self._late[stale] = (e.cpu, pi, prev_pid, self.report.allocations)
                    self.report.contradictions["pcp_pages_taken_untraced"] += taken
                    self._last_note = ("bulk_allocator" if a.profile.bulk_allocator
                                       and not self._bulk_traced else "pcp_taken_untraced")
            a.pcp_take(pfn)
        elif pfn in self._late and self._late[pfn][2] in (e.pid, None, -1):
            # The late mm_page_alloc of a page an earlier miss saw gone
            # (by the task that was preempted; another's refutes the guess).
            _, _, _, rec_index = self._late.pop(pfn)
            self._last_note = "alloc_traced_late"
            self._reclassify(rec_index, "alloc_traced_late")
        elif pfn not in removed:
            if a.is_free(pfn):
                self._take_block(e, pfn, e.order)
                self._last_note = "untraced_buddy_removal"
            else:
                self._contradiction("alloc_of_page_not_free", e, "allocated but not free in the model")
                if (e.cpu, e.pid) not in self._traced_tasks and pfn not in self._named:
                    # The task's first event, of a page the snapshot held
                    # on no list and no event named since: taken before
                    # the pause, traced after it.
                    self._last_note = "alloc_in_flight_at_snapshot"
                elif self._put_back_stale(e, pfn):
                    self._last_note = "pcp_list_order"
                else:
                    self._last_note = "page_not_free_in_model"
        a.mark_allocated(pfn, e.order, e.migratetype)

    def _reclassify(self, index: Optional[int], reason: str) -> None:
        """The earlier miss that skipped a late-traced page: its page was
        taken by that allocation, not by the bulk allocator."""
        rep = self.report
        if index is None or index >= len(rep.records):
            return
        r = rep.records[index]
        if not r.hit and r.reason != reason:
            rep.reasons[r.reason] -= 1
            if not rep.reasons[r.reason]:
                del rep.reasons[r.reason]
            r.reason = reason
            rep.reasons[reason] += 1

    def _after_alloc(self, e: PageEvent) -> None:
        self._last_alloc[e.cpu] = self._index
        if self._late and not e.in_interrupt:
            # A task has one allocation in flight: preempted between its
            # take (get_page_from_freelist) and its trace (the
            # trace_mm_page_alloc __alloc_pages_noprof makes on its way
            # out), it resumes there and traces that allocation before it
            # can start another. Its first mm_page_alloc in task context
            # since settles every guess naming it: the page it was guessed
            # to have taken, or none of them (those pages stay off the list
            # as taken untraced; the kernel handing one out puts them back).
            for pfn in [p for p, v in self._late.items()
                        if v[2] == e.pid and (e.pid or v[0] == e.cpu)]:
                del self._late[pfn]

    def _zones_skipped(self, req: Request, e: PageEvent, captured: bool) -> None:
        """Every zone the kernel passed over for *e*, before the one it was
        served from (all of them when compaction captured its block: the
        first attempts found none), failed its check there, which set
        ZONE_BELOW_HIGH (get_page_from_freelist, 6.12 L3475, 7.2 L3897);
        only a drain's check clears it. (A prediction that missed leaves
        its own checks undone.)"""
        a = self.alloc
        actual = a.zone_of(e.pfn)
        for z in a.zonelist(req.highest_zoneidx):
            if z is actual and not captured:
                break
            if not z.below_high:
                a.set_below_high(z, True)
            self._below_high_known.add(z.index)

    def _take_block(self, e: PageEvent, pfn: int, order: int) -> None:
        """Take the block *pfn* of *order* out of the free lists, splitting
        the free block that holds it as ``expand`` would (halves not taken
        go to the heads of the block's list)."""
        a = self.alloc
        held = a.take_block(pfn, order)
        if held is None:
            if pfn in a.on_pcp:
                a.pcp_take(pfn)
                self._contradiction("buddy_removal_of_pcp_page", e, "taken from the buddy but on a pcp list in the model")
            else:
                self._contradiction("buddy_removal_of_page_not_free", e, "taken from the buddy but not free in the model")
                self._last_note = "page_not_free_in_model"   # (its free was not traced)
        elif held < order:
            # The model held a smaller free block here: the rest was taken too.
            self._contradiction("buddy_removal_larger_than_free_block", e,
                                f"order {order} taken, the model has order {held} free")
            self._last_note = "page_not_free_in_model"

    def _fallback_found_lists_empty(self, g: PageEvent) -> None:
        """A fallback inside an allocation: ``__rmqueue`` falls back only
        after ``__rmqueue_smallest`` found no free block of the requested
        type at the requested order or above (7.2 L2483-L2514; 5.10-6.12
        ``__rmqueue`` likewise), so whatever the model still holds there had
        left the lists with no event (compaction's free page isolation, in a
        trace without its kprobes). Taken off before the fallback applies."""
        a = self.alloc
        z = a.zone_of(g.pfn)
        if z is None or g.alloc_migratetype is None or g.alloc_order is None:
            return
        gone = 0
        for order in range(g.alloc_order, a.nr_orders):
            for pfn in a.free_list(z.index, order, g.alloc_migratetype):
                a.take_block(pfn, order)
                gone += 1 << order
        if gone:
            self.report.contradictions["free_pages_gone_before_fallback"] += gone

    def _steal_fallback(self, g: PageEvent) -> None:
        """5.10/6.1: apply ``steal_suitable_fallback`` to the fallback block
        the extfrag event names; ``change_ownership`` says if it was claimed."""
        if not self.alloc.steal_fallback(g.pfn, g.fallback_order, g.alloc_migratetype,
                                         bool(g.change_ownership)):
            self._contradiction("extfrag_block_not_free", g, "fallback block not free in the model")

    def _claim_block(self, g: PageEvent) -> None:
        """6.12+: a claim below pageblock_order moved the block's free pages
        to the start type and retyped the block, before its zone_locked."""
        self.alloc.claim_block(g.pfn, g.alloc_migratetype)

    def _claim_or_steal_big(self, g: PageEvent) -> None:
        """6.12+ extfrag with no zone_locked: a claim at or above
        pageblock_order, or a steal (remainders stay on the fallback lists)."""
        a = self.alloc
        z = a.zone_of(g.pfn)
        if z is None:
            self._contradiction("pfn_outside_zones", g, "is in no zone of the snapshot")
            return
        if g.change_ownership and g.fallback_order >= a.pageblock_order:
            if not a.claim_whole_block(g.pfn, g.fallback_order, g.alloc_order,
                                       g.alloc_migratetype):
                self._contradiction("extfrag_block_not_free", g, "claimed block not free in the model")
            return
        self._take_block(g, g.pfn, g.alloc_order)

    # -- frees ---------------------------------------------------------------------
    def _on_contig_free(self, e: PageEvent, chunks: Optional[List[Tuple[int, int]]]) -> None:
        """One page of a ``__free_contig_range`` run: traced now; the run is
        committed at its last page, chunk by chunk, on that CPU."""
        self._check_freed(e, e.pfn, 0)
        if chunks is None:
            return
        a = self.alloc
        window = _DrainWindow("free", e.pid, [])
        for pfn, order in chunks:
            a.forget_allocated(pfn, order)
            try:
                window.predicted += a.free(e.cpu, pfn, order, apply_drain=False)
            except ModelError as err:
                raise ReplayError(f"line {e.lineno}: {err}") from None
            self._index += 1
            self._note_pcp_free(window, e.cpu, pfn)
        self._pending_drain[e.cpu] = window

    def _note_pcp_free(self, window: _DrainWindow, cpu: int, pfn: int) -> None:
        """After a free: if it went to a pcp list, its sequence number, and
        the pcp and count the drain window needs."""
        a = self.alloc
        where = a.on_pcp.get(pfn)
        if where is None:
            return
        self._pushed[pfn] = self._index
        zi, c, _ = where
        window.pcp = (zi, c)
        window.count = a.zones[zi].pcp[c].count

    def _on_free_to_buddy(self, e: PageEvent) -> None:
        """A free whose ``pcp_spin_trylock`` failed: ``free_one_page``."""
        a = self.alloc
        self._check_freed(e, e.pfn, e.order)
        z = a.zone_of(e.pfn)
        if z is None:
            raise ReplayError(f"line {e.lineno}: pfn {e.pfn:#x} is in no zone of the snapshot")
        a.free_to_buddy(z, e.pfn, e.order)
        self._index += 1
        self.report.contradictions["free_to_buddy_pcp_locked"] += 1

    def _check_freed(self, e: PageEvent, pfn: int, order: int) -> None:
        a = self.alloc
        if pfn in a.on_pcp:
            # Freed while the model holds it on a pcp list: it left untraced
            # (bulk allocator) or through a path the model missed.
            a.pcp_take(pfn)
            self._contradiction("free_of_pcp_page", e, "freed but on a pcp list in the model")
        elif a.is_free(pfn):
            # Freed while the model holds it free: taken off the lists with
            # no event (compaction isolation, page reporting) and given back.
            self._take_block(e, pfn, order)
            if pfn in self._inferred_buddy:
                # Replay's own guess (free_under_pcp_lock) was wrong: the
                # page had been handed out with no event, not freed to the
                # buddy. Not compaction's.
                self._contradiction("free_of_page_inferred_on_buddy", e,
                                    "freed but put on the buddy by replay's inference")
            else:
                self._contradiction("free_of_free_page", e, "freed but already free in the model")
                self._freed_while_free(e, pfn)

    def _on_free(self, e: PageEvent, order: int) -> None:
        a = self.alloc
        pfn = e.pfn
        self._check_freed(e, pfn, order)
        self._inferred_buddy.discard(pfn)
        if id(e) in self._maybe_locked:
            self._maybe_locked_pfns.add(pfn)
        else:
            self._maybe_locked_pfns.discard(pfn)
        try:
            drain = a.free(e.cpu, pfn, order, apply_drain=False)
        except ModelError as err:
            raise ReplayError(f"line {e.lineno}: {err}") from None
        self._index += 1
        window = _DrainWindow("free", e.pid, drain)
        self._note_pcp_free(window, e.cpu, pfn)
        self._pending_drain[e.cpu] = window

    def _on_drain(self, e: PageEvent) -> None:
        a = self.alloc
        pd = self._pending_drain.get(e.cpu)
        where = a.on_pcp.get(e.pfn)
        if pd is not None and pd.kind == "free" and (
                pd.pid != e.pid or pd.pcp is None
                or (where is not None and where[:2] != pd.pcp)):
            # Another task's drain (a kworker's vmstat refresh scheduled in
            # right after the free), or after a free that went to the buddy,
            # or of another pcp than the free's (drain_all_pages, e.g.
            # kcompactd_do_work's after its frees): not that free's. Its
            # own window is over.
            self._close_drain(e.cpu)
            pd = None
        elif pd is not None and pd.kind == "vmstat" and pd.pcp is not None and where is not None \
                and where[:2] != pd.pcp and pd.actual:
            # drain_all_pages drains each CPU's pcp in turn, all from the
            # CPU that called it (drain_pages_zone, 6.1+): the next one's.
            self._close_drain(e.cpu)
            pd = None
        elif pd is not None and pd.kind == "vmstat" and self._decay_traced and not pd.predicted \
                and not pd.actual and pd.high is not None:
            # A traced decay_pcp_high that drains nothing, then a drain by
            # the same kworker: drain_all_pages' work (drain_local_pages),
            # not the decay's. The decay's window is over.
            self._pending_drain.pop(e.cpu)
            pd = None
        if pd is None:
            pd = self._pending_drain[e.cpu] = self._vmstat_window(e)
        if pd.kind == "vmstat":
            self.report.unprompted_drains += 1
        # (The model's list of the page: 6.12+ trace the pageblock's type
        # at the drain, not the list's.)
        pd.actual.append((e.pfn, e.order, e.migratetype, where[2] if where else None))
        pd.migrated = id(e) in self._migrated_after
        pfn = e.pfn
        z = a.zone_of(pfn)
        if z is None:
            self._contradiction("pfn_outside_zones", e, "is in no zone of the snapshot")
            return
        if pfn in a.on_pcp:
            a.pcp_take(pfn)
        elif a.is_free(pfn):
            self._take_block(e, pfn, e.order)
            self._contradiction("drain_of_free_page", e, "drained but free in the model")
        else:
            self._contradiction("drain_of_page_not_on_pcp", e, "drained but not on a pcp list in the model")
        a.free_one_page(z, pfn, e.order, e.migratetype)

    def _vmstat_window(self, e: PageEvent) -> _DrainWindow:
        """The first drain event with no pcp free of its task before it:
        predict the whole drain from the pcp that holds the page, before any
        of it is applied. Its own CPU's pcp: vmstat's ``decay_pcp_high``
        (6.12+; the kworker of that CPU); another CPU's: ``drain_pages_zone``
        of ``drain_all_pages``, which 6.x runs from the caller's CPU."""
        a = self.alloc
        window = _DrainWindow("vmstat", e.pid, [])
        where = a.on_pcp.get(e.pfn)
        if where is None or not a.profile.pcp_high_decays:
            return window
        zi, cpu, _ = where
        z = a.zones[zi]
        pcp = z.pcp[cpu]
        window.pcp, window.count = (zi, cpu), pcp.count
        with a.trial():
            if cpu == e.cpu and not self._decay_traced:
                window.predicted = a.vmstat_drain(z, pcp)
                window.high = pcp.high
            if not window.predicted:
                # Another CPU's pcp, or a decay that cannot drain (pcp->high
                # at high_min): drain_pages_zone (drain_all_pages, or
                # compaction's drain_local_pages).
                window.high = None
                window.predicted = a.drain_pages_zone(z, pcp)
        return window

    def _close_drain(self, cpu: int) -> None:
        w = self._pending_drain.pop(cpu)
        rep = self.report
        exact = [p[:2] for p in w.predicted] == [x[:2] for x in w.actual]
        if w.kind == "vmstat":
            if not (w.predicted or w.actual):
                return   # a traced decay_pcp_high that drained nothing
            rep.vmstat_drains += 1
            rep.vmstat_drains_exact += exact
            self._vmstat_resync(w, exact)
            return
        if not exact and w.migrated and self._cut_at_chunk(w):
            rep.migrated_drains += 1
            exact = True
        if not exact and w.pcp is not None and self._emptied(w):
            # drain_local_pages right after the free (compaction's
            # lru_add_drain_cpu_zone once its migration scanner leaves a
            # block it migrated from: 6.1 L2458, 7.2 L2765): the whole pcp,
            # which no event announces. The free's own commit is what the
            # drain starts with; nothing to infer about pcp->high.
            # Not scored as the free's drain, which it is not; the free
            # before it says nothing of the next one.
            rep.whole_drains += 1
            self._last_free.pop(w.pcp, None)
            return
        if w.predicted or w.actual:
            rep.drains += 1
            rep.drains_exact += exact
        if not exact and w.pcp is not None:
            self._lists_drained_past(w)
        if w.pcp is not None and bool(w.actual) != bool(w.predicted):
            self._resync_free_drain(w)
        if w.pcp is not None and w.actual:
            # Its commit's check once the drain is done, as other CPUs'
            # allocations in between saw the flag.
            self.alloc.below_high_check(self.alloc.zones[w.pcp[0]])
            self._below_high_known.discard(w.pcp[0])
        if w.pcp is not None:
            # (count after the free, the model's high fits it, the kernel drained)
            self._last_free[w.pcp] = (w.count, not w.predicted, bool(w.actual))

    def _lists_drained_past(self, w: _DrainWindow) -> None:
        """``free_pcppages_bulk`` (6.1 L1574, 6.12 L1218, 7.2 L1459) takes
        one list's pages from its tail until the list is empty or it has
        sent enough, and only then turns to another: where the kernel's
        drain left a list for another within one call (7.2 frees in calls
        of batch pages), pages the model still holds on the first were not
        on the kernel's. They were taken with no event yet: a task took
        them and was interrupted or preempted before its mm_page_alloc (the
        drain ran in between). Off the model's list; the next allocation
        from that list on that CPU is predicted to be that one's trace."""
        a = self.alloc
        if a.profile.pcp_free_batch == "batch" or len(w.actual) < 2:
            return
        zi, cpu = w.pcp
        pcp = a.zones[zi].pcp[cpu]
        chunk = pcp.batch if a.profile.drain_in_batch_chunks else None
        pages, left = 0, set()
        for (_, o0, _, i0), (_, _, _, i1) in zip(w.actual, w.actual[1:]):
            pages += 1 << o0
            if chunk is not None and pages >= chunk:
                pages = 0   # the next call starts again at the free's list
                continue
            if i0 is not None and i1 is not None and i0 != i1:
                left.add(i0)
        for pindex in sorted(left):
            # One task has one allocation in flight: one page. More left on
            # the list is the model's list gone wrong, not this.
            if len(pcp.lists[pindex]) == 1:
                pfn = pcp.lists[pindex][0]
                a.pcp_take(pfn)
                self._late[pfn] = (cpu, pindex, None, None)
                self.report.contradictions["pcp_pages_gone_at_drain"] += 1

    def _emptied(self, w: _DrainWindow) -> bool:
        """Whether the kernel's drain after a free sent back every page the
        pcp held (its count after the free), more than the model foresaw."""
        return (len(w.actual) > len(w.predicted)
                and sum(1 << x[1] for x in w.actual) == w.count > 0)

    def _cut_at_chunk(self, w: _DrainWindow) -> bool:
        """Whether the kernel's drain is the model's cut after one of its
        ``free_pcppages_bulk`` chunks (of ``min(to_free, batch)`` pages, an
        order-k page counting 1 << k; 7.2 free_frozen_page_commit L2885):
        what it sends back when the task is found on another CPU (L2904)."""
        n = len(w.actual)
        if not n or n >= len(w.predicted) or w.pcp is None \
                or [p[:2] for p in w.predicted[:n]] != [x[:2] for x in w.actual]:
            return False
        batch = self.alloc.zones[w.pcp[0]].pcp[w.pcp[1]].batch
        pages = 0
        for k, (_, order, _) in enumerate(w.predicted[:n], 1):
            pages += 1 << order
            if pages >= batch:
                if k == n:
                    return True
                pages = 0
        return False


def replay(snapshot: Snapshot, events: Iterable[PageEvent], profile: Optional[Profile] = None,
           strict: bool = False, keep_steps: bool = False,
           events_enabled: Optional[Iterable[str]] = None,
           skip_bad: Optional[bool] = None) -> ReplayReport:
    """Score the model against *events* (kmem page events after *snapshot*,
    in total order). See the module docstring. *events_enabled*: what the
    recording traced (a fixture's provenance), when known. An event the
    snapshot cannot take is skipped and counted (``skipped_lines``) unless
    *strict*, or *skip_bad* is False (then it raises :class:`ReplayError`)."""
    return Replayer(snapshot, profile, strict, keep_steps, events_enabled=events_enabled,
                    skip_bad=skip_bad).run(list(events))
