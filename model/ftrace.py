"""
Ftrace
------

The one parser of ftrace text in buddyscope, for the kmem page events
(``include/trace/events/kmem.h``): ``mm_page_alloc``,
``mm_page_alloc_zone_locked``, ``mm_page_free``, ``mm_page_free_batched``,
``mm_page_pcpu_drain`` and ``mm_page_alloc_extfrag``, plus two kprobe events
on the bulk allocator (``alloc_pages_bulk``, ``alloc_pages_bulk_ret``), as
``/sys/kernel/tracing/trace``, ``per_cpu/cpuN/trace``, ``trace_pipe`` and
``trace-cmd report`` print them. The accepted input and what each kernel
prints are in ``docs/ftrace-format.md``.

A line is read in two steps (the LISA way): one skeleton regular expression,
compiled once, reads the header up to the event name, then that event's
own small parser (a dict from event name) reads the fields::

        bash-123 [001] d..1. 4521: mm_page_alloc: page=... pfn=0x1a2b3 order=0 ...
    <- header: skeleton regex -------------------><- fields: the event's parser ->

Events that are not kmem page events are counted by name, never an error;
a kmem page event line that cannot be read raises :class:`TraceError`.
``page=`` is ignored (it is a hashed or raw pointer depending on the
kernel and its ``hash-ptr`` option): ``pfn=`` is authoritative.

Pure Python: imports neither drgn nor textual.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import gc
import gzip
import heapq
import itertools
import re
import sys
import zlib
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Union

from buddyscope.errors import BuddyscopeError
from buddyscope.model.events import (
    ALLOC_PAGES_BULK, ALLOC_PAGES_BULK_RET, BULK_EVENTS, COMPACTION_EVENTS, DECAY_EVENTS, EVENTS,
    ISOLATE_EVENTS, MM_COMPACTION_FAST_ISOLATE_FREEPAGES, MM_COMPACTION_ISOLATE_FREEPAGES,
    MM_PAGE_ALLOC, MM_PAGE_ALLOC_EXTFRAG, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_FREE,
    MM_PAGE_FREE_BATCHED, MM_PAGE_PCPU_DRAIN, RECLAIM_EVENTS, VMSTAT_EVENTS, WATERMARK_EVENTS,
)

__all__ = (
    "BULK_EVENTS",
    "BadLine",
    "EVENTS",
    "PageEvent",
    "RangeEvent",
    "RECLAIM_EVENTS",
    "ParsedTrace",
    "TraceError",
    "merge_by_timestamp",
    "parse_file",
    "parse_lines",
    "parse_lines_reference",
    "parse_text",
)

# slots=True needs Python 3.10; the project still installs on 3.9.
_SLOTS = {"slots": True} if sys.version_info >= (3, 10) else {}


class TraceError(BuddyscopeError):
    """A line of a kmem page event that cannot be read. The message is one
    line: the line number, what is wrong, and the line (truncated)."""

    def __init__(self, lineno: int, line: str, why: str, fatal: bool = False):
        self.lineno = lineno
        self.line = line
        #: Not one bad line but a file that is no trace: refused even by a
        #: lenient parse.
        self.fatal = fatal
        shown = line.strip()
        if len(shown) > 120:
            shown = shown[:117] + "..."
        # Line 0: the file as a whole (unreadable, not gzip).
        super().__init__(f"line {lineno}: {why}: {shown!r}" if lineno else f"{shown}: {why}")


@dataclasses.dataclass(frozen=True, **_SLOTS)
class PageEvent:
    """One kmem page event. Fields the event does not print are ``None``."""

    #: Event name, e.g. ``"mm_page_alloc"``.
    name: str
    #: CPU whose ring buffer recorded the event.
    cpu: int
    #: Timestamp: an ``int`` with ``trace_clock`` ``counter`` (or any clock
    #: printed without a decimal point), else seconds as a ``float``.
    ts: Union[int, float]
    pid: int
    #: Task name as printed (``<idle>``, ``<...>`` when ftrace did not save it).
    comm: str
    #: Page frame number of the first page of the block; ``None`` for a failed
    #: ``mm_page_alloc`` (the kernel prints ``pfn=0`` for a NULL page).
    pfn: Optional[int]
    #: Order of the block: ``order=`` (literal ``0`` for
    #: ``mm_page_free_batched``); ``fallback_order=`` for
    #: ``mm_page_alloc_extfrag``, the order of the block at *pfn*.
    order: int
    #: ``migratetype=`` of ``mm_page_alloc``, ``mm_page_alloc_zone_locked``
    #: and ``mm_page_pcpu_drain``.
    migratetype: Optional[int] = None
    #: ``gfp_flags=`` of ``mm_page_alloc`` as printed, e.g.
    #: ``"GFP_KERNEL|__GFP_ZERO"`` or ``"none"``.
    gfp: Optional[str] = None
    #: ``percpu_refill=`` of ``mm_page_alloc_zone_locked`` (5.10 prints it as
    #: ``order == 0``; 6.1+ record it; not a reliable refill flag).
    percpu_refill: Optional[bool] = None
    #: ``mm_page_alloc_extfrag`` only: the requested order and migratetype,
    #: the order and migratetype of the free block taken instead, and whether
    #: the pageblock changed owner.
    alloc_order: Optional[int] = None
    fallback_order: Optional[int] = None
    alloc_migratetype: Optional[int] = None
    fallback_migratetype: Optional[int] = None
    change_ownership: Optional[bool] = None
    #: 1-based line number in the input.
    lineno: int = 0
    #: The bulk allocator's kprobe events (``record`` sets them up; see
    #: ``docs/ftrace-format.md``): ``nr_pages`` asked of
    #: ``alloc_pages_bulk``, ``nr_populated`` it returned.
    count: Optional[int] = None
    #: The latency flags column as printed (``"d..1."``, ``"..s2."``), or
    #: ``None`` when the line has none (``trace-cmd report``). Its third
    #: character is the context: ``h``, ``s``, ``H``, ``z`` or ``Z`` in an
    #: interrupt (hard, soft, hard in soft, NMI), ``.`` in a task.
    flags: Optional[str] = None

    @property
    def in_interrupt(self) -> Optional[bool]:
        """Traced in hard or soft interrupt (or NMI) context, by the
        flags; ``None`` if the line printed none."""
        f = self.flags
        if f is None or len(f) < 3:
            return None
        return f[2] in "hsHzZ"

    @property
    def preempt_depth(self) -> Optional[int]:
        """The flags column's preempt count (its fourth character: ``.`` for
        0, then hex, capped at 15); in an interrupt, that of the context it
        interrupted plus its own. ``None`` if the line printed none."""
        f = self.flags
        if f is None or len(f) < 4:
            return None
        d = f[3]
        return 0 if d == "." else int(d, 16) if d in "0123456789abcdefABCDEF" else None


@dataclasses.dataclass(frozen=True, **_SLOTS)
class RangeEvent(PageEvent):
    """A compaction free scanner event (``mm_compaction_isolate_freepages``,
    ``mm_compaction_fast_isolate_freepages``): a range of PFNs and the
    pages taken in it (:attr:`count`, ``nr_taken``); it names no page
    (:attr:`pfn` None, ``order`` 0). Rare: built by the dataclass itself,
    not the fast constructor."""

    #: The range's first PFN (the fast search's ``min_pfn``).
    start_pfn: int = 0
    #: Its end, exclusive: where ``isolate_freepages_block`` stopped (the
    #: fast search: the scanner's ``free_pfn``).
    end_pfn: int = 0
    nr_scanned: int = 0


@dataclasses.dataclass(frozen=True)
class BadLine:
    """A line that could not be read, skipped by a lenient parse."""

    lineno: int
    #: Why, in one line (the :class:`TraceError` message).
    why: str


#: Bad lines a lenient parse keeps (it counts them all): enough to show, and
#: a trace of nothing but garbage cannot fill memory with them.
MAX_BAD_LINES_KEPT = 100
#: A line longer than this is not ftrace text (the kernel's trace_seq is one
#: page): the file is refused, in either mode, without reading the rest of
#: the line (a sparse or binary file of gigabytes has no newline).
MAX_LINE = 64 * 1024


@dataclasses.dataclass
class ParsedTrace:
    """What :func:`parse_lines` found in a trace."""

    #: The kmem page events, in input order.
    events: List[PageEvent] = dataclasses.field(default_factory=list)
    #: Other events, skipped: event name -> number of lines.
    unknown: "collections.Counter[str]" = dataclasses.field(default_factory=collections.Counter)
    #: Lines starting with ``#`` (the header; ``##### CPU N buffer started ####``).
    comments: int = 0
    #: ``CPU:N [LOST M EVENTS]`` (``trace-cmd``: ``CPU:N [M EVENTS DROPPED]``)
    #: lines: CPU -> events the ring buffer lost, 1 for a loss of unknown
    #: size. A trace with lost events cannot be replayed exactly.
    lost: "collections.Counter[int]" = dataclasses.field(default_factory=collections.Counter)
    #: Other non-blank lines that are not events (``cpus=2`` at the top of a
    #: ``trace-cmd report``, ``CPU 1 is empty``).
    other: int = 0
    #: Lines of kmem page events that could not be read, skipped by a
    #: lenient parse (``strict=False``): how many, and the first
    #: :data:`MAX_BAD_LINES_KEPT` of them with their line numbers.
    bad: int = 0
    bad_lines: List[BadLine] = dataclasses.field(default_factory=list)


def _fast_constructor(cls: type) -> Callable[..., PageEvent]:
    """A positional constructor for the frozen, slotted dataclass *cls* that
    is about four times as fast as calling it.

    A frozen dataclass's ``__init__`` stores every field through
    ``object.__setattr__``, which costs as much as reading the rest of the
    line. Instead the fields are stored into a plain object of a twin class
    with the same ``__slots__`` (ordinary attribute stores), whose
    ``__class__`` is then set to *cls*: Python allows that between classes of
    the same layout. The result is checked once against *cls*'s own
    constructor; on any difference (or without slots, before Python 3.10)
    this is *cls* itself.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    if cls.__dict__.get("__slots__") != tuple(names):
        return cls
    twin = type(f"_{cls.__name__}Twin", (), {"__slots__": tuple(names)})
    src = (f"def make({', '.join(names)}):\n    o = _new(_twin)\n"
           + "".join(f"    o.{n} = {n}\n" for n in names)
           + "    o.__class__ = _cls\n    return o\n")
    ns = {"_new": object.__new__, "_twin": twin, "_cls": cls}
    exec(src, ns)
    make = ns["make"]
    probe = tuple(range(len(names)))
    try:
        made = make(*probe)
        if type(made) is cls and made == cls(*probe):
            return make
    except TypeError:
        pass
    return cls


