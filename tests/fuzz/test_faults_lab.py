"""Lab tier: faults in the middle of work, on a real guest.

- Ctrl-C (SIGINT) and SIGTERM at every phase of ``record --lab`` (boot,
  prepare, tracing on, snapshot, run, read-back, write), sent by the process
  to itself as the phase starts (faultinject.py). After each: a non-zero exit
  with one clear line, the file that was at ``-o`` untouched and nothing
  beside it, and no QEMU left (by pid).
- The same signals in the phases a guest outlives (``record_in_guest`` on a
  guest the test owns): tracing restored and the guest running (resumed if
  it was paused for the snapshot).
- The guest killed during a QMP snapshot and during ``record --lab``: one
  line, no hang, no QEMU left.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from buddyscope.lab.kernels import find_vmlinux
from buddyscope.lab import record
from buddyscope.lab.guest import Guest
from buddyscope.probe import tracing

pytestmark = pytest.mark.lab
pytest.importorskip("drgn")

HERE = Path(__file__).resolve().parent
INJECT = HERE / "faultinject.py"
# Small and quick: no preparation, a little page traffic traced.
WORKLOAD = b"#!/bin/sh\n[ \"$1\" = run ] && dd if=/dev/zero of=/tmp/x bs=64k count=16 2>/dev/null\nexit 0\n"
PHASES = ["boot", "prepare", "tracing", "snapshot", "run", "readback", "write"]
GOOD = b"a good fixture that was here before\n"


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _record_with_fault(series, phase, sig, tmp_path):
    wl = tmp_path / "w.sh"
    wl.write_bytes(WORKLOAD)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "f.json.gz"
    out.write_bytes(GOOD)
    pidfile = tmp_path / "qemu.pids"
    pidfile.write_text("")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, str(INJECT), phase, sig, str(pidfile), "--",
                        "record", "--lab", series, "--workload", str(wl), "-o", str(out)],
                       capture_output=True, text=True, timeout=400, cwd=tmp_path)
    pids = [int(l) for l in pidfile.read_text().split()]
    return p, out, outdir, pids, time.monotonic() - t0


def _no_qemu_left(pids):
    assert pids, "no QEMU was started"
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids), f"QEMU left running: {pids}"


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", PHASES)
def test_record_lab_interrupted(lab_kernel, phase, sig, tmp_path):
    p, out, outdir, pids, _ = _record_with_fault(lab_kernel.series, phase, sig, tmp_path)
    assert "Traceback" not in p.stderr, p.stderr
    want = (130, "buddyscope: interrupted") if sig == "SIGINT" else (143, "buddyscope: terminated")
    assert (p.returncode, p.stderr.strip().splitlines()[-1]) == want, p.stderr
    assert out.read_bytes() == GOOD
    assert [f.name for f in outdir.iterdir()] == ["f.json.gz"]
    _no_qemu_left(pids)


@pytest.mark.parametrize("phase", ["snapshot", "run", "readback"])
def test_record_lab_guest_killed(lab_kernel, phase, tmp_path):
    p, out, outdir, pids, seconds = _record_with_fault(lab_kernel.series, phase, "KILLQEMU",
                                                       tmp_path)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 1, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("buddyscope: error: "), p.stderr
    assert out.read_bytes() == GOOD
    assert [f.name for f in outdir.iterdir()] == ["f.json.gz"]
    _no_qemu_left(pids)


@pytest.fixture(scope="module")
def guest(lab_kernel):
    with Guest.boot(lab_kernel) as g:
        yield g


def test_qmp_snapshot_of_a_guest_killed_mid_read(lab_kernel, tmp_path):
    """``snapshot --qmp --pause`` while the guest's QEMU is killed: one line,
    no hang."""
    with Guest.boot(lab_kernel) as g:
        pid = g.pid
        out = tmp_path / "s.json.gz"
        out.write_bytes(GOOD)
        p = subprocess.run([sys.executable, str(INJECT), "snapshot", f"KILLPID={pid}",
                            str(tmp_path / "pids"), "--", "snapshot", "--qmp", str(g.qmp_path),
                            "--pause", str(g.pause_path), "-o", str(out)],
                           capture_output=True, text=True, timeout=120)
        assert "Traceback" not in p.stderr, p.stderr
        assert p.returncode == 1, p.stderr
        assert p.stderr.strip().splitlines()[-1].startswith("buddyscope: error: "), p.stderr
        assert out.read_bytes() == GOOD
        assert not _alive(pid)


class _SignalAt:
    """Send *sig* to this process when *obj.name* is next called."""

    def __init__(self, monkeypatch, obj, name, sig, when=lambda *a, **k: True):
        real = getattr(obj, name)

        def wrapped(*a, **k):
            if when(*a, **k):
                os.kill(os.getpid(), sig)
            return real(*a, **k)

        monkeypatch.setattr(obj, name, wrapped)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", ["prepare", "tracing", "snapshot", "run", "readback"])
def test_interrupted_record_restores_the_guest(guest, monkeypatch, phase, sig):
    from buddyscope import cli
    from buddyscope.probe import sources

    before = tracing.save_tracing(guest)
    run_cmd = lambda prefix: (lambda self, script, *a, **k: script.startswith(prefix))  # noqa: E731
    where = {
        "prepare": (Guest, "run", run_cmd("/run/workload prepare")),
        "tracing": (record, "_start_tracing", lambda *a, **k: True),
        "snapshot": (sources.QmpSource, "snapshot", lambda *a, **k: True),
        "run": (Guest, "run", run_cmd("/run/workload run")),
        "readback": (Guest, "run", lambda self, script, *a, **k: "/per_cpu/cpu" in script),
    }[phase]
    _SignalAt(monkeypatch, *where[:2], sig, where[2])
    old = signal.signal(signal.SIGTERM, cli._on_sigterm)  # as the CLI does
    # Ctrl-C as at a terminal, even when pytest was started in the background
    # by a shell without job control (SIGINT then inherited ignored).
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises((KeyboardInterrupt, cli._Terminated)):
            record.record_in_guest(guest, WORKLOAD, "w.sh")
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)
    monkeypatch.undo()
    assert guest.status == "running"
    assert tracing.save_tracing(guest) == before


def test_tui_refresh_after_the_guest_was_killed(lab_kernel):
    """The TUI on a real guest's QMP socket; the guest's QEMU is killed; the
    next refresh shows the error and keeps the last good read."""
    sys.path.insert(0, str(HERE.parent / "tui"))
    from tuihelp import PinnedApp, run, settle

    from buddyscope.probe.sources import SourceSpec
    from buddyscope.wiring import open_session
    from buddyscope.tui.widgets import HeaderBar

    with Guest.boot(lab_kernel) as g:
        session = open_session(SourceSpec(qmp=g.qmp_path, pause=g.pause_path, find_vmlinux=find_vmlinux))
        pid = g.pid

        async def body(app, pilot):
            first = app.main.snapshot
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
            await pilot.press("r")
            await settle(app, pilot)
            bar = app.main.query_one("#header", HeaderBar)
            return first, app.main.snapshot is first, bar.error, bar.status, app.is_running

        try:
            first, kept, error, status, running = run(PinnedApp(session, interval=None), body)
        finally:
            session.close()
    assert first is not None and first.kernel.release == lab_kernel.release
    assert error and "read failed" in status, status
    assert "showing the last good read" in status and kept and running
