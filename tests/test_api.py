"""The Python API (buddyscope.api): docs/api.md runs as written, and the
grooming prediction matches what a real 6.1 kernel did."""

import doctest
from pathlib import Path

import pytest

import buddyscope.api as api

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_docs_api_md_runs_as_written():
    r = doctest.testfile(str(DOCS), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert r.attempted >= 30 and r.failed == 0, r


def test_module_docstring_examples():
    r = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert r.attempted > 0 and r.failed == 0, r


@pytest.mark.parametrize("series", ["5.10", "6.1", "6.12", "7.2"])
def test_grooming_prediction_matches_the_kernels_recorded_pfns(series):
    """fixtures/workloads/pipe-groom.sh on each lab kernel: spray 32 pipe
    pages, free every other, refill 16. Predicted from the moment the spray
    starts, with no event of the trace after it."""
    rec = api.load_recording(api.bundled_recording(f"{series}-1cpu-pipe-groom"))
    pipe = "GFP_HIGHUSER|__GFP_ACCOUNT"
    start = next(i for i, e in enumerate(rec.events)
                 if e.name == "mm_page_alloc" and e.gfp == pipe and e.comm == "workload")
    model = api.Model(rec.snapshot)
    model.replay(rec.events[:start])
    spray = [model.allocate(0, gfp=pipe).pfn for _ in range(32)]
    for pfn in spray[1::2]:
        model.free(pfn)
    refill = [model.allocate(0, gfp=pipe).pfn for _ in range(16)]
    kernel = [e.pfn for e in rec.events[start:] if e.name == "mm_page_alloc" and e.gfp == pipe]
    assert spray == kernel[:32]
    assert refill == kernel[32:48]
    # The refill is the freed half, last freed first: the grooming worked.
    assert refill == spray[1::2][::-1]


def test_bad_input_raises_one_line_errors():
    snap = api.load(api.bundled_recording("6.1-1cpu-pipe-groom"))
    model = api.Model(snap)
    r = model.allocate(0, gfp="GFP_KERNEL")
    model.free(r.pfn)
    with pytest.raises(api.BuddyscopeError, match="already free"):
        model.free(r.pfn)
    with pytest.raises(api.BuddyscopeError, match="no zone 'Normal'"):
        model.free_list("Normal", 0, "Movable")
    with pytest.raises(api.BuddyscopeError, match="unknown gfp flag|GFP_NONSENSE"):
        model.allocate(0, gfp="GFP_NONSENSE")
    with pytest.raises(api.BuddyscopeError, match="no such file"):
        api.load("/nonexistent.json.gz")
    with pytest.raises(api.BuddyscopeError, match="one source"):
        api.read(live=True, procfs=True)


def test_read_procfs_gives_a_snapshot_of_this_host():
    snap = api.read(procfs=True)
    assert snap.capture.source == "procfs" and snap.zones
    with open("/proc/sys/kernel/osrelease") as f:
        assert snap.kernel.release == f.read().strip()
    with pytest.raises(api.BuddyscopeError, match="no PFNs|only counts|needs"):
        api.Model(snap)


def _refused(fn):
    with pytest.raises(api.BuddyscopeError) as e:
        fn()
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_arguments_are_one_line_and_change_nothing():
    rec = api.load_recording(api.bundled_recording("6.1-1cpu-pipe-groom"))
    m, ref = api.Model(rec.snapshot), api.Model(rec.snapshot)
    r, same = m.allocate(0, gfp="GFP_KERNEL"), ref.allocate(0, gfp="GFP_KERNEL")
    assert r == same
    # A free on a CPU the snapshot has not had raised IndexError half way
    # through, and every allocation after it failed the same way.
    assert _refused(lambda: m.free(r.pfn, cpu=99)) == "cpu 99 is out of range: 0..0"
    assert _refused(lambda: m.free(r.pfn, cpu=-1)) == "cpu -1 is out of range: 0..0"
    assert _refused(lambda: m.free(r.pfn, order=99)) == "order 99 is out of range: 0..10"
    assert _refused(lambda: m.free("0x1e50")) == "pfn must be an int, not '0x1e50'"
    assert _refused(lambda: m.free(1 << 40)).endswith("is in no zone of the snapshot")
    assert _refused(lambda: m.free_list("DMA32", 11, "Movable")) == "order 11 is out of range: 0..10"
    assert _refused(lambda: m.free_list("DMA32", -1, "Movable")) == "order -1 is out of range: 0..10"
    assert _refused(lambda: m.allocate("0")) == "order must be an int, not '0'"
    assert _refused(lambda: m.allocate(0, gfp=1.5)).startswith("gfp: give flags")
    assert _refused(lambda: m.pcp_list("DMA32", 5, 0, "Movable")) == "cpu 5 is out of range: 0..0"
    assert _refused(lambda: m.replay(None)).startswith("replay takes kmem events")
    assert _refused(lambda: m.replay([1, 2])).startswith("replay takes kmem events")
    assert _refused(lambda: api.Model(None)).startswith("snapshot: give a Snapshot")
    assert _refused(lambda: api.diff(rec.snapshot, None)).startswith("b: give a Snapshot")
    assert _refused(lambda: api.find(rec.snapshot, None)).startswith("give a PFN")
    assert _refused(lambda: api.find(rec.snapshot, 1.5)).startswith("give a PFN")
    assert _refused(lambda: api.load(5)) == "give a file's path, not 5"
    # The model goes on as if none of that was asked.
    assert [m.allocate(0, gfp="GFP_KERNEL") for _ in range(20)] == \
        [ref.allocate(0, gfp="GFP_KERNEL") for _ in range(20)]
    # A migratetype by index, and a gfp mask as a number (as the kernel logs it).
    assert m.free_list("DMA32", 0, 1) == m.free_list("DMA32", 0, "Movable")
    assert m.allocate(0, gfp=0xcc0) == ref.allocate(0, gfp="GFP_KERNEL")
