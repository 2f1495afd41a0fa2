"""The ftrace parser (buddyscope.model.ftrace) against real kmem traces of the
four lab kernels and trace-cmd report output of this machine
(``fixtures/ftrace/``, see its README).

Every expected number is read from the saved files by the test's own means
(``str.count``, ``split``, the ring buffer's ``entries`` counters saved in
``meta.json``, the kernel's ``# entries-in-buffer`` header line), or is a
value copied from one quoted line of a file. Format variants that the lab
kernels do not print are inline strings, each marked as made up.
"""

import dataclasses
import gc
import gzip
import itertools
import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.model.ftrace import (
    EVENTS,
    PageEvent,
    TraceError,
    merge_by_timestamp,
    parse_file,
    parse_lines,
    parse_text,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ftrace"
SERIES = ["5.10", "6.1", "6.12", "7.2"]
SAMPLES = sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.glob("*/*.txt"))
KERNEL_SAMPLES = [s for s in SAMPLES if not s.startswith("host/")]
SIX = (
    "mm_page_alloc",
    "mm_page_alloc_zone_locked",
    "mm_page_free",
    "mm_page_free_batched",
    "mm_page_pcpu_drain",
    "mm_page_alloc_extfrag",
)


def meta(series):
    return json.loads((FIXTURES / series / "meta.json").read_text())


def text_lines(sample):
    return (FIXTURES / sample).read_text().splitlines()


def without_lineno(events):
    return [dataclasses.replace(e, lineno=0) for e in events]


def naive(line):
    """The test's own reading of one event line, with split() only: works
    for the fixtures, whose task names have no spaces."""
    head, _, rest = line.partition(": mm_page")
    name, _, fields = ("mm_page" + rest).partition(": ")
    tokens = head.split()
    comm, _, pid = tokens[0].rpartition("-")
    # "[001]", or in latency format the CPU glued to the flags: "1....."
    cpu_token = next((t for t in tokens[1:] if t.startswith("[")), tokens[1])
    cpu = int("".join(itertools.takewhile(str.isdigit, cpu_token.strip("["))))
    ts = tokens[-1]
    kv = dict(t.split("=", 1) for t in fields.split())
    return name, comm, int(pid), cpu, ts, kv


# -- the real samples --------------------------------------------------------


def test_the_fixtures_are_there():
    # 4 kernels x (trace, cpu0, cpu1, hugepages, failed) + 6.1 mixed + 6.12 local + 3 host files
    assert len(KERNEL_SAMPLES) == 4 * 5 + 2
    assert len(SAMPLES) == len(KERNEL_SAMPLES) + 3
    for s in SAMPLES:
        assert (FIXTURES / s).stat().st_size <= 300_000, s


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_sample_parses_and_counts_match(sample):
    lines = text_lines(sample)
    res = parse_file(FIXTURES / sample)
    got = Counter(e.name for e in res.events)
    for name in SIX:
        assert got[name] == sum(l.count(f": {name}:") for l in lines), name
    assert len(res.events) == sum(got.values())
    assert res.comments == sum(l.startswith("#") for l in lines)
    others = Counter(l.split(": ")[1] for l in lines
                     if not l.startswith("#") and ": " in l and not any(f": {n}:" in l for n in SIX))
    assert res.unknown == others
    assert not res.lost
    # trace-cmd report starts with "cpus=2"; the kernel's files have nothing else.
    assert res.other == (1 if sample.startswith("host/") else 0)
    assert [e.lineno for e in res.events] == [i for i, l in enumerate(lines, 1)
                                             if any(f": {n}:" in l for n in SIX)]


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_field_of_every_event_matches_the_text(sample):
    lines = text_lines(sample)
    for e in parse_file(FIXTURES / sample).events:
        name, comm, pid, cpu, ts, kv = naive(lines[e.lineno - 1])
        assert (e.name, e.comm, e.pid, e.cpu) == (name, comm, pid, cpu), e
        assert e.ts == (float(ts) if "." in ts else int(ts)) and type(e.ts) is (float if "." in ts else int)
        pfn = int(kv["pfn"], 0)
        if name == "mm_page_alloc" and kv["page"] == "0000000000000000":
            assert pfn == 0 and e.pfn is None
        else:
            assert e.pfn == pfn and pfn != 0
        assert e.order == int(kv.get("order", kv.get("fallback_order")))
        assert e.migratetype == (int(kv["migratetype"]) if "migratetype" in kv else None)
        assert e.gfp == kv.get("gfp_flags")
        assert e.percpu_refill == ({"0": False, "1": True}[kv["percpu_refill"]]
                                   if "percpu_refill" in kv else None)
        for k in ("alloc_order", "fallback_order", "alloc_migratetype", "fallback_migratetype"):
            assert getattr(e, k) == (int(kv[k]) if k in kv else None), k
        assert e.change_ownership == ({"0": False, "1": True}[kv["change_ownership"]]
                                      if "change_ownership" in kv else None)


