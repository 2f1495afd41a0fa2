"""Lab tier: record a short workload on a real kernel; the boundary holds,
the tracing state is restored (also after an interrupted record), and a
failing workload is reported with its output."""

import subprocess
import sys
from pathlib import Path

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.lab import record
from buddyscope.lab.guest import Guest
from buddyscope.model.ftrace import parse_lines
from buddyscope.probe import tracing

pytestmark = pytest.mark.lab
pytest.importorskip("drgn")

WORKLOADS = Path(__file__).resolve().parents[2] / "fixtures" / "workloads"


@pytest.fixture(scope="module")
def recorded(lab_kernel, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "f.json.gz"
    p = subprocess.run([sys.executable, "-m", "buddyscope", "record", "--lab", lab_kernel.series,
                        "--workload", str(WORKLOADS / "tmpfs-write.sh"), "--smp", "2", "-o", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=out.parent)
    assert p.returncode == 0, p.stderr
    from buddyscope.model.fixture import Fixture
    return Fixture.load(out)


def test_recording_has_the_events_and_provenance(recorded, lab_kernel):
    events = parse_lines(recorded.trace).events
    assert len(events) == len(recorded.trace) > 100
    names = {e.name for e in events}
    assert {"mm_page_alloc", "mm_page_free"} <= names
    p = recorded.provenance
    assert p["kernel_release"] == lab_kernel.release == recorded.snapshot.kernel.release
    assert p["nr_cpus"] == 2 and recorded.snapshot.capture.paused
    # Compaction's free scanner tracepoint (all four kernels have it).
    assert "mm_compaction_isolate_freepages" in p["events_enabled"]
    # Every kprobe record defined registered on this kernel, and only those
    # are listed as enabled (replay reads an enabled, silent one as a
    # function never called).
    kprobes = [d.split()[0].split("/")[1] for d in p["kprobes"]]
    assert kprobes and set(kprobes) <= set(p["events_enabled"])
    for cpu, after in p["ring_buffer_after"].items():
        before = p["ring_buffer_before"][cpu]
        assert after["overrun"] == after["dropped_events"] == 0
        assert sum(e.cpu == int(cpu) for e in events) == after["entries"] - before["entries"]
    # Merged in the counter clock's total order.
    assert [e.ts for e in events] == sorted(e.ts for e in events)


def test_boundary_first_pcp_allocations_are_snapshot_heads(recorded):
    from conftest import first_pcp_allocations

    checks = first_pcp_allocations(recorded)
    assert checks, "no CPU allocated from a non-empty pcp list first"
    assert all(position is not None for _, _, _, position in checks), checks


@pytest.fixture(scope="module")
def guest(lab_kernel):
    with Guest.boot(lab_kernel) as g:
        yield g


def test_tracing_state_is_restored_after_a_record(guest):
    # A kmem event that is not one of the six, enabled by someone else:
    # recording turns it off, and must turn it back on.
    guest.run("echo 1 > /sys/kernel/tracing/events/kmem/kmalloc/enable", check=True)
    before = tracing.save_tracing(guest)
    assert before["events/kmem/kmalloc/enable"] == "1"
    # Recording turns the compaction tracepoint on, and back off.
    assert before["events/compaction/mm_compaction_isolate_freepages/enable"] == "0"
    script = (WORKLOADS / "fork-exec.sh").read_bytes()
    fixture = record.record_in_guest(guest, script, "fork-exec.sh")
    assert len(fixture.trace) > 0
    assert tracing.save_tracing(guest) == before == fixture.provenance["tracing_state_restored"]
    guest.run("echo 0 > /sys/kernel/tracing/events/kmem/kmalloc/enable", check=True)


def test_tracing_state_is_restored_after_an_interrupt(guest, monkeypatch):
    before = tracing.save_tracing(guest)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    # Ctrl-C after tracing was set up, at the boundary.
    monkeypatch.setattr("buddyscope.probe.tracing.ring_buffer_counters", interrupted)
    with pytest.raises(KeyboardInterrupt):
        record.record_in_guest(guest, (WORKLOADS / "fork-exec.sh").read_bytes(), "fork-exec.sh")
    assert tracing.save_tracing(guest) == before
    assert guest.status == "running"


def test_failing_workload_is_reported_with_its_output(guest):
    script = b"#!/bin/sh\n[ \"$1\" = prepare ] && exit 0\necho it broke >&2\nexit 5\n"
    with pytest.raises(BuddyscopeError, match="run failed with status 5: it broke"):
        record.record_in_guest(guest, script, "broken.sh")
    script = b"#!/bin/sh\necho not for this kernel\nexit 2\n"
    with pytest.raises(record.NotApplicable, match="does not apply .*not for this kernel"):
        record.record_in_guest(guest, script, "na.sh")


def test_a_buffer_too_small_makes_the_recording_fail_loudly(guest):
    before = tracing.save_tracing(guest)
    script = (WORKLOADS / "fork-exec.sh").read_bytes()
    with pytest.raises(BuddyscopeError, match="recording invalid: CPU 0 lost events"):
        record.record_in_guest(guest, script, "fork-exec.sh", buffer_kb=4)
    assert tracing.save_tracing(guest) == before


def test_best_effort_record_of_a_running_kernel(guest, monkeypatch):
    # The path `record --live` takes on a host, run against a real kernel
    # that is never paused: counters before and after the snapshot.
    def no_pause(*a, **k):
        raise AssertionError("a best-effort record must not pause the kernel")

    monkeypatch.setattr(guest, "pause", no_pause)
    before = tracing.save_tracing(guest)
    fixture = record.record_in_guest(guest, (WORKLOADS / "fork-exec.sh").read_bytes(),
                                     "fork-exec.sh", paused=False)
    assert tracing.save_tracing(guest) == before
    p = fixture.provenance
    assert p["best_effort"] is True and "not paused" in p["boundary"]
    assert not fixture.snapshot.capture.paused
    # An idle guest lets some attempt read the snapshot with no event traced
    # meanwhile; then the boundary property holds as for a paused record.
    assert "boundary_overlap_events" not in p and p["boundary_attempt"] >= 1
    from conftest import first_pcp_allocations

    checks = first_pcp_allocations(fixture)
    assert checks and all(position is not None for _, _, _, position in checks), checks
