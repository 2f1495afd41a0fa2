"""The procfs source against real procfs files: four Debian kernels booted in
the lab and this machine (``fixtures/procfs/``, see its README).

Every expected number is read from the saved files here, with a split or a
regex of the test's own, or is a fact about how the captures were taken
(x86-64, 2 CPUs). Error paths use copies of the real files with one thing
broken.
"""

import os
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import psutil
import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.model.snapshot import Snapshot
from buddyscope.probe import procfs
from buddyscope.probe.procfs import read_procfs

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "procfs"
FOLDERS = ["5.10", "6.1", "6.12", "7.2", "host"]

FIVE = ["Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate"]
SIX = ["Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate"]
# Seen in the captured files: the migratetypes pagetypeinfo lists, and which
# of the version-dependent zoneinfo lines each kernel prints.
KNOWN = {
    "5.10": (FIVE, set()),
    "6.1": (FIVE, {"boost", "cma"}),
    "6.12": (FIVE, {"boost", "cma", "promo"}),
    "7.2": (SIX, {"boost", "cma", "promo", "high_min", "reserved_highatomic"}),
    "host": (FIVE, {"boost", "cma", "promo", "high_min"}),
}


@pytest.fixture(params=FOLDERS)
def folder(request):
    return FIXTURES / request.param


@pytest.fixture
def snap(folder):
    return read_procfs(folder)


def text(folder, name):
    return (folder / name).read_text()


def buddyinfo_rows(folder):
    """{(node, zone): [nr_free per order]} by splitting the lines."""
    rows = {}
    for line in text(folder, "buddyinfo").splitlines():
        words = line.replace(",", " ").split()  # Node 0 zone DMA32 n0 n1 ...
        rows[(int(words[1]), words[3])] = [int(w) for w in words[4:]]
    return rows


def zoneinfo_chunks(folder):
    """{(node, zone): the zone's text in /proc/zoneinfo}."""
    chunks = {}
    for chunk in re.split(r"(?m)^(?=Node )", text(folder, "zoneinfo")):
        if chunk:
            m = re.match(r"Node (\d+), zone\s+(\w+)", chunk)
            chunks[(int(m.group(1)), m.group(2))] = chunk
    return chunks


def zone_value(chunk, name):
    m = re.search(rf"^\s+{name}:?\s+(\d+)$", chunk, re.M)
    return int(m.group(1)) if m else None


def copy(folder, tmp_path):
    dest = tmp_path / folder.name
    shutil.copytree(folder, dest)
    return dest


# -- numbers from each file ------------------------------------------------------

def test_zones_are_buddyinfos(folder, snap):
    rows = buddyinfo_rows(folder)
    assert [(z.node, z.name) for z in snap.zones] == list(rows)
    # zoneinfo also lists the empty zones (Normal, Movable, Device in a 512 MiB
    # guest): they are not in the snapshot.
    empty = [k for k, c in zoneinfo_chunks(folder).items() if zone_value(c, "present") == 0]
    assert empty
    assert not set(empty) & {(z.node, z.name) for z in snap.zones}


def test_buddyinfo_nr_free(folder, snap):
    rows = buddyinfo_rows(folder)
    dma32 = [l for l in text(folder, "buddyinfo").splitlines() if " DMA32 " in l][0]
    assert snap.zone("DMA32").free_area[3].nr_free == int(dma32.split()[4 + 3])
    for z in snap.zones:
        assert [a.nr_free for a in z.free_area] == rows[(z.node, z.name)]


def test_orders_and_pageblock_order(folder, snap):
    # x86-64: NR_PAGE_ORDERS 11, pageblock_order 9 (HPAGE_PMD_ORDER).
    assert snap.kernel.nr_page_orders == 11
    assert len(text(folder, "buddyinfo").splitlines()[0].split()) - 4 == 11
    assert snap.kernel.pageblock_order == 9
    assert "Page block order: 9\n" in text(folder, "pagetypeinfo")
    assert snap.kernel.release == text(folder, "sys/kernel/osrelease").strip()
    assert snap.kernel.page_size == 4096


