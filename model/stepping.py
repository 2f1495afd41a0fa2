"""
Stepping
--------

Replay of a recording, one event at a time, forward and back (the TUI's
replay mode). Step *k* means: the snapshot with the first *k* events of the
trace applied by :class:`~buddyscope.model.replay.Replayer`, exactly as
``buddyscope replay`` applies them (the same look-ahead for batched frees),
stopped after event *k - 1*. A copy of the replayer is kept every
:data:`CHECKPOINT_EVERY` events as the replay passes there, so any step is
reached from the nearest one below it: at most that many events applied,
forward or back, however long the recording.

Pure Python: imports neither textual nor drgn.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
from typing import Callable, List, Optional, Sequence, Tuple

from buddyscope.errors import BuddyscopeError
from buddyscope.model.events import MM_PAGE_ALLOC, MM_PAGE_FREE
from buddyscope.model.ftrace import PageEvent
from buddyscope.model.load import Recording
from buddyscope.model.replay import AllocRecord, Replayer, ReplayError, ReplayReport
from buddyscope.model.request import RequestError
from buddyscope.model.snapshot import Snapshot

__all__ = ("CHECKPOINT_EVERY", "ReplayState", "Stepper", "event_text")

#: Events between two kept copies of the replayer.
CHECKPOINT_EVERY = 2048

ALLOC = MM_PAGE_ALLOC


class _Stop(Exception):
    pass


@dataclasses.dataclass
class ReplayState:
    """The model after the first *step* events."""

    step: int
    total: int
    replayer: Replayer
    report: ReplayReport
    #: The last event applied (None at step 0) and its trace line.
    event: Optional[PageEvent]
    line: str
    #: The next event, if any, and its trace line.
    next_event: Optional[PageEvent]
    next_line: str
    #: The model's prediction for the next event when it is an allocation
    #: (from this state, as the replay makes it), else None.
    next_predicted: Optional[int]
    next_path: str

    @property
    def alloc(self):
        return self.replayer.alloc

    @property
    def last_record(self) -> Optional[AllocRecord]:
        """The scored allocation of the last event, if it was one."""
        if self.event is None or self.event.name != ALLOC or not self.report.records:
            return None
        # (One stepped at its take was scored before the events traced since.)
        r = self.replayer.stepped_at_take(self.step - 1) or self.report.records[-1]
        return r if r.lineno == self.event.lineno else None


class Stepper:
    """A snapshot and the events after it, replayable to any step."""

    def __init__(self, snapshot: Snapshot, events: Sequence[PageEvent],
                 lines: Optional[Sequence[str]] = None, name: str = "recording",
                 events_enabled: Optional[Sequence[str]] = None):
        self.snapshot = snapshot
        #: What the recording traced (its provenance), as ``replay`` takes it.
        self.events_enabled = events_enabled
        self.events: List[PageEvent] = list(events)
        self.lines = list(lines) if lines is not None else None
        self.name = name
        #: Event indices of the allocations (mm_page_alloc with a PFN).
        self.alloc_steps = [i for i, e in enumerate(self.events)
                            if e.name == ALLOC and e.pfn is not None]
        self._misses: Optional[List[int]] = None
        #: step -> a replayer stopped there (every CHECKPOINT_EVERY steps),
        #: and those steps in order.
        self._checkpoints: dict = {}
        self._checkpoint_steps: List[int] = []
        self.checkpoint_every = CHECKPOINT_EVERY

    @classmethod
    def from_recording(cls, rec: Recording) -> "Stepper":
        """A :class:`~buddyscope.model.load.Recording` (a loaded fixture)."""
        return cls(rec.snapshot, rec.events, rec.lines, rec.name,
                   rec.fixture.provenance.get("events_enabled"))

    def __len__(self) -> int:
        return len(self.events)

    def line(self, i: int) -> str:
        """Event *i* in one short line: its trace line number, CPU, name and
        fields."""
        return event_text(self.events[i], self.snapshot.kernel.migratetypes)

    def next_alloc_step(self, step: int) -> int:
        """The step just after the next allocation after *step*."""
        import bisect

        i = bisect.bisect_left(self.alloc_steps, step)
        return self.alloc_steps[i] + 1 if i < len(self.alloc_steps) else len(self.events)

    def prev_alloc_step(self, step: int) -> int:
        """The step just after the allocation before the one *step* ends with."""
        import bisect

        i = bisect.bisect_left(self.alloc_steps, step - 1) - 1
        return self.alloc_steps[i] + 1 if i >= 0 else 0

    def miss_steps(self) -> List[int]:
        """Steps just after each allocation the model gets wrong in a full
        replay (computed once)."""
        if self._misses is None:
            r = Replayer(self.snapshot, events_enabled=self.events_enabled)
            rep = r.run(self.events)
            where = {e.lineno: i for i, e in enumerate(self.events) if e.name == ALLOC}
            self._misses = sorted(where[m.lineno] + 1 for m in rep.records
                                  if not m.hit and m.lineno in where)
        return self._misses

    def _copy(self, r: Replayer) -> Replayer:
        """A replayer that goes on from where *r* stands without changing it
        (the look-ahead over the events is shared, not copied)."""
        passes = getattr(r, "passes", None)
        memo = {id(self.snapshot): self.snapshot}
        if passes is not None:
            memo[id(passes)] = passes
        r.after_event = None
        return copy.deepcopy(r, memo)

    def _start(self, step: int) -> Tuple[Replayer, int]:
        """A replayer at the kept step nearest at or below *step*."""
        i = bisect.bisect_right(self._checkpoint_steps, step) - 1
        if i < 0:
            return Replayer(self.snapshot, events_enabled=self.events_enabled), 0
        at = self._checkpoint_steps[i]
        return self._copy(self._checkpoints[at]), at

    def state_at(self, step: int, cancelled: Callable[[], bool] = lambda: False) -> ReplayState:
        """The model after the first *step* events: from the nearest kept
        replayer below (or the snapshot), applying the events up to *step*.
        *cancelled* is polled every 1024 events; when it says so the
        replay stops early with :class:`InterruptedError`."""
        n = len(self.events)
        step = max(0, min(step, n))
        r, start = self._start(step)
        every = self.checkpoint_every

        def after(i: int, e: PageEvent) -> None:
            done = i + 1
            if done >= step:
                raise _Stop
            if not done % every and done not in self._checkpoints:
                self._checkpoints[done] = self._copy(r)
                r.after_event = after
                bisect.insort(self._checkpoint_steps, done)
            if not i & 1023 and cancelled():
                raise InterruptedError

        if step > start or 0 < step == n:
            # The last step runs to the end, so that what is still held back
            # (removals with no mm_page_alloc, open drains) is settled as
            # ``buddyscope replay`` settles it.
            if step < n:
                r.after_event = after
            try:
                r.run(self.events, start)
            except _Stop:
                pass
            except (ReplayError, RequestError) as e:
                raise BuddyscopeError(f"{self.name}: {e}") from None
        event = self.events[step - 1] if step > 0 else None
        nxt = self.events[step] if step < n else None
        predicted, path = None, ""
        done = r.stepped_at_take(step) if nxt is not None else None
        if done is not None:
            # Already stepped at its take, events ago: what was predicted then.
            predicted, path = done.predicted_pfn, done.path
        elif nxt is not None and nxt.name == ALLOC and nxt.pfn is not None:
            try:
                req = r.request_for(nxt)
                with r.alloc.trial():
                    o = r.alloc.allocate(req.cpu, req.order, req.migratetype,
                                         req.highest_zoneidx, req.alloc_flags, req.slow_flags)
                predicted, path = o.pfn, o.kind
            except (RequestError, BuddyscopeError) as e:
                path = f"cannot predict: {e}"
        return ReplayState(step, n, r, r.report, event,
                           self.line(step - 1) if event is not None else "",
                           nxt, self.line(step) if nxt is not None else "", predicted, path)


def _mt(names: Sequence[str], mt: Optional[int]) -> str:
    if mt is None:
        return "?"
    return names[mt] if 0 <= mt < len(names) else str(mt)


def event_text(e: PageEvent, names: Sequence[str]) -> str:
    """A kmem event in one short line."""
    out = f"line {e.lineno} cpu{e.cpu} {e.name}"
    if e.pfn is not None:
        out += f" pfn {e.pfn:#x}"
    if e.order is not None:
        out += f" order {e.order}"
    if e.migratetype is not None and e.name != MM_PAGE_FREE:
        out += f" {_mt(names, e.migratetype)}"
    if e.gfp:
        out += f" {e.gfp}"
    return out
