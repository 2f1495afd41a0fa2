"""The chunked fast path of buddyscope.model.ftrace (``parse_lines``,
``parse_file``, the streamed replay's ``TraceSource``) against the plain
line by line parser it replaced, kept as ``parse_lines_reference``: the
same events (every field, with its type), counts, bad lines and errors, on
every committed recording and ftrace fixture, and on odd lines, made up
here or drawn by hypothesis from the ftrace grammar and from real lines
with characters changed."""

import gzip
import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buddyscope.model import ftrace
from buddyscope.model.ftrace import (
    MAX_LINE, TraceError, parse_file, parse_lines, parse_lines_reference,
)
from buddyscope.model.streaming import TraceSource

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
from strategies import trace_line, trace_lines  # noqa: E402  (the fuzz tests' grammar)

RECORDINGS = sorted((ROOT / "fixtures" / "recordings").glob("*.json.gz"))
SAMPLES = sorted((ROOT / "fixtures" / "ftrace").glob("*/*.txt"))


def fields(e):
    """Every field of an event with its type (1 == 1.0 == True otherwise)."""
    return tuple((type(getattr(e, f)), getattr(e, f)) for f in e.__slots__)


def outcome(parse, lines, strict):
    """What a parse gives: its whole result, or the error it raised."""
    try:
        res = parse(lines, strict)
    except TraceError as e:
        return ("error", str(e), e.lineno, e.fatal)
    return ([fields(e) for e in res.events], dict(res.unknown), res.comments, dict(res.lost),
            res.other, res.bad, res.bad_lines)


def same(lines, strict=True):
    new = outcome(parse_lines, lines, strict)
    assert new == outcome(parse_lines_reference, lines, strict)
    return new


@pytest.fixture(scope="module")
def recordings():
    out = {}
    for path in RECORDINGS:
        with gzip.open(path) as f:
            out[path.name] = json.load(f)["trace"]
    return out


def test_there_are_recordings_to_parse():
    assert len(RECORDINGS) >= 40


# One test per recording: xdist spreads them over its workers.
@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.name.split(".json")[0])
def test_every_recording_parses_the_same(path):
    with gzip.open(path) as f:
        trace = json.load(f)["trace"]
    got = same(trace)
    # Not vacuous: the recordings are events, read by the fast path.
    assert len(got[0]) > 0.99 * len(trace) - got[2]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_ftrace_fixture_parses_the_same(path):
    text = path.read_text()
    with_newlines = text.splitlines(keepends=True)
    expected = same(with_newlines)
    assert same(text.splitlines()) == expected
    same(with_newlines, strict=False)
    res = parse_file(path)
    assert [fields(e) for e in res.events] == expected[0]
    assert (res.comments, res.other, dict(res.unknown)) == (expected[2], expected[4], expected[1])


def test_the_fast_path_reads_the_hot_lines_itself(monkeypatch):
    """Only lines it cannot cut reach the reference: on a recording, the
    comments and nothing else (so the speed is not the reference's)."""
    trace = json.load(gzip.open(RECORDINGS[0]))["trace"]
    handed = []
    real = ftrace._parse

    def spy(numbered, res):
        numbered = list(numbered)
        handed.extend(numbered)
        return real(iter(numbered), res)

    monkeypatch.setattr(ftrace, "_parse", spy)
    res = parse_lines(trace)
    assert res.events and len(handed) < 0.01 * len(trace)


@pytest.mark.parametrize("chunk", [1, 2, 7, 256])
def test_chunk_edges_and_streaming(recordings, chunk, monkeypatch):
    """Lines cut into chunks of any size, and the streamed replay's source,
    give the same events as one parse; so do they when what was read once
    is forgotten after each chunk (a trace of a great many tasks)."""
    trace = recordings["6.1-1cpu-thp.json.gz"][:600] + ["# a comment", "", "junk: x"]
    expected = same(trace)
    monkeypatch.setattr(ftrace, "CHUNK", chunk)
    if chunk == 7:
        monkeypatch.setattr(ftrace, "MAX_KNOWN", 2)
    assert same(trace) == expected
    assert outcome(parse_lines, iter(trace), True) == expected
    streamed = [fields(e) for e in TraceSource(lines=trace, chunk=chunk)]
    assert streamed == expected[0]