def test_migratetypes(folder, snap):
    expected, _ = KNOWN[folder.name]
    assert snap.kernel.migratetypes == expected
    assert snap.kernel.migratetype("MIGRATE_MOVABLE") == expected.index("Movable")


def pagetypeinfo_rows(folder):
    """{(node, zone, migratetype): [free blocks per order]} by a regex."""
    rows = {}
    for node, zone, mt, nums in re.findall(r"Node\s+(\d+), zone\s+(\w+), type\s+(\w+)([\d ]+)$",
                                           text(folder, "pagetypeinfo"), re.M):
        rows[(int(node), zone, mt)] = [int(n) for n in nums.split()]
    return rows


def test_pagetypeinfo_counts(folder, snap):
    m = re.search(r"zone\s+DMA32, type\s+Movable\s+(\d+)", text(folder, "pagetypeinfo"))
    movable = snap.kernel.migratetype("Movable")
    assert snap.zone("DMA32").free_area[0].count(movable) == int(m.group(1))
    rows = pagetypeinfo_rows(folder)
    for z in snap.zones:
        for order, area in enumerate(z.free_area):
            assert area.counts == [rows[(z.node, z.name, mt)][order] for mt in snap.kernel.migratetypes]


def test_pageblocks_fields(folder, snap):
    pti = text(folder, "pagetypeinfo")
    head = re.search(r"^Number of blocks type(.*)$", pti, re.M).group(1).split()
    for node, zone, nums in re.findall(r"^Node (\d+), zone\s+(\w+)([\d ]+)$", pti, re.M):
        z = snap.zone(zone, int(node))
        blocks = {f"pageblocks_{mt}": int(n) for mt, n in zip(head, nums.split())}
        assert {k: v for k, v in z.fields.items() if k.startswith("pageblocks_")} == blocks


def test_count_mismatches_are_the_files(folder, snap):
    # The files were read one after the other while the kernel ran: where the
    # two tables disagree (they do in the 5.10 capture), there is an anomaly.
    buddy = buddyinfo_rows(folder)
    per_mt = pagetypeinfo_rows(folder)
    mismatches = set()
    for (node, zone), nr_free in buddy.items():
        for order, n in enumerate(nr_free):
            if n != sum(v[order] for k, v in per_mt.items() if k[:2] == (node, zone)):
                mismatches.add(f"Node {node} {zone} free_area[{order}]")
    got = {a.where for a in snap.capture.anomalies if a.kind == "count_mismatch"}
    assert got == mismatches
    assert bool(mismatches) == (folder.name == "5.10")
    assert snap.capture.anomalies == [a for a in snap.capture.anomalies if a.kind == "count_mismatch"]


def test_zoneinfo_fields(folder, snap):
    _, printed = KNOWN[folder.name]
    for (node, name), chunk in zoneinfo_chunks(folder).items():
        if zone_value(chunk, "present") == 0:
            continue
        z = snap.zone(name, node)
        assert z.start_pfn == zone_value(chunk, "start_pfn")
        assert z.spanned_pages == zone_value(chunk, "spanned")
        assert z.present_pages == zone_value(chunk, "present")
        assert z.managed_pages == zone_value(chunk, "managed")
        assert z.nr_free_pages == zone_value(chunk, "pages free")
        for w in ("min", "low", "high"):
            assert z.watermarks[w] == zone_value(chunk, w)
        if "promo" in printed:
            assert z.watermarks["promo"] == zone_value(chunk, "promo")
        else:
            assert "promo" not in z.watermarks and zone_value(chunk, "promo") is None
        protection = re.search(r"protection: \(([\d, ]+)\)", chunk).group(1)
        assert z.lowmem_reserve == [int(v) for v in protection.split(",")]
        assert ("cma_pages" in z.fields) == ("cma" in printed)
        if "cma" in printed:
            assert z.fields["cma_pages"] == zone_value(chunk, "cma")
        # Printed or not, these are 0 in every capture.
        assert (zone_value(chunk, "boost") is not None) == ("boost" in printed)
        assert z.watermark_boost == (zone_value(chunk, "boost") or 0)
        assert (zone_value(chunk, "reserved_highatomic") is not None) == (
            "reserved_highatomic" in printed)
        assert z.nr_reserved_highatomic == (zone_value(chunk, "reserved_highatomic") or 0)


