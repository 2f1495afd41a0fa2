"""Events with values the snapshot's kernel cannot have (model/screen.py): a
committed recording with one line edited is replayed; a lenient replay skips
that line (its number and why, as a line that cannot be read) and is the
replay of the trace without it, a strict one stops there with one
:class:`ReplayError`; the list replay and the streaming replay alike. And
the command line: one line on stderr, never a traceback."""

import re
import subprocess
import sys

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.model.fixture import Fixture
from buddyscope.model.ftrace import parse_lines
from buddyscope.model.replay import ReplayError, replay
from buddyscope.model.streaming import TraceSource, replay_stream

import recorded

# (case, recording, event, edit (regex, replacement) on its first line in
# the trace, what the reason says). 6.1 and 6.12: orders 0..10,
# migratetypes 0..4, an allocation's 0..2; 6.12 has the pcp lock and contiguous free passes, and drains.
CASES = [
    ("free_order_99", "6.12-2cpu-fork-exec", "mm_page_free", (r"order=\d+", "order=99"),
     "mm_page_free order 99 is out of range: this kernel's orders are 0..10"),
    ("free_order_11", "6.1-2cpu-fork-exec", "mm_page_free", (r"order=\d+", "order=11"),
     "mm_page_free order 11 is out of range"),
    ("free_order_neg", "6.12-2cpu-fork-exec", "mm_page_free", (r"order=\d+", "order=-1"),
     "mm_page_free order -1 is out of range"),
    ("free_null_page", "6.12-2cpu-fork-exec", "mm_page_free",
     (r"pfn=0x[0-9a-f]+", "pfn=0xffffffffffffffff"), "mm_page_free of no page"),
    ("batched_null_page", "6.1-2cpu-fork-exec", "mm_page_free_batched",
     (r"pfn=0x[0-9a-f]+", "pfn=0xffffffffffffffff"), "mm_page_free_batched of no page"),
    ("alloc_mt_5", "6.1-2cpu-fork-exec", "mm_page_alloc", (r"migratetype=\d+", "migratetype=5"),
     "mm_page_alloc migratetype 5 is not one an allocation asks for"),
    ("alloc_mt_99", "6.12-2cpu-fork-exec", "mm_page_alloc", (r"migratetype=\d+", "migratetype=99"),
     "mm_page_alloc migratetype 99 is not one"),
    ("alloc_order_99", "6.12-2cpu-fork-exec", "mm_page_alloc", (r"order=\d+", "order=99"),
     "mm_page_alloc order 99 is out of range"),
    ("drain_order_99", "6.12-2cpu-fork-exec", "mm_page_pcpu_drain", (r"order=\d+", "order=99"),
     "mm_page_pcpu_drain order 99 is out of range"),
    ("drain_mt_99", "6.12-2cpu-fork-exec", "mm_page_pcpu_drain",
     (r"migratetype=\d+", "migratetype=99"), "mm_page_pcpu_drain migratetype 99 is out of range"),
    ("zone_locked_mt_99", "6.1-2cpu-fork-exec", "mm_page_alloc_zone_locked",
     (r"migratetype=\d+", "migratetype=99"), "mm_page_alloc_zone_locked migratetype 99"),
    ("extfrag_fallback_mt_99", "6.1-1cpu-fallback", "mm_page_alloc_extfrag",
     (r"fallback_migratetype=\d+", "fallback_migratetype=99"),
     "mm_page_alloc_extfrag fallback_migratetype 99 is out of range"),
    ("extfrag_order_neg", "6.1-1cpu-fallback", "mm_page_alloc_extfrag",
     (r"fallback_order=\d+", "fallback_order=-1"), "mm_page_alloc_extfrag fallback_order -1"),
    ("cpu_9999", "6.1-2cpu-fork-exec", "mm_page_free", (r"\[00(\d)\]", "[9999]"),
     "event on cpu 9999, but the snapshot has 2 cpus"),
]
IDS = [c[0] for c in CASES]


def _edited(recording, event, edit):
    """The recording, its trace with *edit* made to the first line of
    *event*; that line's number (1-based), and
    the trace with that line a comment instead (the trace without it)."""
    fx = recorded.fixture(recording)
    lines = list(fx.trace)
    k = next(k for k, l in enumerate(lines) if f" {event}: " in l)
    new = re.sub(edit[0], edit[1], lines[k], count=1)
    assert new != lines[k]
    without = lines[:k] + ["# (line left out)"] + lines[k + 1:]
    lines[k] = new
    return fx, lines, k + 1, without