# Made-up lines, each a shape the fast path must read as the reference
# does or hand over: task names with ":", ": ", "-" and spaces; the tgid
# column; latency format; pfn 0, -1 and decimal; line ends; a "#" first.
HEAD = "     kworker/1:1-34      [001] d..2.  "
ODD = [
    HEAD + "   123: mm_page_free: page=(____ptrval____) pfn=0x1f order=0",
    "  a: b-c: d-12 [000] ..... 5: mm_page_free: page=x pfn=0x1f order=0",
    "   sys-temd-journal-77 [001] d..1. 5.25: mm_page_alloc: page=x pfn=0x10 order=1 "
    "migratetype=0 gfp_flags=GFP_KERNEL",
    "   a b-c-5 [000] 9: mm_page_free: page=x pfn=12 order=0",
    "              sh-209     (    209) [000] d..3.         3256: mm_page_alloc_zone_locked: "
    "page=(____ptrval____) pfn=0x4416 order=0 migratetype=1 percpu_refill=1",
    "    head-15366   1.....  4678.013596: mm_page_alloc:        page=0x1406bc pfn=0x1406bc "
    "order=0 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO|__GFP_COMP",
    "  x-1 [000] . 3: mm_page_alloc: page=0 pfn=0 order=0 migratetype=0 gfp_flags=none",
    "  x-1 [000] . 3: mm_page_alloc: page=0 pfn=0x0 order=0 migratetype=0 gfp_flags=none",
    "  x-1 [000] . 3: mm_page_free: page=0 pfn=-1 order=0",
    "  x-1 [000] . 3: mm_page_free: page=0 pfn=18446744073709551615 order=0",
    "  x-1 [000] . 3: mm_page_free_batched: page=0 pfn=0x5 order=0 cold=1",
    "  x-1 [000] . 3: mm_page_pcpu_drain: page=0 pfn=0x5 order=0 migratetype=-1",
    "  x-1 [000] . 3: mm_page_alloc_zone_locked: page=0 pfn=0x5 order=0 migratetype=1",
    "  x-1 [000] . 3: mm_page_free: page=0 pfn=0x5 order=0 \r",
    "  x-1 [000] . 3: mm_page_free: page=0 pfn=0x5 order=0\t",
    "  x-1 [000] . 3: mm_page_free: page=0 pfn=0x5 order=0\xa0",
    "  x-1 [000] . 3: mm_page_free: page=0 pfn=0x5 order=0\x85",
    "  x-1 [000] . 3: mm_page_free:page=0 pfn=0x5 order=0",
    "  x-1 [000] . 3:  mm_page_free:   page=0 pfn=0x5 order=0",
    "  x-1 [000] . 3: mm_page_free: page=0 pfn=0x5g order=0",
    "  x-1 [000] . 3: mm_page_free: page=0 pfn=12abc order=0",
    "  x-1 [000] . 3: mm_page_free: order=0 pfn=0x5 page=0",
    "  x-1 [000] . 3: mm_page_free: page=0 pfn=0x5 order=x",
    "  x-1 [000] . 3: mm_page_free: page=a b pfn=0x5 order=0",
    "  x-1 [000] . 3: mm_page_alloc: page=0 pfn=0x5 order=0 migratetype=0 gfp_flags=A B",
    "  x-1 [000] . 3.: mm_page_free: page=0 pfn=0x5 order=0",
    "  x-1 [000] . 3.5.6: mm_page_free: page=0 pfn=0x5 order=0",
    "  x-1 [000] . \u0663: mm_page_free: page=0 pfn=0x\u0663 order=\u0663",
    "  x-\u0661 [\u0660] . 3: mm_page_free: page=0 pfn=\u0665 order=0",
    "#  x-1 [000] . 3: mm_page_free: page=0 pfn=0x5 order=0",
    " #x-1 [000] . 3: mm_page_free: page=0 pfn=0x5 order=0",
    "  x-1 (1) [000] . 3: mm_page_free: page=0 pfn=0x5 order=0",
    "  x-1 [000] d-2 (3) [001] . 4: mm_page_free: page=0 pfn=0x5 order=0",
    "  x-1 1d..1 2-3 [000] 5: mm_page_free: page=0 pfn=0x5 order=0",
    "  x-1 [000] . 3: sched_switch: prev=a next=b",
    "  x-1 [000] . 3: mm_page_alloc_extfrag: page=0 pfn=0x5 alloc_order=0 fallback_order=3 "
    "pageblock_order=9 alloc_migratetype=0 fallback_migratetype=1 fragmenting=1 "
    "change_ownership=1",
    "CPU:1 [LOST 5 EVENTS]",
    "cpus=2",
    "",
    "   ",
]


@pytest.mark.parametrize("i", range(len(ODD)))
def test_odd_lines(i):
    for lines in ([ODD[i]], [ODD[i] + "\n"], [ODD[0], ODD[i], ODD[0]],
                  [ODD[0] + "\n", ODD[i] + "\n", ODD[0]]):
        same(lines)
        same(lines, strict=False)


def test_lines_holding_newlines_or_too_long():
    ok = ODD[0]
    for lines in ([ok, "a\nb", ok], [ok + "\n", "x\n\n", ok], [ok, ok + "\n", ok],
                  [ok, "x" * (MAX_LINE + 1), ok], [ok, "#" + "x" * MAX_LINE, ok],
                  [ok + "\n", ok[:-4] + "x" * MAX_LINE + "\n"]):
        same(lines)
        same(lines, strict=False)


_CHARS = st.sampled_from(list(" -:#()[]\t\r\n.0123456789abcxABC_=\xa0\x85\u2028\u0663"))


@st.composite
def changed_line(draw):
    """A real or grammar line with a few characters replaced, inserted or
    removed."""
    line = draw(st.one_of(st.sampled_from(trace_lines()), trace_line()))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(line)))
        what = draw(st.sampled_from(["replace", "insert", "delete"]))
        c = draw(_CHARS)
        if what == "replace":
            line = line[:at] + c + line[at + 1:]
        elif what == "insert":
            line = line[:at] + c + line[at:]
        else:
            line = line[:at] + line[at + 1:]
    return line


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(changed_line(), min_size=1, max_size=6), newline=st.booleans())
def test_fuzzed_lines_parse_the_same(lines, newline):
    if newline:
        lines = [line + "\n" for line in lines]
    same(lines)
    same(lines, strict=False)
