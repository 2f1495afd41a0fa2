"""Lab tier: a ``record`` SIGKILLed mid-run leaves the guest's tracing
changed (kmem events on, kprobes of group ``buddyscope``, its marker in
/run); while it runs, a second ``record`` refuses, naming its pid; after the
kill, ``record --restore`` (recordstate.recover) or the next ``record`` puts
back exactly the state found before it.

The recorder runs in a child process that borrows the guest's command
channel (tests/record/relay.py), so that killing it does not take the guest
with it (QEMU dies with the process that booted it)."""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from buddyscope.lab import record
from buddyscope.probe import recordstate, tracing
from buddyscope.lab.guest import Guest

pytestmark = pytest.mark.lab
pytest.importorskip("drgn")

RELAY = Path(__file__).with_name("relay.py")
WORKLOADS = Path(__file__).resolve().parents[2] / "fixtures" / "workloads"


@pytest.fixture(scope="module")
def guest(lab_kernel):
    with Guest.boot(lab_kernel, smp=1, mem_mib=512) as g:
        yield g


class NoKernelMemory:
    prog = None

    def snapshot(self):
        raise AssertionError("a refused recorder reads nothing")


def _kill_a_recorder_mid_run(guest, tmp_path):
    """Start a recorder in a child, check a second one is refused while it
    runs, SIGKILL it; return its pid."""
    from relay import RelayServer  # tests/record/relay.py (on sys.path: rootdir-less test dir)

    sock = str(tmp_path / "relay.sock")
    server = RelayServer(sock, guest)
    child = subprocess.Popen([sys.executable, str(RELAY), sock, str(guest.qmp_path),
                              str(guest.kernel.vmlinux)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "recording"
        marker = recordstate.read_marker(guest)
        assert marker["pid"] == child.pid
        # A second recorder on the same tracefs refuses, naming the first,
        # before it reads any kernel memory (the child's drgn holds qmp.sock).
        with pytest.raises(recordstate.TracingInUse, match=rf"in use by buddyscope record \(pid {child.pid},"):
            record._record(guest, NoKernelMemory(), contextlib.nullcontext, lambda: None,
                           buffer_kb=1024, timeout=60)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        child.kill()
        child.wait()
        server.close()
    return child.pid


def _left_behind(guest, before):
    now = tracing.save_tracing(guest)
    assert now != before
    assert now["tracing_on"] == "1" and now["events/kmem/mm_page_alloc/enable"] == "1"
    assert recordstate.read_marker(guest)["saved"] == before


def test_record_restore_puts_back_what_a_killed_record_left(guest, tmp_path):
    before = tracing.save_tracing(guest)
    pid = _kill_a_recorder_mid_run(guest, tmp_path)
    _left_behind(guest, before)
    said = recordstate.recover(guest)
    assert f"pid {pid}" in said and "killed" in said
    assert tracing.save_tracing(guest) == before
    assert recordstate.read_marker(guest) is None
    assert guest.run(f"test -d {tracing.TRACEFS}/events/buddyscope").status != 0
    assert recordstate.recover(guest) is None


def test_the_next_record_restores_it_first(guest, tmp_path):
    before = tracing.save_tracing(guest)
    pid = _kill_a_recorder_mid_run(guest, tmp_path)
    _left_behind(guest, before)
    fx = record.record_in_guest(guest, (WORKLOADS / "tmpfs-write.sh").read_bytes(), "tmpfs-write",
                                buffer_kb=8192)
    assert f"pid {pid}" in fx.provenance["restored_left_behind"]
    # What it saved, and put back, is the state from before the killed run.
    assert fx.provenance["tracing_state_restored"] == before
    assert tracing.save_tracing(guest) == before
    assert recordstate.read_marker(guest) is None