def _comparable(rep):
    d = rep.to_dict()
    for key in ("seconds", "skipped", "skipped_lines", "events"):
        d.pop(key, None)
    return d


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_event_is_skipped_or_strict(case):
    _, recording, event, edit, why = case
    fx, lines, lineno, without = _edited(recording, event, edit)
    enabled = fx.provenance.get("events_enabled")
    events = parse_lines(lines).events   # the parser reads the line
    assert any(e.lineno == lineno for e in events)
    rep = replay(fx.snapshot, events, events_enabled=enabled)
    assert rep.skipped == 1
    (at, said), = rep.skipped_lines
    assert at == lineno and said.startswith(why), said
    # The rest is replayed as the trace without the line.
    clean = replay(fx.snapshot, parse_lines(without).events, events_enabled=enabled)
    assert clean.skipped == 0 and _comparable(rep) == _comparable(clean)
    assert rep.events == clean.events + 1   # (counted as read, not replayed)
    with pytest.raises(ReplayError, match=f"^line {lineno}: {re.escape(why)}"):
        replay(fx.snapshot, events, strict=True, events_enabled=enabled)
    # Streaming: the same report, the same error.
    streamed = replay_stream(fx.snapshot, TraceSource(lines=lines, strict=False),
                             events_enabled=enabled)
    assert streamed.skipped_lines == rep.skipped_lines
    assert _comparable(streamed) == _comparable(rep)
    with pytest.raises(ReplayError, match=f"^line {lineno}: {re.escape(why)}"):
        replay_stream(fx.snapshot, TraceSource(lines=lines), strict=True, events_enabled=enabled)


def _cli(*args):
    p = subprocess.run([sys.executable, "-m", "buddyscope", *map(str, args)], cwd="/",
                       capture_output=True, text=True, timeout=120)
    assert "Traceback" not in p.stderr, p.stderr
    return p


# One of each event kind and fault at the command line (the rest above).
CLI_CASES = [c for c in CASES if c[0] in ("free_order_99", "free_order_neg", "batched_null_page",
                                           "alloc_mt_5", "drain_order_99")]


@pytest.mark.parametrize("stream", [[], ["--stream"]], ids=["list", "stream"])
@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_event(tmp_path, case, stream):
    _, recording, event, edit, why = case
    fx, lines, lineno, _ = _edited(recording, event, edit)
    path = tmp_path / "edited.json.gz"
    Fixture(fx.snapshot, lines, fx.provenance).save(path)
    lenient = _cli("replay", path, *stream)
    assert lenient.returncode == 0 and not lenient.stderr
    assert re.search(r"skipped lines +1 ", lenient.stdout), lenient.stdout
    assert f"line {lineno}: {why}" in lenient.stdout
    strict = _cli("replay", path, "--strict", *stream)
    assert strict.returncode == 1
    assert strict.stderr == f"buddyscope: error: line {lineno}: {strict.stderr.split(': ', 3)[-1]}"
    assert strict.stderr.count("\n") == 1 and why in strict.stderr


@pytest.mark.parametrize("case", CLI_CASES[:2], ids=[c[0] for c in CLI_CASES[:2]])
def test_cli_predict_after_bad_event(tmp_path, case):
    _, recording, event, edit, why = case
    fx, lines, lineno, _ = _edited(recording, event, edit)
    trace = tmp_path / "trace.txt"
    trace.write_text("\n".join(lines) + "\n")
    p = _cli("predict", recording_path(recording), "--after", trace, "--order", 0,
             "--gfp", "GFP_KERNEL")
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert f"line {lineno}: {why}" in p.stderr


def recording_path(name):
    return recorded.RECORDINGS / f"{name}.json.gz"


@pytest.mark.parametrize("value", [5, [[1]], "mm_page_alloc", {"a": 1}])
def test_fixture_with_bad_events_enabled_is_refused(tmp_path, value):
    fx = recorded.fixture("6.1-1cpu-thp")
    path = tmp_path / "bad.json.gz"
    Fixture(fx.snapshot, fx.trace, {**fx.provenance, "events_enabled": value}).save(path)
    with pytest.raises(BuddyscopeError, match="provenance events_enabled is .*not a list"):
        Fixture.load(path)
    for extra in ([], ["--stream"]):
        p = _cli("replay", path, *extra)
        assert p.returncode == 1 and p.stderr.count("\n") == 1
        assert "is a corrupt fixture (provenance events_enabled" in p.stderr


def test_fixture_events_enabled_may_be_left_out(tmp_path):
    fx = recorded.fixture("6.1-1cpu-thp")
    prov = {k: v for k, v in fx.provenance.items() if k != "events_enabled"}
    path = tmp_path / "old.json.gz"
    Fixture(fx.snapshot, fx.trace, prov).save(path)
    assert Fixture.load(path).provenance.get("events_enabled") is None
