"""The snapshot schema on the committed real snapshots (fixtures/snapshots/):
round trip, the kernel's own invariants, agreement with the guest's procfs
read just before the pause, tables, and files that are not snapshots."""

import gzip
import json
import re
from pathlib import Path

import pytest

from buddyscope.model.report import format_snapshot
from buddyscope.model.snapshot import FORMAT, Snapshot, SnapshotError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots"
SERIES = ["5.10", "6.1", "6.12", "7.2"]


@pytest.fixture(params=SERIES)
def fixture(request):
    path = FIXTURES / f"{request.param}-2cpu-512m.json.gz"
    return request.param, Snapshot.load(path), (FIXTURES / f"{request.param}-2cpu-512m.procfs.txt").read_text()


def test_round_trip(fixture, tmp_path):
    _, snap, _ = fixture
    # The committed snapshots are format 1; a save writes the newest format
    # (docs/snapshot-format.md), with the same content.
    assert snap.format == 1
    for name in ("s.json.gz", "s.json"):
        snap.save(tmp_path / name)
        again = Snapshot.load(tmp_path / name)
        assert again.format == FORMAT
        assert {**again.to_dict(), "format": snap.format} == snap.to_dict()


def test_to_dict_is_asdict(fixture):
    """to_dict's list-at-a-time copy gives what dataclasses.asdict gives,
    in the same key order (the JSON text is the same)."""
    import dataclasses

    _, snap, _ = fixture
    d = dataclasses.asdict(snap)
    ref = {"format": d.pop("format"), **d}
    assert json.dumps(snap.to_dict()) == json.dumps(ref)
    # A copy: changing it leaves the snapshot alone.
    snap.to_dict()["zones"][1]["free_area"][0]["free_list"][1].append(-1)
    assert -1 not in snap.zones[1].free_area[0].free_list[1]


def test_kernel_facts(fixture):
    series, snap, _ = fixture
    k = snap.kernel
    assert k.release.startswith(series + ".")
    assert (k.nr_page_orders, k.pageblock_order, k.page_size, k.nr_cpus) == (11, 9, 4096, 2)
    # The Debian 7.2 build has MIGRATE_CMA; the older three do not.
    expected = ["Unmovable", "Movable", "Reclaimable", "HighAtomic"]
    expected += ["CMA", "Isolate"] if series == "7.2" else ["Isolate"]
    assert k.migratetypes == expected
    if series == "5.10":
        assert [(p.order, p.migratetypes) for p in k.pcp_lists] == [(0, [0]), (0, [1]), (0, [2])]
    else:
        assert len(k.pcp_lists) == 14
        assert [(p.order, p.migratetypes) for p in k.pcp_lists[:4]] == [(0, [0]), (0, [1]), (0, [2]), (1, [0])]
        assert [(p.order, p.migratetypes) for p in k.pcp_lists[12:]] == [(9, [0, 2]), (9, [1])]
    assert snap.capture.source == "qmp" and snap.capture.paused and snap.capture.consistent


