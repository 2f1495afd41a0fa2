"""GFP flags (buddyscope.model.gfp) against what the lab kernels printed.

Ground truth, in order of strength:

- the 40 recordings (``fixtures/recordings``) and the ftrace captures
  (``fixtures/ftrace/<series>``): every ``gfp_flags=`` string the kernel
  printed must parse and print back identically, and the ``migratetype=`` it
  printed next to it must be ``gfp_migratetype()`` of the parsed mask;
- the ``print fmt`` of ``mm_page_alloc`` saved from each kernel's tracefs
  (``fixtures/ftrace/<series>/format``): the kernel's own, fully
  preprocessed ``show_gfp_flags()`` table, values included;
- single values read in the headers of the Debian source packages, cited by
  file and line (``~/.cache/buddyscope/src/<series>``, see its README).
"""

import ast
import collections
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.model.events import ALLOC_PAGES_BULK, MM_PAGE_ALLOC
from buddyscope.model import gfp as gfp_mod
from buddyscope.model.ftrace import parse_file
from buddyscope.model.gfp import (
    GFP_SERIES,
    GfpError,
    gfp_bits,
    gfp_flag_table,
    gfp_migratetype,
    gfp_names,
    gfp_zone,
    parse_gfp,
)

import recorded

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = sorted((ROOT / "fixtures" / "recordings").glob("*.json.gz"))
CAPTURES = sorted(
    p for s in GFP_SERIES for p in (ROOT / "fixtures" / "ftrace" / s).glob("*.txt")
)
SRC = Path.home() / ".cache" / "buddyscope" / "src"


def recording(path):
    # Loaded and parsed once per run, shared (tests/recorded.py): read only.
    return recorded.fixture(path).provenance["kernel_series"], recorded.events(path)


@functools.lru_cache(maxsize=None)
def capture(path):
    return path.parent.name, parse_file(path).events


def check_events(series, events):
    """(distinct gfp strings, mm_page_alloc events checked, mismatches)."""
    strings = {e.gfp for e in events if e.name == MM_PAGE_ALLOC}
    for s in strings:
        assert gfp_names(parse_gfp(s, series), series) == s
    # The bulk allocator's kprobe event fetches the mask as hex: it must name
    # known flags only, and read back to the same mask.
    for mask in {int(e.gfp, 16) for e in events if e.name == ALLOC_PAGES_BULK}:
        assert parse_gfp(gfp_names(mask, series), series) == mask
    checked = 0
    mismatches = collections.Counter()
    for e in events:
        if e.name != MM_PAGE_ALLOC:
            continue
        checked += 1
        got = gfp_migratetype(parse_gfp(e.gfp, series), series)
        if got != e.migratetype:
            mismatches[(e.gfp, e.migratetype, got)] += 1
    return strings, checked, mismatches


def test_fixtures_found():
    # The 40 recordings of the first five workloads, and the pressure and
    # compaction ones.
    first_five = ("tmpfs-write", "fork-exec", "pipes-sockets", "thp", "fallback")
    assert len([p for p in RECORDINGS if p.name.split("-", 2)[2][:-len(".json.gz")] in first_five]) == 40
    assert {recording(p)[0] for p in RECORDINGS} == set(GFP_SERIES)
    assert {p.parent.name for p in CAPTURES} == set(GFP_SERIES)


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.name.split(".json")[0])
def test_recording_gfp_strings_and_migratetypes(path):
    series, events = recording(path)
    strings, checked, mismatches = check_events(series, events)
    assert strings and checked
    # Every mm_page_alloc of every recording agrees: ac.migratetype is gfp_migratetype() of the gfp_t after
    # current_gfp_context(), which is also what is traced (5.10 traces the
    # slow path's current_gfp_context() mask, which only drops IO/FS).
    assert not mismatches, f"{sum(mismatches.values())}/{checked} differ: {dict(mismatches)}"


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_capture_gfp_strings_and_migratetypes(path):
    series, events = capture(path)
    strings, checked, mismatches = check_events(series, events)
    assert strings and checked
    assert not mismatches, f"{sum(mismatches.values())}/{checked} differ: {dict(mismatches)}"


# -- the kernel's own show_gfp_flags() table ----------------------------------