_make = _fast_constructor(PageEvent)


# -- the skeleton ------------------------------------------------------------
#
# comm may hold spaces and dashes: the lazy match stops at the first "-<pid>"
# that is followed by the CPU column. The CPU column is "[001]" optionally
# followed by the flags ("d..1." on 6.1+, "d..1" on 5.10; absent in
# ``trace-cmd report``), or, in latency format (``trace-cmd report -l``), the
# CPU number with the flags glued to it ("1d..1."). Flags never start with a
# digit, timestamps always do. "(  123)" is the ``record-tgid`` column. The
# match ends where the fields start; ftrace pads with spaces, never tabs.
_HEADER = re.compile(
    r" *(.*?)-(\d+) +"
    r"(?:\( *[\d-]+\) +)?"
    r"(?:\[(\d+)\](?: +([^ \d]\S*))?|(\d+)([^ \d]\S*))"
    r" +(\d+(?:\.\d+)?): +(\w+): *"
)
# The kernel: "CPU:%d [LOST %lu EVENTS]"; trace-cmd: "CPU:%d [%lld EVENTS DROPPED]"
# and, when it does not know how many, "CPU:%d [EVENTS DROPPED]".
_LOST = re.compile(r"CPU:(\d+) \[(?:LOST )?(?:(\d+) )?EVENTS(?: DROPPED)?\]")
_PTR = r"page=\S+ "
_PFN = r"pfn=(0x[0-9a-fA-F]+|-?\d+)"
_INT = r"(-?\d+)"
_END = r"\s*$"
_NULL_PFN = (1 << 64) - 1
_RANGE = r"range=\((0x[0-9a-fA-F]+) ~ (0x[0-9a-fA-F]+)\) nr_scanned=(\d+) nr_taken=(\d+)" + _END


