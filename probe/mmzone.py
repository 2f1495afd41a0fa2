"""
Memory Zones
------------

Reading ``struct zone``: counters, watermarks, ``free_area[order].free_list[mt]``
in list order, pageblock migratetypes and every CPU's ``per_cpu_pages`` lists,
into the plain-data :class:`~buddyscope.model.snapshot.Snapshot`.
"""

from __future__ import annotations

import struct
import time
from typing import Iterator, Optional, Sequence

import drgn
from drgn.helpers.linux.cpumask import for_each_possible_cpu
from drgn.helpers.linux.mmzone import for_each_online_pgdat
from drgn.helpers.linux.percpu import per_cpu_ptr

from buddyscope import __version__
from buddyscope.model.pfnarray import pfn_array
from buddyscope.model.snapshot import (
    Anomaly,
    Capture,
    FreeArea,
    KernelInfo,
    Pcp,
    Snapshot,
    Zone,
)
from buddyscope.probe.layout import Layout, get_layout
from buddyscope.probe.pagemap import PageMap, walk_list, walk_until_whole
from buddyscope.probe.unpredictable import read_unpredictable

__all__ = (
    "for_each_populated_zone",
    "read_kernel_info",
    "read_pageblock_migratetypes",
    "read_snapshot",
    "read_zone",
)


def for_each_populated_zone(prog: drgn.Program) -> Iterator[drgn.Object]:
    """Every zone with present pages, node by node, in zone order.

    :return: Iterator of ``struct zone *`` objects.
    """
    for pgdat in for_each_online_pgdat(prog):
        for i in range(len(pgdat.node_zones)):
            zone = pgdat.node_zones[i]
            if zone.present_pages.value_():
                yield zone.address_of_()


def read_kernel_info(prog: drgn.Program) -> KernelInfo:
    """:class:`KernelInfo` of *prog*."""
    layout = get_layout(prog)
    build_id = None
    try:
        build_id = prog.main_module().build_id.hex()  # type: ignore[union-attr]
    except (LookupError, AttributeError):
        pass
    return KernelInfo(
        release=prog["UTS_RELEASE"].string_().decode(),
        page_size=layout.page_size,
        nr_page_orders=layout.nr_page_orders,
        pageblock_order=layout.pageblock_order,
        migratetypes=list(layout.migratetypes),
        pcp_lists=list(layout.pcp_lists),
        nr_cpus=len(list(for_each_possible_cpu(prog))),
        build_id=build_id,
        features=list(layout.features),
        vmemmap=layout.vmemmap,
        sizeof_page=layout.sizeof_page,
        unpredictable=read_unpredictable(prog),
    )


def _zone_lock_held(zone: drgn.Object) -> bool:
    # spinlock_t -> raw_spinlock -> arch_spinlock_t (qspinlock): non-zero val
    # means held or contended.
    try:
        return bool(zone.lock.rlock.raw_lock.val.counter.value_())
    except AttributeError:
        return False


