"""
Reference walk
--------------

Every free list and pcp list walked the plain way, with drgn's
``list_for_each_entry`` and one drgn object per node. It is slow (microseconds
per node) and independent of :mod:`~buddyscope.probe.pagemap`'s bulk reads,
which makes it the reference the fast walker is checked and timed against.
"""

from __future__ import annotations

import drgn
from drgn.helpers.linux.cpumask import for_each_possible_cpu
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.mm import page_to_pfn
from drgn.helpers.linux.percpu import per_cpu_ptr

from buddyscope.model.snapshot import Snapshot
from buddyscope.probe.layout import get_layout
from buddyscope.probe.mmzone import for_each_populated_zone

__all__ = ("list_for_each_entry_pfns", "snapshot_pfn_lists")


def _link(prog: drgn.Program, *names: str) -> str:
    page = prog.type("struct page")
    for name in names:
        try:
            page.member(name)
            return name
        except LookupError:
            continue
    raise LookupError(f"struct page has none of {names}")


def list_for_each_entry_pfns(prog: drgn.Program) -> list[list[int]]:
    """PFNs of every list, zone by zone: each ``free_area[order].free_list[mt]``
    (orders, then migratetypes), then each CPU's ``lists[pindex]``."""
    layout = get_layout(prog)
    buddy = _link(prog, "buddy_list", "lru")
    pcp_link = _link(prog, "pcp_list", "lru")
    out = []
    for zone in for_each_populated_zone(prog):
        for order in range(layout.nr_page_orders):
            for mt in range(len(layout.migratetypes)):
                head = zone.free_area[order].free_list[mt].address_of_()
                out.append([page_to_pfn(p).value_() for p in list_for_each_entry("struct page", head, buddy)])
        for cpu in for_each_possible_cpu(prog):
            pcp = per_cpu_ptr(getattr(zone, layout.pcp_member), cpu)
            if layout.pcp_member == "pageset":
                pcp = pcp.pcp.address_of_()
            for i in range(len(layout.pcp_lists)):
                head = pcp.lists[i].address_of_()
                out.append([page_to_pfn(p).value_() for p in list_for_each_entry("struct page", head, pcp_link)])
    return out


def snapshot_pfn_lists(snap: Snapshot) -> list[list[int]]:
    """The lists of *snap* in the order :func:`list_for_each_entry_pfns` gives them."""
    out: list[list[int]] = []
    for z in snap.zones:
        for area in z.free_area:
            out += [list(l) for l in area.free_list or []]
        for p in z.pcp:
            out += [list(l) for l in p.lists or []]
    return out