# pfn=: "%lu" on 5.10, "0x%lx" on 6.1+. A negative number only comes from
# trace-cmd's raw fallback printing the stored -1UL; "& _NULL_PFN" makes it
# -1UL again. Inlined in each builder: this is the hot path.


def _alloc(name, cpu, ts, pid, comm, g, lineno, flags=None):
    s = g[0]
    pfn = int(s, 16) if s[:2] == "0x" else int(s) & _NULL_PFN
    # A failed allocation: kmem.h prints "REC->pfn != -1UL ? REC->pfn : 0"
    # (and page=0000000000000000), on all four lab kernels.
    if pfn == 0 or pfn == _NULL_PFN:
        pfn = None
    return _make(name, cpu, ts, pid, comm, pfn, int(g[1]), int(g[2]), _intern(g[3]),
                 None, None, None, None, None, None, lineno, None, flags)


def _zone_locked(name, cpu, ts, pid, comm, g, lineno, flags=None):
    s = g[0]
    pfn = int(s, 16) if s[:2] == "0x" else int(s) & _NULL_PFN
    if pfn == 0 or pfn == _NULL_PFN:  # the same "pfn != -1UL ? pfn : 0" as mm_page_alloc
        pfn = None
    refill = None if g[3] is None else g[3] != "0"
    return _make(name, cpu, ts, pid, comm, pfn, int(g[1]), int(g[2]), None,
                 refill, None, None, None, None, None, lineno, None, flags)


def _free(name, cpu, ts, pid, comm, g, lineno, flags=None):
    s = g[0]
    pfn = int(s, 16) if s[:2] == "0x" else int(s) & _NULL_PFN
    return _make(name, cpu, ts, pid, comm, None if pfn == _NULL_PFN else pfn, int(g[1]),
                 None, None, None, None, None, None, None, None, lineno, None, flags)


def _free_batched(name, cpu, ts, pid, comm, g, lineno, flags=None):
    s = g[0]
    pfn = int(s, 16) if s[:2] == "0x" else int(s) & _NULL_PFN
    # order= is a literal 0 in the TP_printk, not a field of the record.
    return _make(name, cpu, ts, pid, comm, None if pfn == _NULL_PFN else pfn,
                 0 if g[1] is None else int(g[1]),
                 None, None, None, None, None, None, None, None, lineno, None, flags)


def _drain(name, cpu, ts, pid, comm, g, lineno, flags=None):
    s = g[0]
    pfn = int(s, 16) if s[:2] == "0x" else int(s) & _NULL_PFN
    return _make(name, cpu, ts, pid, comm, None if pfn == _NULL_PFN else pfn, int(g[1]),
                 int(g[2]), None, None, None, None, None, None, None, lineno, None, flags)


def _bulk(name, cpu, ts, pid, comm, g, lineno, flags=None):
    # gfp_flags as the kprobe fetched it (hex): only mm_page_alloc prints names.
    return _make(name, cpu, ts, pid, comm, None, 0, None, _intern(g[0]), None, None, None, None,
                 None, None, lineno, int(g[1]), flags)


def _bulk_ret(name, cpu, ts, pid, comm, g, lineno, flags=None):
    return _make(name, cpu, ts, pid, comm, None, 0, None, None, None, None, None, None, None,
                 None, lineno, int(g[0]), flags)


def _isolate(name, cpu, ts, pid, comm, g, lineno, flags=None):
    return _make(name, cpu, ts, pid, comm, None, int(g[1]), None, None, None, None, None, None,
                 None, None, lineno, int(g[0], 16), flags)