@pytest.mark.parametrize("sample", KERNEL_SAMPLES)
def test_event_count_equals_the_kernels_own_count(sample):
    series, name = sample.split("/")
    info = meta(series)["files"][name]
    lines = text_lines(sample)
    assert len(lines) == info["lines"]
    if info["truncated"]:
        assert info["original_lines"] > info["lines"]
        pytest.skip("cut at 300 KB: the header counts the whole buffer")
    # "# entries-in-buffer/entries-written: 1737/1737   #P:2"
    header = next(l for l in lines if l.startswith("# entries-in-buffer/entries-written:"))
    in_buffer, written = header.split(":", 1)[1].split()[0].split("/")
    assert in_buffer == written  # nothing was overwritten
    res = parse_file(FIXTURES / sample)
    if info["read"].startswith("per_cpu/"):
        # per_cpu/cpuN/trace prints the totals of the whole buffer (seen on all four)
        whole = parse_file(FIXTURES / series / "trace.txt")
        assert len(whole.events) == int(in_buffer) > len(res.events)
    else:
        assert len(res.events) + sum(res.unknown.values()) == int(in_buffer)
    # The ring buffer's per-CPU counters, read right after tracing stopped.
    stats = info["stats"]
    assert all(s["overrun"] == 0 and s["dropped events"] == 0 for s in stats.values())
    per_cpu = Counter(e.cpu for e in res.events)
    if info["read"] == "trace" and not res.unknown:  # (mixed.txt: the other events count too)
        assert {f"cpu{c}": n for c, n in per_cpu.items()} == {
            c: s["entries"] for c, s in stats.items() if s["entries"]}
    elif info["read"].startswith("per_cpu/cpu"):
        cpu = int(info["read"].split("/")[1][3:])
        assert set(per_cpu) == {cpu}
        assert per_cpu[cpu] == stats[f"cpu{cpu}"]["entries"]


@pytest.mark.parametrize("series", SERIES)
def test_all_six_events_appear_in_each_kernels_samples(series):
    names = Counter()
    for s in KERNEL_SAMPLES:
        if s.startswith(series + "/"):
            names.update(e.name for e in parse_file(FIXTURES / s).events)
    assert set(names) == set(SIX)
    assert set(EVENTS) == set(SIX)


