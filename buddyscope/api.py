"""
buddyscope's Python API
-----------------------

The stable surface for scripts (``docs/api.md`` has runnable examples):
read a kernel or a file into a :class:`~buddyscope.model.snapshot.Snapshot`,
build a :class:`Model` of its allocator, apply allocations and frees in any
order (a what-if), read each result's PFN and path, and replay a recorded
trace. Everything else in buddyscope may change between versions; what this
module exports does not without a major version.

>>> from buddyscope import api
>>> rec = api.load_recording(api.bundled_recording("6.1-1cpu-pipe-groom"))
>>> model = api.Model(rec.snapshot)
>>> r = model.allocate(order=0, gfp="GFP_KERNEL")
>>> r.path, hex(r.pfn) == hex(rec.snapshot.zones[1].pcp[0].lists[0][0])
('pcp', True)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import List, Optional, Sequence, Union

from buddyscope.errors import BuddyscopeError
from buddyscope.model.diff import SnapshotDiff, diff_snapshots
from buddyscope.model.find import FoundPage, find_page
from buddyscope.model.ftrace import PageEvent, parse_file, parse_lines
from buddyscope.model.profile import profile_named
from buddyscope.model.replay import ReplayReport, Replayer
from buddyscope.model.request import make_request
from buddyscope.model.snapshot import Snapshot

__all__ = (
    "BuddyscopeError",
    "Model",
    "PageEvent",
    "FoundPage",
    "Recording",
    "ReplayReport",
    "Result",
    "Snapshot",
    "SnapshotDiff",
    "bundled_recording",
    "diff",
    "find",
    "load",
    "load_recording",
    "load_trace",
    "read",
)

PathLike = Union[str, Path]


def read(*, live: bool = False, vmcore: Optional[PathLike] = None,
         qmp: Optional[PathLike] = None, pause: Optional[PathLike] = None,
         procfs: bool = False, vmlinux: Optional[PathLike] = None) -> Snapshot:
    """Read a kernel now: ``live=True`` (this kernel through ``/proc/kcore``,
    root), ``vmcore=PATH``, ``qmp=SOCKET`` (a QEMU guest; ``pause=SOCKET``
    stops it during the read) or ``procfs=True`` (counts only)."""
    from buddyscope.probe.sources import SourceSpec, open_source

    p = lambda v: Path(v) if v is not None else None  # noqa: E731
    spec = SourceSpec(live=live, vmcore=p(vmcore), qmp=p(qmp), pause=p(pause), procfs=procfs,
                      file=None, vmlinux=p(vmlinux))
    if sum(map(bool, (live, vmcore, qmp, procfs))) != 1:
        raise BuddyscopeError("read() takes one source: live, vmcore, qmp or procfs")
    with open_source(spec) as source:
        return source.snapshot()


def _path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)) or path == "":
        raise BuddyscopeError(f"give a file's path, not {path!r}")
    return Path(path)


def _snapshot(snap, what: str = "snapshot") -> Snapshot:
    if not isinstance(snap, Snapshot):
        raise BuddyscopeError(f"{what}: give a Snapshot (load(PATH)), not {type(snap).__name__}")
    return snap


def load(path: PathLike) -> Snapshot:
    """A snapshot file (``buddyscope snapshot -o``), or the snapshot of a
    recording."""
    path = _path(path)
    if not path.exists():
        raise BuddyscopeError(f"{path}: no such file")
    return Snapshot.load(path)


@dataclasses.dataclass
class Recording:
    """A snapshot and the kmem events the kernel traced after it
    (``buddyscope record``)."""

    snapshot: Snapshot
    events: List[PageEvent]
    #: Kernel, guest, workload, ... (``docs/fixture-format.md``).
    provenance: dict


def load_recording(path: PathLike) -> Recording:
    """A recording (``buddyscope record -o``)."""
    from buddyscope.model.fixture import Fixture

    path = _path(path)
    if not path.exists():
        raise BuddyscopeError(f"{path}: no such file")
    fx = Fixture.load(path)
    return Recording(fx.snapshot, parse_lines(fx.trace).events, fx.provenance)


def load_trace(path: PathLike) -> List[PageEvent]:
    """kmem events from ftrace text (``trace-cmd report`` or tracefs ``trace``)."""
    path = _path(path)
    if not path.exists():
        raise BuddyscopeError(f"{path}: no such file")
    return parse_file(path).events


def bundled_recording(name: str) -> Path:
    """A recording that ships with buddyscope: one of ``fixtures/recordings``
    (``6.1-2cpu-fallback``, ...; listed in its README) or of
    ``fixtures/examples`` (``6.1-1cpu-pipe-groom``, docs/api.md)."""
    import buddyscope.fixtures

    root = Path(buddyscope.fixtures.__file__).parent
    for folder in ("recordings", "examples"):
        path = root / folder / f"{name}.json.gz"
        if path.exists():
            return path
    raise BuddyscopeError(f"no bundled recording {name!r}")


def find(snapshot: Snapshot, pfn_or_address: Union[int, str]) -> FoundPage:
    """Where a page is (``buddyscope find``): a PFN, or a ``struct page``
    address when the snapshot records ``vmemmap``; ``0x...`` text too.
    ``.where`` is ``free_list``, ``pcp``, ``not free`` or ``no zone``."""
    if isinstance(pfn_or_address, bool) or not isinstance(pfn_or_address, (int, str)):
        raise BuddyscopeError(f"give a PFN or a struct page address, not {pfn_or_address!r}")
    return find_page(_snapshot(snapshot), pfn_or_address)


def diff(a: Snapshot, b: Snapshot) -> SnapshotDiff:
    """What changed from *a* to *b* (``buddyscope diff``)."""
    return diff_snapshots(_snapshot(a, "a"), _snapshot(b, "b"))


@dataclasses.dataclass(frozen=True)
class Result:
    """One allocation the model made."""

    #: First PFN of the block, None when the allocation failed.
    pfn: Optional[int]
    order: int
    #: Zone it came from (``DMA32``, ``Normal``, ...).
    zone: Optional[str]
    #: The path in one word: ``pcp`` (a pcp list's head), ``refill`` (pcp
    #: refilled from the buddy lists first), ``buddy``, ``fallback`` (from
    #: another migratetype's pageblock) or ``failed``.
    path: str
    #: Each step in the kernel's words.
    steps: List[str]


class Model:
    """The allocator of one snapshot, in pure Python: what the kernel would
    hand out, step by step, exactly.

    :param profile: a kernel series (``"6.1"``) to override the one detected
        from the snapshot's kernel.
    """

    def __init__(self, snapshot: Snapshot, profile: Optional[str] = None):
        self._replayer = Replayer(_snapshot(snapshot), profile_named(profile) if profile else None)
        self._alloc = self._replayer.alloc
        self.snapshot = snapshot

    @property
    def profile(self) -> str:
        """The kernel profile the model follows (``5.10``, ``6.1``, ``6.12``, ``7.2``)."""
        return self._alloc.profile.name

    def replay(self, events: Sequence[PageEvent]) -> ReplayReport:
        """Apply what the kernel did (recorded kmem events, in order) and
        score the model's predictions of it. Replay first, then what-ifs:
        events are the kernel's, the model's own allocations are not in them.
        Events the snapshot cannot take (a CPU it does not have, ...) are
        counted as skipped in the report. A second call goes on from the
        state the first left, in the same report, which counts both."""
        try:
            events = list(events) if not isinstance(events, (str, bytes)) else None
        except TypeError:
            events = None
        if events is None or not all(isinstance(e, PageEvent) for e in events):
            raise BuddyscopeError("replay takes kmem events (load_trace, load_recording(...).events)")
        return self._replayer.run(events)

    def allocate(self, order: int = 0, gfp: Optional[str] = None,
                 migratetype: Optional[str] = None, cpu: int = 0) -> Result:
        """Allocate a block as ``alloc_pages(gfp, order)`` on *cpu* would
        (or, without *gfp*, a GFP_KERNEL-like request of *migratetype*), and
        keep it allocated in the model."""
        order, cpu = self._order(order), self._cpu(cpu)
        if isinstance(gfp, int) and not isinstance(gfp, bool):
            gfp = hex(gfp)   # a gfp mask as a number, as the kernel logs it
        if gfp is not None and not isinstance(gfp, str):
            raise BuddyscopeError(f"gfp: give flags (\"GFP_KERNEL|__GFP_ZERO\") or a mask, not {gfp!r}")
        req = make_request(self._alloc, order, cpu, gfp=gfp, migratetype=migratetype)
        o = self._alloc.allocate(req.cpu, req.order, req.migratetype, req.highest_zoneidx,
                                 req.alloc_flags, req.slow_flags)
        return Result(o.pfn, o.order, o.zone, o.kind, [s.describe() for s in o.path])

    def free(self, pfn: int, order: int = 0, cpu: int = 0) -> None:
        """Free the block at *pfn* as ``__free_pages(page, order)`` on *cpu*
        would: to the pcp list (draining a batch when it is over high) or
        the buddy lists, merging with free buddies."""
        pfn, order, cpu = self._pfn(pfn), self._order(order), self._cpu(cpu)
        if self._alloc.is_free(pfn) or pfn in self._alloc.on_pcp:
            raise BuddyscopeError(f"pfn {pfn:#x} is already free in the model")
        self._alloc.free(cpu, pfn, order)

    def free_list(self, zone: str, order: int, migratetype: str) -> List[int]:
        """PFNs on ``zone->free_area[order].free_list[migratetype]``, head
        first (the next one taken)."""
        zi = self._zone_index(zone)
        return self._alloc.free_list(zi, self._order(order), self._mt(migratetype))

    def pcp_list(self, zone: str, cpu: int, order: int, migratetype: str) -> List[int]:
        """PFNs on *cpu*'s pcp list for (*order*, *migratetype*) in *zone*,
        head first."""
        zi = self._zone_index(zone)
        key = (self._order(order), self._mt(migratetype))
        cpu = self._cpu(cpu)
        if key not in self._alloc.pindex:
            raise BuddyscopeError(f"this kernel has no pcp list of order {order} {migratetype}")
        pcp = self._alloc.zones[zi].pcp.get(cpu)
        if pcp is None:
            raise BuddyscopeError(f"cpu {cpu} has no pcp lists in {zone}")
        return list(pcp.lists[self._alloc.pindex[key]])

    # Arguments checked here, in one line each: past this point a bad one
    # is an IndexError deep in the allocator, after part of the change.
    def _int(self, what: str, value, low: int, end: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BuddyscopeError(f"{what} must be an int, not {value!r}")
        if not low <= value < end:
            raise BuddyscopeError(f"{what} {value} is out of range: {low}..{end - 1}")
        return value

    def _order(self, order) -> int:
        return self._int("order", order, 0, self._alloc.nr_orders)

    def _cpu(self, cpu) -> int:
        return self._int("cpu", cpu, 0, self._alloc.nr_cpus)

    def _pfn(self, pfn) -> int:
        pfn = self._int("pfn", pfn, 0, 1 << 52)
        if self._alloc.zone_of(pfn) is None:
            raise BuddyscopeError(f"pfn {pfn:#x} is in no zone of the snapshot")
        return pfn

    def _mt(self, name) -> int:
        if isinstance(name, int) and not isinstance(name, bool):
            return self._int("migratetype", name, 0, len(self.snapshot.kernel.migratetypes))
        if not isinstance(name, str):
            raise BuddyscopeError(f"migratetype: give a name (\"Movable\") or an index, not {name!r}")
        return self.snapshot.kernel.migratetype(name)

    def _zone_index(self, name: str) -> int:
        for i, z in enumerate(self._alloc.zones):
            if z.name == name:
                return i
        raise BuddyscopeError(f"no zone {name!r}: the model has "
                              f"{', '.join(z.name for z in self._alloc.zones)}")
