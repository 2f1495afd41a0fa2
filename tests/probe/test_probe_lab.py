"""Lab tier: paused snapshots of every cached kernel, checked against the
kernel itself (its counters, its own procfs read idle just before the pause,
a vmcore of the same paused guest), and the probe's behaviour when the
guest or the socket is not what it should be."""

import re
import subprocess
import sys

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.lab.guest import Guest
from buddyscope.lab.kernels import find_vmlinux
from buddyscope.probe import mmzone
from buddyscope.probe.sources import SourceSpec, open_source

pytestmark = pytest.mark.lab
pytest.importorskip("drgn")

# One cat reads both files back to back: no fork between the two reads.
PROCFS = "sleep 1; cat /proc/buddyinfo /proc/pagetypeinfo"
STIR = """
mkdir -p /tmp/stir
i=0; while [ $i -lt 300 ]; do head -c 12288 /dev/zero > /tmp/stir/f$i; i=$((i+1)); done
rm -f /tmp/stir/f*[13579]
"""


@pytest.fixture(scope="module")
def guest(lab_kernel):
    with Guest.boot(lab_kernel, smp=2, mem_mib=512) as g:
        g.run(STIR, check=True)
        yield g


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    return tmp_path_factory.mktemp("core") / "vmcore"


@pytest.fixture(scope="module")
def paused_read(guest, core):
    """(snapshot, the guest's procfs text, snapshot of a vmcore of the same pause)."""
    with open_source(SourceSpec(find_vmlinux=find_vmlinux, qmp=guest.qmp_path, pause=guest.pause_path)) as src:
        with guest.paused_after(PROCFS) as p:
            snap = src.snapshot()
            guest.dump_vmcore(core)
    assert guest.status == "running"
    with open_source(SourceSpec(find_vmlinux=find_vmlinux, vmcore=core)) as src:
        from_core = src.snapshot()
    return snap, p.result.text, from_core


def test_paused_snapshot_is_consistent(paused_read, lab_kernel):
    snap, _, _ = paused_read
    assert snap.kernel.release == lab_kernel.release
    assert snap.kernel.build_id == lab_kernel.vmlinux_build_id
    assert snap.capture.paused and snap.capture.anomalies == []
    for z in snap.zones:
        for area in z.free_area:
            assert sum(len(l) for l in area.free_list) == area.nr_free
        for pcp in z.pcp:
            assert sum(len(l) << snap.kernel.pcp_lists[i].order for i, l in enumerate(pcp.lists)) == pcp.count
        assert z.nr_free_pages == z.pages_on_free_lists()


def test_agrees_with_the_idle_guests_procfs(paused_read):
    # The guest reads buddyinfo, then pagetypeinfo, as a running process,
    # and is paused only once the host sees its marker: meanwhile a few
    # pages, and on each CPU a pcp refill or drain (rmqueue_bulk,
    # free_pcppages_bulk: most often one batch) can move.
    snap, text, _ = paused_read
    for z in snap.zones:
        slack = 16 + sum(p.batch for p in z.pcp)
        row = re.search(rf"^Node 0, zone\s+{z.name}\s+([\d ]+)$", text, re.M).group(1).split()
        apart = sum(abs(int(x) - a.nr_free) << o for o, (x, a) in enumerate(zip(row, z.free_area)))
        assert apart <= slack, f"{z.name}: buddyinfo and the snapshot are {apart} pages apart"
        for mt, name in enumerate(snap.kernel.migratetypes):
            row = re.search(rf"^Node\s+0, zone\s+{z.name}, type\s+{name}\s+([\d ]+)$", text, re.M).group(1).split()
            apart = sum(abs(int(x) - len(a.free_list[mt])) << o for o, (x, a) in enumerate(zip(row, z.free_area)))
            assert apart <= slack, f"{z.name} {name}: pagetypeinfo is {apart} pages apart"
    assert re.search(r"^Page block order: (\d+)", text, re.M).group(1) == str(snap.kernel.pageblock_order)


def test_vmcore_of_the_same_pause_gives_the_identical_snapshot(paused_read):
    snap, _, from_core = paused_read
    a, b = snap.to_dict(), from_core.to_dict()
    assert b["capture"]["source"] == "vmcore" and b["capture"]["paused"]
    del a["capture"], b["capture"]
    assert a == b


def test_every_list_matches_list_for_each_entry(guest):
    # An independent reader: drgn's list_for_each_entry, one object per node,
    # on the same paused state.
    from buddyscope.probe.reference import list_for_each_entry_pfns, snapshot_pfn_lists

    guest.run(STIR, check=True)
    with open_source(SourceSpec(find_vmlinux=find_vmlinux, qmp=guest.qmp_path)) as src:
        with guest.paused():
            snap = src.snapshot()
            walked = list_for_each_entry_pfns(src.prog)
    assert sum(map(len, walked)) > 100
    assert snapshot_pfn_lists(snap) == walked