# One real line of each event per kernel, and the values read off it by eye.
SPOT = [
    # 5.10: pfn=%lu, four flag columns, page= a raw struct page address
    ("5.10/trace.txt", 13, "sh-114     [000] ....            4: mm_page_alloc: page=ffffea000015eb80 pfn=22446 order=1 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO",
     dict(name="mm_page_alloc", cpu=0, ts=4, pid=114, comm="sh", pfn=22446, order=1, migratetype=0, gfp="GFP_KERNEL_ACCOUNT|__GFP_ZERO")),
    ("5.10/trace.txt", 12, "sh-114     [000] d...            3: mm_page_alloc_zone_locked: page=ffffea000015eb80 pfn=22446 order=1 migratetype=0 percpu_refill=0",
     dict(name="mm_page_alloc_zone_locked", pfn=22446, order=1, migratetype=0, percpu_refill=False, gfp=None)),
    ("5.10/trace.txt", 477, "head-115     [001] ....          471: mm_page_free: page=ffffea000015ea40 pfn=22441 order=0",
     dict(name="mm_page_free", cpu=1, ts=471, pid=115, comm="head", pfn=22441, order=0, migratetype=None)),
    ("5.10/trace.txt", 497, "head-115     [001] d...          491: mm_page_free_batched: page=ffffea000015ea40 pfn=22441 order=0",
     dict(name="mm_page_free_batched", pfn=22441, order=0)),
    ("5.10/trace.txt", 746, "rm-116     [001] d...          741: mm_page_pcpu_drain: page=ffffea00007fe540 pfn=130965 order=0 migratetype=1",
     dict(name="mm_page_pcpu_drain", comm="rm", pfn=130965, order=0, migratetype=1)),
    ("5.10/hugepages.txt", 410, "sh-157     [000] d...         2444: mm_page_alloc_extfrag: page=ffffea0000198000 pfn=26112 alloc_order=9 fallback_order=9 pageblock_order=9 alloc_migratetype=1 fallback_migratetype=0 fragmenting=0 change_ownership=1",
     dict(name="mm_page_alloc_extfrag", pfn=26112, order=9, alloc_order=9, fallback_order=9, alloc_migratetype=1, fallback_migratetype=0, change_ownership=True, migratetype=None)),
    ("5.10/hugepages.txt", 12, "sh-157     [000] d...         2043: mm_page_alloc_zone_locked: page=ffffea0000108000 pfn=16896 order=9 migratetype=1 percpu_refill=0",
     dict(pfn=16896, order=9, migratetype=1, percpu_refill=False)),
    ("5.10/failed.txt", 311, "sh-177     [000] ....         3202: mm_page_alloc: page=0000000000000000 pfn=0 order=9 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_RETRY_MAYFAIL|__GFP_COMP|__GFP_THISNODE",
     dict(name="mm_page_alloc", pfn=None, order=9, migratetype=1, gfp="GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_RETRY_MAYFAIL|__GFP_COMP|__GFP_THISNODE")),
    # 6.1: pfn=0x%lx, five flag columns, page=(____ptrval____)
    ("6.1/trace.txt", 13, "sh-125     [000] .....            3: mm_page_alloc: page=(____ptrval____) pfn=0x61aa order=1 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO",
     dict(name="mm_page_alloc", cpu=0, ts=3, pid=125, pfn=0x61AA, order=1, migratetype=0, gfp="GFP_KERNEL_ACCOUNT|__GFP_ZERO")),
    ("6.1/trace.txt", 109, "head-126     [001] d..3.           99: mm_page_alloc_zone_locked: page=(____ptrval____) pfn=0x1e04 order=0 migratetype=1 percpu_refill=1",
     dict(pfn=0x1E04, order=0, migratetype=1, percpu_refill=True)),
    ("6.1/trace.txt", 477, "head-126     [001] .....          471: mm_page_free: page=(____ptrval____) pfn=0x6445 order=0",
     dict(name="mm_page_free", pfn=0x6445, order=0)),
    ("6.1/trace.txt", 497, "head-126     [001] ...2.          491: mm_page_free_batched: page=(____ptrval____) pfn=0x6445 order=0",
     dict(name="mm_page_free_batched", pfn=0x6445, order=0)),
    ("6.1/trace.txt", 976, "rm-127     [001] d..3.          973: mm_page_pcpu_drain: page=(____ptrval____) pfn=0x2965 order=0 migratetype=1",
     dict(name="mm_page_pcpu_drain", pfn=0x2965, order=0, migratetype=1)),
    ("6.1/hugepages.txt", 398, "sh-168     [000] d..3.         2154: mm_page_alloc_extfrag: page=(____ptrval____) pfn=0x5a00 alloc_order=9 fallback_order=9 pageblock_order=9 alloc_migratetype=1 fallback_migratetype=2 fragmenting=0 change_ownership=1",
     dict(pfn=0x5A00, order=9, alloc_migratetype=1, fallback_migratetype=2, change_ownership=True)),
    ("6.1/hugepages.txt", 13, "sh-168     [000] d..3.         1766: mm_page_alloc_zone_locked: page=(____ptrval____) pfn=0x4600 order=9 migratetype=1 percpu_refill=1",
     dict(pfn=0x4600, order=9, migratetype=1, percpu_refill=True)),
    ("6.1/failed.txt", 408, "sh-188     [001] .....         3194: mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_RETRY_MAYFAIL|__GFP_COMP|__GFP_THISNODE",
     dict(pfn=None, order=9, cpu=1, ts=3194)),
    # 6.12
    ("6.12/trace.txt", 13, "sh-178     [001] .....            3: mm_page_alloc: page=(____ptrval____) pfn=0x4b90 order=1 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO",
     dict(pfn=0x4B90, order=1, migratetype=0, gfp="GFP_KERNEL_ACCOUNT|__GFP_ZERO", cpu=1)),
    ("6.12/trace.txt", 51, "head-179     [000] d..3.           41: mm_page_alloc_zone_locked: page=(____ptrval____) pfn=0x1feef order=0 migratetype=1 percpu_refill=1",
     dict(pfn=0x1FEEF, order=0, migratetype=1, percpu_refill=True)),
    ("6.12/trace.txt", 759, "head-179     [000] .....          756: mm_page_free: page=(____ptrval____) pfn=0x2be1 order=0",
     dict(pfn=0x2BE1, order=0)),
    ("6.12/trace.txt", 770, "head-179     [000] ...2.          767: mm_page_free_batched: page=(____ptrval____) pfn=0x2be1 order=0",
     dict(pfn=0x2BE1, order=0)),
    ("6.12/hugepages.txt", 368, "kworker/1:1-52      [001] d..2.         2316: mm_page_pcpu_drain: page=(____ptrval____) pfn=0x5604 order=0 migratetype=0",
     dict(comm="kworker/1:1", pid=52, cpu=1, ts=2316, pfn=0x5604, order=0, migratetype=0)),
    ("6.12/hugepages.txt", 580, "sh-221     [000] d..3.         2529: mm_page_alloc_extfrag: page=(____ptrval____) pfn=0x4600 alloc_order=9 fallback_order=9 pageblock_order=9 alloc_migratetype=1 fallback_migratetype=2 fragmenting=0 change_ownership=1",
     dict(pfn=0x4600, order=9, fallback_migratetype=2, change_ownership=True)),
    ("6.12/failed.txt", 13, "sh-241     [000] .....         2555: mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_RETRY_MAYFAIL|__GFP_COMP|__GFP_THISNODE",
     dict(pfn=None, order=9)),
    ("6.12/trace-local.txt", 13, "sh-261     [001] d..3.    10.211245: mm_page_alloc_zone_locked: page=(____ptrval____) pfn=0x5eba order=1 migratetype=0 percpu_refill=1",
     dict(ts=10.211245, cpu=1, pfn=0x5EBA, order=1, percpu_refill=True)),
    # 7.2
    ("7.2/trace.txt", 13, "sh-140     [000] .....            3: mm_page_alloc: page=(____ptrval____) pfn=0x6aee order=0 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO|__GFP_COMP",
     dict(pfn=0x6AEE, order=0, migratetype=0, gfp="GFP_KERNEL_ACCOUNT|__GFP_ZERO|__GFP_COMP")),
    ("7.2/trace.txt", 1720, "sleep-146     [001] d..4.         1723: mm_page_alloc_zone_locked: page=(____ptrval____) pfn=0x6828 order=0 migratetype=0 percpu_refill=1",
     dict(comm="sleep", pfn=0x6828, order=0, migratetype=0, percpu_refill=True)),
    ("7.2/trace.txt", 294, "head-141     [001] .....          286: mm_page_free: page=(____ptrval____) pfn=0x1ffd8 order=0",
     dict(pfn=0x1FFD8, order=0)),
    ("7.2/trace.txt", 303, "head-141     [001] ...2.          295: mm_page_free_batched: page=(____ptrval____) pfn=0x1ffd8 order=0",
     dict(pfn=0x1FFD8, order=0)),
    ("7.2/trace.txt", 1346, "kworker/1:1-34      [001] d..2.         1346: mm_page_pcpu_drain: page=(____ptrval____) pfn=0x686a order=0 migratetype=0",
     dict(comm="kworker/1:1", pid=34, pfn=0x686A, migratetype=0)),
    ("7.2/hugepages.txt", 509, "sh-183     [001] d..3.         2263: mm_page_alloc_extfrag: page=(____ptrval____) pfn=0x4a00 alloc_order=9 fallback_order=9 pageblock_order=9 alloc_migratetype=1 fallback_migratetype=2 fragmenting=0 change_ownership=1",
     dict(pfn=0x4A00, order=9, alloc_order=9, fallback_order=9, alloc_migratetype=1, fallback_migratetype=2, change_ownership=True)),
    ("7.2/failed.txt", 356, "sh-203     [000] .....         5027: mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_RETRY_MAYFAIL|__GFP_COMP|__GFP_THISNODE",
     dict(pfn=None, order=9, ts=5027)),
    # the tgid column (6.1, options/record-tgid)
    ("6.1/mixed.txt", 23, "sh-208     (    208) [001] .....         3212: mm_page_alloc: page=(____ptrval____) pfn=0x6168 order=1 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO",
     dict(pid=208, comm="sh", cpu=1, ts=3212, pfn=0x6168, order=1)),
    # trace-cmd report: no flags, padding after the event name, page= is 0x<pfn>
    ("host/trace-cmd-report.txt", 311, "head-15366 [001]  4678.015526: mm_page_free_batched: page=0x226cef pfn=0x226cef order=0",
     dict(name="mm_page_free_batched", cpu=1, pid=15366, comm="head", ts=4678.015526, pfn=0x226CEF, order=0)),
    # trace-cmd report -l: the CPU glued to the flags
    ("host/trace-cmd-report-l.txt", 38, "head-15366   1.....  4678.014179: mm_page_free:         page=0x131712 pfn=0x131712 order=0",
     dict(name="mm_page_free", cpu=1, pid=15366, ts=4678.014179, pfn=0x131712, order=0)),
    ("host/trace-cmd-report-counter.txt", 1435, "kworker/1:1-12570 [001]        1452: mm_page_pcpu_drain:   page=0x104673 pfn=0x104673 order=0 migratetype=0",
     dict(comm="kworker/1:1", pid=12570, cpu=1, ts=1452, pfn=0x104673, order=0, migratetype=0)),
]


