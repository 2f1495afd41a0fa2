"""find_page on real fixtures: the expected places are read from the raw
JSON (gzip + json), not through the code under test."""

import gzip
import json
from pathlib import Path

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.model.find import find_page, parse_pfn_or_addr
from buddyscope.model.snapshot import Snapshot

SNAPS = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots"
SNAP = SNAPS / "7.2-2cpu-512m.json.gz"


def raw(path):
    return json.loads(gzip.decompress(path.read_bytes()))


@pytest.fixture(scope="module")
def both():
    return raw(SNAP), Snapshot.load(SNAP)


def test_every_free_block_head_and_tail_is_found_where_the_kernel_had_it(both):
    d, snap = both
    names = d["kernel"]["migratetypes"]
    pbo = d["kernel"]["pageblock_order"]
    checked = 0
    for z in d["zones"]:
        for order, area in enumerate(z["free_area"]):
            for mt, lst in enumerate(area["free_list"]):
                for pos, head in enumerate(lst[:3] + lst[-2:]):
                    pos = lst.index(head)
                    for pfn in (head, head + (1 << order) - 1):
                        f = find_page(snap, pfn)
                        assert (f.where, f.zone, f.order, f.migratetype) == \
                            ("free_list", z["name"], order, names[mt])
                        assert (f.position, f.length, f.block) == (pos, len(lst), head)
                        i = (pfn >> pbo) - (z["start_pfn"] >> pbo)
                        assert f.pageblock == names[z["pageblock_migratetypes"][i]]
                        checked += 1
    assert checked > 100


def test_pcp_pages_are_found_on_their_cpus_list(both):
    d, snap = both
    found = 0
    for z in d["zones"]:
        for p in z["pcp"]:
            for pindex, lst in enumerate(p["lists"]):
                for pos, pfn in enumerate(lst[:2]):
                    f = find_page(snap, hex(pfn))
                    assert (f.where, f.cpu, f.pindex, f.position, f.length) == \
                        ("pcp", p["cpu"], pindex, pos, len(lst))
                    assert f.order == d["kernel"]["pcp_lists"][pindex]["order"]
                    found += 1
    assert found > 10


def test_a_page_on_no_list_and_one_outside_every_zone(both):
    d, snap = both
    free = set()
    for z in d["zones"]:
        for order, area in enumerate(z["free_area"]):
            for lst in area["free_list"]:
                for h in lst:
                    free.update(range(h, h + (1 << order)))
        for p in z["pcp"]:
            for pindex, lst in enumerate(p["lists"]):
                o = d["kernel"]["pcp_lists"][pindex]["order"]
                for h in lst:
                    free.update(range(h, h + (1 << o)))
    z = max(d["zones"], key=lambda z: z["managed_pages"])
    used = next(p for p in range(z["start_pfn"], z["start_pfn"] + z["spanned_pages"])
                if p not in free)
    f = find_page(snap, used)
    assert (f.where, f.zone, f.order) == ("not free", z["name"], None)
    end = max(z["start_pfn"] + z["spanned_pages"] for z in d["zones"])
    assert find_page(snap, end + 10).where == "no zone"


def test_an_address_without_vmemmap_is_refused_with_one_line(both):
    _, snap = both
    with pytest.raises(BuddyscopeError, match="vmemmap"):
        find_page(snap, "ffffea0000048d00")


def test_an_address_is_turned_into_a_pfn_when_vmemmap_is_known(both):
    d, snap = both
    snap.capture.notes = {"vmemmap": 0xFFFFEA0000000000, "sizeof_page": 64}
    try:
        head = d["zones"][1]["free_area"][3]["free_list"][0][0]
        f = find_page(snap, hex(0xFFFFEA0000000000 + head * 64))
        assert (f.pfn, f.where, f.page) == (head, "free_list", 0xFFFFEA0000000000 + head * 64)
        with pytest.raises(BuddyscopeError, match="start of a struct page"):
            find_page(snap, 0xFFFFEA0000000000 + head * 64 + 8)
    finally:
        snap.capture.notes = {}


def test_counts_only_and_bad_text():
    procfs = Snapshot.load(SNAP)
    for z in procfs.zones:
        for a in z.free_area:
            a.free_list = None
    with pytest.raises(BuddyscopeError, match="counts only"):
        find_page(procfs, 0x1000)
    with pytest.raises(BuddyscopeError, match="not a PFN"):
        parse_pfn_or_addr("page")
    assert parse_pfn_or_addr("4096") == 4096 and parse_pfn_or_addr("0x1000") == 4096