_CAST = re.compile(r"\(\s*(?:__force\s+)?(?:unsigned\s+long|gfp_t)\s*\)")
_ENTRY = re.compile(r'\{\s*([^{}]*?),\s*"(\w+)"\s*\}')


def _c_value(expr):
    """Value of one preprocessed C mask expression of a tracefs print fmt."""
    expr = _CAST.sub("", expr)
    expr = re.sub(r"\b(0x[0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", expr)

    def ev(n):
        if isinstance(n, ast.Constant):
            return n.value
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Invert):
            return ~ev(n.operand) & (2**64 - 1)
        if isinstance(n, ast.BinOp):
            ops = {ast.BitOr: int.__or__, ast.BitAnd: int.__and__, ast.LShift: int.__lshift__}
            return ops[type(n.op)](ev(n.left), ev(n.right))
        raise AssertionError(f"unexpected {ast.dump(n)} in {expr}")

    return ev(ast.parse(expr.strip(), mode="eval").body)


@pytest.mark.parametrize("series", GFP_SERIES)
def test_show_table_is_the_kernels_print_fmt(series):
    text = (ROOT / "fixtures" / "ftrace" / series / "format" / "mm_page_alloc").read_text()
    fmt = text[text.index("__print_flags(REC->gfp_flags") :]
    kernel = [(name, _c_value(expr)) for expr, name in _ENTRY.findall(fmt)]
    assert len(kernel) > 30
    assert list(gfp_mod._SHOW[series]) == kernel


# -- parse_gfp / gfp_names ----------------------------------------------------


@pytest.mark.parametrize(
    "series,text,names",
    [
        # the examples of the brief, and forms the kernels printed
        ("6.1", "GFP_KERNEL_ACCOUNT|__GFP_ZERO", ("GFP_KERNEL_ACCOUNT", "__GFP_ZERO")),
        ("6.1", "GFP_HIGHUSER_MOVABLE|__GFP_COMP", ("GFP_HIGHUSER_MOVABLE", "__GFP_COMP")),
        ("5.10", "GFP_NOWAIT|__GFP_NOWARN", ("GFP_NOWAIT", "__GFP_NOWARN")),
        ("7.2", "GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP",
         ("GFP_HIGHUSER_MOVABLE", "__GFP_ZERO", "__GFP_COMP")),
    ],
)
def test_parse_is_the_or_of_the_names(series, text, names):
    table = gfp_flag_table(series)
    want = 0
    for n in names:
        want |= table[n]
    assert parse_gfp(text, series) == want
    assert gfp_names(want, series) == text


def test_none_and_hex_remainder():
    for s in GFP_SERIES:
        assert parse_gfp("none", s) == 0
        assert gfp_names(0, s) == "none"
    # 6.12: __GFP_NO_OBJ_EXT (bit 24 with CONFIG_SLAB_OBJ_EXT=y) is not in its
    # show_gfp_flags() table, so the kernel prints it as a hex remainder;
    # 7.2's table (TRACE_GFP_FLAGS) names it.
    mask = parse_gfp("GFP_KERNEL|__GFP_NO_OBJ_EXT", "6.12")
    assert gfp_names(mask, "6.12") == "GFP_KERNEL|0x1000000"
    assert parse_gfp("GFP_KERNEL|0x1000000", "6.12") == mask
    assert gfp_names(mask, "7.2") == "GFP_KERNEL|__GFP_NO_OBJ_EXT"
    # A bit no kernel defines.
    assert gfp_names(0x80000000 | 0xCC0, "6.1") == "GFP_KERNEL|0x80000000"


def test_user_written_forms():
    s = "6.1"
    want = gfp_flag_table(s)["GFP_KERNEL"] | gfp_flag_table(s)["__GFP_ZERO"]
    assert parse_gfp("GFP_KERNEL|__GFP_ZERO", s) == want
    assert parse_gfp("  GFP_KERNEL | __GFP_ZERO ", s) == want
    assert parse_gfp("0xcc0|__GFP_ZERO", s) == want
    assert parse_gfp("0xDC0", s) == want
    assert parse_gfp(str(want), s) == want
    # Macros show_gfp_flags() never prints are accepted too.
    assert parse_gfp("GFP_ZONEMASK", s) == 0xF
    assert parse_gfp("__GFP_NOLOCKDEP", s) == 0  # CONFIG_LOCKDEP is off
    # The same name, different bits on different kernels.
    assert parse_gfp("GFP_ATOMIC", "6.1") == 0xA20
    assert parse_gfp("GFP_ATOMIC", "6.12") == 0x820