@pytest.mark.parametrize("sample,lineno,text,expected", SPOT,
                         ids=[f"{s}:{n}" for s, n, _, _ in SPOT])
def test_spot_lines(sample, lineno, text, expected):
    line = text_lines(sample)[lineno - 1]
    if text is not None:
        assert line.strip() == text
    (e,) = [e for e in parse_file(FIXTURES / sample).events if e.lineno == lineno]
    for k, v in expected.items():
        assert getattr(e, k) == v, k
        assert type(getattr(e, k)) is type(v), k


def test_the_tgid_column_is_not_the_pid():
    # Real 6.1 lines with options/record-tgid: "sh-208     (    208) [001] ....."
    lines = text_lines("6.1/mixed.txt")
    res = parse_file(FIXTURES / "6.1/mixed.txt")
    assert "TGID" in lines[10] and res.events
    for e in res.events:
        line = lines[e.lineno - 1]
        assert line.split()[0] == f"{e.comm}-{e.pid}"
        assert line.split()[1] == "("


@pytest.mark.parametrize("series", SERIES)
def test_a_failed_allocation(series):
    """memory full of huge pages, one more asked: the kernel prints page=NULL
    and pfn 0; it is the only event without a page in every sample."""
    res = parse_file(FIXTURES / series / "failed.txt")
    lines = text_lines(f"{series}/failed.txt")
    (failed,) = [e for e in res.events if e.pfn is None]
    assert failed.name == "mm_page_alloc" and failed.order == 9
    assert "page=0000000000000000 pfn=" + ("0 " if series == "5.10" else "0x0 ") in lines[failed.lineno - 1]
    assert failed is res.events[-1]  # nr_hugepages stops at the first failure
    assert meta(series)["files"]["failed.txt"]["nr_hugepages"] == meta(series)["files"]["hugepages.txt"]["nr_hugepages"]
    for s in SAMPLES:
        for e in parse_file(FIXTURES / s).events:
            if e.pfn is None:
                assert s.endswith(("failed.txt", "hugepages.txt")) and e.name == "mm_page_alloc"