def test_pcp(folder, snap):
    _, printed = KNOWN[folder.name]
    cpus = set()
    for (node, name), chunk in zoneinfo_chunks(folder).items():
        found = re.findall(r"cpu: (\d+)\s+count:\s+(\d+)\s+high:\s+(\d+)\s+batch:\s+(\d+)", chunk)
        if zone_value(chunk, "present") == 0:
            assert not found
            continue
        z = snap.zone(name, node)
        assert [(p.cpu, p.count, p.high, p.batch) for p in z.pcp] == [
            tuple(map(int, f)) for f in found]
        cpus |= {int(f[0]) for f in found}
        extra = re.findall(r"high_min:\s+(\d+)\s+high_max:\s+(\d+)", chunk)
        if "high_min" in printed:
            assert [(p.fields["high_min"], p.fields["high_max"]) for p in z.pcp] == [
                tuple(map(int, e)) for e in extra]
        else:
            assert not extra and all(p.fields == {} for p in z.pcp)
        assert all(p.lists is None for p in z.pcp)
    # Every capture is of a 2-CPU machine (the guests were booted with smp=2).
    assert snap.kernel.nr_cpus == len(cpus) == 2
    # Something was on a pcp list when the files were read.
    assert any(p.count for z in snap.zones for p in z.pcp)


def test_capture(folder, snap):
    c = snap.capture
    assert (c.source, c.target, c.paused) == ("procfs", str(folder), False)
    assert c.tool.startswith("buddyscope ")
    t = datetime.fromisoformat(c.time)
    assert t.utcoffset() == timedelta(0)
    assert 0 <= c.read_seconds < 5
    assert c.notes == {}  # not the real /proc: no host memory
    assert not snap.has_pfns


def test_round_trip(folder, snap, tmp_path):
    for name in ("snap.json.gz", "snap.json"):
        snap.save(tmp_path / name)
        assert Snapshot.load(tmp_path / name).to_dict() == snap.to_dict()


# -- version-dependent lines, with values other than the captures' zeros ---------

def test_boost_and_highatomic_when_printed(tmp_path):
    root = copy(FIXTURES / "7.2", tmp_path)
    zi = text(root, "zoneinfo")
    head, dma32 = zi.split("Node 0, zone    DMA32\n")
    dma32 = re.sub(r"(?m)^(\s+boost\s+)0$", r"\g<1>17", dma32, count=1)
    dma32 = re.sub(r"(?m)^(  reserved_highatomic: )0$", r"\g<1>512", dma32, count=1)
    dma32 = re.sub(r"(?m)^(  free_highatomic:\s+)0$", r"\g<1>3", dma32, count=1)
    (root / "zoneinfo").write_text(head + "Node 0, zone    DMA32\n" + dma32)
    z = read_procfs(root).zone("DMA32")
    assert (z.watermark_boost, z.nr_reserved_highatomic, z.fields["nr_free_highatomic"]) == (17, 512, 3)


