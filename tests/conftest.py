"""Tiers: the default tier needs no guest; the `lab` tier (``-m lab``) boots
real Debian kernels from the cache filled by ``buddyscope lab fetch``.

``BUDDYSCOPE_LAB_SERIES`` (e.g. ``6.1`` or ``5.10,6.1,6.12,7.2``) names the
kernels the lab tier must run on; a named kernel missing from the cache is an
error, not a skip. Unset, the lab tier runs on every cached kernel.
"""

import os


def _lab_kernels():
    from buddyscope.lab import kernels

    wanted = [s for s in os.environ.get("BUDDYSCOPE_LAB_SERIES", "").replace(",", " ").split()]
    if wanted:
        return [kernels.resolve_kernel(s) for s in wanted]
    return kernels.cached_kernels()


def pytest_generate_tests(metafunc):
    if "lab_kernel" in metafunc.fixturenames:
        ks = _lab_kernels()
        metafunc.parametrize("lab_kernel", ks, ids=[k.series for k in ks], scope="module")


#: first_pcp_allocations: the page was on no list of the snapshot.
IN_FLIGHT = "in flight"


def _free_in_snapshot(snapshot, pfn):
    for z in snapshot.zones:
        if any(pfn in lst for p in z.pcp for lst in p.lists):
            return True
        for order, area in enumerate(z.free_area):
            if any(b <= pfn < b + (1 << order) for lst in area.free_list for b in lst):
                return True
    return False


def first_pcp_allocations(fixture, events=None):
    """The boundary property of a recording: for every CPU, the first traced
    allocation from each pcp list (no refill of that list and no free on that
    CPU before it) takes that list's head in the snapshot, or the first entry
    after pages that left the list with no ``mm_page_alloc`` anywhere in the
    trace (the bulk allocator, 6.1+, takes pcp pages untraced).

    *events*: the trace's events, when parsed already (a committed
    recording's, tests/recorded.py). Returns [(cpu, pindex, skipped, position)]: *position* is where in the
    snapshot's list the allocated PFN stands (None: not in the first entries;
    IN_FLIGHT: on no list of the snapshot at all, an allocation the pause
    caught between its take and its event), *skipped* how many untraced
    pages came before it.
    """
    from buddyscope.model.events import (
        MM_PAGE_ALLOC, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_FREE, MM_PAGE_FREE_BATCHED,
        MM_PAGE_PCPU_DRAIN,
    )
    from buddyscope.model.ftrace import parse_lines

    k = fixture.snapshot.kernel
    pindex = {(pl.order, mt): i for i, pl in enumerate(k.pcp_lists) for mt in pl.migratetypes}
    if events is None:
        events = parse_lines(fixture.trace).events
    # A page whose first event after the boundary is not its allocation left
    # its list untraced (or never left it).
    first_event = {}
    for e in events:
        first_event.setdefault(e.pfn, e.name)

    def zone_of(pfn):
        return next((z for z in fixture.snapshot.zones if z.start_pfn <= pfn < z.end_pfn), None)

    touched = set()   # (cpu, zone, pindex) whose head may have changed
    stopped = set()   # cpus that freed something: their lists may have changed
    checks = []
    for e in events:
        if e.cpu in stopped:
            continue
        if e.name in (MM_PAGE_FREE, MM_PAGE_FREE_BATCHED, MM_PAGE_PCPU_DRAIN):
            stopped.add(e.cpu)
            continue
        if e.pfn is None or (e.order, e.migratetype) not in pindex:
            continue
        z = zone_of(e.pfn)
        if z is None:
            continue
        key = (e.cpu, z.name, pindex[(e.order, e.migratetype)])
        if e.name == MM_PAGE_ALLOC_ZONE_LOCKED:
            touched.add(key)
        elif e.name == MM_PAGE_ALLOC and key not in touched:
            touched.add(key)
            lst = z.pcp[e.cpu].lists[key[2]]
            if not lst:
                continue
            skipped = 0
            while (skipped < len(lst) and lst[skipped] != e.pfn
                   and first_event.get(lst[skipped]) != MM_PAGE_ALLOC):
                skipped += 1
            position = skipped if skipped < len(lst) and lst[skipped] == e.pfn else None
            if position is None and not _free_in_snapshot(fixture.snapshot, e.pfn):
                # Taken before the pause, traced after it: the guest stopped
                # between the pcp take and trace_mm_page_alloc (seen once, in
                # 7.2-2cpu-fork-exec). Not a boundary error.
                position = IN_FLIGHT
            checks.append((e.cpu, key[2], skipped, position))
    return checks


# The lab tier's long matrices. CI runs one case of each (the README's test
# command, under 20 minutes); BUDDYSCOPE_LAB_FULL=1 runs every case. Each
# entry: a test function, and the parameter ids of it that CI runs.
_LAB_MATRIX = {
    # a signal at each of 7 phases, twice: CI sends them during the workload
    "test_record_lab_interrupted": ("-run-",),
    "test_interrupted_record_restores_the_guest": ("-run-",),
    "test_record_lab_guest_killed": ("-snapshot",),
    # every dump format: CI reads QEMU's and makedumpfile's zlib ones
    "test_the_format_gives_the_lists_of_the_elf_dump": ("-qemu-kdump-zlib", "-d31-zlib]"),
    # the in-guest record --live on a busy guest: once 95.0 % in CI (206
    # page_not_free_in_model: every read torn); since the probe walks the pcp
    # lists first and afresh, 99.98 to 100.00 % in three 6.1 runs (3 to 5 min each)
    "test_record_live_replays_exactly": ("-quiet]",),
    # the live TUI in a pseudo-terminal inside a guest (about 90 s)
    "test_tui_live_opens_on_the_live_kernel": (),
    # why's hugetlb and near-min states (each fills the guest's memory)
    "test_hugetlb_compaction_agrees": (),
    "test_low_memory_near_min": (),
}


def pytest_collection_modifyitems(config, items):
    import pytest

    if os.environ.get("BUDDYSCOPE_LAB_FULL") == "1":
        return
    skip = pytest.mark.skip(reason="long lab matrix: BUDDYSCOPE_LAB_FULL=1 runs this case")
    for item in items:
        keep = _LAB_MATRIX.get(item.originalname)
        if keep is not None and not any(k in item.nodeid for k in keep):
            item.add_marker(skip)
