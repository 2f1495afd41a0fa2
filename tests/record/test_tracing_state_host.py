"""``record --live``'s tracing set-up and restore, on this machine's own
tracefs (a real kernel: the one running the tests). Needs root and a tracefs
with kmem events; skipped otherwise. Nothing here reads kernel memory, so no
/proc/kcore is needed."""

import os

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.model.events import COMPACTION_EVENTS, EVENTS as KMEM_EVENTS
from buddyscope.lab import record
from buddyscope.probe import tracing


def _host():
    if os.geteuid() != 0:
        pytest.skip("not root: tracefs is root's")
    try:
        return record.LocalHost(tracing.find_tracefs())
    except BuddyscopeError as e:
        pytest.skip(str(e))


def test_start_tracing_sets_up_the_kmem_events_and_restore_puts_everything_back():
    host = _host()
    before = tracing.save_tracing(host)
    assert {"tracing_on", "trace_clock", "buffer_size_kb", "current_tracer"} <= before.keys()
    try:
        # The bulk allocator's kprobes as 6.12+ defines them: added where the
        # kernel has kprobe events, left out (not an error) where it has not.
        kprobes = ["p:buddyscope/alloc_pages_bulk alloc_pages_bulk_noprof gfp=%di:x32 nr_pages=%cx:s32",
                   "r:buddyscope/alloc_pages_bulk_ret alloc_pages_bulk_noprof nr_populated=$retval:s32"]
        events = tracing.start_tracing(host, 1024, kprobes)
        has_kprobes = os.path.exists(f"{host.tracefs}/kprobe_events")
        assert ("alloc_pages_bulk" in events) == has_kprobes
        assert os.path.isdir(f"{host.tracefs}/events/buddyscope") == has_kprobes
        now = tracing.save_tracing(host)
        assert now["tracing_on"] == "1"
        assert "[counter]" in now["trace_clock"]
        # The kernel rounds the size up to whole sub-buffers (1027 on 6.18).
        assert 1024 <= int(now["buffer_size_kb"]) < 1024 + 64
        assert {"mm_page_alloc", "mm_page_free"} <= set(events)
        for e in events:
            if e in KMEM_EVENTS:
                assert now[f"events/kmem/{e}/enable"] == "1"
            elif e in COMPACTION_EVENTS:
                assert now[f"events/compaction/{e}/enable"] == "1"
        assert ("mm_compaction_isolate_freepages" in events) == os.path.isdir(
            f"{host.tracefs}/events/compaction/mm_compaction_isolate_freepages")
    finally:
        tracing.remove_kprobes(host)
        tracing.restore_tracing(host, before)
    assert tracing.save_tracing(host) == before
    assert not os.path.exists(f"{host.tracefs}/events/buddyscope")


def test_an_interrupted_record_restores_the_tracing_state(monkeypatch):
    host = _host()
    before = tracing.save_tracing(host)

    def interrupted(prog):
        raise KeyboardInterrupt

    # Interrupted while placing the boundary, after tracing was started.
    monkeypatch.setattr("buddyscope.probe.tracing.ring_buffer_counters", interrupted)
    # No debug info here to place the bulk allocator's kprobes.
    monkeypatch.setattr("buddyscope.probe.tracing.bulk_alloc_kprobes", lambda prog: None)

    class NoKernelMemory:
        prog = None

        def snapshot(self):
            raise AssertionError("not reached")

    with pytest.raises(KeyboardInterrupt):
        record._record(host, NoKernelMemory(), record.contextlib.nullcontext, lambda: None,
                       buffer_kb=1024, timeout=60)
    assert tracing.save_tracing(host) == before


class _FakeHost:
    """A host whose shell answers the listings start_tracing reads: kmem
    and compaction events, and which kprobe events registered."""

    tracefs = "/t"

    def __init__(self, kprobes_there):
        self.kprobes_there = kprobes_there
        self.scripts = []

    def run(self, script, timeout=60.0, check=False):
        from buddyscope.lab.guest import CommandResult

        self.scripts.append(script)
        if script.startswith("ls /t/events/kmem/"):
            out = " ".join(KMEM_EVENTS)
        elif script.startswith("ls /t/events/compaction/"):
            out = " ".join(COMPACTION_EVENTS)
        elif script.startswith("ls /t/events/buddyscope/"):
            out = " ".join(self.kprobes_there)
        else:
            out = ""
        return CommandResult(0, out.encode(), b"")


def test_only_the_kprobes_the_kernel_took_are_listed_as_enabled():
    # One definition of two did not register (a symbol the build inlined):
    # record must not say it traced it, or replay reads its silence as
    # "never called".
    kprobes = ["p:buddyscope/alloc_pages_bulk alloc_pages_bulk_noprof gfp=%di:x32 nr_pages=%cx:s32",
               "p:buddyscope/decay_pcp_high decay_pcp_high zone_start_pfn=+144(%di):x64"]
    host = _FakeHost(["alloc_pages_bulk"])
    events = tracing.start_tracing(host, 1024, kprobes)
    assert "alloc_pages_bulk" in events and "decay_pcp_high" not in events
    assert {"mm_page_alloc", "mm_compaction_isolate_freepages"} <= set(events)