def test_no_debug_info_is_one_clear_error(paused_read, core, monkeypatch, tmp_path):
    # No lab cache and no --vmlinux: drgn's standard search finds nothing
    # for a lab kernel on this host.
    monkeypatch.setenv("BUDDYSCOPE_CACHE", str(tmp_path))
    with pytest.raises(BuddyscopeError, match=r"no debug info for the kernel of .* pass --vmlinux FILE"):
        open_source(SourceSpec(find_vmlinux=find_vmlinux, vmcore=core))


def test_running_read_is_marked_not_paused(guest):
    with open_source(SourceSpec(find_vmlinux=find_vmlinux, qmp=guest.qmp_path)) as src:
        snap = src.snapshot()
    assert not snap.capture.paused and not snap.capture.consistent


def test_guest_is_resumed_when_the_read_fails(guest, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("read failed half way")

    with open_source(SourceSpec(find_vmlinux=find_vmlinux, qmp=guest.qmp_path, pause=guest.pause_path)) as src:
        monkeypatch.setattr(mmzone, "read_snapshot", boom)
        with pytest.raises(RuntimeError):
            src.snapshot()
    assert guest.status == "running"


def test_a_guest_someone_else_paused_stays_paused(guest):
    with guest.paused():
        with open_source(SourceSpec(find_vmlinux=find_vmlinux, qmp=guest.qmp_path, pause=guest.pause_path)) as src:
            snap = src.snapshot()
        assert guest.status == "paused"
    assert snap.capture.paused


def test_sockets_that_are_not_qmp(guest):
    with pytest.raises(BuddyscopeError, match="not a QMP socket|does not greet like QMP"):
        open_source(SourceSpec(find_vmlinux=find_vmlinux, qmp=guest.rundir / "console.sock"))
    with pytest.raises(BuddyscopeError, match="console.log is not a socket"):
        open_source(SourceSpec(find_vmlinux=find_vmlinux, qmp=guest.console_log))


def test_mismatched_vmlinux_is_refused(guest, lab_kernel):
    from buddyscope.lab.kernels import cached_kernels, find_busybox

    # Another kernel's vmlinux where one is cached, else any ELF file with a
    # build ID (the static busybox).
    other = next((k.vmlinux for k in cached_kernels() if k.release != lab_kernel.release), None)
    with pytest.raises(BuddyscopeError, match="does not match .* build ID"):
        open_source(SourceSpec(find_vmlinux=find_vmlinux, qmp=guest.qmp_path, vmlinux=other or find_busybox()))


def test_snapshot_command_on_a_paused_guest(guest, tmp_path):
    out = tmp_path / "s.json.gz"
    p = subprocess.run([sys.executable, "-m", "buddyscope", "snapshot", "--qmp", str(guest.qmp_path),
                        "--pause", str(guest.pause_path), "-o", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([sys.executable, "-m", "buddyscope", "snapshot", str(out), "--lists"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert p.returncode == 0 and "paused, consistent" in p.stdout
    assert re.search(r"free_area\[\d+\]\.free_list\[Movable\] \(\d+\): 0x", p.stdout)
    assert guest.status == "running"


def test_guest_gone_mid_session(lab_kernel):
    g = Guest.boot(lab_kernel)
    try:
        src = open_source(SourceSpec(find_vmlinux=find_vmlinux, qmp=g.qmp_path, pause=g.pause_path))
        g._proc.kill()
        g._proc.wait()
        with pytest.raises(BuddyscopeError):
            src.snapshot()
        src.close()
        # Without the control socket, drgn's own reads fail.
    finally:
        g.shutdown()


def test_reads_each_cpus_free_pages_delta_and_threshold(guest):
    """Each CPU's ``vm_stat_diff[NR_FREE_PAGES]`` and ``stat_threshold``:
    the thresholds are the ones the kernel prints in /proc/zoneinfo (an idle
    guest: kswapd asleep, so ``calculate_normal_threshold``'s, which the
    model assumes for snapshots without them), each delta within its
    threshold, and the global count plus the deltas is the exact count."""
    from buddyscope.model.allocator import _normal_threshold

    zoneinfo = guest.run("cat /proc/zoneinfo", check=True).text
    with open_source(SourceSpec(find_vmlinux=find_vmlinux, qmp=guest.qmp_path, pause=guest.pause_path)) as src:
        snap = src.snapshot()
    printed = {}
    for block in re.split(r"^Node \d+, zone\s+", zoneinfo, flags=re.M)[1:]:
        name = block.split()[0]
        printed[name] = [int(t) for t in re.findall(r"vm stats threshold:\s+(\d+)", block)]
    for z in snap.zones:
        thresholds = [p.fields["stat_threshold"] for p in sorted(z.pcp, key=lambda p: p.cpu)]
        assert thresholds == printed[z.name], z.name
        assert thresholds == [_normal_threshold(z.managed_pages, snap.kernel.nr_cpus)] * len(z.pcp)
        diffs = [p.fields["vm_stat_diff_nr_free_pages"] for p in z.pcp]
        assert all(abs(d) <= t for d, t in zip(diffs, thresholds)), (z.name, diffs, thresholds)
        assert z.fields["vm_stat_nr_free_pages"] + sum(diffs) == z.nr_free_pages