def test_capped_pagetypeinfo_count(tmp_path):
    # pagetypeinfo prints ">100000" for a free list of 100000 blocks or more.
    root = copy(FIXTURES / "6.1", tmp_path)
    pti = text(root, "pagetypeinfo")
    pti = re.sub(r"(zone\s+DMA32, type\s+Movable\s+)\d+", r"\g<1>>100000", pti)
    (root / "pagetypeinfo").write_text(pti)
    snap = read_procfs(root)
    z = snap.zone("DMA32")
    assert z.free_area[0].counts is None
    assert z.free_area[1].counts is not None
    [a] = [a for a in snap.capture.anomalies if a.kind == "procfs"]
    assert a.where == "Node 0 DMA32 free_area[0]" and "Movable" in a.detail


def test_nr_cpus_counts_cpus_in_pagesets(tmp_path):
    # The 6.12 zoneinfo with CPU 1's pagesets cut out, as a 1-CPU guest prints it.
    root = copy(FIXTURES / "6.12", tmp_path)
    zi, n = re.subn(r"(?m)^    cpu: 1\n(?:\s{6,}\w+:\s+\d+\n)+  vm stats threshold: \d+\n", "",
                    text(root, "zoneinfo"))
    assert n == 2
    (root / "zoneinfo").write_text(zi)
    snap = read_procfs(root)
    assert snap.kernel.nr_cpus == 1
    assert [[p.cpu for p in z.pcp] for z in snap.zones] == [[0], [0]]


# -- without pagetypeinfo ----------------------------------------------------------

def check_no_pagetypeinfo(root, snap, detail):
    assert snap.kernel.migratetypes == []
    assert snap.kernel.pageblock_order == -1
    assert all(a.counts is None for z in snap.zones for a in z.free_area)
    assert all(not k.startswith("pageblocks_") for z in snap.zones for k in z.fields)
    assert [(a.kind, a.where, a.detail) for a in snap.capture.anomalies] == [
        ("procfs", str(root / "pagetypeinfo"), detail)]
    # The rest is still read.
    rows = buddyinfo_rows(root)
    assert [[a.nr_free for a in z.free_area] for z in snap.zones] == list(rows.values())


def test_pagetypeinfo_absent(tmp_path):
    root = copy(FIXTURES / "6.12", tmp_path)
    (root / "pagetypeinfo").unlink()
    snap = read_procfs(root)
    check_no_pagetypeinfo(root, snap, "absent: no per-migratetype counts")
    assert Snapshot.from_dict(snap.to_dict()).to_dict() == snap.to_dict()


def test_pagetypeinfo_needs_root(tmp_path, monkeypatch):
    # The file is mode 0400; the tests run as root, so the refusal is faked.
    root = copy(FIXTURES / "7.2", tmp_path)
    read_bytes = Path.read_bytes

    def refuse(self):
        if self.name == "pagetypeinfo":
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    check_no_pagetypeinfo(root, read_procfs(root), "needs root: no per-migratetype counts")


# -- errors: one line naming the file --------------------------------------------

@pytest.mark.parametrize("name", ["buddyinfo", "zoneinfo", "sys/kernel/osrelease"])
def test_missing_file(tmp_path, name):
    root = copy(FIXTURES / "6.1", tmp_path)
    (root / name).unlink()
    with pytest.raises(BuddyscopeError) as e:
        read_procfs(root)
    assert str(e.value) == f"cannot read {root / name}: No such file or directory"


def test_missing_root(tmp_path):
    with pytest.raises(BuddyscopeError, match="cannot read .*/nowhere/sys/kernel/osrelease"):
        read_procfs(tmp_path / "nowhere")


