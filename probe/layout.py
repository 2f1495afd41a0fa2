"""
Layout
------

Every difference between the kernels buddyscope reads (5.10, 6.1, 6.12, 7.2)
that the probe depends on, detected once per program from the kernel's own
types, newest layout first, and cached in ``prog.cache``. Nothing here (or
anywhere in buddyscope) compares version strings.
"""

from __future__ import annotations

import dataclasses

import drgn

from buddyscope.model.snapshot import PcpList

__all__ = ("Layout", "detect_features", "get_layout")

# PAGE_ALLOC_COSTLY_ORDER: 3 in every kernel with high-order pcp lists.
_PAGE_ALLOC_COSTLY_ORDER = 3
# HPAGE_PMD_ORDER on x86-64 (PMD_SHIFT 21 - PAGE_SHIFT 12). pageblock_order is
# this macro unless CONFIG_HUGETLB_PAGE_SIZE_VARIABLE makes it a variable.
_X86_64_HPAGE_PMD_ORDER = 9


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where things are in this kernel's ``struct page``, ``struct zone`` and
    ``struct per_cpu_pages``, and how its enums and bitmaps are laid out."""

    page_size: int
    sizeof_page: int
    #: Address of ``struct page`` of PFN 0 (``vmemmap``).
    vmemmap: int
    #: ``offsetof(struct page, buddy_list)`` (``lru`` before 6.0).
    buddy_link: int
    #: ``offsetof(struct page, pcp_list)`` (``lru`` before 6.0).
    pcp_link: int
    #: ``offsetof(struct page, private)``: a free buddy's order.
    private_offset: int
    nr_page_orders: int
    #: ``migratetype_names[]``, one per ``enum migratetype`` value below MIGRATE_TYPES.
    migratetypes: tuple[str, ...]
    #: ``per_cpu_pageset`` (5.14+) or ``pageset`` (its ``.pcp``).
    pcp_member: str
    #: ``per_cpu_zonestats`` (5.14+) or ``pageset``: where a CPU's
    #: ``vm_stat_diff`` and ``stat_threshold`` live.
    zonestat_member: str
    pcp_lists: tuple[PcpList, ...]
    #: Integer members of ``struct per_cpu_pages`` besides count/high/batch.
    pcp_fields: tuple[str, ...]
    #: ``enum zone_watermarks`` names, lower case without ``WMARK_``.
    watermarks: tuple[str, ...]
    pageblock_order: int
    #: Bits per pageblock in ``usage->pageblock_flags``.
    pageblock_bits: int
    #: Mask of the migratetype bits within a pageblock's bits.
    pageblock_migrate_mask: int
    #: Bit that marks an isolated pageblock (7.2), and MIGRATE_ISOLATE.
    pageblock_isolate_bit: int | None
    migrate_isolate: int | None
    section_size_bits: int
    sections_per_root: int
    #: ``struct zone`` counters some kernels have (``nr_free_highatomic``, ...).
    zone_fields: tuple[str, ...]
    #: Type facts that tell kernels apart (:func:`detect_features`).
    features: tuple[str, ...]

    @property
    def pages_per_section(self) -> int:
        return 1 << (self.section_size_bits - (self.page_size.bit_length() - 1))


def _member_offset(t: drgn.Type, *names: str) -> tuple[str, int]:
    for name in names:
        try:
            return name, t.member(name).offset
        except LookupError:
            continue
    raise LookupError(f"{t} has none of {names}")


def _enumerators(prog: drgn.Program, name: str) -> dict[str, int]:
    return {e.name: e.value for e in prog.type(name).enumerators}


def _detect(prog: drgn.Program) -> Layout:
    page = prog.type("struct page")
    # Since Linux kernel commit bf75f200569d ("mm/page_alloc: add
    # page->buddy_list and page->pcp_list") (in v6.0), the free-list links
    # have their own names in the same union as lru; before, free pages were
    # linked through lru.
    _, buddy_link = _member_offset(page, "buddy_list", "lru")
    _, pcp_link = _member_offset(page, "pcp_list", "lru")

    zone = prog.type("struct zone")
    nr_page_orders = zone.member("free_area").type.length

    mt = _enumerators(prog, "enum migratetype")
    nr_types = mt["MIGRATE_TYPES"]
    names = prog["migratetype_names"]
    migratetypes = tuple(names[i].string_().decode() for i in range(nr_types))

    # Since Linux kernel commit 28f836b6777b ("mm/page_alloc: split per cpu
    # page lists and zone stats") (in v5.14), struct zone points at struct
    # per_cpu_pages directly; before, at struct per_cpu_pageset whose .pcp it
    # is.
    pcp_member, _ = _member_offset(zone, "per_cpu_pageset", "pageset")
    # The same commit moved the per-CPU vmstat deltas to per_cpu_zonestats.
    zonestat_member, _ = _member_offset(zone, "per_cpu_zonestats", "pageset")
    pcp_type = prog.type("struct per_cpu_pages")
    nr_lists = pcp_type.member("lists").type.length
    pcp_lists = _pcp_lists(nr_lists, mt["MIGRATE_PCPTYPES"], mt["MIGRATE_MOVABLE"])
    pcp_fields = tuple(
        m.name for m in pcp_type.members
        if m.name not in ("count", "high", "batch", "lists", "lock")
        and m.type.unaliased_kind() in (drgn.TypeKind.INT, drgn.TypeKind.BOOL)
    )

    wm = _enumerators(prog, "enum zone_watermarks")
    watermarks = tuple(
        n.removeprefix("WMARK_").lower() for n, _ in sorted(wm.items(), key=lambda kv: kv[1])
        if n != "NR_WMARK"
    )

    pb = _enumerators(prog, "enum pageblock_bits")
    if "__NR_PAGEBLOCK_BITS" in pb:
        # Since Linux kernel commit "mm/page_isolation: make page isolation a
        # standalone bit" (in v6.16), NR_PAGEBLOCK_BITS is a macro rounding
        # __NR_PAGEBLOCK_BITS up to a power of two, and isolation has its own bit.
        n = pb["__NR_PAGEBLOCK_BITS"]
        pageblock_bits = 1 << (n - 1).bit_length()
        migrate_mask = (1 << (pb["PB_migrate_2"] + 1)) - 1
        isolate_bit = pb.get("PB_migrate_isolate")
    else:
        pageblock_bits = pb["NR_PAGEBLOCK_BITS"]
        migrate_mask = (1 << (pb["PB_migrate_end"] + 1)) - 1
        isolate_bit = None

    try:
        pageblock_order = prog["pageblock_order"].value_()
    except KeyError:
        pageblock_order = _X86_64_HPAGE_PMD_ORDER

    page0 = prog["vmemmap"]
    return Layout(
        page_size=prog["PAGE_SIZE"].value_(),
        sizeof_page=page.size,
        vmemmap=page0.value_(),
        buddy_link=buddy_link,
        pcp_link=pcp_link,
        private_offset=page.member("private").offset,
        nr_page_orders=nr_page_orders,
        migratetypes=migratetypes,
        pcp_member=pcp_member,
        zonestat_member=zonestat_member,
        pcp_lists=pcp_lists,
        pcp_fields=pcp_fields,
        watermarks=watermarks,
        pageblock_order=pageblock_order,
        pageblock_bits=pageblock_bits,
        pageblock_migrate_mask=migrate_mask,
        pageblock_isolate_bit=isolate_bit,
        migrate_isolate=mt.get("MIGRATE_ISOLATE"),
        section_size_bits=prog["SECTION_SIZE_BITS"].value_(),
        sections_per_root=prog["SECTIONS_PER_ROOT"].value_(),
        zone_fields=tuple(n for n in ("nr_free_highatomic", "nr_isolate_pageblock", "cma_pages")
                          if _has_member(zone, n)),
        features=detect_features(prog),
    )


def _has_member(t: drgn.Type, name: str) -> bool:
    try:
        t.member(name)
    except LookupError:
        return False
    return True


# Type facts that tell kernels apart, named in the kernel's own words:
# ``zone.trylock_free_pages`` for a member of ``struct zone``, ``enum
# rmqueue_mode`` for an enum type, a bare name for an enumerator. Each is a
# check of DWARF types and enums only (no memory is read), so that a vmlinux
# alone answers it. Newest first; a snapshot lists them in this order.


def _member_of(struct: str, member: str):
    def check(prog: drgn.Program) -> bool:
        return _has_member(prog.type(f"struct {struct}"), member)
    return check


def _enum_type(name: str):
    def check(prog: drgn.Program) -> bool:
        try:
            prog.type(f"enum {name}")
        except LookupError:
            return False
        return True
    return check


def _enumerator_of(enum: str, name: str):
    def check(prog: drgn.Program) -> bool:
        return name in _enumerators(prog, f"enum {enum}")
    return check


_FEATURES = (
    # Since Linux kernel commit "mm/page_isolation: make page isolation a
    # standalone bit" (in v6.16), isolation is its own pageblock bit next to
    # the migratetype bits instead of the migratetype MIGRATE_ISOLATE.
    ("PB_migrate_isolate", _enumerator_of("pageblock_bits", "PB_migrate_isolate")),
    # Since Linux kernel commit 8c57b687e833 ("mm, bpf: Introduce
    # free_pages_nolock()") (in v6.15), a free that cannot take zone->lock is
    # parked on zone->trylock_free_pages and freed by the next one that can.
    ("zone.trylock_free_pages", _member_of("zone", "trylock_free_pages")),
    # Since Linux kernel commit 90abee6d7895 ("mm: page_alloc: speed up
    # fallbacks in rmqueue_bulk()") (in v6.15, and 6.12.y stable),
    # __rmqueue_fallback is split into __rmqueue_claim and __rmqueue_steal and
    # __rmqueue remembers its fallback mode across rmqueue_bulk().
    ("enum rmqueue_mode", _enum_type("rmqueue_mode")),
    # Since Linux kernel commit c928807f6f6b ("mm/page_alloc: keep track of
    # free highatomic") (in v6.13, and 6.12.y stable), free pages in
    # highatomic pageblocks are counted apart.
    ("zone.nr_free_highatomic", _member_of("zone", "nr_free_highatomic")),
    # Since Linux kernel commit 6ccdcb6d3a74 ("mm, pcp: reduce detecting time
    # of consecutive high order page freeing") (in v6.7), free_count replaces
    # free_factor.
    ("per_cpu_pages.free_count", _member_of("per_cpu_pages", "free_count")),
    # Since Linux kernel commit 90b41691b988 ("mm: add framework for PCP high
    # auto-tuning") (in v6.7), pcp->high moves between high_min and high_max.
    ("per_cpu_pages.high_min", _member_of("per_cpu_pages", "high_min")),
    # Since Linux kernel commit c0a242394cb9 ("mm, page_alloc: scale the
    # number of pages that are batch allocated") (in v6.7), a pcp refill grows
    # with alloc_factor.
    ("per_cpu_pages.alloc_factor", _member_of("per_cpu_pages", "alloc_factor")),
    # Since Linux kernel commit bf75f200569d ("mm/page_alloc: add
    # page->buddy_list and page->pcp_list") (in v6.0), free pages link through
    # these rather than lru.
    ("page.buddy_list", _member_of("page", "buddy_list")),
    ("page.pcp_list", _member_of("page", "pcp_list")),
    # From Linux kernel commit 3b12e7e97938 ("mm/page_alloc: scale the number
    # of pages that are batch freed") (in v5.14) until commit 6ccdcb6d3a74
    # ("mm, pcp: reduce detecting time of consecutive high order page
    # freeing") (in v6.7) removed it.
    ("per_cpu_pages.free_factor", _member_of("per_cpu_pages", "free_factor")),
    # Since Linux kernel commit 47118af076f6 ("mm: mmzone: MIGRATE_CMA
    # migration type added") (in v3.5), with CONFIG_CMA: a migratetype of its
    # own, between HighAtomic and Isolate.
    ("MIGRATE_CMA", _enumerator_of("migratetype", "MIGRATE_CMA")),
)


def detect_features(prog: drgn.Program) -> tuple[str, ...]:
    """The type facts of :data:`_FEATURES` that *prog*'s kernel has, in that
    order. Reads types only: a program with a vmlinux and no core will do."""
    return tuple(name for name, check in _FEATURES if check(prog))


def _pcp_lists(nr_lists: int, pcptypes: int, movable: int) -> tuple[PcpList, ...]:
    """pindex -> (order, migratetypes), mirroring ``order_to_pindex``."""
    if nr_lists == pcptypes:
        # One list per pcp migratetype, order 0 only (before v5.14).
        return tuple(PcpList(0, [m]) for m in range(pcptypes))
    low = pcptypes * (_PAGE_ALLOC_COSTLY_ORDER + 1)
    lists = [PcpList(i // pcptypes, [i % pcptypes]) for i in range(low)]
    thp = nr_lists - low
    if thp == 1:
        # Since Linux kernel commit 44042b449872 ("mm/page_alloc: allow
        # high-order pages to be stored on the per-cpu lists") (in v5.14): one
        # THP list for all types.
        lists.append(PcpList(_X86_64_HPAGE_PMD_ORDER, list(range(pcptypes))))
    elif thp == 2:
        # order_to_pindex: NR_LOWORDER_PCP_LISTS + (migratetype == MIGRATE_MOVABLE).
        lists.append(PcpList(_X86_64_HPAGE_PMD_ORDER, [m for m in range(pcptypes) if m != movable]))
        lists.append(PcpList(_X86_64_HPAGE_PMD_ORDER, [movable]))
    else:
        raise LookupError(f"struct per_cpu_pages has {nr_lists} lists: a layout buddyscope does not know")
    return tuple(lists)


def get_layout(prog: drgn.Program) -> Layout:
    """This kernel's :class:`Layout`, detected once per program."""
    try:
        return prog.cache["buddyscope.layout"]
    except KeyError:
        pass
    layout = _detect(prog)
    prog.cache["buddyscope.layout"] = layout
    return layout