def test_percpu_refill_on_5_10_is_order_0():
    # 5.10's TP_printk computes "percpu_refill=%d" as REC->order == 0.
    n = 0
    for s in KERNEL_SAMPLES:
        if s.startswith("5.10/"):
            for e in parse_file(FIXTURES / s).events:
                if e.name == "mm_page_alloc_zone_locked":
                    assert e.percpu_refill == (e.order == 0)
                    n += 1
    assert n > 100


@pytest.mark.parametrize("series", SERIES)
def test_pfn_bases(series):
    lines = text_lines(f"{series}/trace.txt")
    pfns = [l.split(" pfn=")[1].split()[0] for l in lines if " pfn=" in l]
    hex_ = [p.startswith("0x") for p in pfns]
    assert len(pfns) > 1000
    if series == "5.10":
        assert not any(hex_) and all(p.isdigit() for p in pfns)
    else:
        assert all(hex_)
    events = parse_file(FIXTURES / series / "trace.txt").events
    assert [e.pfn for e in events] == [int(p, 16 if series != "5.10" else 10) for p in pfns]


@pytest.mark.parametrize("series", SERIES)
def test_merging_the_per_cpu_files_gives_the_trace_file(series):
    d = FIXTURES / series
    whole = parse_file(d / "trace.txt").events
    per_cpu = {c: parse_file(d / f"cpu{c}.txt").events for c in (0, 1)}
    assert all(e.cpu == c for c, evs in per_cpu.items() for e in evs)
    merged = merge_by_timestamp(per_cpu)
    assert without_lineno(merged) == without_lineno(whole)
    # counter clock: integer timestamps, one per event, increasing in `trace`
    assert all(type(e.ts) is int for e in whole)
    assert all(a.ts < b.ts for a, b in zip(whole, whole[1:]))