def _range(name, cpu, ts, pid, comm, g, lineno, flags=None):
    return RangeEvent(name, cpu, ts, pid, comm, None, 0, lineno=lineno, count=int(g[3]),
                      flags=flags, start_pfn=int(g[0], 16), end_pfn=int(g[1], 16),
                      nr_scanned=int(g[2]))


def _isolate_ret(name, cpu, ts, pid, comm, g, lineno, flags=None):
    # gfp: the caller's function, as the return probe prints it.
    return _make(name, cpu, ts, pid, comm, None, 0, None, _intern(g[0]), None, None, None, None,
                 None, None, lineno, int(g[1]), flags)


def _fields(name, cpu, ts, pid, comm, g, lineno, flags=None):
    return _make(name, cpu, ts, pid, comm, None, 0, None, g[0], None, None, None, None, None,
                 None, lineno, None, flags)


def _decay(name, cpu, ts, pid, comm, g, lineno, flags=None):
    return _make(name, cpu, ts, pid, comm, None, 0, None, None, None, None, None, None, None,
                 None, lineno, int(g[0], 0), flags)


def _reclaim_ret(name, cpu, ts, pid, comm, g, lineno, flags=None):
    return _make(name, cpu, ts, pid, comm, None, 0, None, None, None, None, None, None, None,
                 None, lineno, None, flags)


def _extfrag(name, cpu, ts, pid, comm, g, lineno, flags=None):
    s = g[0]
    pfn = int(s, 16) if s[:2] == "0x" else int(s) & _NULL_PFN
    fallback_order = int(g[2])
    return _make(name, cpu, ts, pid, comm, None if pfn == _NULL_PFN else pfn,
                 fallback_order, None, None, None, int(g[1]), fallback_order,
                 int(g[3]), int(g[4]), g[5] != "0", lineno, None, flags)


#: Per event: (fields regex, builder, the keys in the regex's group order,
#: which of them may be missing). The regexes follow the kernels' TP_printk.
_EVENTS: Dict[str, tuple] = {
    # "page=%p pfn=0x%lx order=%d migratetype=%d gfp_flags=%s"
    MM_PAGE_ALLOC: (
        _PTR + _PFN + r" order=(\d+) migratetype=" + _INT + r" gfp_flags=(\S+)" + _END,
        _alloc, ("pfn", "order", "migratetype", "gfp_flags"), (),
    ),
    # "page=%p pfn=0x%lx order=%u migratetype=%d percpu_refill=%d"
    MM_PAGE_ALLOC_ZONE_LOCKED: (
        _PTR + _PFN + r" order=(\d+) migratetype=" + _INT + r"(?: percpu_refill=(\d+))?" + _END,
        _zone_locked, ("pfn", "order", "migratetype", "percpu_refill"), ("percpu_refill",),
    ),
    # "page=%p pfn=0x%lx order=%d"
    MM_PAGE_FREE: (
        _PTR + _PFN + r" order=(\d+)" + _END, _free, ("pfn", "order"), (),
    ),
    # "page=%p pfn=0x%lx order=0" (older kernels: "... order=0 cold=%d")
    MM_PAGE_FREE_BATCHED: (
        _PTR + _PFN + r" order=(\d+)(?: cold=\d+)?" + _END,
        _free_batched, ("pfn", "order"), ("order",),
    ),
    # "page=%p pfn=0x%lx order=%d migratetype=%d"
    MM_PAGE_PCPU_DRAIN: (
        _PTR + _PFN + r" order=(\d+) migratetype=" + _INT + _END,
        _drain, ("pfn", "order", "migratetype"), (),
    ),
    # "page=%p pfn=0x%lx alloc_order=%d fallback_order=%d pageblock_order=%d
    #  alloc_migratetype=%d fallback_migratetype=%d fragmenting=%d change_ownership=%d"
    MM_PAGE_ALLOC_EXTFRAG: (
        _PTR + _PFN + r" alloc_order=" + _INT + r" fallback_order=" + _INT
        + r" pageblock_order=\d+ alloc_migratetype=" + _INT + r" fallback_migratetype=" + _INT
        + r" fragmenting=\d+ change_ownership=(\d+)" + _END,
        _extfrag,
        ("pfn", "alloc_order", "fallback_order", "alloc_migratetype", "fallback_migratetype",
         "change_ownership"),
        (),
    ),
    # Not tracepoints: kprobe events on the bulk allocator, which takes pcp
    # pages with no mm_page_alloc (5.13+). "(SYMBOL+0x4/0x630) gfp=0x%x nr_pages=%d"
    ALLOC_PAGES_BULK: (
        r"\(\S+\) gfp=(0x[0-9a-fA-F]+) nr_pages=" + _INT + _END,
        _bulk, ("gfp", "nr_pages"), (),
    ),
    # "(CALLER+0x254/0x810 <- SYMBOL) nr_populated=%d"
    ALLOC_PAGES_BULK_RET: (
        r"\(\S+ <- \S+\) nr_populated=" + _INT + _END,
        _bulk_ret, ("nr_populated",), (),
    ),
    # kswapd's reclaim window, kprobe events on balance_pgdat (record sets
    # them up): "(balance_pgdat+0x0/0xb9c) highest_zoneidx=%d" and
    # "(kswapd+0x1d1/0x3a0 <- balance_pgdat)". ZONE_RECLAIM_ACTIVE is set in
    # between; count is highest_zoneidx.
    "balance_pgdat": (
        r"\(\S+\) highest_zoneidx=" + _INT + _END,
        _bulk_ret, ("highest_zoneidx",), (),
    ),
    "balance_pgdat_ret": (
        r"\(\S+ <- \S+\)" + _END, _reclaim_ret, (), (),
    ),
    # vmstat's decay of pcp->high (6.7+), a kprobe event on decay_pcp_high:
    # "(decay_pcp_high+0x0/0xc0) zone_start_pfn=0x1000"; count is the
    # zone's zone_start_pfn, the event's CPU the pcp's.
    # Compaction's free page isolation, kprobe events on __isolate_free_page:
    # "(__isolate_free_page+0x0/0x315) page=0xffffea0000123400 order=3"
    # (count is the struct page pointer) and "(isolate_freepages_block+0x1a3/
    # 0x454 <- __isolate_free_page) nr=8" (count: pages taken, 0 if refused;
    # gfp: the caller, "isolate_freepages_block").
    "isolate_free_page": (
        r"\(\S+\) page=(0x[0-9a-fA-F]+) order=(\d+)" + _END, _isolate, ("page", "order"), (),
    ),
    "isolate_free_page_ret": (
        r"\(([^+\s]+)\S* <- \S+\) nr=" + _INT + _END, _isolate_ret, ("caller", "nr"), (),
    ),
    # Watermarks set anew (min_free_kbytes changed), a kprobe event at the
    # return of setup_per_zone_wmarks: "(caller+0x../0x.. <-
    # setup_per_zone_wmarks) z1w0=658 z1w1=822 ... z1_pageset_batch=31";
    # gfp holds the fields' text.
    "setup_wmarks": (
        r"\(\S+ <- \S+\) (\S.*?)" + _END, _fields, ("fields",), (),
    ),
    "decay_pcp_high": (
        r"\(\S+\) zone_start_pfn=(0x[0-9a-fA-F]+|\d+)" + _END, _decay, ("zone_start_pfn",), (),
    ),
    # A CPU's vmstat deltas folded, a kprobe event on refresh_cpu_vm_stats:
    # "(refresh_cpu_vm_stats+0x0/0x3b0) do_pagesets=0" (0 from quiet_vmstat
    # in idle, 1 from vmstat_update); count is do_pagesets.
    "refresh_cpu_vm_stats": (
        r"\(\S+\) do_pagesets=(\d+)" + _END, _decay, ("do_pagesets",), (),
    ),
    # The compaction free scanner's tracepoints (mm_compaction_isolate_template):
    # "range=(0x%lx ~ 0x%lx) nr_scanned=%lu nr_taken=%lu".
    MM_COMPACTION_ISOLATE_FREEPAGES: (
        _RANGE, _range, ("range", "nr_scanned", "nr_taken"), (),
    ),
    MM_COMPACTION_FAST_ISOLATE_FREEPAGES: (
        _RANGE, _range, ("range", "nr_scanned", "nr_taken"), (),
    ),
}

