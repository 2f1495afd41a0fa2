"""
Report
------

Plain-text views of a :class:`~buddyscope.model.snapshot.Snapshot`: per zone,
free blocks per order x migratetype (like ``/proc/pagetypeinfo``), the
watermarks, pcp totals per CPU, and optionally every non-empty list with its
PFNs in order (like ``crash``'s ``kmem -F``).
"""

from __future__ import annotations

from buddyscope.model.snapshot import Snapshot, Zone

__all__ = ("format_snapshot",)


def _header(snap: Snapshot) -> list[str]:
    k, c = snap.kernel, snap.capture
    state = "paused, consistent" if c.consistent else ("paused" if c.paused else "running (not consistent)")
    lines = [
        f"{k.release}  {c.source} {c.target}  {c.time}  {state}  read in {c.read_seconds:.3f} s",
        f"orders 0-{k.max_page_order}  pageblock order {k.pageblock_order}  "
        f"page size {k.page_size}  {k.nr_cpus} CPUs",
    ]
    for a in c.anomalies:
        lines.append(f"anomaly: {a.kind}: {a.where}: {a.detail}")
    return lines


def _zone_table(snap: Snapshot, z: Zone) -> list[str]:
    k = snap.kernel
    orders = range(k.nr_page_orders)
    w = max([len(n) for n in k.migratetypes] + [len("nr_free")])
    lines = [f"Node {z.node}, zone {z.name}: pfn {z.start_pfn:#x}-{z.end_pfn:#x}  "
             f"spanned {z.spanned_pages}  present {z.present_pages}  managed {z.managed_pages}",
             f"  {'order':<{w}} " + "".join(f"{o:>7}" for o in orders)]
    for mt, name in enumerate(k.migratetypes):
        counts = [z.free_area[o].count(mt) for o in orders]
        if all(c is None for c in counts):
            continue
        lines.append(f"  {name:<{w}} " + "".join(f"{'?' if c is None else c:>7}" for c in counts))
    lines.append(f"  {'nr_free':<{w}} " + "".join(f"{z.free_area[o].nr_free:>7}" for o in orders))
    free = z.pages_on_free_lists()
    wm = "  ".join(f"{n} {v}" for n, v in z.watermarks.items())
    lines.append(f"  free pages {free} (NR_FREE_PAGES {z.nr_free_pages})  watermarks: {wm}  "
                 f"boost {z.watermark_boost}  highatomic reserve {z.nr_reserved_highatomic}")
    lines.append(f"  lowmem_reserve {z.lowmem_reserve}")
    if z.pcp:
        lines.append("  pcp: " + "  ".join(f"cpu{p.cpu} {p.count}/{p.high}/{p.batch}" for p in z.pcp)
                     + "  (count/high/batch)")
    return lines


def _zone_lists(snap: Snapshot, z: Zone) -> list[str]:
    k = snap.kernel
    lines = []
    for o, area in enumerate(z.free_area):
        for mt, pfns in enumerate(area.free_list or []):
            if pfns:
                lines.append(f"  free_area[{o}].free_list[{k.migratetypes[mt]}] ({len(pfns)}): "
                             + " ".join(f"{p:#x}" for p in pfns))
    for p in z.pcp:
        for pindex, pfns in enumerate(p.lists or []):
            if pfns:
                pl = k.pcp_lists[pindex]
                types = "/".join(k.migratetypes[m] for m in pl.migratetypes)
                lines.append(f"  cpu{p.cpu} pcp lists[{pindex}] (order {pl.order} {types}) ({len(pfns)}): "
                             + " ".join(f"{x:#x}" for x in pfns))
    return lines


def format_snapshot(snap: Snapshot, lists: bool = False) -> str:
    """The text ``buddyscope snapshot`` prints."""
    lines = _header(snap)
    for z in snap.zones:
        lines.append("")
        lines += _zone_table(snap, z)
        if lists:
            lines += _zone_lists(snap, z)
    if lists and not snap.has_pfns:
        lines.append("")
        lines.append(f"(no PFNs: a {snap.capture.source} snapshot has counts only)")
    return "\n".join(lines)