def test_local_clock_sample():
    evs = parse_file(FIXTURES / "6.12/trace-local.txt").events
    assert evs and all(type(e.ts) is float for e in evs)
    per_cpu = {c: [e for e in evs if e.cpu == c] for c in (0, 1)}
    assert all(len(v) for v in per_cpu.values())
    merged = merge_by_timestamp(per_cpu)
    assert sorted(merged, key=lambda e: e.ts) == merged
    assert Counter(merged) == Counter(evs)


def test_trace_cmd_report_and_its_latency_format_agree():
    # Both printed from the same trace.dat: the same events, only the header differs.
    plain = parse_file(FIXTURES / "host/trace-cmd-report.txt").events
    lat = parse_file(FIXTURES / "host/trace-cmd-report-l.txt").events
    assert len(plain) == len(lat) > 1000
    key = lambda e: (e.name, e.cpu, e.ts, e.pid, e.pfn, e.order, e.migratetype, e.gfp)
    assert [key(e) for e in plain] == [key(e) for e in lat]
    # latency format cuts the task name to 8 characters
    assert all(b.comm == a.comm[:8] for a, b in zip(plain, lat))
    assert {e.cpu for e in plain} == {0, 1}


# -- format variants the lab kernels do not print (made up, marked as such) -----


def test_decimal_and_hex_pfn_are_the_same_page():
    # MADE UP: one line in both bases (5.10 prints %lu, 6.1+ print 0x%lx).
    text = textwrap.dedent("""\
                  bash-123     [001] d..1.  4521: mm_page_alloc: page=(____ptrval____) pfn=123 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO
                  bash-123     [001] d..1.  4522: mm_page_alloc: page=(____ptrval____) pfn=0x7b order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO
    """)
    a, b = parse_text(text).events
    assert a.pfn == b.pfn == 123
    assert (a.ts, b.ts, a.lineno, b.lineno) == (4521, 4522, 1, 2)
    assert dataclasses.replace(a, ts=0, lineno=0) == dataclasses.replace(b, ts=0, lineno=0)


def test_old_and_odd_layouts():
    # MADE UP: layouts of older kernels and tools, none printed by the lab kernels.
    text = textwrap.dedent("""\
        # no percpu_refill (kernels before it was printed), "cold=" in free_batched
                  <...>-77      [000] ....   100: mm_page_alloc_zone_locked: page=ffffea0000001000 pfn=64 order=0 migratetype=2
                  <...>-77      [000] ....   101: mm_page_free_batched: page=ffffea0000001000 pfn=64 order=0 cold=1
        # fields in another order, no page=, a word without "="
                  <idle>-0      [003] d.h1.   102: mm_page_alloc: [FAILED TO PARSE] pfn=4096 order=3 gfp_flags=3264 migratetype=1
        # a NULL page printed as the stored -1
                  <idle>-0      [003] d.h1.   103: mm_page_alloc: page=(null) pfn=0xffffffffffffffff order=0 migratetype=0 gfp_flags=GFP_ATOMIC
                  <idle>-0      [003] d.h1.   104: mm_page_alloc: pfn=-1 order=0 migratetype=0 gfp_flags=GFP_ATOMIC
        # free_batched with nothing but the stored pfn
                  <idle>-0      [003] d.h1.   105: mm_page_free_batched: pfn=4096
        # a task name with spaces and dashes, the tgid column
          my task-v2-1234 (   1200) [002] .N.1.   106: mm_page_free: page=x pfn=0x10 order=2
    """)
    res = parse_text(text)
    zl, fb, alloc, null1, null2, fb2, free = res.events
    assert (zl.comm, zl.pid, zl.pfn, zl.migratetype, zl.percpu_refill) == ("<...>", 77, 64, 2, None)
    assert (fb.name, fb.pfn, fb.order) == ("mm_page_free_batched", 64, 0)
    assert (alloc.comm, alloc.pid, alloc.cpu, alloc.pfn, alloc.order, alloc.migratetype, alloc.gfp) == (
        "<idle>", 0, 3, 4096, 3, 1, "3264")
    assert null1.pfn is None and null2.pfn is None
    assert (fb2.pfn, fb2.order) == (4096, 0)
    assert (free.comm, free.pid, free.cpu, free.ts, free.pfn, free.order) == ("my task-v2", 1234, 2, 106, 16, 2)
    assert res.comments == 5
    # CRLF line ends (a file copied through Windows)
    crlf = parse_lines([l + "\r\n" for l in text.splitlines()])
    assert crlf.events == res.events and crlf.comments == 5