# EVENTS (the kmem page tracepoints) and BULK_EVENTS (the bulk allocator's
# kprobe events) come from buddyscope.model.events: every one has a parser.
assert set(_EVENTS) == set(EVENTS + BULK_EVENTS + RECLAIM_EVENTS + DECAY_EVENTS + VMSTAT_EVENTS
                          + ISOLATE_EVENTS + WATERMARK_EVENTS + COMPACTION_EVENTS)

_PARSERS: Dict[str, tuple] = {
    name: (re.compile(rx).match, build, keys, optional, name)
    for name, (rx, build, keys, optional) in _EVENTS.items()
}
# The strings events repeat (event and task names, flags, gfp flags) are
# held once, not once per event: at 10 M events that is gigabytes.
_intern = sys.intern
_KNOWN_IN_LINE = re.compile(r"\b(" + "|".join(_EVENTS) + r"):")
_NUMBER = re.compile(r"-?(?:0x[0-9a-fA-F]+|\d+)$")


def _generic(fields: str, keys: tuple, optional: tuple) -> Optional[tuple]:
    """Read *fields* as ``key=value`` tokens in any order; return the values
    of *keys* in order, or None if a key that is not optional is missing or a
    number is not a number."""
    found = {}
    for tok in fields.split():
        k, eq, v = tok.partition("=")
        if eq:
            found[k] = v
    out = []
    for k in keys:
        v = found.get(k)
        if v is None:
            if k not in optional:
                return None
        elif k not in ("gfp_flags", "gfp") and not _NUMBER.match(v):
            return None
        out.append(v)
    return tuple(out)


def _odd_line(res: ParsedTrace, lineno: int, line: str) -> None:
    """A line the skeleton does not match: blank, a lost-events notice, a
    comment, or another line that is no event (``cpus=2``)."""
    line = line.rstrip("\r\n")
    if not line.strip():
        return
    lost = _LOST.search(line)
    if lost:
        cpu, n = lost.groups()
        res.lost[int(cpu)] += int(n) if n else 1  # an unknown number counts as 1
        return
    known = _KNOWN_IN_LINE.search(line)
    if known:
        raise TraceError(lineno, line, f"{known.group(1)} line without a readable header")
    if line.lstrip()[:1] == "#":
        res.comments += 1
    else:
        res.other += 1