def read_pageblock_migratetypes(prog: drgn.Program, zone: drgn.Object,
                                anomalies: list[Anomaly]) -> list[int]:
    """Migratetype of every pageblock of *zone*, as ``get_pageblock_migratetype``
    computes it, from the pageblock holding ``zone_start_pfn`` on.

    :param zone: ``struct zone *``
    """
    layout = get_layout(prog)
    order = layout.pageblock_order
    start = zone.zone_start_pfn.value_()
    end = start + zone.spanned_pages.value_()
    pps = layout.pages_per_section
    shift = layout.section_size_bits - (layout.page_size.bit_length() - 1)
    bits = layout.pageblock_bits
    blocks_per_section = pps >> order
    nbytes = (blocks_per_section * bits + 7) // 8
    mem_section = prog["mem_section"]
    out: list[int] = []
    cache: dict[int, Optional[bytes]] = {}
    pfn = (start >> order) << order
    while pfn < end:
        nr = pfn >> shift
        if nr not in cache:
            cache[nr] = _section_pageblock_flags(prog, layout, mem_section, nr, nbytes, anomalies,
                                                 zone.name.string_().decode())
        flags = cache[nr]
        if flags is None:
            # No memory in this section (a hole in the zone's span, such as
            # the PCI hole): no pageblock there to have a type.
            out.append(-1)
        else:
            bitidx = ((pfn & (pps - 1)) >> order) * bits
            word = int.from_bytes(flags[(bitidx // 64) * 8 : (bitidx // 64) * 8 + 8], "little")
            value = word >> (bitidx % 64)
            # get_pfnblock_migratetype (7.2): the isolate bit wins.
            if layout.pageblock_isolate_bit is not None and value >> layout.pageblock_isolate_bit & 1:
                out.append(layout.migrate_isolate)  # type: ignore[arg-type]
            else:
                out.append(value & layout.pageblock_migrate_mask)
        pfn += 1 << order
    return out


# include/linux/mmzone.h (Debian's linux-source-6.1 6.1.192-3):
# SECTION_MARKED_PRESENT is bit 0 of section_mem_map.
_SECTION_MARKED_PRESENT = 1


def _section_pageblock_flags(prog: drgn.Program, layout: Layout, mem_section: drgn.Object,
                             nr: int, nbytes: int, anomalies: list[Anomaly],
                             zname: str) -> Optional[bytes]:
    """``__nr_to_section(nr)->usage->pageblock_flags``, or None for a section
    that is not present (``present_section_nr``)."""
    try:
        root = mem_section[nr // layout.sections_per_root]
        if not root.value_():
            return None
        ms = root[nr % layout.sections_per_root]
        if not ms.section_mem_map.value_() & _SECTION_MARKED_PRESENT:
            return None
        if not ms.usage.value_():
            anomalies.append(Anomaly("unreadable", f"{zname} pageblock_flags",
                                     f"section {nr} is present but has no usage map"))
            return None
        return prog.read(ms.usage.pageblock_flags.address_of_().value_(), nbytes)
    except drgn.FaultError as e:
        anomalies.append(Anomaly("unreadable", f"{zname} pageblock_flags", f"section {nr}: {e}"))
        return None


def _int_members(obj: drgn.Object, names: tuple[str, ...]) -> dict[str, int]:
    return {n: getattr(obj, n).value_() for n in names}


# A live read walks a list again, with struct page read afresh, when it came
# out torn: up to this many times (then the last walk is kept, its anomalies
# with it).
LIVE_REWALKS = 8

# A live read's pcp walks read struct page 64 at a time (4 KiB of a 64-byte
# struct page), each walk afresh: pcp pages change owner in microseconds on a
# busy host, and a 4096-page chunk read earlier in the snapshot is stale by
# then (a 6.1 busy guest: cpu1's list read as 170 pages of 2132, its first
# entry's prev LIST_POISON2 in a chunk read during the free-list walk).
_FRESH_CHUNK_SHIFT = 6


def _aligned(pfns: Sequence[int], order: int, where: str,
             anomalies: list[Anomaly]) -> Sequence[int]:
    """*pfns* without the entries not aligned to *order*, each noted as a
    ``misaligned`` anomaly: a running kernel's list read mid-merge, mid-split
    or mid-change; a block (free or on a pcp list) is always aligned to its
    order, so the entry is not one (a paused kernel never shows this)."""
    mask = (1 << order) - 1
    if not mask or not any(p & mask for p in pfns):
        return pfns
    for pfn in (p for p in pfns if p & mask):
        anomalies.append(Anomaly("misaligned", where, f"pfn {pfn:#x} is not aligned to order {order}"))
    return [p for p in pfns if not p & mask]


def _walk_pcp(prog: drgn.Program, layout: Layout, pcp_ptr: drgn.Object, lists_offset: int,
              zname: str, cpu: int, pagemap: PageMap, bound: int,
              anomalies: list[Anomaly]) -> tuple[drgn.Object, list[list[int]]]:
    """One walk of one CPU's ``per_cpu_pages``: the struct (count and every
    list head read at once) and its lists."""
    base = pcp_ptr.value_()
    pcp = pcp_ptr[0].read_()
    raw = pcp.lists.to_bytes_()
    lists = []
    for pindex in range(len(layout.pcp_lists)):
        head = base + lists_offset + 16 * pindex
        first = struct.unpack_from("<Q", raw, 16 * pindex)[0]
        where = f"{zname} cpu{cpu} pcp lists[{pindex}]"
        lst = walk_list(pagemap, head, first, layout.pcp_link, bound, where, anomalies)
        lists.append(list(_aligned(lst, layout.pcp_lists[pindex].order, where, anomalies)))
    # pcp->count is in pages: an order-N entry counts 1 << N.
    count = pcp.count.value_()
    held = sum(len(l) << layout.pcp_lists[i].order for i, l in enumerate(lists))
    if held != count:
        anomalies.append(Anomaly("count_mismatch", f"{zname} cpu{cpu} pcp",
                                 f"count {count}, lists hold {held} pages"))
    return pcp, lists


def _read_pcp(prog: drgn.Program, zone: drgn.Object, zname: str, pagemap: PageMap,
              anomalies: list[Anomaly], bound: int, rewalks: int = 0,
              tries: Optional[list[int]] = None) -> list[Pcp]:
    """Every CPU's pcp lists. With *rewalks* (a running kernel), each CPU's
    walk reads its pages afresh and is repeated while it comes out torn, at
    most *rewalks* more times; the number of walks per CPU is appended to
    *tries*."""
    layout = get_layout(prog)
    out = []
    lists_offset = prog.type("struct per_cpu_pages").member("lists").offset
    for cpu in for_each_possible_cpu(prog):
        pcp_ptr = per_cpu_ptr(getattr(zone, layout.pcp_member), cpu)
        if layout.pcp_member == "pageset":
            pcp_ptr = pcp_ptr.pcp.address_of_()

        def walk(found: list[Anomaly], pcp_ptr: drgn.Object = pcp_ptr, cpu: int = cpu):
            pm = pagemap if not rewalks else PageMap(prog, layout.vmemmap, layout.sizeof_page,
                                                     _FRESH_CHUNK_SHIFT)
            return _walk_pcp(prog, layout, pcp_ptr, lists_offset, zname, cpu, pm, bound, found)

        (pcp, lists), found, n = walk_until_whole(walk, rewalks)
        if tries is not None:
            tries.append(n)
        anomalies.extend(found)
        out.append(Pcp(cpu=cpu, count=pcp.count.value_(), high=pcp.high.value_(),
                       batch=pcp.batch.value_(), fields=_int_members(pcp, layout.pcp_fields),
                       lists=lists))
    return out


def _nr_free_pages(prog: drgn.Program, zone: drgn.Object, layout: Layout
                   ) -> tuple[int, int, dict[int, tuple[int, int]]]:
    """(``zone_page_state_snapshot(zone, NR_FREE_PAGES)``, the bare
    ``vm_stat``, cpu -> (``vm_stat_diff[NR_FREE_PAGES]``, ``stat_threshold``))."""
    item = prog.constant("NR_FREE_PAGES").value_()
    value = zone.vm_stat[item].counter.value_()
    per_cpu = {}
    for cpu in for_each_possible_cpu(prog):
        st = per_cpu_ptr(getattr(zone, layout.zonestat_member), cpu)
        per_cpu[cpu] = (st.vm_stat_diff[item].value_(), st.stat_threshold.value_())
    total = value + sum(d for d, _ in per_cpu.values())
    return total, value, per_cpu


def _with_vmstat(pcps: list[Pcp], per_cpu: dict[int, tuple[int, int]]) -> list[Pcp]:
    """Each CPU's NR_FREE_PAGES delta not yet folded into ``zone->vm_stat``
    and its fold threshold, kept with that CPU's pcp (the watermark checks
    read the lagging ``zone_page_state``)."""
    for pcp in pcps:
        diff, threshold = per_cpu[pcp.cpu]
        pcp.fields["vm_stat_diff_nr_free_pages"] = diff
        pcp.fields["stat_threshold"] = threshold
    return pcps


# The zone->flags bits the model follows: kswapd's reclaim window (pcp->high
# lowered while it runs) and 6.7+'s below-high mark.
_ZONE_FLAGS = ("ZONE_RECLAIM_ACTIVE", "ZONE_BELOW_HIGH")


def _zone_flag_bits(prog: drgn.Program, zone: drgn.Object) -> dict[str, int]:
    """``zone->flags`` bits of ``enum zone_flags`` named in :data:`_ZONE_FLAGS`
    (0 or 1 each); only those the kernel's enum has."""
    try:
        enumerators = prog.type("enum zone_flags").enumerators or ()
    except LookupError:
        return {}
    value = zone.flags.value_()
    return {name: (value >> bit) & 1 for name, bit in enumerators if name in _ZONE_FLAGS}


def _walk_free_area(prog: drgn.Program, layout: Layout, base: int, area: drgn.Object,
                    order: int, name: str, pagemap: PageMap, bound: int,
                    anomalies: list[Anomaly]) -> FreeArea:
    """One walk of ``free_area[order]``'s lists, checked against ``nr_free``
    (*area* read at once, with every list head)."""
    fa_member = prog.type("struct zone").member("free_area")
    fa_type = fa_member.type.type
    fl_offset = fa_type.member("free_list").offset
    nr_types = len(layout.migratetypes)
    lists = []
    for mt in range(nr_types):
        head = base + fa_member.offset + order * fa_type.size + fl_offset + 16 * mt
        first = area.free_list[mt].next.value_()
        lists.append(walk_list(pagemap, head, first, layout.buddy_link, bound,
                               f"{name} free_area[{order}].free_list[{layout.migratetypes[mt]}]",
                               anomalies, order=order, private_offset=layout.private_offset))
    lists = [_aligned(lst, order, f"{name} free_area[{order}].free_list[{layout.migratetypes[mt]}]",
                      anomalies) for mt, lst in enumerate(lists)]
    nr_free = area.nr_free.value_()
    if sum(len(l) for l in lists) != nr_free:
        anomalies.append(Anomaly("count_mismatch", f"{name} free_area[{order}]",
                                 f"nr_free {nr_free}, lists hold {sum(len(l) for l in lists)}"))
    # Arrays, not an int object per page, from here to the file (format 2).
    return FreeArea(nr_free=nr_free, free_list=[pfn_array(l) for l in lists])


def read_zone(prog: drgn.Program, zone_ptr: drgn.Object, anomalies: list[Anomaly],
              rewalks: int = 0, tries: Optional[dict[str, list[int]]] = None) -> Zone:
    """One :class:`Zone` with every list in list order.

    :param zone_ptr: ``struct zone *``
    :param rewalks: on a running kernel, how many times more a list that
        came out torn (:data:`~buddyscope.model.snapshot.TORN_KINDS`) is
        walked, with its pages read afresh: each CPU's pcp lists, each
        order's free lists. 0 for a kernel that does not run during the read.
    :param tries: filled with the number of walks of each CPU's pcp lists
        (``"pcp"``) and of each order's free lists (``"free_area"``).
    """
    layout = get_layout(prog)
    zone = zone_ptr[0].read_()  # one read of the whole struct zone
    base = zone_ptr.value_()
    name = zone.name.string_().decode()
    start = zone.zone_start_pfn.value_()
    spanned = zone.spanned_pages.value_()
    if _zone_lock_held(zone):
        anomalies.append(Anomaly("locked", f"{name} lock", "zone->lock was held while read"))
    pagemap = PageMap(prog, layout.vmemmap, layout.sizeof_page)
    bound = spanned + 1
    tries = tries if tries is not None else {}

    # The pcp lists first: on a running kernel they change most (every
    # allocation and free of an order the pcp lists hold).
    pcp = _read_pcp(prog, zone, name, pagemap, anomalies, bound, rewalks,
                    tries.setdefault("pcp", []))
    if rewalks:
        # The free lists as they are after the pcp walk, read afresh.
        pagemap = PageMap(prog, layout.vmemmap, layout.sizeof_page)
    free_area = []
    free_tries = tries.setdefault("free_area", [])
    for order in range(layout.nr_page_orders):
        walks = 0

        def walk(found: list[Anomaly], order: int = order) -> FreeArea:
            nonlocal pagemap, walks
            area = zone.free_area[order]
            if rewalks:
                # Running: nr_free and the list heads as they are now, after
                # the walks before this one.
                area = zone_ptr.free_area[order].read_()
            if walks:
                # Again, with the pages read afresh.
                pagemap = PageMap(prog, layout.vmemmap, layout.sizeof_page)
            walks += 1
            return _walk_free_area(prog, layout, base, area, order, name, pagemap, bound, found)

        fa, found, n = walk_until_whole(walk, rewalks)
        free_tries.append(n)
        anomalies.extend(found)
        free_area.append(fa)

    nr_free_pages, vm_stat_free, vm_per_cpu = _nr_free_pages(prog, zone, layout)
    fields = _int_members(zone, layout.zone_fields)
    fields["vm_stat_nr_free_pages"] = vm_stat_free
    fields.update(_zone_flag_bits(prog, zone))
    return Zone(
        node=zone.node.value_() if hasattr(zone, "node") else 0,
        name=name,
        start_pfn=start,
        spanned_pages=spanned,
        present_pages=zone.present_pages.value_(),
        managed_pages=zone.managed_pages.counter.value_(),
        watermarks={n: zone._watermark[i].value_() for i, n in enumerate(layout.watermarks)},
        watermark_boost=zone.watermark_boost.value_(),
        lowmem_reserve=[zone.lowmem_reserve[i].value_() for i in range(len(zone.lowmem_reserve))],
        nr_reserved_highatomic=zone.nr_reserved_highatomic.value_(),
        nr_free_pages=nr_free_pages,
        free_area=free_area,
        pcp=_with_vmstat(pcp, vm_per_cpu),
        pageblock_migratetypes=read_pageblock_migratetypes(prog, zone_ptr, anomalies),
        fields=fields,
    )


def read_snapshot(prog: drgn.Program, source: str, target: str, paused: bool) -> Snapshot:
    """The whole allocator state of *prog* as a :class:`Snapshot`.

    :param source: ``live``, ``vmcore`` or ``qmp``.
    :param paused: whether the kernel is known not to run during the read.
    """
    t0 = time.monotonic()
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    anomalies: list[Anomaly] = []
    kernel = read_kernel_info(prog)
    rewalks = 0 if paused else LIVE_REWALKS
    tries: dict[str, dict[str, list[int]]] = {}
    zones = []
    for z in for_each_populated_zone(prog):
        zt: dict[str, list[int]] = {}
        zones.append(read_zone(prog, z, anomalies, rewalks, zt))
        tries[zones[-1].name] = zt
    layout = get_layout(prog)
    # struct page addresses <-> PFNs (model/find.py).
    notes: dict = {"vmemmap": layout.vmemmap, "sizeof_page": layout.sizeof_page}
    if rewalks:
        # How many walks each list took before it came out whole (or the
        # last one was kept): per zone, per CPU's pcp and per order.
        notes["walks"] = tries
    capture = Capture(source=source, target=target, time=when, paused=paused,
                      read_seconds=round(time.monotonic() - t0, 4),
                      tool=f"buddyscope {__version__}", anomalies=anomalies, notes=notes)
    return Snapshot(kernel=kernel, capture=capture, zones=zones)
