"""
Replay: stretches of a trace whose kprobe events are missing
-------------------------------------------------------------

A user's own recording (trace-cmd with the kmem tracepoints) has none of
``record``'s kprobe events, and a recording whose kprobes were enabled late
or lost events has some calls cut in half. What such a trace still shows:

- a kprobe call cut in half: an ``alloc_pages_bulk`` or ``isolate_free_page``
  entry with no return on its CPU before the next entry (or the trace's end),
  or a return with no entry before it. The half is not applied (a stale
  entry would swallow the CPU's later refills, or pair with a later call's
  return); the stretch is marked in the report (``windows``), and a miss in it
  that pcp pages left untraced explains is labelled ``bulk_allocator``.
- compaction's free page isolation (``isolate_freepages_block`` takes free
  blocks off the lists with no kmem event) with no isolate events: the
  isolated pages come back as frees of pages the model holds free. Each such
  free marks a ``compaction`` window, and a miss whose predicted block lies in
  a pageblock where that happened, before or after, is labelled
  ``compaction``. Events of kcompactd (its task name) mark windows too.

Pure Python: imports neither drgn nor textual.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Set, Tuple

from buddyscope.model.events import (
    ALLOC_PAGES_BULK, ALLOC_PAGES_BULK_RET, ISOLATE_EVENTS, MM_PAGE_ALLOC, MM_PAGE_ALLOC_ZONE_LOCKED,
)
from buddyscope.model.ftrace import PageEvent

__all__ = ("WindowEvents", "unpaired_calls")

ISOLATE, ISOLATE_RET = ISOLATE_EVENTS
#: kprobe entry event -> its return event, and the window kind each marks.
_PAIRS = {ALLOC_PAGES_BULK: (ALLOC_PAGES_BULK_RET, "bulk"), ISOLATE: (ISOLATE_RET, "compaction")}
_RETURNS = {ret: (entry, kind) for entry, (ret, kind) in _PAIRS.items()}
#: Misses whose cause is the zone's watermark (``zone``: served from a later
#: zone), or the model holding fewer free pages than the kernel
#: (``model_failed``): not what pages isolated untraced explain.
_NOT_COMPACTION = ("zone", "model_failed")
#: Events of a kcompactd task more than this many events apart start a new window.
KCOMPACTD_GAP = 64


def unpaired_calls(events: Sequence[PageEvent]) -> Tuple[Set[int], List[Tuple[str, int, int, int]]]:
    """The indices of kprobe entry and return events with no partner on
    their CPU (an entry, then the next of the pair on that CPU is not its
    return; a return with no entry since the last return), and the windows
    they leave unknown: (kind, cpu, first line, last line)."""
    unpaired: Set[int] = set()
    windows: List[Tuple[str, int, int, int]] = []
    #: (kind, cpu) -> (index, event) of the open entry, or of the last return
    last: Dict[Tuple[str, int], Tuple[int, PageEvent]] = {}
    first_line = events[0].lineno if events else 0
    for i, e in enumerate(events):
        n = e.name
        if n in _PAIRS:
            kind = _PAIRS[n][1]
            prev = last.get((kind, e.cpu))
            if prev is not None and prev[1].name == n:
                # The entry before had no return: its call is cut.
                unpaired.add(prev[0])
                windows.append((kind, e.cpu, prev[1].lineno, e.lineno))
            last[(kind, e.cpu)] = (i, e)
        elif n in _RETURNS:
            entry, kind = _RETURNS[n]
            prev = last.get((kind, e.cpu))
            if prev is None or prev[1].name != entry:
                unpaired.add(i)
                windows.append((kind, e.cpu, prev[1].lineno if prev else first_line, e.lineno))
            last[(kind, e.cpu)] = (i, e)
    end = events[-1].lineno if events else 0
    for (kind, cpu), (i, e) in last.items():
        if e.name in _PAIRS:
            unpaired.add(i)
            windows.append((kind, cpu, e.lineno, end))
    return unpaired, sorted(windows, key=lambda w: (w[2], w[1]))


class WindowEvents:
    """Mixed into :class:`~buddyscope.model.replay.Replayer`: the windows of
    missing kprobe events, and the labels they explain."""

    def _start_windows(self, events: Sequence[PageEvent]) -> None:
        self._unpaired, windows = unpaired_calls(events)
        self._cut_windows = windows
        self.report.windows.extend(windows)
        #: Misses not (yet) labelled compaction.
        self._missed: List = []
        self._bulk_windows = {(c, a, b) for k, c, a, b in windows if k == "bulk"}
        #: Compaction isolated pages with no isolate event: the trace did
        #: not trace __isolate_free_page at all (or lost some calls).
        self._isolate_traced = ISOLATE in self._enabled or any(e.name == ISOLATE for e in events)
        #: pageblock number -> lines of frees of pages the model held free
        self._untraced_isolation: Dict[int, int] = {}
        #: zone index -> the lowest min_pfn of a fast free search whose
        #: block is not known (see _fast_unresolved).
        self._fast_floor: Dict[int, int] = {}
        self._kcompactd: Optional[List[int]] = None
        #: pfn -> (line, position, (zone index, cpu, pindex), migratetype) of
        #: a pcp page replay took off its list with no event, none naming it since
        self._stale: Dict[int, Tuple[int, int, Tuple[int, int, int], int]] = {}
        #: (cpu, pid) -> line of the task's last mm_page_alloc in task context
        self._task_alloc: Dict[Tuple[int, int], int] = {}
        self._kcompactd_at = -KCOMPACTD_GAP - 1

    def _bulk_untraced(self, e: PageEvent) -> bool:
        """The bulk allocator may have run on *e*'s CPU with no event."""
        return self.alloc.profile.bulk_allocator and (not self._bulk_traced or any(
            c == e.cpu and a <= e.lineno <= b for c, a, b in self._bulk_windows))

    # -- a recovery the kernel refutes --------------------------------------------
    def _note_stale(self, pfn: int, lineno: int, k: int) -> None:
        """Replay is about to take *pfn* off its pcp list with no event (the
        *k*-th page ahead of the block the kernel handed out at *lineno*):
        remember where it stood."""
        a = self.alloc
        self._stale[pfn] = (lineno, k, a.on_pcp[pfn], a.pcp_mt.get(pfn, 0))

    def _put_back_stale(self, e: PageEvent, pfn: int) -> bool:
        """The kernel hands out *pfn*, a page replay took off the pcp list
        untraced: the pages were not gone, the model's list order was not
        the kernel's. The pages taken with it from behind it that no event
        has named since go back to the head of their list, in order."""
        took = self._stale.pop(pfn, None)
        if took is None:
            return False
        self._late.pop(pfn, None)
        lineno, k, where, _ = took
        if where[1] != e.cpu:
            return True
        back = sorted((v[1], p, v[3]) for p, v in self._stale.items()
                      if v[0] == lineno and v[1] > k and v[2] == where)
        if back:
            for _, p, _ in back:
                del self._stale[p]
                self._late.pop(p, None)
            self.alloc.pcp_put_back(*where, [p for _, p, _ in back], [mt for _, _, mt in back])
        return True

    def _note_task(self, i: int, e: PageEvent) -> None:
        """kcompactd at work (its own events, the frees of the pages it
        migrated): a compaction window, by its task name. And each task's
        last allocation in task context, per CPU."""
        if self._stale and e.pfn in self._stale:
            del self._stale[e.pfn]   # named by an event: no longer replay's guess
        if e.name == MM_PAGE_ALLOC and not e.in_interrupt:
            self._task_alloc[(e.cpu, e.pid)] = e.lineno
        if not e.comm.startswith("kcompactd"):
            return
        w = self._kcompactd
        if w is None or i - self._kcompactd_at > KCOMPACTD_GAP:
            w = self._kcompactd = ["compaction", e.cpu, e.lineno, e.lineno]
            self.report.windows.append(w)
        w[3] = e.lineno
        self._kcompactd_at = i

    def _freed_while_free(self, e: PageEvent, pfn: int) -> None:
        """A free of a page the model holds free: taken off the lists with
        no event since; with no isolate event for it, compaction's free
        scanner (or the release of its unused targets). Earlier misses that
        predicted a block in its pageblock are compaction's."""
        if self._isolate_traced and not any(w[0] == "compaction" for w in self._cut_windows):
            return   # every isolation was traced: not compaction's
        self._isolated_untraced(e, [pfn])

    def _isolated_untraced(self, e: PageEvent, pfns: Sequence[int]) -> None:
        """Compaction took free pages in the pageblocks of *pfns* that the
        trace does not name (seen at *e*): a ``compaction`` window there,
        and earlier misses that predicted a block in them are compaction's."""
        nr = self.alloc.pageblock_nr_pages
        blocks = {p // nr for p in pfns}
        if not blocks:
            return
        if not blocks <= self._untraced_isolation.keys():
            self.report.windows.append(("compaction", e.cpu, e.lineno, e.lineno))
        for pb in blocks:
            self._untraced_isolation[pb] = e.lineno
        keep = []
        for r in self._missed:
            if self._in_isolated_block(r.predicted_pfn):
                self._reclassify(r.index, "compaction")
            else:
                keep.append(r)
        self._missed = keep

    def _in_isolated_block(self, pfn: Optional[int]) -> bool:
        return pfn is not None and (pfn // self.alloc.pageblock_nr_pages) in self._untraced_isolation

    def _label_miss(self, rec, e: PageEvent, late: Optional[int] = None,
                    group: Sequence[PageEvent] = ()) -> None:
        """Set a miss's reason in the light of the windows (see below). A
        miss that predicted *late*, the page an earlier miss saw gone and
        took for this task's (taken, then preempted before its
        mm_page_alloc), was wrong about who took it: the pcp page still
        left untraced."""
        if late is not None and rec.predicted_pfn == late and rec.reason not in _NOT_COMPACTION:
            rec.reason = "pcp_taken_untraced"
        rec.reason = self._window_reason(rec.reason, rec.predicted_pfn, e)
        if rec.reason not in _NOT_COMPACTION + ("compaction",) and self._bulk_untraced(e) \
                and group and group[0].lineno < self._task_alloc.get((e.cpu, e.pid), 0):
            # Its removal events came before the task's own previous
            # allocation in task context: not this allocation's refill (a
            # task does not allocate inside its own refill) but an untraced
            # bulk call's, which took them for its pcp list.
            rec.reason = "bulk_allocator"
        if rec.reason not in _NOT_COMPACTION + ("compaction",):
            self._missed.append(rec)

    def _window_reason(self, reason: str, predicted_pfn: Optional[int], e: PageEvent) -> str:
        """A miss's reason, given the windows: a predicted block where
        compaction isolated pages untraced; pcp pages gone untraced inside a
        bulk call cut in half."""
        if reason in _NOT_COMPACTION:
            return reason
        if self._in_isolated_block(predicted_pfn) or self._fast_search_explains(predicted_pfn, e):
            return "compaction"
        if reason == "pcp_taken_untraced" and self._bulk_traced and self._bulk_untraced(e):
            return "bulk_allocator"
        if (reason in ("buddy_list_order", "pcp_list_order", "pcp_nonempty_in_kernel")
                and self._pending_bulk_refill(predicted_pfn, e)):
            return "bulk_allocator"
        return reason

    def _pending_bulk_refill(self, pfn: Optional[int], e: PageEvent) -> bool:
        """The predicted block was taken off the buddy by a refill traced on
        this CPU that no allocation has claimed: an untraced bulk call's
        (its mm_page_alloc_zone_locked events with no mm_page_alloc)."""
        if pfn is None or not self.alloc.profile.bulk_allocator or self._bulk.get(e.cpu):
            return False
        end = pfn + (1 << e.order)
        return any(g.name == MM_PAGE_ALLOC_ZONE_LOCKED and g.order == 0 and pfn <= g.pfn < end
                   for g in self._open.get(e.cpu, ()))