def parse_lines(lines: Iterable[str], strict: bool = True) -> ParsedTrace:
    """
    Parse ftrace text of the kmem page events.

    Lines may end in a newline. Comment lines (``#``), blank lines, lost-event
    notices and other non-event lines are counted; events other than the
    kmem page events are counted by name in :attr:`ParsedTrace.unknown`.

    The lines are read :data:`CHUNK` at a time by :func:`_parse_chunk`; the
    result is that of :func:`parse_lines_reference`, the plain line by line
    parser (a test compares them on every committed trace).

    :param lines: the text, line by line (a file object will do).
    :param strict: raise at the first kmem page event line that cannot be
        read; when False, count it in :attr:`ParsedTrace.bad_lines` and go on.
    :raises TraceError: on a line of a kmem page event that cannot be read
        (the first such line), with *strict*; in either mode on a line longer
        than :data:`MAX_LINE`.
    """
    res = ParsedTrace()
    # The events hold no reference cycles, but the cyclic garbage collector
    # would still run every 700 new objects and walk the growing list of
    # events: about an eighth of the parsing time. It is off while parsing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in _parse_pieces(lines, res, strict):
            pass
    finally:
        if gc_was_enabled:
            gc.enable()
    return res


def parse_lines_reference(lines: Iterable[str], strict: bool = True) -> ParsedTrace:
    """
    :func:`parse_lines` one line at a time, the readable way (:func:`_parse`:
    the skeleton regex, then the event's own fields regex and builder). It
    is the reference the fast path is tested against, and what that path
    hands every line it does not read itself.
    """
    res = ParsedTrace()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _parse_leniently(enumerate(lines, 1), res, strict)
    finally:
        if gc_was_enabled:
            gc.enable()
    return res


def _parse_leniently(numbered: Iterable[tuple], res: ParsedTrace, strict: bool) -> None:
    """:func:`_parse` over *numbered*, each bad line handed to :func:`_bad_line`."""
    while True:
        try:
            _parse(numbered, res)
            return
        except TraceError as e:
            # _parse resumes on the same iterator, after the bad line:
            # the hot loop pays nothing for leniency.
            _bad_line(res, e, strict)


def _bad_line(res: ParsedTrace, e: TraceError, strict: bool) -> None:
    """A kmem page event line that cannot be read: raise *e* if *strict*
    (or if it is fatal), else count it."""
    if strict or e.fatal:
        raise e
    res.bad += 1
    if len(res.bad_lines) < MAX_BAD_LINES_KEPT:
        res.bad_lines.append(BadLine(e.lineno, str(e)))


def _parse(numbered: Iterable[tuple], res: ParsedTrace) -> None:
    append = res.events.append
    unknown = res.unknown
    header = _HEADER.match
    parsers = _PARSERS
    intern = _intern
    for lineno, line in numbered:
        # Event lines start with the task name, right-aligned in 16 columns
        # (a name has at most 15 characters): only comments start with "#".
        if line[:1] == "#":
            res.comments += 1
            continue
        if len(line) > MAX_LINE:
            raise TraceError(lineno, line[:200], f"a line of {len(line)} characters is not "
                             "ftrace text", fatal=True)
        m = header(line)
        if m is None:
            _odd_line(res, lineno, line)
            continue
        comm, pid, cpu, flags, lcpu, lflags, ts, name = m.groups()
        p = parsers.get(name)
        if p is None:
            unknown[name] += 1
            continue
        match, build, keys, optional, name = p
        fm = match(line, m.end())
        if fm is not None:
            g = fm.groups()
        else:
            g = _generic(line[m.end():], keys, optional)
            if g is None:
                raise TraceError(lineno, line.rstrip("\r\n"),
                                 f"{name} fields are not {' '.join(k + '=' for k in keys)}")
        try:
            append(build(name, int(cpu or lcpu), float(ts) if "." in ts else int(ts),
                         int(pid), intern(comm), g, lineno, intern(flags or lflags or "") or None))
        except ValueError as e:  # a number _generic let through, e.g. "order=-"
            raise TraceError(lineno, line.rstrip("\r\n"), f"{name}: {e}") from None


