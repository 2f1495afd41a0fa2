"""
Streaming replay
----------------

:func:`replay_stream` replays a trace too long to hold in memory: it never
builds the list of events. The trace is read (parsed line by line, a chunk
at a time) several times:

1. the frees that commit at a later ``mm_page_free_batched``
   (:func:`~buddyscope.model.stream.deferred_frees`), the allocations stepped
   at their take (:func:`~buddyscope.model.stream.alloc_takes`) and which
   kprobe events the trace has at all;
2. the kprobe calls cut in half (:mod:`~buddyscope.model.replay_windows`);
3. the contiguous free runs and the frees under the pcp lock, which need
   pass 1's deferred frees;
4. the interrupt frees that may have met the pcp lock taken, which need
   pass 3's;
5. the replay itself, stepping each event as it is read.

Why not one read with a look-ahead window: whether a ``mm_page_free`` is
deferred is settled by a later ``mm_page_free_batched`` of the same CPU and
PFN, or by nothing at all (most frees): under the pass's rule only the end
of the trace proves "never", so no window short of the whole trace is exact.
The passes here are the ones of :mod:`~buddyscope.model.stream` written as
online loops (state per CPU, task and PFN, never per event); what they find
is kept as one bit per event (:class:`_Bits`) and small dicts, and replay
holds only the events between a take and its ``mm_page_alloc``
(:meth:`~buddyscope.model.replay.Replayer._alloc_at_take` steps the
allocation at its take: its event is read ahead that far, however far).
``tests/model/test_streaming.py`` checks the results are those of
:meth:`~buddyscope.model.replay.Replayer.run` on every recording.

Records: all of them by default (the same ``--json``), or with *records* N
only the last N and every miss (:class:`KeptRecords`); the counts, the
longest miss run and the misses are the same either way.

Pure Python: imports neither drgn nor textual.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gzip
import time
import zlib
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from buddyscope.errors import BuddyscopeError
from buddyscope.model.events import (
    ALLOC_PAGES_BULK as BULK, ALLOC_PAGES_BULK_RET as BULK_RET, DECAY_EVENTS,
    MM_PAGE_ALLOC as ALLOC, MM_PAGE_ALLOC_EXTFRAG as EXTFRAG,
    MM_PAGE_ALLOC_ZONE_LOCKED as ZONE_LOCKED, MM_PAGE_FREE as FREE,
    MM_PAGE_FREE_BATCHED as FREE_BATCHED, MM_PAGE_PCPU_DRAIN as DRAIN, RECLAIM_EVENTS,
    VMSTAT_EVENTS, WATERMARK_EVENTS,
)
from buddyscope.model.ftrace import (
    PageEvent, ParsedTrace, TraceError, _bounded_lines, _parse_pieces,
)
from buddyscope.model.load import check_replayable
from buddyscope.model.profile import Profile
from buddyscope.model.replay import Replayer
from buddyscope.model.replay_report import AllocRecord, ReplayReport
from buddyscope.model.screen import Limits, screened
from buddyscope.model.snapshot import Snapshot
from buddyscope.model.stream import _UNTRACED, contig_chunks, removal_for

__all__ = ("KeptRecords", "TraceSource", "replay_stream")

(DECAY,) = DECAY_EVENTS
(REFRESH,) = VMSTAT_EVENTS
RECLAIM, RECLAIM_RET = RECLAIM_EVENTS
(WMARKS,) = WATERMARK_EVENTS

#: Lines parsed at a time.
CHUNK = 8192


class TraceSource:
    """A trace read again each time it is iterated: an ftrace text file
    (gzip'd if named ``.gz``) or the lines of a fixture's trace. After a
    whole read, :attr:`parsed` holds its counts (no events)."""

    def __init__(self, path: Optional[Path] = None, lines: Optional[List[str]] = None,
                 strict: bool = True, chunk: int = CHUNK):
        self.path, self.lines, self.strict, self.chunk = path, lines, strict, chunk
        self.parsed = ParsedTrace()

    @contextlib.contextmanager
    def _open(self) -> Iterator[Iterable[str]]:
        if self.lines is not None:
            yield self.lines
            return
        path = Path(self.path)
        try:
            opener = (gzip.open(path, "rt", encoding="utf-8", errors="replace")
                      if path.name.endswith(".gz") else open(path, encoding="utf-8", errors="replace"))
            with opener as f:
                yield _bounded_lines(f)
        except (EOFError, zlib.error) as e:
            raise TraceError(0, str(path), f"a corrupt or truncated gzip file ({e})", fatal=True) from None
        except gzip.BadGzipFile as e:
            raise TraceError(0, str(path), f"not a gzip file ({e})", fatal=True) from None
        except OSError as e:
            raise TraceError(0, str(path), f"cannot read it: {e.strerror or e}", fatal=True) from None

    def __iter__(self) -> Iterator[PageEvent]:
        """The events, parsed :data:`CHUNK` lines at a time, as
        :func:`~buddyscope.model.ftrace.parse_lines` parses them."""
        res = ParsedTrace()
        with self._open() as lines:
            for _ in _parse_pieces(lines, res, self.strict, self.chunk):
                yield from res.events
                res.events.clear()
        self.parsed = res


class _Screened:
    """*source* as the passes and the replay read it: screened against the
    snapshot (:func:`~buddyscope.model.screen.screened`), as the list
    replay screens its list."""

    def __init__(self, source: TraceSource, limits: Limits):
        self.source, self.limits = source, limits

    @property
    def path(self) -> Optional[Path]:
        return self.source.path

    @property
    def parsed(self) -> ParsedTrace:
        return self.source.parsed

    def __iter__(self) -> Iterator[PageEvent]:
        return screened(self.source, self.limits)


class _Bits:
    """A set of event indices, one bit per event."""

    def __init__(self) -> None:
        self._b = bytearray()

    def add(self, i: int) -> None:
        k = i >> 3
        if k >= len(self._b):
            self._b.extend(bytes(k + 1 - len(self._b) + len(self._b) // 2))
        self._b[k] |= 1 << (i & 7)

    def __contains__(self, i: int) -> bool:
        k = i >> 3
        return k < len(self._b) and bool(self._b[k] >> (i & 7) & 1)

    def __len__(self) -> int:
        return sum(bin(x).count("1") for x in self._b)


class _Contig:
    """:func:`~buddyscope.model.stream.contig_free_runs`'s answer: index ->
    None (a page committed later) or the chunks committed at a run's end."""

    def __init__(self) -> None:
        self.later, self.ends = _Bits(), {}

    def __contains__(self, i: int) -> bool:
        return i in self.ends or i in self.later

    def __getitem__(self, i: int):
        return self.ends.get(i)


@dataclasses.dataclass
class _Pass1:
    deferred: _Bits
    batched_order: Dict[int, int]
    #: stream.drains_then_migrated: drains whose task's next event is on another CPU.
    migrated: _Bits
    takes: Dict[int, int]
    count: int
    first: Optional[PageEvent]
    last: Optional[PageEvent]
    names: set


def _pass1(events: Iterable[PageEvent], strict_mt: bool) -> _Pass1:
    """``deferred_frees``, ``drains_then_migrated`` and ``alloc_takes``,
    online; and which events the trace has."""
    # pfn -> (index << 8 | order, pid, cpu) of its mm_page_free: paired by pfn
    # and task, as stream.deferred_frees does (the task may migrate between).
    pending: Dict[int, Tuple[int, int, int]] = {}
    deferred, batched_order, migrated = _Bits(), {}, _Bits()
    last_drain: Dict[int, Tuple[int, int]] = {}  # pid -> (its last event's index, cpu) if a drain
    held: Dict[int, List[Tuple[int, PageEvent]]] = {}
    bulk: set = set()
    takes: Dict[int, int] = {}
    # (cpu, pid, in interrupt) -> its last event: _traced_own without the list.
    own: Dict[Tuple[int, int, bool], int] = {}
    names: set = set()
    first = e = None
    i = -1
    for i, e in enumerate(events):
        if first is None:
            first = e
        n = e.name
        names.add(n)
        if e.pid:
            d = last_drain.pop(e.pid, None)
            if d is not None and d[1] != e.cpu:
                migrated.add(d[0])
            if n == DRAIN:
                last_drain[e.pid] = (i, e.cpu)
        if n == FREE:
            pending[e.pfn] = (i << 8 | (e.order & 0xff), e.pid, e.cpu)
        elif n == FREE_BATCHED:
            p = pending.get(e.pfn)
            if p is not None and p[1] == e.pid and (e.pid or p[2] == e.cpu):
                del pending[e.pfn]
                deferred.add(p[0] >> 8)
                if p[0] & 0xff:
                    batched_order[i] = p[0] & 0xff
        elif n == ALLOC and e.pfn is not None:
            pending.pop(e.pfn, None)
        if n == ZONE_LOCKED or n == EXTFRAG:
            order = e.order if n == ZONE_LOCKED else e.alloc_order
            if not (e.cpu in bulk and order == 0):
                held.setdefault(e.cpu, []).append((i, e))
        elif n == ALLOC:
            group = held.get(e.cpu)
            if group:
                mine = [k for k, g in group if removal_for(g, e, strict_mt)]
                if mine:
                    taken = set(mine)
                    held[e.cpu] = [(k, g) for k, g in group if k not in taken]
                    t = mine[-1]
                    if t + 1 < i and own.get((e.cpu, e.pid, bool(e.in_interrupt)), -1) <= t:
                        takes[t] = i
        elif n == BULK:
            bulk.add(e.cpu)
        elif n == BULK_RET:
            bulk.discard(e.cpu)
        own[(e.cpu, e.pid, bool(e.in_interrupt))] = i
    return _Pass1(deferred, batched_order, migrated, takes, i + 1, first, e, names)


def _contig_and_locked(events: Iterable[PageEvent], deferred: _Bits, max_order: Optional[int],
                       zone_of: Optional[Callable[[int], object]]) -> Tuple[_Contig, _Bits]:
    """``contig_free_runs`` (unless *max_order* is None) and
    ``frees_under_pcp_lock`` (unless *zone_of* is None), online."""
    contig, locked = _Contig(), _Bits()
    runs: Dict[int, List[Tuple[int, PageEvent]]] = {}
    runs_head: Dict[int, int] = {}
    block_of: Dict[int, Optional[int]] = {}

    def close(cpu: int) -> None:
        run = runs.pop(cpu, None)
        if not run or len(run) < 2:
            return
        n, first = len(run), run[0][1].pfn
        if runs_head[cpu] == _UNTRACED and (n & (n - 1) or first & (n - 1)):
            return
        for j, _ in run[:-1]:
            contig.later.add(j)
        contig.ends[run[-1][0]] = contig_chunks(first, n, max_order)

    def track(i: int, e: PageEvent) -> None:
        if e.name == ALLOC and e.pfn is not None:
            for p in range(e.pfn, e.pfn + (1 << e.order)):
                block_of[p] = i if e.order else None
        elif e.name in (FREE, FREE_BATCHED) and e.pfn is not None:
            for p in range(e.pfn, e.pfn + (1 << e.order)):
                block_of[p] = None

    def contig_step(i: int, e: PageEvent) -> None:
        if e.in_interrupt:
            track(i, e)
            return
        run = runs.get(e.cpu)
        if e.name == FREE and e.order == 0 and e.pfn is not None and i not in deferred:
            head = block_of.pop(e.pfn, _UNTRACED)
            if run:
                last = run[-1][1]
                if (head is not None and last.pid == e.pid and last.pfn + 1 == e.pfn
                        and runs_head[e.cpu] == head):
                    run.append((i, e))
                    return
            close(e.cpu)
            if head is not None:
                runs[e.cpu] = [(i, e)]
                runs_head[e.cpu] = head
            block_of[e.pfn] = None
            return
        if run is not None:
            close(e.cpu)
        track(i, e)

    same_zone = ((lambda a, b: zone_of(a) is zone_of(b)) if zone_of is not None
                 else (lambda a, b: True))
    last: Dict[int, Tuple[int, PageEvent]] = {}
    # pid -> [opener index, opener, frees (index, event), another task ran since]
    pending: Dict[int, list] = {}

    def locked_step(i: int, e: PageEvent) -> None:
        c = e.cpu
        irq = e.in_interrupt
        if e.name == FREE and i not in deferred and irq is not False:
            lj = last.get(c)
            if lj is not None:
                j, opener = lj
                if (opener.name == FREE_BATCHED and (irq is None or opener.pid == e.pid)
                        or opener.name == ZONE_LOCKED and irq and opener.pid == e.pid):
                    pending.setdefault(opener.pid, [j, opener, [], False])[2].append((i, e))
            return
        if irq:
            return
        lj = last.get(c)
        if lj is not None and lj[1].pid != e.pid:
            p = pending.get(lj[1].pid)
            if p is not None:
                p[3] = True
        last[c] = (i, e)
        p = pending.pop(e.pid, None)
        if p is None:
            return
        j, opener, frees, switched = p
        if opener.name == FREE_BATCHED:
            if e.name == FREE_BATCHED and not switched and e.cpu == opener.cpu:
                for k, f in frees:
                    if same_zone(f.pfn, opener.pfn):
                        locked.add(k)
        elif e.name == ALLOC:
            zl, al = opener.preempt_depth, e.preempt_depth
            if zl is not None and al is not None and zl - al >= 3:
                for k, f in frees:
                    if (f.preempt_depth or 0) >= al + 2 and same_zone(f.pfn, opener.pfn):
                        locked.add(k)

    for i, e in enumerate(events):
        if max_order is not None:
            contig_step(i, e)
        if zone_of is not None:
            locked_step(i, e)
    for cpu in list(runs):
        close(cpu)
    return contig, locked


def _maybe_locked(events: Iterable[PageEvent], deferred: _Bits, locked: _Bits,
                  zone_of: Callable[[int], object], pcp_orders) -> _Bits:
    """``frees_maybe_under_pcp_lock``, online."""
    out = _Bits()
    last: Dict[int, Tuple[int, PageEvent]] = {}
    pending: Dict[int, List[Tuple[int, PageEvent]]] = {}
    for i, e in enumerate(events):
        irq = e.in_interrupt
        if irq is None:
            return out
        if irq:
            if e.name != FREE or i in deferred or i in locked:
                continue
            lj = last.get(e.cpu)
            if lj is None or lj[1].pid != e.pid:
                continue
            j, t = lj
            d = e.preempt_depth
            if d is None or t.preempt_depth is None:
                continue
            if (t.name == FREE and j not in deferred and t.order in pcp_orders
                    and d >= t.preempt_depth + 2 and zone_of(t.pfn) is zone_of(e.pfn)):
                out.add(i)
            elif t.name != ZONE_LOCKED:
                pending.setdefault(e.pid, []).append((i, e))
            continue
        last[e.cpu] = (i, e)
        frees = pending.pop(e.pid, None)
        if (frees and e.name == ALLOC and e.pfn and e.order in pcp_orders
                and e.preempt_depth is not None):
            for k, f in frees:
                if f.preempt_depth >= e.preempt_depth + 2 and zone_of(f.pfn) is zone_of(e.pfn):
                    out.add(k)
    return out


class _Ahead:
    """The events read but not yet replayed, by their index in the trace:
    what :meth:`Replayer._alloc_at_take` looks up (``passes[0][j]``)."""

    def __init__(self, events: Iterator[PageEvent]):
        self._it = enumerate(events)
        self._buf: collections.deque = collections.deque()
        self.base = 0          # index of _buf[0]
        self.peak = 0          # the most events held at once

    def read_to(self, j: int) -> bool:
        while self.base + len(self._buf) <= j:
            nxt = next(self._it, None)
            if nxt is None:
                return False
            self._buf.append(nxt[1])
        self.peak = max(self.peak, len(self._buf))
        return True

    def __getitem__(self, j: int) -> PageEvent:
        return self._buf[j - self.base]

    def drop_through(self, i: int) -> None:
        while self._buf and self.base <= i:
            self._buf.popleft()
            self.base += 1


class _Sized:
    def __init__(self, n: int):
        self._n = n

    def __len__(self) -> int:
        return self._n


class _WindowInput:
    """What :meth:`WindowEvents._start_windows` reads: the events (one more
    read of the trace), the first and the last."""

    def __init__(self, source: TraceSource, first: PageEvent, last: PageEvent):
        self._source, self._first, self._last = source, first, last

    def __iter__(self):
        return iter(self._source)

    def __len__(self) -> int:
        return 1

    def __bool__(self) -> bool:
        return True

    def __getitem__(self, k: int) -> PageEvent:
        if k == 0:
            return self._first
        if k == -1:
            return self._last
        raise IndexError(k)


_GONE = AllocRecord(-1, 0, 0, 0, "", None, None, True, "", "", None)


class KeptRecords:
    """The records :class:`ReplayReport` would keep, but only the last
    *last* and every miss; indexed by record index like the full list
    (a hit no longer kept reads as a placeholder hit), and iterated in
    order. Counts the longest miss run as records come."""

    def __init__(self, last: int):
        self._n = 0
        self._recent: collections.deque = collections.deque(maxlen=max(last, 1))
        self._keep_recent = last > 0
        self._misses: Dict[int, AllocRecord] = {}
        self._run = self.longest_miss_run = 0

    def append(self, rec: AllocRecord) -> None:
        self._n += 1
        self._recent.append(rec)
        if rec.hit:
            self._run = 0
        else:
            self._misses[rec.index] = rec
            self._run += 1
            self.longest_miss_run = max(self.longest_miss_run, self._run)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, k: int) -> AllocRecord:
        if k < 0:
            k += self._n
        if not 0 <= k < self._n:
            raise IndexError(k)
        rec = self._misses.get(k)
        if rec is not None:
            return rec
        start = self._n - len(self._recent)
        return self._recent[k - start] if k >= start else _GONE

    def __iter__(self) -> Iterator[AllocRecord]:
        recent = list(self._recent) if self._keep_recent else []
        lo = recent[0].index if recent else self._n
        older = [r for k, r in sorted(self._misses.items()) if k < lo]
        return iter(older + recent)