def test_extfrag_order_is_the_fallback_blocks():
    # MADE UP: every real extfrag (huge pages) has alloc_order == fallback_order == 9.
    # An order-0 request that took an order-3 block of another type:
    text = ("            bash-1     [000] d..3.   10: mm_page_alloc_extfrag: page=x pfn=0x1238 "
            "alloc_order=0 fallback_order=3 pageblock_order=9 alloc_migratetype=0 "
            "fallback_migratetype=1 fragmenting=1 change_ownership=0")
    (e,) = parse_text(text).events
    assert (e.pfn, e.order, e.alloc_order, e.fallback_order) == (0x1238, 3, 0, 3)
    assert (e.alloc_migratetype, e.fallback_migratetype, e.change_ownership) == (0, 1, False)
    assert (e.migratetype, e.gfp, e.percpu_refill) == (None, None, None)


def test_unknown_events_are_counted_not_fatal():
    # MADE UP around one real 6.1 line (mixed.txt, line 66).
    real = text_lines("6.1/mixed.txt")[65]
    assert "sched_process_fork: comm=sh pid=208" in real
    text = "\n".join([
        real,
        "            bash-1     [000] .....   10: sched_switch: prev_comm=bash ==> next_comm=swapper",
        "            bash-1     [000] .....   11: tracing_mark_write: hello: world = 1",
        "            bash-1     [000] .....   12: mm_page_free: page=x pfn=0x10 order=0",
        "            bash-1     [000] .....   13: sched_switch: no fields at all",
    ])
    res = parse_text(text)
    assert res.unknown == Counter({"sched_switch": 2, "sched_process_fork": 1, "tracing_mark_write": 1})
    assert [(e.name, e.lineno) for e in res.events] == [("mm_page_free", 4)]


def test_comments_lost_events_and_other_lines():
    # MADE UP: what a trace whose ring buffer overflowed looks like (the
    # kernel's and trace-cmd 3.1.6's notices), and trace-cmd's own lines.
    # None of the captures lost events.
    text = textwrap.dedent("""\
        cpus=2
        ##### CPU 1 buffer started ####
                  bash-1     [001] .....   10: mm_page_free: page=x pfn=0x10 order=0
        CPU:1 [LOST 42 EVENTS]
        CPU:0 [LOST 3 EVENTS]
        CPU:1 [LOST 8 EVENTS]

        CPU 0 is empty
        CPU:2 [17 EVENTS DROPPED]
        CPU:3 [EVENTS DROPPED]
    """)
    res = parse_text(text)
    assert res.lost == Counter({1: 50, 0: 3, 2: 17, 3: 1})
    assert (res.comments, res.other, len(res.events)) == (1, 2, 1)


MALFORMED = [
    ("a field that is not a number", "pfn=zz order=0 migratetype=0 gfp_flags=GFP_KERNEL", "mm_page_alloc"),
    ("a missing field", "page=x pfn=0x10 migratetype=0 gfp_flags=GFP_KERNEL", "mm_page_alloc"),
    ("cut in the middle", "page=x pfn=0x10 ord", "mm_page_free"),
    ("an extfrag without change_ownership", "page=x pfn=0x200 alloc_order=9 fallback_order=9 pageblock_order=9 "
     "alloc_migratetype=1 fallback_migratetype=2 fragmenting=0", "mm_page_alloc_extfrag"),
    ("a non-number percpu_refill", "page=x pfn=0x1 order=0 migratetype=1 percpu_refill=yes", "mm_page_alloc_zone_locked"),
]