# -- the fast path: a chunk of lines at once -----------------------------------
#
# Profiled (cProfile, tests/bench/ftrace_parse.py), the line by line parser
# spent a third of its time in the skeleton regex, a fifth in the fields
# regex, two fifths building the events. CPython's regex engine costs about
# as much per pattern step as per line of plain scanning, so here a short
# regex (_CUT) cuts a whole chunk of lines (joined) with one ``findall``,
# a tuple of five strings per line, and the parts that repeat from line to
# line are read once each by the reference's own regexes and kept:
#
#       sh-125     [000] .....       3: mm_page_alloc: page=(...) pfn=0x61aa order=1 migratetype=0 ...
#   <- head: _HEADER, once per text -><ts> <- name -->             <-pfn-><- tail: the fields regex,
#                                                                           once per (name, text) --->
#
# Only the timestamp and the pfn are converted per line. Lines _CUT does not
# cut (comments, other events, kprobe events, anything odd) come out as an
# empty row and go to the reference, :func:`_parse`, with their numbers.
#
# Why a head or a tail read apart gives what _HEADER and the fields regex
# give on the whole line (tests/model/test_ftrace_fast.py compares the two
# parsers on every committed trace and on made-up lines):
# - The head has no ": " and the timestamp ends at the line's first ": ". In
#   _HEADER a task name is tried shortest first; every try whose pid lies in
#   the head reads at most the CPU column and flags after it, then needs a
#   number and ":" (the timestamp: a digit cannot start the flags, and the
#   name is no number), then a word and ":" (the event name): whether it
#   matches, and what, depends on the head alone. So the head is checked
#   once, followed by " 0: mm_page_free:", and kept only if _HEADER's
#   timestamp starts right after it: then that try comes first in every
#   line with this head, and the groups are the same.
# - The pfn is cut whole (a space or the end follows it), so in the
#   event's fields regex ("page=\S+ pfn=(...)" then the rest) the rest
#   matches the tail or not whatever the page and pfn: the tail is checked
#   once, after "page=x pfn=0", and a tail the regex refuses (the reference
#   then reads key=value pairs, which look at the pfn) is never kept.
#: The five hot events (99.9 % of the committed traces' lines).
_FAST_EVENTS = (MM_PAGE_ALLOC, MM_PAGE_FREE, MM_PAGE_FREE_BATCHED, MM_PAGE_PCPU_DRAIN,
                MM_PAGE_ALLOC_ZONE_LOCKED)
# Possessive "++" only where giving back could not help the match.
_CUT = re.compile(
    r"^(?!#)([^:\n]*|(?:[^:\n]*+:(?! ))++[^:\n]*) (\d++(?:\.\d++|)): ++(" + "|".join(_FAST_EVENTS)
    + r"): ++page=\S++ pfn=(?:0x([0-9a-fA-F]++)|(-?\d++))( [^\n]*+|)\n"
    r"|[^\n]*\n",
    re.MULTILINE,
)
#: Lines read at a time.
CHUNK = 8192
#: Heads (or tails of one event) kept at most (a few hundred in a committed
#: recording).
MAX_KNOWN = 1 << 16


class _Cache(dict):
    """A dict that fills itself: ``c[key]`` is ``make(key)``, made once."""

    __slots__ = ("make",)

    def __init__(self, make: Callable):
        super().__init__()
        self.make = make

    def __missing__(self, key):
        v = self[key] = self.make(key)
        return v


def _head(head: str) -> Optional[tuple]:
    """(cpu, pid, comm, flags) of every line that starts with *head*, as
    _parse reads them; None if _HEADER does not read *head* as a header."""
    m = _HEADER.match(head + " 0: mm_page_free:")
    if m is None or m.start(7) != len(head) + 1:
        return None
    comm, pid, cpu, flags, lcpu, lflags = m.groups()[:6]
    return int(cpu or lcpu), int(pid), _intern(comm), _intern(flags or lflags or "") or None


def _tail(name: str) -> Callable[[str], Optional[tuple]]:
    """For event *name*: its (order, migratetype, gfp, percpu_refill) from
    the *tail* of its fields after the pfn, as its builder reads them; None
    if its fields regex does not match."""
    match = _PARSERS[name][0]

    def tail(tail: str) -> Optional[tuple]:
        fm = match("page=x pfn=0" + tail)
        if fm is None:
            return None
        g = fm.groups()
        if name == MM_PAGE_ALLOC:
            return int(g[1]), int(g[2]), _intern(g[3]), None
        if name == MM_PAGE_ALLOC_ZONE_LOCKED:
            return int(g[1]), int(g[2]), None, None if g[3] is None else g[3] != "0"
        if name == MM_PAGE_PCPU_DRAIN:
            return int(g[1]), int(g[2]), None, None
        if name == MM_PAGE_FREE_BATCHED:
            return 0 if g[1] is None else int(g[1]), None, None, None
        return int(g[1]), None, None, None
    return tail


def _joined(lines: List[str]) -> Optional[str]:
    """*lines* as one text of newline-ended lines, each row of _CUT one of
    them in order; None if that cannot be (a line holds a newline inside)."""
    if lines[0][-1:] == "\n":
        text = "".join(lines)
        if text[-1:] != "\n":  # the last line of a file without one
            text += "\n"
    else:
        text = "\n".join(lines) + "\n"
    # Each line gave at least one newline: exactly one each, at its end.
    return text if text.count("\n") == len(lines) else None


class _Known:
    """What the fast path has read once, kept for the next chunk."""

    __slots__ = ("heads", "tails")

    def __init__(self) -> None:
        self.heads = _Cache(_head)
        # name as cut -> (the name, its tails, whether pfn 0 means no page)
        self.tails = {name: (name, _Cache(_tail(name)),
                             name in (MM_PAGE_ALLOC, MM_PAGE_ALLOC_ZONE_LOCKED))
                      for name in _FAST_EVENTS}


def _pieces(lines: Iterable[str], size: int = 0) -> Iterator[List[str]]:
    """*lines* in lists of *size*; from an iterator (a file) read 256 lines
    at a time, and a list cut short after a line longer than
    :data:`MAX_LINE`, so that a file of long lines (a sparse file, each
    "line" MAX_LINE + 1 characters) is refused after megabytes, not after
    *size* (default :data:`CHUNK`) such lines."""
    size = size or CHUNK
    if isinstance(lines, list):
        for i in range(0, len(lines), size):
            yield lines[i:i + size]
        return
    it = iter(lines)
    step = min(size, 256)
    while True:
        piece: List[str] = []
        while len(piece) < size:
            batch = list(itertools.islice(it, min(step, size - len(piece))))
            piece += batch
            if not batch or max(map(len, batch)) > MAX_LINE:
                break
        if not piece:
            return
        yield piece


