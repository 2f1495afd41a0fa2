"""
Screen
------

The one check of each event's values against the snapshot's kernel, before
replay or any of its look-ahead passes sees the event: a CPU the snapshot
does not have, an order past its last, a migratetype it does not know (or,
for ``mm_page_alloc``, one no request has), a page event with no page. The
parser reads any number; only the snapshot knows which are this kernel's.

A refused event is replaced, in place (event indices stay those of the
trace), by a :class:`Refused` one that names no page and no event kind the
passes know: they step over it, and the replayer raises its reason there
(counted as a skipped line, or the error in strict mode). Both the list
replay (:meth:`~buddyscope.model.replay.Replayer.run`) and the streaming
replay (:func:`~buddyscope.model.streaming.replay_stream`) screen with
:func:`screened`.

Pure Python: imports neither drgn nor textual.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Iterable, Iterator, List, Optional, Sequence

from buddyscope.model.events import (
    ISOLATE_EVENTS, MM_PAGE_ALLOC, MM_PAGE_ALLOC_EXTFRAG, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_FREE,
    MM_PAGE_FREE_BATCHED, MM_PAGE_PCPU_DRAIN,
)
from buddyscope.model.ftrace import PageEvent

__all__ = ("REFUSED", "Limits", "Refused", "refusal", "screened", "screened_list")

_SLOTS = {"slots": True} if sys.version_info >= (3, 10) else {}

#: The name of a refused event: no pass or handler knows it.
REFUSED = "buddyscope_refused"

(ISOLATE, _) = ISOLATE_EVENTS
# Events that name a page: a NULL one ("pfn=0xffffffffffffffff", -1UL, as
# the kernel prints no page; read as None) cannot be replayed. mm_page_alloc
# names none when it failed, which is not an error.
_NEED_PAGE = (MM_PAGE_FREE, MM_PAGE_FREE_BATCHED, MM_PAGE_PCPU_DRAIN, MM_PAGE_ALLOC_ZONE_LOCKED,
              MM_PAGE_ALLOC_EXTFRAG)
# Events whose order= is a block's order (the kprobe events but
# isolate_free_page print none; they carry 0).
_ORDERED = (MM_PAGE_ALLOC, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_FREE, MM_PAGE_FREE_BATCHED,
            MM_PAGE_PCPU_DRAIN, MM_PAGE_ALLOC_EXTFRAG, ISOLATE)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the snapshot's kernel can trace."""

    nr_cpus: int
    #: Orders are 0 .. nr_orders - 1 (NR_PAGE_ORDERS, MAX_ORDER on 5.10).
    nr_orders: int
    #: Migratetypes are 0 .. nr_migratetypes - 1 (the snapshot's names).
    nr_migratetypes: int
    #: The migratetypes with pcp lists: the only ones an allocation asks for
    #: (``ac.migratetype`` is ``gfp_migratetype()``, which ``mm_page_alloc``
    #: prints).
    pcp_types: frozenset

    @classmethod
    def of(cls, alloc) -> "Limits":
        """The limits of an :class:`~buddyscope.model.allocator.Allocator`'s
        snapshot (its kernel's orders, migratetypes and pcp lists)."""
        return cls(alloc.nr_cpus, alloc.nr_orders, alloc.nr_mt,
                   frozenset(mt for pl in alloc.pcp_lists for mt in pl.migratetypes))


@dataclasses.dataclass(frozen=True, **_SLOTS)
class Refused(PageEvent):
    """An event :func:`refusal` refused, in its place: the task, CPU and
    line of the event; no page, order 0; *why* in one line."""

    why: str = ""


def _mt(what: str, mt: Optional[int], limits: Limits) -> Optional[str]:
    if mt is not None and not 0 <= mt < limits.nr_migratetypes:
        return (f"{what} {mt} is out of range: this kernel's migratetypes are "
                f"0..{limits.nr_migratetypes - 1}")
    return None


def _order(what: str, order: Optional[int], limits: Limits) -> Optional[str]:
    if order is not None and not 0 <= order < limits.nr_orders:
        return f"{what} {order} is out of range: this kernel's orders are 0..{limits.nr_orders - 1}"
    return None


def refusal(e: PageEvent, limits: Limits) -> Optional[str]:
    """Why *e* cannot be replayed against a snapshot of *limits*, in one
    line starting with its line number; None if it can."""
    n = e.name
    if not 0 <= e.cpu < limits.nr_cpus:
        why = (f"event on cpu {e.cpu}, but the snapshot has {limits.nr_cpus} cpus: "
               "the trace is from another kernel or machine")
    elif n in _NEED_PAGE and e.pfn is None:
        why = f"{n} of no page (pfn -1, the kernel's NULL page)"
    elif n == MM_PAGE_ALLOC_EXTFRAG:
        why = (_order(f"{n} alloc_order", e.alloc_order, limits)
               or _order(f"{n} fallback_order", e.fallback_order, limits)
               or _mt(f"{n} alloc_migratetype", e.alloc_migratetype, limits)
               or _mt(f"{n} fallback_migratetype", e.fallback_migratetype, limits))
    else:
        why = _order(f"{n} order", e.order, limits) if n in _ORDERED else None
        if why is None and n == MM_PAGE_ALLOC and e.migratetype not in limits.pcp_types:
            why = (f"{n} migratetype {e.migratetype} is not one an allocation asks for "
                   f"(this kernel's: {', '.join(map(str, sorted(limits.pcp_types)))})")
        elif why is None:
            why = _mt(f"{n} migratetype", e.migratetype, limits)
    return None if why is None else f"line {e.lineno}: {why}"


def _refused(e: PageEvent, why: str) -> Refused:
    # Only where and when: nothing a pass could take for a page or an order.
    return Refused(REFUSED, e.cpu, e.ts, e.pid, e.comm, None, 0, lineno=e.lineno,
                   flags=e.flags, why=why)


def screened(events: Iterable[PageEvent], limits: Limits) -> Iterator[PageEvent]:
    """*events*, each one :func:`refusal` refuses replaced by a :class:`Refused`."""
    for e in events:
        why = refusal(e, limits)
        yield e if why is None else _refused(e, why)


def screened_list(events: Sequence[PageEvent], limits: Limits) -> Sequence[PageEvent]:
    """:func:`screened` for a list: *events* itself when no event is refused
    (the common case: no copy, and the list stays the caller's)."""
    bad = [(k, why) for k, why in enumerate(refusal(e, limits) for e in events) if why is not None]
    if not bad:
        return events
    out: List[PageEvent] = list(events)
    for k, why in bad:
        out[k] = _refused(out[k], why)
    return out
