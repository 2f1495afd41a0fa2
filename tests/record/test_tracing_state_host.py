"""``record --live``'s tracing set-up and restore, on this machine's own
tracefs (a real kernel: the one running the tests). Needs root and a tracefs
with kmem events; skipped otherwise. Nothing here reads kernel memory, so no
/proc/kcore is needed."""

import os

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.lab import record


def _host():
    if os.geteuid() != 0:
        pytest.skip("not root: tracefs is root's")
    try:
        return record.LocalHost(record.find_tracefs())
    except BuddyscopeError as e:
        pytest.skip(str(e))


def test_start_tracing_sets_up_the_kmem_events_and_restore_puts_everything_back():
    host = _host()
    before = record.save_tracing(host)
    assert {"tracing_on", "trace_clock", "buffer_size_kb", "current_tracer"} <= before.keys()
    try:
        events = record._start_tracing(host, 1024)
        now = record.save_tracing(host)
        assert now["tracing_on"] == "1"
        assert "[counter]" in now["trace_clock"]
        # The kernel rounds the size up to whole sub-buffers (1027 on 6.18).
        assert 1024 <= int(now["buffer_size_kb"]) < 1024 + 64
        assert {"mm_page_alloc", "mm_page_free"} <= set(events)
        for e in events:
            assert now[f"events/kmem/{e}/enable"] == "1"
    finally:
        record.restore_tracing(host, before)
    assert record.save_tracing(host) == before


def test_an_interrupted_record_restores_the_tracing_state(monkeypatch):
    host = _host()
    before = record.save_tracing(host)

    def interrupted(prog):
        raise KeyboardInterrupt

    # Interrupted while placing the boundary, after tracing was started.
    monkeypatch.setattr("buddyscope.probe.tracing.ring_buffer_counters", interrupted)

    class NoKernelMemory:
        prog = None

        def snapshot(self):
            raise AssertionError("not reached")

    with pytest.raises(KeyboardInterrupt):
        record._record(host, NoKernelMemory(), record.contextlib.nullcontext, lambda: None,
                       buffer_kb=1024, timeout=60)
    assert record.save_tracing(host) == before