def _parse_pieces(lines: Iterable[str], res: ParsedTrace, strict: bool,
                  size: int = 0) -> Iterator[None]:
    """Parse *lines* into *res* a piece at a time (:func:`_pieces` of
    *size*), each numbered where it lies in *lines*; yields after each
    piece, so that a caller may take ``res.events`` as they come."""
    lineno = 1
    known = _Known()
    for piece in _pieces(lines, size):
        _parse_chunk(piece, lineno, res, strict, known)
        lineno += len(piece)
        yield


def _parse_chunk(lines: List[str], lineno: int, res: ParsedTrace, strict: bool,
                 known: Optional[_Known] = None) -> None:
    """Parse *lines*, the first numbered *lineno*, into *res*, as
    :func:`parse_lines_reference` would: the same events (appended to
    ``res.events``), counts and errors, with *strict* as there. *known*
    carries what was read once from one chunk to the next."""
    text = _joined(lines) if lines else None
    if text is None or max(map(len, lines)) > MAX_LINE:
        # Lines _CUT cannot tell apart, or one the reference refuses whole.
        _parse_leniently(enumerate(lines, lineno), res, strict)
        return
    if known is None:
        known = _Known()
    if len(known.heads) > MAX_KNOWN or any(len(t[1]) > MAX_KNOWN for t in known.tails.values()):
        known.__init__()  # a trace of a great many tasks: memory stays bounded
    heads = known.heads
    kinds = known.tails
    append = res.events.append
    make = _make
    null = _NULL_PFN
    i = lineno - 1
    for head, ts, name, hexpfn, pfn, tail in _CUT.findall(text):
        i += 1
        if name:
            h = heads[head]
            name, tails, zero_is_null = kinds[name]
            t = tails[tail]
            if h is not None and t is not None:
                # As _parse and the builders (_alloc, _free, ...) do.
                cpu, pid, comm, flags = h
                order, migratetype, gfp, refill = t
                pfn = int(hexpfn, 16) if hexpfn else int(pfn) & null
                if pfn == null or (pfn == 0 and zero_is_null):
                    pfn = None
                append(make(name, cpu, float(ts) if "." in ts else int(ts), pid, comm, pfn,
                            order, migratetype, gfp, refill, None, None, None, None, None, i,
                            None, flags))
                continue
        try:
            _parse(((i, lines[i - lineno]),), res)
        except TraceError as e:
            _bad_line(res, e, strict)


def parse_text(text: str) -> ParsedTrace:
    """
    Parse ftrace text held in a string.

    :param text: the whole trace.
    :raises TraceError: see :func:`parse_lines`.
    """
    return parse_lines(text.splitlines())


def parse_file(path: Union[str, Path], strict: bool = True) -> ParsedTrace:
    """
    Parse a trace file, read line by line; gzip'd if its name ends in
    ``.gz``. Bytes that are not UTF-8 (in a task name) are replaced.

    :param path: the file (``trace``, ``per_cpu/cpuN/trace``, a copy of one,
        or ``trace-cmd report`` output).
    :param strict: see :func:`parse_lines`.
    :raises TraceError: see :func:`parse_lines`; also if the file cannot be
        read or is a corrupt gzip file.
    """
    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
                return parse_lines(_bounded_lines(f), strict)
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_lines(_bounded_lines(f), strict)
    except (EOFError, zlib.error) as e:
        raise TraceError(0, str(path), f"a corrupt or truncated gzip file ({e})", fatal=True) from None
    except gzip.BadGzipFile as e:
        raise TraceError(0, str(path), f"not a gzip file ({e})", fatal=True) from None
    except OSError as e:
        raise TraceError(0, str(path), f"cannot read it: {e.strerror or e}", fatal=True) from None


def _bounded_lines(f) -> Iterable[str]:
    """The lines of text file *f*, none read whole if longer than
    :data:`MAX_LINE` (that one comes out cut, and the parser refuses it)."""
    # iter(callable, sentinel) runs in C: as fast as iterating the file.
    return iter(functools.partial(f.readline, MAX_LINE + 1), "")


def merge_by_timestamp(per_cpu: Dict[int, List[PageEvent]]) -> List[PageEvent]:
    """
    Merge per-CPU event streams (e.g. parsed from ``per_cpu/cpuN/trace``)
    into one, ordered by timestamp. The merge is stable: events of one CPU
    keep their order, and equal timestamps of different CPUs come in CPU
    order (with ``trace_clock`` ``counter`` no two events share one).

    :param per_cpu: CPU -> that CPU's events in the order it recorded them.
    :raises TraceError: if a CPU's timestamps go backwards (not one CPU's
        stream, or not in recorded order).
    """
    streams = []
    for cpu in sorted(per_cpu):
        evs = per_cpu[cpu]
        for a, b in zip(evs, evs[1:]):
            if b.ts < a.ts:
                raise TraceError(b.lineno, f"{b.name} at {b.ts} after {a.ts}",
                                 f"cpu {cpu}: timestamps go backwards")
        streams.append(evs)
    return list(heapq.merge(*streams, key=lambda e: e.ts))
