"""find and diff over the recorded snapshots of real kernels (fixtures/),
and at the command line."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from buddyscope.model.diff import DiffError, diff_snapshots
from buddyscope.errors import BuddyscopeError
from buddyscope.model.find import find_page
from buddyscope.model.snapshot import Snapshot

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SNAPSHOTS = sorted((FIXTURES / "snapshots").glob("*.json.gz"))
RECORDINGS = FIXTURES / "recordings"


@pytest.fixture(scope="module", params=SNAPSHOTS, ids=lambda p: p.name.split("-")[0])
def snap(request):
    return Snapshot.load(request.param)


def test_every_page_of_every_free_block_is_found_in_its_block(snap):
    """Each free block (buddy or pcp) of a real snapshot: its first, middle
    and last page are found in it, on its list, at its position."""
    k = snap.kernel
    checked = 0
    for z in snap.zones:
        for order, area in enumerate(z.free_area):
            for mt, lst in enumerate(area.free_list):
                for pos, head in enumerate(lst):
                    for pfn in {head, head + (1 << order) // 2, head + (1 << order) - 1}:
                        loc = find_page(snap, pfn)
                        assert (loc.where, loc.block, loc.order, loc.migratetype, loc.position,
                                loc.length, loc.zone) == (
                            "free_list", head, order, k.migratetypes[mt], pos, len(lst), z.name)
                        checked += 1
        for pcp in z.pcp:
            for pindex, lst in enumerate(pcp.lists):
                for pos, head in enumerate(lst):
                    loc = find_page(snap, head)
                    assert (loc.where, loc.cpu, loc.pindex, loc.position, loc.order) == (
                        "pcp", pcp.cpu, pindex, pos, k.pcp_lists[pindex].order)
                    checked += 1
    assert checked > 500


def test_pages_on_no_list_are_in_use_and_pageblock_type_is_the_snapshots(snap):
    z = max(snap.zones, key=lambda z: z.spanned_pages)
    free = set()
    for order, area in enumerate(z.free_area):
        for lst in area.free_list:
            for head in lst:
                free.update(range(head, head + (1 << order)))
    for pcp in z.pcp:
        for pindex, lst in enumerate(pcp.lists):
            for head in lst:
                free.update(range(head, head + (1 << snap.kernel.pcp_lists[pindex].order)))
    used = [p for p in range(z.start_pfn, z.end_pfn, 97) if p not in free][:200]
    assert used
    pbo = snap.kernel.pageblock_order
    for pfn in used:
        loc = find_page(snap, pfn)
        assert loc.where == "not free" and loc.position is None
        t = z.pageblock_migratetypes[(pfn >> pbo) - (z.start_pfn >> pbo)]
        assert loc.pageblock == (snap.kernel.migratetypes[t] if t >= 0 else None)


def test_struct_page_address_round_trips_when_the_snapshot_has_vmemmap(snap):
    # The committed fixtures predate kernel.vmemmap; the lab test checks the
    # address against the kernel itself. Here: the arithmetic both ways.
    vm = 0xFFFFEA0000000000
    s = dataclasses.replace(snap, kernel=dataclasses.replace(snap.kernel, vmemmap=vm, sizeof_page=64))
    z = snap.zones[-1]
    pfn = z.start_pfn + 12345
    loc = find_page(s, pfn)
    assert loc.page == vm + pfn * 64
    assert find_page(s, loc.page).pfn == pfn
    with pytest.raises(BuddyscopeError, match="not the start of a struct page"):
        find_page(s, loc.page + 8)
    assert find_page(snap, pfn).page is None


def test_find_places_no_zone_and_refuses_an_address_without_vmemmap(snap):
    last = max(z.end_pfn for z in snap.zones)
    assert find_page(snap, last + 10).where == "no zone"
    with pytest.raises(BuddyscopeError, match="vmemmap"):
        find_page(snap, 0xFFFFEA0000001000)


def _recording(name):
    from buddyscope.model.fixture import Fixture

    return Fixture.load(RECORDINGS / name).snapshot


def _blocks(snap, z):
    out = set()
    for order, area in enumerate(z.free_area):
        for mt, lst in enumerate(area.free_list):
            out.update((pfn, None, order, snap.kernel.migratetypes[mt]) for pfn in lst)
    for pcp in z.pcp:
        for pindex, lst in enumerate(pcp.lists):
            pl = snap.kernel.pcp_lists[pindex]
            name = "/".join(snap.kernel.migratetypes[m] for m in pl.migratetypes)
            out.update((pfn, pcp.cpu, pl.order, name) for pfn in lst)
    return out


@pytest.mark.parametrize("series", ["5.10", "6.1", "6.12", "7.2"])
def test_diff_of_two_real_snapshots_turns_a_into_b(series):
    """Two recordings of one kernel: A's blocks, minus what vanished, with
    what moved and appeared, are exactly B's blocks; the count changes are
    the net of those blocks."""
    a = _recording(f"{series}-2cpu-fallback.json.gz")
    b = _recording(f"{series}-2cpu-tmpfs-write.json.gz")
    d = diff_snapshots(a, b)
    assert any(z.changed for z in d.zones)
    for za, zb, zd in zip(a.zones, b.zones, d.zones):
        blocks = _blocks(a, za)
        for c in zd.vanished:
            blocks.remove((c.pfn, c.cpu, c.order, c.migratetype))
        for c in zd.moved:
            was = next(x for x in blocks if x[0] == c.pfn and x[2] == c.order)
            blocks.remove(was)
            blocks.add((c.pfn, c.cpu, c.order, c.migratetype))
        for c in zd.appeared:
            blocks.add((c.pfn, c.cpu, c.order, c.migratetype))
        assert blocks == _blocks(b, zb)
        for order, (fa, fb) in enumerate(zip(za.free_area, zb.free_area)):
            for mt, name in enumerate(a.kernel.migratetypes):
                want = (len(fa.free_list[mt]), len(fb.free_list[mt]))
                assert zd.free_blocks.get((order, name), (want[0], want[0])) == want
        pbo = a.kernel.pageblock_order
        for pfn, ta, tb in zd.pageblocks_retyped:
            i = (pfn >> pbo) - (za.start_pfn >> pbo)
            assert a.kernel.migratetypes[za.pageblock_migratetypes[i]] == ta
            assert b.kernel.migratetypes[zb.pageblock_migratetypes[i]] == tb != ta
    json.dumps(d.to_dict())


def test_diff_of_a_snapshot_with_itself_is_empty():
    a = _recording("6.1-2cpu-fallback.json.gz")
    d = diff_snapshots(a, a)
    assert not any(z.changed for z in d.zones)


@pytest.mark.parametrize("other, message", [
    ("6.12-2cpu-fallback.json.gz", "A is of kernel 6.1.0"),
    ("6.1-1cpu-fallback.json.gz", "kernel.nr_cpus is 2 in A, 1 in B"),
])
def test_diff_refuses_snapshots_of_different_kernels_or_layouts(other, message):
    with pytest.raises(DiffError, match=message):
        diff_snapshots(_recording("6.1-2cpu-fallback.json.gz"), _recording(other))


def _cli(*args):
    p = subprocess.run([sys.executable, "-m", "buddyscope", *map(str, args)], cwd="/",
                       capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert "Traceback" not in p.stderr, p.stderr
    return p


def test_cli_find_and_diff():
    snap_path = FIXTURES / "snapshots" / "6.1-2cpu-512m.json.gz"
    snap = Snapshot.load(snap_path)
    z = snap.zones[-1]
    head = z.free_area[10].free_list[1][0]
    p = _cli("find", snap_path, hex(head + 3), "--json")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert (got["where"], got["block"], got["order"], got["position"], got["list"]) == (
        "free_list", head, 10, 0, "free_area[10].free_list[Movable]")
    p = _cli("find", snap_path, str(head))
    assert p.returncode == 0 and "at position 0 of" in p.stdout
    p = _cli("diff", RECORDINGS / "6.1-2cpu-fallback.json.gz", RECORDINGS / "6.1-2cpu-thp.json.gz",
             "--json")
    assert p.returncode == 0, p.stderr
    assert [z["zone"] for z in json.loads(p.stdout)["zones"]] == [z.name for z in snap.zones]


@pytest.mark.parametrize("args, message", [
    (["find", "SNAP", "0x7fffffff"], "PFN 0x7fffffff is in no zone of the snapshot"),
    (["find", "SNAP", "page"], "not a PFN or address: 'page'"),
    (["find", "--procfs", "0x1000"], "counts only"),
    (["diff", "SNAP", "/nonexistent.json.gz"], "/nonexistent.json.gz: no such file"),
    (["diff", "SNAP", RECORDINGS / "7.2-2cpu-thp.json.gz"], "diff compares two snapshots of one kernel"),
])
def test_cli_bad_input_is_one_line(args, message):
    snap_path = FIXTURES / "snapshots" / "6.1-2cpu-512m.json.gz"
    p = _cli(*[snap_path if a == "SNAP" else a for a in args])
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("buddyscope: error: ") and message in lines[0]