@pytest.mark.parametrize("why,fields,name", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_known_event_line_raises(why, fields, name):
    # MADE UP: two good lines, then the bad one on line 3.
    good = "            bash-1     [000] .....   10: mm_page_free: page=x pfn=0x10 order=0"
    bad = f"            bash-1     [000] .....   12: {name}: {fields}"
    with pytest.raises(TraceError) as ei:
        parse_text("\n".join([good, good, bad, good]))
    msg = str(ei.value)
    assert msg.startswith("line 3: ") and name in msg and "\n" not in msg
    assert ei.value.lineno == 3 and ei.value.line == bad
    assert isinstance(ei.value, BuddyscopeError)


def test_a_known_event_with_a_broken_header_raises():
    # MADE UP: the CPU column lost its "]".
    text = "# header\n            bash-1     [000 .....   12: mm_page_free: page=x pfn=0x10 order=0\n"
    with pytest.raises(TraceError, match=r"^line 2: mm_page_free line without a readable header"):
        parse_text(text)


def test_a_real_line_cut_short_raises():
    # The last line of a real file, cut inside its fields.
    lines = text_lines("7.2/trace.txt")
    cut = lines[-1][: lines[-1].index(" order=") + 3]
    with pytest.raises(TraceError, match=f"^line {len(lines)}: "):
        parse_lines(lines[:-1] + [cut])
    # ... and the whole file parses.
    assert len(parse_lines(lines).events) == len(parse_file(FIXTURES / "7.2/trace.txt").events)


def test_the_error_message_is_one_short_line():
    long = "            bash-1     [000] .....   12: mm_page_free: page=x pfn=0x10 " + "junk=1 " * 50
    with pytest.raises(TraceError) as ei:
        parse_text(long)
    assert len(str(ei.value)) < 220 and str(ei.value).endswith("...'")


# -- the API ---------------------------------------------------------------------


def test_parse_file_reads_gzip_and_parse_text_agrees(tmp_path):
    src = FIXTURES / "6.1/trace.txt"
    gz = tmp_path / "trace.txt.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    a = parse_file(src)
    b = parse_file(gz)
    c = parse_text(src.read_text())
    d = parse_lines(open(src))
    assert a.events == b.events == c.events == d.events
    assert len(a.events) > 1000
    assert a.comments == b.comments == c.comments == d.comments == 12


def test_events_are_frozen_slotted_dataclasses():
    e = parse_file(FIXTURES / "6.1/trace.txt").events[0]
    assert type(e) is PageEvent
    again = PageEvent(**{f.name: getattr(e, f.name) for f in dataclasses.fields(PageEvent)})
    assert again == e and hash(again) == hash(e) and repr(again) == repr(e)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.pfn = 1
    if sys.version_info >= (3, 10):
        assert not hasattr(e, "__dict__")


def test_merge_is_stable():
    # MADE UP events: equal timestamps come in CPU order, each CPU keeps its order.
    def ev(cpu, ts, pfn):
        return PageEvent("mm_page_free", cpu, ts, 1, "x", pfn, 0, lineno=pfn)

    per_cpu = {1: [ev(1, 1, 10), ev(1, 2, 11), ev(1, 2, 12)], 0: [ev(0, 2, 20), ev(0, 3, 21)]}
    assert [e.pfn for e in merge_by_timestamp(per_cpu)] == [10, 20, 11, 12, 21]
    assert merge_by_timestamp({}) == []
    with pytest.raises(TraceError, match="cpu 0: timestamps go backwards"):
        merge_by_timestamp({0: [ev(0, 5, 1), ev(0, 4, 2)]})


def test_the_garbage_collector_is_put_back():
    assert gc.isenabled()
    parse_text("            bash-1     [000] .....   10: mm_page_free: page=x pfn=0x10 order=0")
    assert gc.isenabled()
    with pytest.raises(TraceError):
        parse_text("            bash-1     [000] .....   10: mm_page_free: page=x")
    assert gc.isenabled()
    gc.disable()
    try:
        parse_text("")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_no_drgn_no_textual():
    code = ("import sys, buddyscope.model.ftrace as f; "
            "f.parse_text('  a-1 [000] ..... 1: mm_page_free: page=x pfn=0x1 order=0'); "
            "print(sorted(m for m in ('drgn', 'textual') if m in sys.modules))")
    # Run outside the checkout so that the installed package is what imports.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd="/")
    assert out.stdout.strip() == "[]"
