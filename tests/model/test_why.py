"""``why`` on recorded states: agreement with the model's own allocation,
the kernel's verdicts recorded by the lab (fixtures/why/), counts-only
(procfs) explanations, and bad input."""

import gzip
import json
from pathlib import Path

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.model.allocator import Allocator
from buddyscope.model.fixture import Fixture
from buddyscope.model.profile import detect_profile, detect_profile_from_counts
from buddyscope.model.request import RequestError, make_request
from buddyscope.model.snapshot import Snapshot
from buddyscope.model.why import explain, format_explanation

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = ROOT / "fixtures" / "recordings"
WHY = ROOT / "fixtures" / "why"
PROCFS = ROOT / "fixtures" / "procfs"
SERIES = ("5.10", "6.1", "6.12", "7.2")


@pytest.mark.parametrize("series", SERIES)
def test_agrees_with_the_models_allocation(series):
    """why's zone (or failure) is the zone the model's allocate() takes, for
    the fast path and the slowpath's first attempt (both count free pages
    from the lists)."""
    snap = Fixture.load(RECORDINGS / f"{series}-2cpu-fallback.json.gz").snapshot
    alloc = Allocator(snap)
    checked = 0
    for order in (0, 1, 3, 4, 9, 10):
        for gfp in ("GFP_KERNEL", "GFP_ATOMIC", "GFP_HIGHUSER_MOVABLE", "GFP_NOWAIT",
                    "GFP_KERNEL|__GFP_DMA", "GFP_TRANSHUGE_LIGHT"):
            for cpu in (0, 1):
                e = explain(snap, alloc.profile, order, gfp, cpu, free_source="lists")
                req = make_request(alloc, order, cpu, gfp=gfp)
                with alloc.trial():
                    out = alloc.allocate(req.cpu, req.order, req.migratetype,
                                         req.highest_zoneidx, req.alloc_flags, req.slow_flags)
                served = e.attempts[-1].served
                assert (served.zone if served else None) == out.zone, (order, gfp, cpu)
                if served is not None and out.kind in ("pcp", "fallback") and not any(
                        s.kind == "pcp_refill" for s in out.path):
                    # (A refill's later blocks may fall back; the first is what is returned.)
                    assert served.served_by == out.kind, (order, gfp, cpu, out.kind)
                checked += 1
    assert checked == 72


def _why_fixtures():
    return sorted(WHY.glob("*.json.gz"))


@pytest.mark.parametrize("path", _why_fixtures(), ids=lambda p: p.name.split(".json")[0])
def test_what_the_kernel_did(path):
    """States recorded by tests/lab/test_why_lab.py just before a real THP
    fault (the faulting process already mapped and waiting, so nothing ran
    between the pause and the fault but the fault), and what it did."""
    with gzip.open(path, "rt") as f:
        d = json.load(f)
    snap = Snapshot.from_dict(d["snapshot"])
    r = d["request"]
    e = explain(snap, detect_profile(snap), r["order"], r["gfp"], r["cpu"])
    assert e.verdict == d["kernel_did"], e.sentence
    if d["state"] == "fragmented":
        assert "no free block of order ≥ 9" in e.sentence
        assert "fails: page allocation failure (not printed: __GFP_NOWARN)" in e.sentence
        # GFP_TRANSHUGE_LIGHT cannot reclaim: both attempts were made.
        assert [a.name for a in e.attempts] == ["fast path", "slowpath, first attempt"]
        assert any(c.result == "COMPACT_CONTINUE" and c.fragindex > 500 for c in e.compaction)
    if d["state"] == "lowmem" and e.verdict == "fails":
        assert "lack of free memory" in e.sentence
    if d["state"] == "lowmem-slowpath":
        # Near min: ALLOC_WMARK_LOW refused every zone, ALLOC_WMARK_MIN
        # decided (on 6.12 the HighAtomic reserve's free pages tipped it).
        assert [a.name for a in e.attempts] == ["fast path", "slowpath, first attempt"]
        if e.verdict == "served":
            assert "served by the slowpath's first attempt" in e.sentence
    text = format_explanation(e)
    assert text.endswith(e.sentence)


