"""
Diff
----

What changed between two snapshots of one kernel: free blocks per zone,
order and migratetype; every CPU's pcp counts and lists; pageblocks whose
type changed; and, where both snapshots have PFNs, the free blocks that
appeared, vanished or moved to another list. Two snapshots of different
kernels or memory layouts are refused.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from buddyscope.errors import BuddyscopeError
from buddyscope.model.snapshot import Snapshot, Zone

__all__ = ("BlockChange", "DiffError", "SnapshotDiff", "ZoneDiff", "diff_snapshots", "format_diff")


class DiffError(BuddyscopeError):
    """Two snapshots that cannot be compared."""


@dataclasses.dataclass(frozen=True)
class BlockChange:
    """A free block on a buddy free list (``cpu`` None) or a pcp list."""

    pfn: int
    order: int
    #: The list's migratetype name(s) (``Unmovable/Reclaimable`` for the
    #: 6.1+ THP pcp list).
    migratetype: str
    cpu: Optional[int] = None
    #: For a block that moved: the list it was on in A.
    was: Optional[str] = None


@dataclasses.dataclass
class ZoneDiff:
    node: int
    zone: str
    #: ``nr_free_pages`` in A and in B.
    free_pages: tuple[int, int]
    #: (order, migratetype name) -> (blocks in A, blocks in B), where they
    #: differ; by order, then in ``enum migratetype`` order.
    free_blocks: dict[tuple[int, str], tuple[int, int]]
    #: cpu -> {"count"|"high"|"batch": (A, B)}, where any differs.
    pcp: dict[int, dict[str, tuple[int, int]]]
    #: (pageblock first PFN, type in A, type in B).
    pageblocks_retyped: list[tuple[int, str, str]]
    appeared: list[BlockChange]
    vanished: list[BlockChange]
    #: Same block, same order, another list (a migratetype change, or
    #: between a pcp list and the buddy lists).
    moved: list[BlockChange]
    #: Whether appeared/vanished/moved are known (both snapshots have PFNs).
    has_pfns: bool

    @property
    def changed(self) -> bool:
        return bool(self.free_pages[0] != self.free_pages[1] or self.free_blocks or self.pcp
                    or self.pageblocks_retyped or self.appeared or self.vanished or self.moved)

    def to_dict(self) -> dict:
        return {
            "node": self.node, "zone": self.zone,
            "free_pages": list(self.free_pages),
            "free_blocks": [{"order": o, "migratetype": m, "a": a, "b": b}
                            for (o, m), (a, b) in self.free_blocks.items()],
            "pcp": [{"cpu": c, **{k: list(v) for k, v in d.items()}}
                    for c, d in sorted(self.pcp.items())],
            "pageblocks_retyped": [{"pfn": p, "a": a, "b": b} for p, a, b in self.pageblocks_retyped],
            "appeared": [dataclasses.asdict(c) for c in self.appeared] if self.has_pfns else None,
            "vanished": [dataclasses.asdict(c) for c in self.vanished] if self.has_pfns else None,
            "moved": [dataclasses.asdict(c) for c in self.moved] if self.has_pfns else None,
        }


@dataclasses.dataclass
class SnapshotDiff:
    release: str
    #: Capture times of A and B.
    times: tuple[str, str]
    zones: list[ZoneDiff]

    def to_dict(self) -> dict:
        return {"kernel": self.release, "a": self.times[0], "b": self.times[1],
                "zones": [z.to_dict() for z in self.zones]}


def _check_comparable(a: Snapshot, b: Snapshot) -> None:
    ka, kb = a.kernel, b.kernel
    if ka.release != kb.release:
        raise DiffError(f"A is of kernel {ka.release}, B of {kb.release}: "
                        "diff compares two snapshots of one kernel")
    if ka.build_id and kb.build_id and ka.build_id != kb.build_id:
        raise DiffError(f"A and B are of two builds of {ka.release} "
                        f"(build IDs {ka.build_id[:12]}, {kb.build_id[:12]})")
    for field in ("page_size", "nr_page_orders", "pageblock_order", "migratetypes",
                  "pcp_lists", "nr_cpus"):
        if getattr(ka, field) != getattr(kb, field):
            raise DiffError(f"A and B differ in layout: kernel.{field} is "
                            f"{getattr(ka, field)!r} in A, {getattr(kb, field)!r} in B")
    za = [(z.node, z.name, z.start_pfn, z.spanned_pages) for z in a.zones]
    zb = [(z.node, z.name, z.start_pfn, z.spanned_pages) for z in b.zones]
    if za != zb:
        def show(zs):
            return ", ".join(f"{n}/{m} {s:#x}+{p:#x}" for n, m, s, p in zs)
        raise DiffError(f"A and B have different zones (A: {show(za)}; B: {show(zb)})")


def _mt_name(snap: Snapshot, v: int) -> str:
    names = snap.kernel.migratetypes
    return names[v] if 0 <= v < len(names) else str(v)


def _blocks(snap: Snapshot, z: Zone) -> dict[tuple[int, Optional[int]], tuple[int, str]]:
    """(pfn, cpu or None) -> (order, list migratetype) of every free block.

    A pcp block is keyed by its CPU too: during a free the same PFN can be on
    no two lists, but keying by CPU keeps a pcp->pcp move visible."""
    out: dict[tuple[int, Optional[int]], tuple[int, str]] = {}
    k = snap.kernel
    for order, area in enumerate(z.free_area):
        for mt, lst in enumerate(area.free_list or ()):
            for pfn in lst:
                out[(pfn, None)] = (order, k.migratetypes[mt])
    for pcp in z.pcp:
        for pindex, lst in enumerate(pcp.lists or ()):
            pl = k.pcp_lists[pindex]
            name = "/".join(k.migratetypes[m] for m in pl.migratetypes)
            for pfn in lst:
                out[(pfn, pcp.cpu)] = (pl.order, name)
    return out


def _where(cpu: Optional[int], mt: str) -> str:
    return mt if cpu is None else f"cpu{cpu} pcp {mt}"


def _zone_diff(a: Snapshot, b: Snapshot, za: Zone, zb: Zone) -> ZoneDiff:
    names = a.kernel.migratetypes
    free_blocks = {}
    for order, (fa, fb) in enumerate(zip(za.free_area, zb.free_area)):
        for mt, name in enumerate(names):
            ca, cb = fa.count(mt), fb.count(mt)
            if ca is None or cb is None:
                continue
            if ca != cb:
                free_blocks[(order, name)] = (ca, cb)
    pcp = {}
    for pa, pb in zip(za.pcp, zb.pcp):
        d = {f: (getattr(pa, f), getattr(pb, f)) for f in ("count", "high", "batch")
             if getattr(pa, f) != getattr(pb, f)}
        if d:
            pcp[pa.cpu] = d
    retyped = []
    if za.pageblock_migratetypes is not None and zb.pageblock_migratetypes is not None:
        pbo = a.kernel.pageblock_order
        first = za.start_pfn >> pbo << pbo
        for i, (ta, tb) in enumerate(zip(za.pageblock_migratetypes, zb.pageblock_migratetypes)):
            if ta != tb and ta >= 0 and tb >= 0:
                retyped.append((first + (i << pbo), _mt_name(a, ta), _mt_name(b, tb)))
    appeared: list[BlockChange] = []
    vanished: list[BlockChange] = []
    moved: list[BlockChange] = []
    has_pfns = a.has_pfns and b.has_pfns
    if has_pfns:
        ba, bb = _blocks(a, za), _blocks(b, zb)
        # A block that left one list and is on another in B, with the same
        # order, moved; anything else appeared or vanished.
        by_pfn_a: dict[tuple[int, int], tuple[Optional[int], str]] = {
            (pfn, order): (cpu, mt) for (pfn, cpu), (order, mt) in ba.items()}
        gone = {key: v for key, v in ba.items() if bb.get(key) != v}
        new = {key: v for key, v in bb.items() if ba.get(key) != v}
        for (pfn, cpu), (order, mt) in sorted(new.items(), key=lambda kv: (kv[0][0], kv[1][0])):
            prev = by_pfn_a.get((pfn, order))
            if prev is not None and (pfn, prev[0]) in gone:
                moved.append(BlockChange(pfn, order, mt, cpu, was=_where(*prev)))
                del gone[(pfn, prev[0])]
            else:
                appeared.append(BlockChange(pfn, order, mt, cpu))
        vanished = [BlockChange(pfn, order, mt, cpu)
                    for (pfn, cpu), (order, mt) in sorted(gone.items(), key=lambda kv: kv[0][0])]
    return ZoneDiff(za.node, za.name, (za.nr_free_pages, zb.nr_free_pages), free_blocks, pcp,
                    retyped, appeared, vanished, moved, has_pfns)


def diff_snapshots(a: Snapshot, b: Snapshot) -> SnapshotDiff:
    """What changed from *a* to *b*, two snapshots of one kernel with one
    memory layout (else :class:`DiffError`)."""
    _check_comparable(a, b)
    return SnapshotDiff(a.kernel.release, (a.capture.time, b.capture.time),
                        [_zone_diff(a, b, za, zb) for za, zb in zip(a.zones, b.zones)])


def _signed(a: int, b: int) -> str:
    return f"{a} -> {b} ({b - a:+d})"


def format_diff(d: SnapshotDiff, limit: int = 20) -> str:
    """``buddyscope diff``'s text; at most *limit* blocks per kind are listed."""
    lines = [f"kernel {d.release}: A {d.times[0]}, B {d.times[1]}"]
    for z in d.zones:
        lines.append(f"\nzone {z.node}/{z.zone}: free pages {_signed(*z.free_pages)}")
        if not z.changed:
            lines.append("  no change")
            continue
        for (order, mt), (a, b) in z.free_blocks.items():
            lines.append(f"  order {order:2} {mt:<12} blocks {_signed(a, b)}")
        for cpu, fields in sorted(z.pcp.items()):
            lines.append(f"  cpu {cpu} pcp " + ", ".join(f"{f} {_signed(*v)}" for f, v in fields.items()))
        for pfn, ta, tb in z.pageblocks_retyped[:limit]:
            lines.append(f"  pageblock {pfn:#x} retyped {ta} -> {tb}")
        if len(z.pageblocks_retyped) > limit:
            lines.append(f"  ... {len(z.pageblocks_retyped) - limit} more pageblocks retyped")
        if not z.has_pfns:
            lines.append("  (no PFNs in A or B: blocks that appeared or vanished are unknown)")
            continue
        for title, blocks in (("appeared", z.appeared), ("vanished", z.vanished), ("moved", z.moved)):
            if not blocks:
                continue
            lines.append(f"  {len(blocks)} blocks {title}:")
            for c in blocks[:limit]:
                was = f" (was {c.was})" if c.was else ""
                lines.append(f"    {c.pfn:#x} order {c.order} {_where(c.cpu, c.migratetype)}{was}")
            if len(blocks) > limit:
                lines.append(f"    ... {len(blocks) - limit} more")
    return "\n".join(lines)