def test_the_kernels_own_invariants_hold(fixture):
    _, snap, _ = fixture
    assert [z.name for z in snap.zones] == ["DMA", "DMA32"]
    for z in snap.zones:
        for area in z.free_area:
            assert area.nr_free == sum(len(l) for l in area.free_list)
        for pcp in z.pcp:
            assert pcp.count == sum(len(l) << snap.kernel.pcp_lists[i].order for i, l in enumerate(pcp.lists))
        # zone_page_state_snapshot(NR_FREE_PAGES) counts exactly the free lists.
        assert z.nr_free_pages == z.pages_on_free_lists()
        # Every free page is on one list only, and inside the zone.
        pfns = [p for a in z.free_area for l in a.free_list for p in l]
        pfns += [p for c in z.pcp for l in c.lists for p in l]
        assert len(pfns) == len(set(pfns))
        assert all(z.start_pfn <= p < z.end_pfn for p in pfns)
        # A free block of order o is aligned to 1 << o.
        assert all(p % (1 << o) == 0 for o, a in enumerate(z.free_area) for l in a.free_list for p in l)
        assert len(z.pageblock_migratetypes) == -(-(z.end_pfn - (z.start_pfn >> 9 << 9)) // 512)


def _procfs_tables(text):
    buddy = {m.group(1): [int(x) for x in m.group(2).split()]
             for m in re.finditer(r"^Node 0, zone\s+(\S+)\s+([\d ]+)$", text.split("Page block")[0], re.M)}
    types = {(m.group(1), m.group(2)): [int(x) for x in m.group(3).split()]
             for m in re.finditer(r"^Node\s+0, zone\s+(\S+), type\s+(\S+)\s+([\d ]+)$", text, re.M)}
    blocks_hdr = re.search(r"^Number of blocks type\s+(.*)$", text, re.M).group(1).split()
    blocks = {m.group(1): dict(zip(blocks_hdr, map(int, m.group(2).split())))
              for m in re.finditer(r"^Node 0, zone\s+(\S+)\s+([\d ]+)$", text.split("Number of blocks")[1], re.M)}
    return buddy, types, blocks


def pages_apart(a, b):
    """Pages by which two per-order block counts differ."""
    assert len(a) == len(b)
    return sum(abs(x - y) << o for o, (x, y) in enumerate(zip(a, b)))


def test_agrees_with_the_guests_procfs(fixture):
    # Read by the guest itself while idle, just before the pause; the two
    # files are read one after the other, so a few pages, or one pcp batch,
    # may move between.
    _, snap, text = fixture
    buddy, types, blocks = _procfs_tables(text)
    for z in snap.zones:
        slack = 16 + max(p.batch for p in z.pcp)
        assert pages_apart([a.nr_free for a in z.free_area], buddy[z.name]) <= slack
        for mt, name in enumerate(snap.kernel.migratetypes):
            assert pages_apart([a.count(mt) for a in z.free_area], types[(z.name, name)]) <= slack
        got = {name: z.pageblock_migratetypes.count(mt) for mt, name in enumerate(snap.kernel.migratetypes)}
        assert got == blocks[z.name]


def test_table_prints_the_fixtures_numbers(fixture):
    _, snap, _ = fixture
    text = format_snapshot(snap)
    z = snap.zone("DMA32")
    block = text.split("zone DMA32")[1]
    for mt, name in enumerate(snap.kernel.migratetypes):
        row = re.search(rf"^  {name}\s+([\d ]+)$", block, re.M).group(1).split()
        assert [int(x) for x in row] == [len(a.free_list[mt]) for a in z.free_area]
    assert f"NR_FREE_PAGES {z.nr_free_pages}" in block
    for p in z.pcp:
        assert f"cpu{p.cpu} {p.count}/{p.high}/{p.batch}" in block


def test_lists_print_pfns_in_list_order(fixture):
    _, snap, _ = fixture
    text = format_snapshot(snap, lists=True)
    z = snap.zone("DMA32")
    o, mt, pfns = next((o, mt, l) for o, a in enumerate(z.free_area) for mt, l in enumerate(a.free_list) if len(l) > 1)
    name = snap.kernel.migratetypes[mt]
    line = re.search(rf"^  free_area\[{o}\]\.free_list\[{name}\] \((\d+)\): (.*)$",
                     text.split("zone DMA32")[1], re.M)
    assert int(line.group(1)) == len(pfns)
    assert [int(x, 16) for x in line.group(2).split()] == pfns


def test_newer_format_is_refused(tmp_path):
    snap = Snapshot.load(FIXTURES / "6.1-2cpu-512m.json.gz")
    d = snap.to_dict()
    d["format"] = FORMAT + 1
    (tmp_path / "new.json").write_text(json.dumps(d))
    with pytest.raises(SnapshotError, match=f"format {FORMAT + 1}; this buddyscope reads formats up to {FORMAT}"):
        Snapshot.load(tmp_path / "new.json")


@pytest.mark.parametrize("content, message", [
    (b"\x1f\x8b\x08\x00garbage", "corrupt or truncated gzip"),
    (b"not json at all", "not a buddyscope snapshot"),
    (json.dumps({"hello": 1}).encode(), "not a buddyscope snapshot"),
    (json.dumps({"format": 1, "zones": [], "kernel": {}, "capture": {}}).encode(), "corrupt buddyscope snapshot"),
])
def test_files_that_are_not_snapshots(tmp_path, content, message):
    (tmp_path / "bad").write_bytes(content)
    with pytest.raises(SnapshotError, match=message):
        Snapshot.load(tmp_path / "bad")


def test_truncated_snapshot_file(tmp_path):
    raw = (FIXTURES / "7.2-2cpu-512m.json.gz").read_bytes()
    (tmp_path / "t.json.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SnapshotError, match="corrupt or truncated gzip"):
        Snapshot.load(tmp_path / "t.json.gz")
    (tmp_path / "t.json").write_bytes(gzip.decompress(raw)[:1000])
    with pytest.raises(SnapshotError, match="not JSON"):
        Snapshot.load(tmp_path / "t.json")
