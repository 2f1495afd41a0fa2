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
