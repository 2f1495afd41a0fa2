"""
Windows
-------

Which predictions came true on a source that is traced while it is watched
(``buddyscope tui --lab``): each refresh takes a snapshot at an exact place
in the kmem event stream, so the events between two refreshes are a
*window* that starts at the earlier snapshot. The window is replayed from
that snapshot (:func:`buddyscope.model.replay.replay`, one allocation
ahead, as ``buddyscope replay`` scores a recording), and the scores add up
to a running hit rate.

A window whose events are not all there (the ring buffer overran or dropped
events, or a count does not match) is *invalid*: it is shown, not scored.

Pure Python: imports neither textual nor drgn.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

from buddyscope.errors import BuddyscopeError
from buddyscope.model.ftrace import PageEvent
from buddyscope.model.replay import AllocRecord, ReplayReport, replay
from buddyscope.model.snapshot import Snapshot

__all__ = ("RunningScore", "WindowScore", "score_window")


@dataclasses.dataclass(frozen=True)
class WindowScore:
    """One window: the events between refresh *index* - 1 and refresh
    *index*, replayed from the snapshot of refresh *index* - 1."""

    index: int
    events: int
    #: Why the window is not scored ("" when it is).
    invalid: str = ""
    allocations: int = 0
    hits: int = 0
    records: Tuple[AllocRecord, ...] = ()
    reasons: Tuple[Tuple[str, int], ...] = ()
    #: Events per kind, e.g. (("mm_page_alloc", 812), ...).
    counts: Tuple[Tuple[str, int], ...] = ()
    seconds: float = 0.0

    @property
    def valid(self) -> bool:
        return not self.invalid

    @property
    def accuracy(self) -> Optional[float]:
        return self.hits / self.allocations if self.allocations else None

    @property
    def misses(self) -> List[AllocRecord]:
        return [r for r in self.records if not r.hit]


def score_window(before: Snapshot, events: Sequence[PageEvent], index: int = 1,
                 invalid: str = "") -> WindowScore:
    """Score the model on one window: *events* are every kmem page event
    traced after *before* was taken, in total order, up to the next
    snapshot. With *invalid* (why some events are missing) nothing is
    replayed. An event stream that cannot be replayed against *before*
    (another kernel, more CPUs) makes the window invalid too."""
    counts = collections.Counter(e.name for e in events)
    base = dict(index=index, events=len(events), counts=tuple(sorted(counts.items())))
    if invalid:
        return WindowScore(invalid=invalid, **base)
    try:
        rep: ReplayReport = replay(before, events, skip_bad=False)
    except BuddyscopeError as e:
        return WindowScore(invalid=f"cannot be replayed: {e}", **base)
    return WindowScore(allocations=rep.allocations, hits=rep.hits, records=tuple(rep.records),
                       reasons=tuple(rep.reasons.most_common()), seconds=rep.seconds, **base)


@dataclasses.dataclass(frozen=True)
class RunningScore:
    """Every window so far, added up (only the valid ones are scored)."""

    windows: int = 0
    invalid: int = 0
    events: int = 0
    allocations: int = 0
    hits: int = 0
    reasons: Tuple[Tuple[str, int], ...] = ()

    def add(self, w: WindowScore) -> "RunningScore":
        if not w.valid:
            return dataclasses.replace(self, windows=self.windows + 1, invalid=self.invalid + 1)
        reasons: Dict[str, int] = collections.Counter(dict(self.reasons))
        reasons.update(dict(w.reasons))
        return RunningScore(self.windows + 1, self.invalid, self.events + w.events,
                            self.allocations + w.allocations, self.hits + w.hits,
                            tuple(collections.Counter(reasons).most_common()))

    @property
    def scored(self) -> int:
        return self.windows - self.invalid

    @property
    def accuracy(self) -> Optional[float]:
        return self.hits / self.allocations if self.allocations else None
