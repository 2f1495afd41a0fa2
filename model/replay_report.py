"""
Replay report
-------------

What :func:`~buddyscope.model.replay.replay` found: per allocation the
prediction and the kernel's outcome (:class:`AllocRecord`), the totals
(:class:`ReplayReport`), what each miss reason means, and the report as text.

Pure Python: imports neither drgn nor textual.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from buddyscope.model.snapshot import Snapshot

if TYPE_CHECKING:
    from buddyscope.model.allocator import Allocator
    from buddyscope.model.request import Request

__all__ = ("REASONS", "AllocRecord", "NaivePredictor", "ReplayReport", "format_report")

#: Skipped lines a report keeps (it counts them all).
MAX_SKIPPED_KEPT = 100


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
    #: Groups of drain events with no pcp free of the same task before them,
    #: scored against ``decay_pcp_high`` (own CPU) or ``drain_pages_zone``
    #: (another CPU's pcp, ``drain_all_pages``).
    vmstat_drains: int = 0
    vmstat_drains_exact: int = 0
    #: Free drains the model did not foresee because pcp->high had decayed
    #: with no event (vmstat ``decay_pcp_high`` that drained nothing): pcp->high
    #: was brought down to the count the kernel drained at.
    silent_decays: int = 0
    #: Free drains below what the model's pcp->high allowed, explained by
    #: kswapd's reclaim window in a trace without its kprobe events.
    inferred_reclaim: int = 0
    #: Free drains the kernel cut at a batch-sized chunk because the task
    #: was migrated to another CPU (7.2 free_frozen_page_commit), scored on
    #: the chunks it ran.
    migrated_drains: int = 0
    #: Allocations of a block compaction captured for the task
    #: (``compaction_capture``): no refill, no removal; not scored as refills.
    captures: int = 0
    #: Drains after a free that emptied the pcp (``drain_local_pages``:
    #: compaction's ``lru_add_drain_cpu_zone``), which no event announces:
    #: not free drains, not scored.
    whole_drains: int = 0
    #: Free pages compaction took off the lists (__isolate_free_page events).
    isolated_pages: int = 0
    #: Free lists replay found rotated untraced: a refill took a run of
    #: one from its middle, in list order.
    inferred_rotations: int = 0
    #: Allocations whose blocks were taken on another CPU than the one
    #: their mm_page_alloc was traced on (the task was moved in between).
    moved_takes: int = 0
    #: Fast free searches (mm_compaction_fast_isolate_freepages, no kprobes)
    #: whose block and list rotations replay worked out and applied.
    fast_searches_resolved: int = 0
    #: Zone counts replay moved to what the kernel's zone choice showed
    #: (``zone`` misses within what lagging counters hide).
    counter_resyncs: int = 0
    #: setup_per_zone_wmarks events applied (watermarks set anew).
    watermark_changes: int = 0
    #: Zones the kernel found below a watermark the model had them above,
    #: in a trace without setup_wmarks events: watermarks raised to match.
    inferred_watermarks: int = 0
    naive_hits: int = 0
    #: Bulk allocator calls seen through its kprobe events, and the pcp
    #: pages they took.
    bulk_calls: int = 0
    bulk_pages: int = 0
    contradictions: "collections.Counter[str]" = dataclasses.field(default_factory=collections.Counter)
    reasons: "collections.Counter[str]" = dataclasses.field(default_factory=collections.Counter)
    records: List[AllocRecord] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    #: Lines skipped without --strict: unreadable lines of kmem page events
    #: (the parser's) and events this snapshot cannot take (a CPU or PFN it
    #: does not have). How many, and the first MAX_SKIPPED_KEPT as
    #: (line number, why).
    skipped: int = 0
    #: Stretches of the trace whose kprobe events are missing, as (kind, cpu,
    #: first line, last line): "bulk" or "compaction", a call cut in half
    #: (kprobes enabled or lost mid-run); "compaction", kcompactd at work or
    #: pages freed that compaction had isolated with no event
    #: (:mod:`~buddyscope.model.replay_windows`).
    windows: List[Any] = dataclasses.field(default_factory=list)
    skipped_lines: List[Tuple[int, str]] = dataclasses.field(default_factory=list)

    def skip_line(self, lineno: int, why: str) -> None:
        """Count a line that was skipped, keeping the first ones."""
        self.skipped += 1
        if len(self.skipped_lines) < MAX_SKIPPED_KEPT:
            self.skipped_lines.append((lineno, why.removeprefix(f"line {lineno}: ")))

    def add_skipped(self, count: int, lines: List[Tuple[int, str]]) -> None:
        """Count *count* lines skipped elsewhere (the parser's), *lines* the
        first of them, keeping the first ones of all by line number."""
        self.skipped += count
        lines = [(n, why.removeprefix(f"line {n}: ")) for n, why in lines]
        self.skipped_lines = sorted(self.skipped_lines + lines)[:MAX_SKIPPED_KEPT]

    @property
    def accuracy(self) -> float:
        return self.hits / self.allocations if self.allocations else 1.0

    @property
    def naive_accuracy(self) -> float:
        return self.naive_hits / self.allocations if self.allocations else 0.0

    def misses(self) -> List[AllocRecord]:
        return [r for r in self.records if not r.hit]

    @property
    def longest_miss_run(self) -> int:
        """The most allocations missed one after another: a cascade shows
        here, whatever the misses' labels."""
        run = best = 0
        for r in self.records:
            run = 0 if r.hit else run + 1
            best = max(best, run)
        return best

    def to_dict(self, records: bool = True) -> Dict[str, Any]:
        d = {
            "kernel": self.kernel, "profile": self.profile, "events": self.events,
            "allocations": self.allocations, "hits": self.hits,
            "accuracy": round(self.accuracy, 6), "longest_miss_run": self.longest_miss_run,
            "naive_hits": self.naive_hits, "naive_accuracy": round(self.naive_accuracy, 6),
            "failed_allocations": self.failed_allocations,
            "refills": self.refills, "refills_exact": self.refills_exact,
            "drains": self.drains, "drains_exact": self.drains_exact,
            "unprompted_drains": self.unprompted_drains,
            "vmstat_drains": self.vmstat_drains, "vmstat_drains_exact": self.vmstat_drains_exact,
            "silent_decays": self.silent_decays, "inferred_reclaim": self.inferred_reclaim,
            "migrated_drains": self.migrated_drains, "whole_drains": self.whole_drains,
            "captures": self.captures,
            "isolated_pages": self.isolated_pages, "watermark_changes": self.watermark_changes,
            "inferred_watermarks": self.inferred_watermarks,
            "counter_resyncs": self.counter_resyncs, "inferred_rotations": self.inferred_rotations,
            "fast_searches_resolved": self.fast_searches_resolved,
            "moved_takes": self.moved_takes,
            "bulk_calls": self.bulk_calls, "bulk_pages": self.bulk_pages,
            "contradictions": dict(self.contradictions), "miss_reasons": dict(self.reasons),
            "skipped": self.skipped,
            "windows": [{"kind": k, "cpu": c, "first_line": a, "last_line": b}
                        for k, c, a, b in self.windows],
            "skipped_lines": [{"line": n, "why": why} for n, why in self.skipped_lines],
        }
        if records:
            d["records"] = [r.to_dict() for r in self.records]
        return d


class NaivePredictor:
    """The naive predictor the model is measured against (the report's
    ``naive_hits``): the head of the matching list in the snapshot (the pcp
    list for pcp orders, else the lowest non-empty free list of the
    migratetype, preferred zone), popping heads only: no refills, splits,
    frees or merges."""

    def __init__(self, snapshot: Snapshot):
        lists: Dict[tuple, "collections.deque[int]"] = {}
        for zi, z in enumerate(snapshot.zones):
            for p in z.pcp:
                for pindex, pfns in enumerate(p.lists or []):
                    lists[(zi, p.cpu, pindex)] = collections.deque(pfns)
            for o, area in enumerate(z.free_area):
                for mt, pfns in enumerate(area.free_list or []):
                    lists[(zi, o, mt, "buddy")] = collections.deque(pfns)
        self._lists = lists

    def predict(self, a: "Allocator", req: "Request") -> Optional[int]:
        """The PFN it predicts for *req*, resolved against *a*'s kernel."""
        z = a.zonelist(req.highest_zoneidx)[0]
        pindex = a.pindex.get((req.order, req.migratetype))
        if pindex is not None:
            lst = self._lists.get((z.index, req.cpu, pindex))
            return lst.popleft() if lst else None
        for o in range(req.order, a.nr_orders):
            lst = self._lists.get((z.index, o, req.migratetype, "buddy"))
            if lst:
                return lst.popleft()
        return None


#: What each miss reason means, for the report.
REASONS = {
    "bulk_allocator": "pcp pages ahead of it left with no mm_page_alloc (alloc_pages_bulk, "
                      "e.g. vmalloc'd kernel stacks at fork): a state change no event shows",
    "pcp_taken_untraced": "pcp pages ahead of it left with no event although no bulk allocator "
                          "call went untraced: a task preempted between its take and its "
                          "mm_page_alloc (7.2), an event the trace lost, or the model's list order",
    "alloc_traced_late": "another task took the page ahead and was preempted before its "
                         "mm_page_alloc (7.2 is PREEMPT_LAZY): traced after this one",
    "free_traced_before_alloc": "frees traced between its take and its mm_page_alloc "
                                "(an interrupt or softirq freeing in between)",
    "free_under_pcp_lock": "the pcp pages ahead of it were freed by an interrupt whose preempt "
                           "count shows the task it interrupted may have held this pcp lock, "
                           "where no event is traced under it (free_frozen_page_commit, "
                           "rmqueue_pcplist without a refill): their trylock failed, they went "
                           "to the buddy",
    "task_moved_after_take": "taken on another CPU (its removal events are held there, by its "
                             "task) and traced where the scheduler moved the task before its "
                             "mm_page_alloc: predicted for the CPU it was traced on",
    "other_pcp_list": "the block was on another CPU's or list's pcp in the model "
                      "(the task moved between CPUs around the event)",
    "alloc_in_flight_at_snapshot": "the task's first event, of a block on no list of the "
                                   "snapshot: taken before the pause, traced after it",
    "page_not_free_in_model": "the block was not free in the model: it was freed or moved by "
                              "a path with no event, or an earlier event was misattributed",
    "untraced_buddy_removal": "taken from the buddy with no mm_page_alloc_zone_locked",
    "pcp_list_order": "the pcp list order differs from the kernel's (the kernel handed out a "
                      "page replay had taken as gone untraced: put back, with those behind it)",
    "buddy_list_order": "the free list order differs from the kernel's (compaction and page "
                        "reporting reorder lists with no event)",
    "pcp_empty_in_kernel": "the model had pcp pages, the kernel refilled: pages left untraced",
    "pcp_nonempty_in_kernel": "the model's pcp list was empty, the kernel's was not",
    "zone": "served from another zone (watermarks use lagging counters)",
    "take_before_stall": "a pcp hit from a zone below its low watermark when traced, which was "
                         "above it at this CPU's previous event: the take (no event) came "
                         "before other CPUs took the zone below, and this CPU traced nothing "
                         "until its mm_page_alloc (a stalled vCPU or a preempted task)",
    "watermarks_untraced": "served from another zone although the model's zone passed its low "
                           "watermark by more than lagging counters hide: its watermarks were "
                           "raised with no event (min_free_kbytes, e.g. THP turned on; a trace "
                           "without the setup_wmarks kprobe event)",
    "fallback": "a fallback (steal/claim) the model took differently; claim thresholds read "
                "PageLRU, which no event shows",
    "model_failed": "the model found no page (reclaim and compaction are not modelled)",
    "compaction": "the predicted block lies in a pageblock where compaction took free pages "
                  "with no event (a trace without the isolate_free_page kprobe events): the "
                  "trace frees pages there the model holds free, or a compaction tracepoint "
                  "took pages there it does not name; or the block came from compaction_capture",
}


def format_report(rep: ReplayReport, misses: int = 20) -> str:
    """The replay report as text."""
    pct = lambda n, d: f"{100.0 * n / d:.2f} %" if d else "n/a"  # noqa: E731
    lines = [
        f"kernel {rep.kernel}  profile {rep.profile}  {rep.events} events  "
        f"replayed in {rep.seconds:.2f} s",
        f"allocations      {rep.allocations:7}   exact PFN hits {rep.hits:7}   "
        f"accuracy {pct(rep.hits, rep.allocations)}   longest miss run {rep.longest_miss_run}",
        f"naive predictor  {'':7}   exact PFN hits {rep.naive_hits:7}   "
        f"accuracy {pct(rep.naive_hits, rep.allocations)}   (snapshot list heads, popping only)",
        f"pcp refills      {rep.refills:7}   exact sets     {rep.refills_exact:7}   "
        f"{pct(rep.refills_exact, rep.refills)}   ({rep.captures} blocks compaction captured "
        f"for the task: no refill)",
        f"pcp drains       {rep.drains:7}   exact sets     {rep.drains_exact:7}   "
        f"{pct(rep.drains_exact, rep.drains)}   ({rep.silent_decays} after a pcp->high decay "
        f"no event shows, {rep.inferred_reclaim} in a kswapd reclaim window no event shows, "
        f"{rep.migrated_drains} cut short when the task moved to another CPU; "
        f"not counted: {rep.whole_drains} that emptied the pcp right after a free, "
        f"drain_local_pages)",
        f"vmstat drains    {rep.vmstat_drains:7}   exact sets     {rep.vmstat_drains_exact:7}   "
        f"{pct(rep.vmstat_drains_exact, rep.vmstat_drains)}   ({rep.unprompted_drains} drain "
        f"events with no free of their task before them: decay_pcp_high, drain_all_pages)",
    ]
    if rep.bulk_calls:
        lines.append(f"bulk allocator   {rep.bulk_calls:7} calls took {rep.bulk_pages} pcp pages "
                     "(alloc_pages_bulk kprobe events)")
    if rep.failed_allocations:
        lines.append(f"failed allocations in the trace: {rep.failed_allocations}")
    if rep.reasons:
        lines.append("misses by reason:")
        for reason, n in rep.reasons.most_common():
            lines.append(f"  {n:6}  {reason}: {REASONS.get(reason, '')}")
    if rep.skipped:
        lines.append(f"skipped lines    {rep.skipped:7}   (unreadable, or not of this snapshot; "
                     "--strict stops at the first)")
        for n, why in sorted(rep.skipped_lines)[:misses]:
            lines.append(f"  line {n}: {why}")
        if rep.skipped > min(len(rep.skipped_lines), misses):
            lines.append(f"  ... and {rep.skipped - min(len(rep.skipped_lines), misses)} more")
    if rep.windows:
        kinds = collections.Counter(w[0] for w in rep.windows)
        lines.append("windows with kprobe events missing: " + ", ".join(
            f"{n} {k} (first at line {min(w[2] for w in rep.windows if w[0] == k)})"
            for k, n in sorted(kinds.items())))
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
