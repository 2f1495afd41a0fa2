"""Lab tier: boot every cached Debian kernel under QEMU and check the guest
against itself: its release, its buddyinfo, pause and resume seen in its own
memory, a vmcore that drgn opens, and no QEMU process left behind."""

import hashlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from buddyscope.errors import GuestError
from buddyscope.lab.guest import Guest

pytestmark = pytest.mark.lab

drgn = pytest.importorskip("drgn")


def our_qemus():
    """Running QEMU processes started by this test process (its children)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "qemu-system" in p.name() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def gone(pid, within=5.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def assert_no_qemu_left(keep=()):
    left = [p for p in our_qemus() if p.pid not in keep]
    for p in left:
        p.kill()
    assert not left, f"QEMU left running: {[p.pid for p in left]}"


_shared_pids = set()


@pytest.fixture(scope="module")
def guest(lab_kernel):
    g = Guest.boot(lab_kernel, smp=2, mem_mib=512)
    _shared_pids.add(g.pid)
    yield g
    assert g.alive, "the shared guest died during the tests"
    g.shutdown()
    _shared_pids.discard(g.pid)
    assert_no_qemu_left()


@pytest.fixture(autouse=True)
def no_qemu_left_behind():
    # The module's shared guest may run on; nothing else may.
    yield
    assert_no_qemu_left(_shared_pids)


def test_release_matches_the_package(guest, lab_kernel):
    assert guest.release == lab_kernel.release
    assert guest.run("uname -r").text.strip() == lab_kernel.release


def test_buddyinfo(guest, lab_kernel):
    text = guest.run("cat /proc/buddyinfo; cat /proc/meminfo", check=True).text
    zones = {}
    for line in text.split("MemTotal")[0].splitlines():
        m = re.match(r"Node (\d+), zone\s+(\S+)\s+([\d\s]+)$", line)
        assert m, line
        zones[m.group(2)] = [int(x) for x in m.group(3).split()]
    assert {"DMA", "DMA32"} <= set(zones)
    # 11 orders (MAX_ORDER 10 inclusive / NR_PAGE_ORDERS 11) on every Debian amd64 kernel.
    assert {len(v) for v in zones.values()} == {11}
    free_kib = sum(n << o for v in zones.values() for o, n in enumerate(v)) * 4
    memfree = int(re.search(r"MemFree:\s+(\d+) kB", text).group(1))
    # Both are the buddy free lists (NR_FREE_PAGES), read a moment apart.
    assert 0 < memfree < 512 * 1024
    assert abs(free_kib - memfree) < 2048


def test_command_channel_is_byte_exact(guest):
    r = guest.run("head -c 65536 /dev/urandom > /tmp/r; md5sum /tmp/r; cat /tmp/r >&2; exit 7")
    assert r.status == 7
    assert len(r.stderr) == 65536
    assert r.text.split()[0] == hashlib.md5(r.stderr).hexdigest()
    r = guest.run("printf 'a\\r\\nb\\0c\\x1d'")
    assert r.stdout == b"a\r\nb\0c\x1d"
    assert guest.run("false").status == 1
    with pytest.raises(GuestError, match="status 3"):
        guest.run("echo boom >&2; exit 3", check=True)


def test_pause_and_resume_seen_in_guest_memory(guest):
    prog = guest.attach_drgn()
    jiffies = prog["jiffies"]
    with guest.paused():
        assert guest.status == "paused"
        a = jiffies.value_()
        time.sleep(0.5)
        assert jiffies.value_() == a
    assert guest.status == "running"
    time.sleep(0.5)
    assert jiffies.value_() > a
    assert guest.run("echo alive").text == "alive\n"


def test_vmcore_opens_in_drgn_and_matches_the_paused_guest(guest, lab_kernel, tmp_path):
    live = guest.attach_drgn()
    with guest.paused():
        free_live = live["vm_zone_stat"][live.constant("NR_FREE_PAGES")].counter.value_()
        jiffies_live = live["jiffies"].value_()
        core = guest.dump_vmcore(tmp_path / "vmcore")
    assert guest.status == "running"
    prog = drgn.Program()
    prog.set_core_dump(str(core))
    prog.load_debug_info([str(lab_kernel.vmlinux)])
    assert prog["init_uts_ns"].name.release.string_().decode() == lab_kernel.release
    assert prog["vm_zone_stat"][prog.constant("NR_FREE_PAGES")].counter.value_() == free_live
    assert prog["jiffies"].value_() == jiffies_live


def test_failing_test_leaves_no_qemu(lab_kernel):
    pid = None
    with pytest.raises(RuntimeError):
        with Guest.boot(lab_kernel) as g:
            pid = g.pid
            raise RuntimeError("a test that fails with a guest up")
    assert pid and gone(pid)


def test_killed_parent_leaves_no_qemu(lab_kernel, tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from buddyscope.lab.kernels import resolve_kernel
        from buddyscope.lab.guest import Guest
        g = Guest.boot(resolve_kernel({lab_kernel.release!r}))
        print(g.pid, g.rundir, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True, cwd=tmp_path)
    try:
        pid, rundir = parent.stdout.readline().split()
        pid = int(pid)
        assert psutil.pid_exists(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert gone(pid), "QEMU outlived its killed parent"
        # Its run directory is left behind; the next boot removes it.
        from buddyscope.lab.guest import _remove_orphaned_rundirs

        assert os.path.isdir(rundir)
        _remove_orphaned_rundirs()
        assert not os.path.exists(rundir)
    finally:
        parent.kill()
        parent.wait()


def test_panic_at_boot_is_one_clear_error(lab_kernel):
    # No init in the initramfs: the kernel falls back to a root device there
    # is none of, and panics; panic=-1 and -no-reboot make QEMU exit.
    with pytest.raises(GuestError, match=r"panicked at boot: Kernel panic - not syncing"):
        Guest.boot(lab_kernel, append="rdinit=/nonexistent", retries=0)


def test_boot_timeout_is_one_clear_error(lab_kernel):
    with pytest.raises(GuestError, match=r"gave no shell within 0.5 s; last console line"):
        Guest.boot(lab_kernel, timeout=0.5)


def test_lab_shell_command(lab_kernel, tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "buddyscope", "lab", "shell", lab_kernel.series, "--smp", "2"],
        input="uname -r\ncat /proc/buddyinfo\nexit\n", capture_output=True, text=True,
        timeout=120, cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert lab_kernel.release in p.stdout
    assert "zone    DMA32" in p.stdout
    assert "--qmp /" in p.stderr and "--pause /" in p.stderr
