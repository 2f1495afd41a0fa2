"""
Predict
-------

The next allocations for one request, from a snapshot (optionally after a
trace of the events that followed it): each with its PFN, zone and path in
the kernel's words, each applied to the model before the next.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence

from buddyscope.model.allocator import Allocator, Outcome
from buddyscope.model.ftrace import PageEvent
from buddyscope.model.profile import Profile
from buddyscope.model.replay import Replayer
from buddyscope.model.request import Request, make_request
from buddyscope.model.snapshot import Snapshot

__all__ = ("format_outcomes", "model_after", "predict", "predict_request")


def model_after(snapshot: Snapshot, events: Optional[Sequence[PageEvent]] = None,
                profile: Optional[Profile] = None) -> Allocator:
    """The model of *snapshot*, with *events* (the kmem events after it)
    applied as ``replay`` applies them."""
    if not events:
        # What a Replayer would build first, without what only replay needs
        # (the naive predictor's copy of every list).
        return Allocator(snapshot, profile)
    r = Replayer(snapshot, profile, skip_bad=False)
    r.run(list(events))
    return r.alloc


def predict_request(alloc: Allocator, request: Request, n: int = 1) -> List[Outcome]:
    """The next *n* results of *request*, each applied before the next."""
    out = []
    for _ in range(n):
        o = alloc.allocate(request.cpu, request.order, request.migratetype,
                           request.highest_zoneidx, request.alloc_flags, request.slow_flags)
        out.append(o)
        if o.pfn is None:
            break
    return out


def predict(snapshot: Snapshot, order: int, n: int = 1, *, gfp: Optional[str] = None,
            migratetype=None, cpu: int = 0, after: Optional[Iterable[PageEvent]] = None,
            profile: Optional[Profile] = None) -> List[Outcome]:
    """``buddyscope predict``: the next *n* allocations of a request."""
    alloc = model_after(snapshot, list(after) if after is not None else None, profile)
    req = make_request(alloc, order, cpu, gfp=gfp, migratetype=migratetype)
    return predict_request(alloc, req, n)


def format_outcomes(outcomes: List[Outcome], request: Request) -> str:
    lines = [f"request: order {request.order} {request.gfp_text} on cpu {request.cpu}"]
    for i, o in enumerate(outcomes):
        if o.pfn is None:
            lines.append(f"{i:3}  FAILED")
        else:
            lines.append(f"{i:3}  pfn {o.pfn:#x}  {o.zone}  ({o.kind})")
        for s in o.path:
            lines.append(f"       {s.describe()}")
    return "\n".join(lines)