@pytest.mark.parametrize("name, pick", [
    ("buddyinfo", r"zone\s+DMA32"),
    ("pagetypeinfo", r"zone\s+DMA32, type\s+Movable"),
    ("pagetypeinfo", r"^Node 0, zone\s+DMA32"),       # the blocks table
    ("zoneinfo", r"^\s+count:\s+[1-9]"),               # a pageset
    ("zoneinfo", r"^\s+managed"),
    ("zoneinfo", r"^\s+nr_inactive_anon"),             # per-node stats
])
def test_corrupt_line(tmp_path, name, pick):
    # The first number on the picked line becomes "x".
    root = copy(FIXTURES / "5.10", tmp_path)
    lines = text(root, name).splitlines(keepends=True)
    lineno = next(i for i, l in enumerate(lines, 1) if re.search(pick, l))
    lines[lineno - 1] = re.sub(r"\d+", "x", lines[lineno - 1], count=1)
    (root / name).write_text("".join(lines))
    with pytest.raises(BuddyscopeError) as e:
        read_procfs(root)
    msg = str(e.value)
    assert msg.startswith(f"{root / name}: unexpected line {lineno}: ")
    assert "\n" not in msg


def test_empty_osrelease(tmp_path):
    root = copy(FIXTURES / "6.1", tmp_path)
    (root / "sys/kernel/osrelease").write_text("\n")
    with pytest.raises(BuddyscopeError, match=r"osrelease: not a kernel release"):
        read_procfs(root)


def test_buddyinfo_short_line(tmp_path):
    root = copy(FIXTURES / "6.1", tmp_path)
    lines = text(root, "buddyinfo").splitlines()
    lines[1] = lines[1].rsplit(None, 1)[0]  # drop the last order
    (root / "buddyinfo").write_text("\n".join(lines) + "\n")
    with pytest.raises(BuddyscopeError, match=r"buddyinfo: 10 orders, not 11, on line 2: "):
        read_procfs(root)


def test_zone_missing_from_zoneinfo(tmp_path):
    root = copy(FIXTURES / "6.1", tmp_path)
    zi = text(root, "zoneinfo")
    (root / "zoneinfo").write_text(zi.replace("zone    DMA32", "zone   DMA31"))
    with pytest.raises(BuddyscopeError, match=r"zoneinfo: no zone DMA32 on node 0, which .*buddyinfo lists"):
        read_procfs(root)


# -- this machine ------------------------------------------------------------------

@pytest.mark.skipif(not Path("/proc/buddyinfo").exists(), reason="no /proc/buddyinfo: not Linux")
def test_real_proc(tmp_path):
    snap = read_procfs()
    k = snap.kernel
    assert k.release == os.uname().release
    assert k.page_size == os.sysconf("SC_PAGE_SIZE")
    buddyinfo = Path("/proc/buddyinfo").read_text().splitlines()
    assert k.nr_page_orders == len(buddyinfo[0].split()) - 4
    assert [z.name for z in snap.zones] == [l.replace(",", " ").split()[3] for l in buddyinfo]
    # Stable while the machine runs: managed pages of each zone.
    zoneinfo = Path("/proc/zoneinfo").read_text()
    for z in snap.zones:
        m = re.search(rf"^Node {z.node}, zone\s+{z.name}\n(?:.*\n)*?\s+managed\s+(\d+)$", zoneinfo, re.M)
        assert z.managed_pages == int(m.group(1))
    if os.access("/proc/pagetypeinfo", os.R_OK):
        order = re.search(r"Page block order: (\d+)", Path("/proc/pagetypeinfo").read_text())
        assert k.pageblock_order == int(order.group(1))
        assert all(a.counts is not None for z in snap.zones for a in z.free_area)
    else:
        assert k.pageblock_order == -1
        assert ("procfs", "/proc/pagetypeinfo") in [(a.kind, a.where) for a in snap.capture.anomalies]
    c = snap.capture
    assert c.target == "/proc"
    assert c.notes["host_memory"]["total"] == psutil.virtual_memory().total
    assert abs(datetime.fromisoformat(c.time).timestamp() - datetime.now().timestamp()) < 60
    snap.save(tmp_path / "real.json.gz")
    assert Snapshot.load(tmp_path / "real.json.gz").to_dict() == snap.to_dict()


def test_default_root_is_proc():
    assert procfs.PROCFS_PATH == Path("/proc")