@pytest.mark.parametrize(
    "series,text,name,hint",
    [
        ("6.12", "GFP_ATOMIC|__GFP_ATOMIC", "__GFP_ATOMIC", "5.10, 6.1"),
        ("5.10", "GFP_KERNEL|__GFP_ZEROTAGS", "__GFP_ZEROTAGS", "6.1, 6.12, 7.2"),
        ("6.1", "gfp_kernel", "gfp_kernel", "GFP_KERNEL"),
        ("7.2", "GFP_KERNEL|__GFP_BOGUS", "__GFP_BOGUS", None),
        ("7.2", "none|__GFP_ZERO", "none", None),
    ],
)
def test_unknown_flag(series, text, name, hint):
    with pytest.raises(GfpError) as ei:
        parse_gfp(text, series)
    msg = str(ei.value)
    assert repr(name) in msg and series in msg and "\n" not in msg
    if hint:
        assert hint in msg
    assert isinstance(ei.value, BuddyscopeError)


def test_bad_input():
    with pytest.raises(GfpError, match="empty"):
        parse_gfp("GFP_KERNEL||__GFP_ZERO", "6.1")
    with pytest.raises(GfpError, match="'6.6'"):
        parse_gfp("GFP_KERNEL", "6.6")
    with pytest.raises(GfpError, match="negative"):
        gfp_names(-1, "6.1")


# -- values read in the headers -------------------------------------------------


def test_header_values():
    t = {s: gfp_flag_table(s) for s in GFP_SERIES}
    # 5.10 include/linux/gfp.h:28 "#define ___GFP_ATOMIC 0x200u";
    # 6.1 include/linux/gfp_types.h:36 the same.
    assert t["5.10"]["__GFP_ATOMIC"] == t["6.1"]["__GFP_ATOMIC"] == 0x200
    # 6.12 gfp_types.h:36 / 7.2 gfp_types.h:36 "___GFP_UNUSED_BIT, /* 0x200u unused */"
    assert "__GFP_ATOMIC" not in t["6.12"] and "__GFP_ATOMIC" not in t["7.2"]
    # 5.10 gfp.h:27 "___GFP_ZERO 0x100u"; 6.12 gfp_types.h:35 ___GFP_ZERO_BIT is
    # the 9th enumerator (line 27 ___GFP_DMA_BIT is 0), gfp_types.h:73 BIT() of it.
    assert all(t[s]["__GFP_ZERO"] == 0x100 for s in GFP_SERIES)
    # 5.10 gfp.h:37 "___GFP_COMP 0x40000u"; 6.12 gfp_types.h:45 ___GFP_COMP_BIT = 18.
    assert all(t[s]["__GFP_COMP"] == 0x40000 for s in GFP_SERIES)
    # 5.10 gfp.h:41 "___GFP_ACCOUNT 0x400000u"; 7.2 gfp_types.h:85 BIT(22).
    assert all(t[s]["__GFP_ACCOUNT"] == 0x400000 for s in GFP_SERIES)
    # 6.1 gfp_types.h:50 "___GFP_ZEROTAGS 0x800000u"; 6.12 gfp_types.h:50 bit 23.
    assert t["6.1"]["__GFP_ZEROTAGS"] == t["6.12"]["__GFP_ZEROTAGS"] == 0x800000
    # 6.12 gfp_types.h:59 / 7.2 gfp_types.h:58 ___GFP_NO_OBJ_EXT_BIT follows
    # ZEROTAGS when KASAN_HW_TAGS and LOCKDEP are off (Debian's configs): bit 24.
    assert t["6.12"]["__GFP_NO_OBJ_EXT"] == t["7.2"]["__GFP_NO_OBJ_EXT"] == 0x1000000
    # 5.10 gfp.h:298 / 6.1 gfp_types.h:334 GFP_ATOMIC = __GFP_HIGH|__GFP_ATOMIC|
    # __GFP_KSWAPD_RECLAIM; 6.12 gfp_types.h:377 / 7.2 :376 without __GFP_ATOMIC.
    assert t["5.10"]["GFP_ATOMIC"] == t["6.1"]["GFP_ATOMIC"] == 0x20 | 0x200 | 0x800
    assert t["6.12"]["GFP_ATOMIC"] == t["7.2"]["GFP_ATOMIC"] == 0x20 | 0x800
    # 6.1 gfp_types.h:337 GFP_NOWAIT = __GFP_KSWAPD_RECLAIM; 6.12 gfp_types.h:380
    # adds __GFP_NOWARN.
    assert t["6.1"]["GFP_NOWAIT"] == 0x800
    assert t["6.12"]["GFP_NOWAIT"] == t["7.2"]["GFP_NOWAIT"] == 0x800 | 0x2000
    # 5.10 gfp.h:315 "#define GFP_MOVABLE_SHIFT 3"
    assert gfp_mod._MOVABLE["5.10"] == (0x18, 3)