class StreamReport(ReplayReport):
    """A :class:`ReplayReport` whose ``records`` are a :class:`KeptRecords`."""

    @property
    def longest_miss_run(self) -> int:
        return self.records.longest_miss_run

    def misses(self) -> List[AllocRecord]:
        return [r for r in self.records if not r.hit]


def replay_stream(snapshot: Snapshot, source: TraceSource, profile: Optional[Profile] = None,
                  strict: bool = False, events_enabled: Optional[Iterable[str]] = None,
                  skip_bad: Optional[bool] = None, records: Optional[int] = None,
                  after_event=None) -> ReplayReport:
    """Replay *source* as :func:`~buddyscope.model.replay.replay` replays its
    events, without holding them (see the module docstring). *records*: keep
    every record (None), or the last *records* and every miss."""
    t0 = time.perf_counter()
    r = Replayer(snapshot, profile, strict, events_enabled=events_enabled, skip_bad=skip_bad)
    r.after_event = after_event
    if records is not None:
        r.report = StreamReport(r.report.kernel, r.report.profile)
        r.report.records = KeptRecords(records)
    a, prof = r.alloc, r.alloc.profile
    source = _Screened(source, Limits.of(a))
    p1 = _pass1(source, prof.zone_locked_in_rmqueue)
    parsed = source.parsed
    check_replayable(source.path, parsed, p1.count)
    contig, locked = _contig_and_locked(
        source, p1.deferred, a.nr_orders - 1 if prof.contig_free_runs else None,
        a.zone_of if prof.pcp_trylock_free else None)
    if not prof.contig_free_runs:
        contig = {}
    maybe = (_maybe_locked(source, p1.deferred, locked, a.zone_of, {o for o, _ in a.pindex})
             if prof.pcp_trylock_free else _Bits())
    r._takes = takes = p1.takes
    r._decay_traced = DECAY in r._enabled or DECAY in p1.names
    r._refresh_traced = REFRESH in r._enabled or REFRESH in p1.names
    r._reclaim_traced = RECLAIM in r._enabled or RECLAIM in p1.names or RECLAIM_RET in p1.names
    r._reclaim_inferred = False
    r._wmarks_traced = WMARKS in p1.names
    r._assumed_decay = {}
    r._last_free = {}
    r._below_high_known = {z.index for z in r.alloc.zones if z.below_high}
    r._start_windows(_WindowInput(source, p1.first, p1.last))
    ahead = _Ahead(iter(source))
    r.passes = (ahead, p1.deferred, p1.batched_order, contig, locked)
    r._maybe_locked = maybe_ids = set()
    migrated = p1.migrated if prof.drain_in_batch_chunks else _Bits()
    r._migrated_after = migrated_ids = set()

    def numbered():
        i = 0
        while ahead.read_to(takes.get(i, i)):
            e = ahead[i]
            if i in maybe:
                maybe_ids.add(id(e))
            if i in migrated:
                migrated_ids.add(id(e))
            yield i, e
            maybe_ids.discard(id(e))
            migrated_ids.discard(id(e))
            r._stepped.pop(i, None)
            takes.pop(i, None)
            ahead.drop_through(i)
            i += 1

    it = numbered()
    while True:
        try:
            r._run_events(it, p1.deferred, p1.batched_order, contig, locked)
            break
        except BuddyscopeError as err:
            if not r.skip_bad or r._at is None:
                raise
            r.report.skip_line(r._at.lineno, str(err))
    rep = r._finish(_Sized(p1.count), t0)
    rep.seconds = time.perf_counter() - t0
    rep.add_skipped(parsed.bad, [(b.lineno, b.why) for b in parsed.bad_lines])
    r.ahead_peak = ahead.peak
    return rep