def test_the_recorded_verdicts_include_failures():
    kinds = {}
    for p in _why_fixtures():
        with gzip.open(p, "rt") as f:
            d = json.load(f)
        kinds.setdefault(d["state"], set()).add(d["kernel_did"])
    # Near min the verdict depends on the terms (and, on 7.2, on what the
    # fill left in DMA); both outcomes were recorded there.
    assert kinds["served"] == {"served"} and kinds["fragmented"] == {"fails"}
    assert kinds["lowmem"] | kinds["lowmem-slowpath"] == {"served", "fails"}
    assert "fails" in kinds["lowmem"]


@pytest.mark.parametrize("series", SERIES)
def test_counts_only_from_procfs(series):
    from buddyscope.probe.procfs import read_procfs

    snap = read_procfs(PROCFS / series)
    profile = detect_profile_from_counts(snap)
    assert profile.name == series
    e = explain(snap, profile, 3, "GFP_KERNEL", 0)
    assert e.counts_only and e.notes[0].startswith("counts only")
    served = e.attempts[0].served
    assert served is not None and "not known from procfs" in served.pcp_note
    # The free-block test read pagetypeinfo's counts.
    assert all(b.per_migratetype is not None for b in served.watermark.blocks)


def test_the_watermark_terms_add_up():
    snap = Fixture.load(RECORDINGS / "6.12-2cpu-thp.json.gz").snapshot
    e = explain(snap, detect_profile(snap), 4, "GFP_ATOMIC", 0)
    wm = e.attempts[0].zones[0].watermark
    z = next(z for z in snap.zones if z.name == e.attempts[0].zones[0].zone)
    assert wm.free_pages == z.fields["vm_stat_nr_free_pages"]
    assert wm.unusable_order == 15 and wm.highatomic_term == "nr_free_highatomic"
    assert wm.mark == z.watermarks["low"] + z.watermark_boost
    assert wm.usable_free == wm.free_pages - 15 - wm.unusable_highatomic - wm.unusable_cma


@pytest.mark.parametrize("args, message", [
    ((11, "GFP_KERNEL", 0), "order 11 is out of range"),
    ((3, "GFP_NOPE", 0), "unknown GFP flag 'GFP_NOPE'"),
    ((3, "__GFP_MOVABLE|__GFP_RECLAIMABLE", 0), "does not allow"),
    ((3, "__GFP_DMA|__GFP_DMA32", 0), "GFP_ZONE_BAD"),
    ((3, "GFP_KERNEL", 9), "cpu 9 does not exist"),
])
def test_requests_the_kernel_would_refuse(args, message):
    snap = Fixture.load(RECORDINGS / "6.1-2cpu-thp.json.gz").snapshot
    with pytest.raises(RequestError, match=message):
        explain(snap, detect_profile(snap), *args)
    assert issubclass(RequestError, BuddyscopeError)


def test_a_pcp_block_behind_a_failed_watermark():
    """6.1, fragmented: cpu 0's THP pcp list still held an order-9 block, but
    no free order-9 block was on the buddy lists, so zone_watermark_fast
    refused the zone before rmqueue, and the kernel fell back (recorded)."""
    with gzip.open(WHY / "6.1-thp-fragmented.json.gz", "rt") as f:
        d = json.load(f)
    assert d["kernel_did"] == "fails"
    snap = Snapshot.from_dict(d["snapshot"])
    e = explain(snap, detect_profile(snap), 9, "GFP_TRANSHUGE_LIGHT", 0)
    dma32 = next(z for z in e.attempts[-1].zones if z.zone == "DMA32")
    assert dma32.pcp_pages == 512 and not dma32.watermark.ok and dma32.watermark.free_ok
    assert "the watermark gates pcp hits too" in e.sentence


def test_the_highatomic_reserve_decided_a_failure():
    """6.12, near min: the kernel had reserved a HighAtomic pageblock; its
    105 free pages (nr_free_highatomic, the 6.12 watermark term) took the
    zone under min for an order-9 request, and the THP fault fell back."""
    with gzip.open(WHY / "6.12-thp-lowmem-slowpath.json.gz", "rt") as f:
        d = json.load(f)
    assert d["kernel_did"] == "fails"
    snap = Snapshot.from_dict(d["snapshot"])
    e = explain(snap, detect_profile(snap), 9, "GFP_TRANSHUGE_LIGHT", 0)
    wm = next(z for z in e.attempts[-1].zones if z.zone == "DMA32").watermark
    assert (wm.highatomic_term, wm.unusable_highatomic) == ("nr_free_highatomic", 105)
    assert not wm.free_ok and wm.usable_free + 105 > wm.min
    assert "held back by the HighAtomic reserve (nr_free_highatomic 105)" in e.sentence