def test_gfp_bits():
    for s in GFP_SERIES:
        b = gfp_bits(s)
        t = gfp_flag_table(s)
        assert b.zero == t["__GFP_ZERO"] and b.kswapd_reclaim == t["__GFP_KSWAPD_RECLAIM"]
        values = [v for k, v in vars(b).items() if k != "atomic"]
        assert all(v and v & (v - 1) == 0 for v in values)  # one bit each
        assert len(set(values)) == len(values)
    assert gfp_bits("5.10").atomic == gfp_bits("6.1").atomic == 0x200
    assert gfp_bits("6.12").atomic == gfp_bits("7.2").atomic == 0
    with pytest.raises(Exception):
        gfp_bits("6.1").zero = 0


# -- gfp_migratetype / gfp_zone -------------------------------------------------


@pytest.mark.parametrize("series", GFP_SERIES)
def test_migratetype(series):
    p = functools.partial(parse_gfp, series=series)
    assert gfp_migratetype(p("GFP_KERNEL"), series) == 0
    assert gfp_migratetype(p("GFP_HIGHUSER_MOVABLE"), series) == 1
    assert gfp_migratetype(p("GFP_KERNEL|__GFP_RECLAIMABLE"), series) == 2
    # Both bits: the kernel warns (CONFIG_DEBUG_VM) and computes 3.
    assert gfp_migratetype(p("__GFP_MOVABLE|__GFP_RECLAIMABLE"), series) == 3
    assert gfp_migratetype(p("GFP_HIGHUSER_MOVABLE"), series, mobility_disabled=True) == 0


@pytest.mark.parametrize("series", GFP_SERIES)
def test_zone(series):
    def z(text):
        return gfp_zone(parse_gfp(text, series), series)

    assert z("GFP_KERNEL") == "Normal"
    assert z("GFP_DMA") == "DMA"
    assert z("GFP_DMA32") == "DMA32"
    assert z("GFP_HIGHUSER") == "Normal"  # no CONFIG_HIGHMEM on x86_64
    assert z("__GFP_MOVABLE") == "Normal"
    assert z("GFP_HIGHUSER_MOVABLE") == "Movable"
    assert z("GFP_TRANSHUGE") == "Movable"
    assert z("__GFP_MOVABLE|GFP_DMA32") == "DMA32"
    with pytest.raises(GfpError, match="GFP_ZONE_BAD"):
        z("GFP_DMA|__GFP_HIGHMEM")


# -- the module itself -------------------------------------------------------------


def test_pure_python():
    code = ("import sys, buddyscope.model.gfp, buddyscope.model.replay, buddyscope.model.predict; "
            "assert 'drgn' not in sys.modules and 'textual' not in sys.modules")
    # Outside the checkout, so that the installed package is what is imported
    # (the checkout's buddyscope/ folder holds only the CLI).
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


@pytest.mark.skipif(not all((SRC / s / "include").is_dir() for s in GFP_SERIES),
                    reason=f"kernel sources not extracted under {SRC}")
def test_generated_tables_are_current():
    tool = Path(__file__).resolve().parents[2] / "tools" / "gen_gfp.py"
    subprocess.run([sys.executable, str(tool), "--src", str(SRC), "--check"], check=True)
