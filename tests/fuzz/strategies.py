"""Hypothesis strategies for the fuzz targets: real inputs (recorded traces,
snapshots, fixtures, procfs files; see fixtures/) with a few things broken,
and input built from the grammar of each format with hostile values."""

from __future__ import annotations

import copy
import functools
import gzip
import json
import struct
from pathlib import Path

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"

# Numbers a parser should meet: the edges of every integer type, and some
# it should never see.
HOSTILE_INTS = [0, 1, -1, 2, 7, 10, 11, 63, 64, 255, 2**31 - 1, 2**31, -2**31, 2**32,
                2**40, 2**52, 2**63 - 1, 2**63, -2**63, 2**64 - 1, 2**64, 10**30]
hostile_int = st.one_of(st.sampled_from(HOSTILE_INTS), st.integers(-2**70, 2**70))
json_leaf = st.one_of(st.none(), st.booleans(), hostile_int,
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_value = st.recursive(json_leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=6), kids, max_size=4)),
    max_leaves=12)


# -- real inputs ----------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def trace_lines() -> tuple:
    lines = []
    for f in sorted(FIXTURES.glob("ftrace/*/*.txt")):
        lines += f.read_text(errors="replace").splitlines()[:400]
    return tuple(lines)


@functools.lru_cache(maxsize=None)
def snapshot_dict(name: str = "6.1-2cpu-512m") -> dict:
    with gzip.open(FIXTURES / "snapshots" / f"{name}.json.gz") as f:
        return json.load(f)


@functools.lru_cache(maxsize=None)
def small_fixture_dict(name: str) -> dict:
    with gzip.open(FIXTURES / "recordings" / f"{name}.json.gz") as f:
        d = json.load(f)
    d["trace"] = d["trace"][:150]  # enough to reach every event kind, quick
    return d


@functools.lru_cache(maxsize=None)
def procfs_files(series: str) -> tuple:
    d = FIXTURES / "procfs" / series
    return tuple((d / n).read_bytes() if (d / n).exists() else b""
                 for n in ("buddyinfo", "pagetypeinfo", "zoneinfo"))


SNAPSHOTS = ["5.10-2cpu-512m", "6.1-2cpu-512m", "6.12-2cpu-512m"]
RECORDINGS = ["5.10-1cpu-thp", "6.1-2cpu-fork-exec", "6.12-1cpu-fallback", "7.2-2cpu-thp"]
PROCFS = ["5.10", "6.1", "6.12", "7.2", "host"]


# -- mutations ------------------------------------------------------------------

def _paths(obj, prefix=()):
    """Every path into a JSON tree (lists sampled: the free lists are long)."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        idx = range(len(obj)) if len(obj) <= 4 else (0, 1, len(obj) // 2, len(obj) - 1)
        for i in idx:
            yield from _paths(obj[i], prefix + (i,))


@functools.lru_cache(maxsize=None)
def _path_list(kind: str, name: str) -> tuple:
    d = snapshot_dict(name) if kind == "snapshot" else small_fixture_dict(name)
    # Deepest first: hypothesis draws the first elements most (and shrinks
    # towards them), and the deep ones (the lists, the pcp state) are where
    # the model is hurt; the top-level "format" would just be refused.
    return tuple(sorted(_paths(d), key=lambda p: (-len(p), repr(p))))


def _set(obj, path, value):
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


def _get(obj, path):
    for k in path:
        obj = obj[k]
    return obj


@st.composite
def mutated_json(draw, kind: str) -> bytes:
    """A real snapshot (or a fixture cut short) with one to three values
    replaced, deleted, or made hostile; gzip'd or not."""
    names = SNAPSHOTS if kind == "snapshot" else RECORDINGS
    name = draw(st.sampled_from(names))
    base = snapshot_dict(name) if kind == "snapshot" else small_fixture_dict(name)
    d = copy.deepcopy(base)
    paths = _path_list(kind, name)
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(paths[:-1]))
        try:
            old = _get(d, path)
            parent = _get(d, path[:-1])
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation took the path away
        if not isinstance(parent, (dict, list)):
            continue
        # Mostly changes that keep the types (they load and reach the model),
        # some that break the schema (they must be refused in one line).
        how = draw(st.sampled_from(["nudge", "swap", "dup", "nudge", "swap", "dup",
                                    "value", "hostile", "delete", "negate"]))
        if how == "nudge" and isinstance(old, int) and not isinstance(old, bool):
            # Off by a little: the value keeps its type, loads, and meets the model.
            parent[path[-1]] = old + draw(st.sampled_from([-1, 1, 2, 512, -512]))
        elif how == "swap" and isinstance(old, list) and len(old) > 1:
            i, j = draw(st.integers(0, len(old) - 1)), draw(st.integers(0, len(old) - 1))
            old[i], old[j] = old[j], old[i]
        elif how == "delete":
            del parent[path[-1]]
        elif how == "dup" and isinstance(old, list) and old:
            # A PFN (or a whole list) twice: a list with a cycle, as JSON has
            # them; for a PFN, twice in the same list or in two lists.
            old.append(old[0])
            if isinstance(old[0], int):
                paths_ = [p for p in paths if len(p) == len(path)]
                other = _get(d, draw(st.sampled_from(paths_))[:-1]) if paths_ else None
                if isinstance(other, list):
                    other.append(old[0])
        elif how == "negate" and isinstance(old, int) and not isinstance(old, bool):
            parent[path[-1]] = -old - 1
        elif how == "hostile":
            parent[path[-1]] = draw(hostile_int)
        else:
            parent[path[-1]] = draw(json_value)
    raw = json.dumps(d).encode()
    if draw(st.booleans()):
        raw = gzip.compress(raw, compresslevel=1, mtime=0)
    return raw


@st.composite
def mutated_bytes(draw, base: bytes) -> bytes:
    """*base* cut, spliced, or with a few bytes changed."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if how == "flip":
            data[i] = draw(st.integers(0, 255))
        elif how == "cut":
            del data[i:]
        elif how == "insert":
            data[i:i] = draw(st.binary(max_size=8))
        else:
            del data[i:i + draw(st.integers(1, 16))]
    return bytes(data)


# -- ftrace ----------------------------------------------------------------------

EVENT_NAMES = ["mm_page_alloc", "mm_page_alloc_zone_locked", "mm_page_free",
               "mm_page_free_batched", "mm_page_pcpu_drain", "mm_page_alloc_extfrag",
               "alloc_pages_bulk", "alloc_pages_bulk_ret", "sched_switch", "kmalloc"]
FIELD_KEYS = ["page", "pfn", "order", "migratetype", "gfp_flags", "percpu_refill",
              "alloc_order", "fallback_order", "pageblock_order", "alloc_migratetype",
              "fallback_migratetype", "fragmenting", "change_ownership", "nr_pages",
              "nr_populated", "gfp", "cold"]
_token = st.one_of(hostile_int.map(str), hostile_int.map(hex),
                   st.sampled_from(["GFP_KERNEL", "none", "GFP_KERNEL|__GFP_ZERO", "-", "0x",
                                    "", "(null)", "__GFP_FOO", "0000000000000000"]),
                   st.text(max_size=6))


@st.composite
def trace_line(draw) -> str:
    """A line from the grammar of the ftrace output, with hostile values."""
    comm = draw(st.sampled_from(["bash", "<idle>", "<...>", "kworker/0:1-events", "a b-c", ""]))
    pid = draw(hostile_int)
    cpu = draw(st.one_of(st.integers(0, 3), hostile_int.map(abs)))
    flags = draw(st.sampled_from(["d..1.", "d..1", "....", "", "1d..1.", "..s2."]))
    ts = draw(st.one_of(st.integers(0, 2**64).map(str),
                        st.floats(0, 1e9, allow_nan=False).map(lambda f: f"{f:.6f}")))
    name = draw(st.sampled_from(EVENT_NAMES))
    keys = draw(st.lists(st.sampled_from(FIELD_KEYS), max_size=9))
    fields = " ".join(f"{k}={draw(_token)}" for k in keys)
    head = (f"{comm:>16}-{pid} [{cpu:03d}] {flags} {ts}: " if draw(st.booleans())
            else f"{comm}-{pid} {cpu}{flags} {ts}: ")
    return f"{head}{name}: {fields}"


ftrace_input = st.one_of(
    st.lists(trace_line(), min_size=1, max_size=8).map(lambda ls: "\n".join(ls).encode()),
    st.lists(st.sampled_from(trace_lines()), min_size=1, max_size=12)
      .map(lambda ls: "\n".join(ls).encode())
      .flatmap(mutated_bytes),
    st.binary(max_size=200),
)


# -- procfs ----------------------------------------------------------------------

@st.composite
def procfs_input(draw) -> bytes:
    """Real buddyinfo / pagetypeinfo / zoneinfo with numbers made hostile or
    bytes broken, joined at \\0\\0 (see targets.procfs)."""
    parts = list(procfs_files(draw(st.sampled_from(PROCFS))))
    which = draw(st.integers(0, 2))
    text = parts[which].decode("ascii", errors="replace")
    if draw(st.booleans()):
        words = text.split(" ")
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(words) - 1))
            if words[i].strip().isdigit():
                words[i] = str(draw(hostile_int))
            else:
                words[i] = draw(st.sampled_from(["", "Node", "zone", "0,", "x", "\n", ">"]))
        parts[which] = " ".join(words).encode()
    else:
        parts[which] = draw(mutated_bytes(parts[which]))
    return b"\0\0".join(parts)


# -- gfp ---------------------------------------------------------------------------

gfp_input = st.one_of(
    st.lists(st.one_of(st.sampled_from(["GFP_KERNEL", "__GFP_ZERO", "GFP_ATOMIC", "none",
                                        "__GFP_COMP", "GFP_HIGHUSER_MOVABLE", "gfp_kernel",
                                        "__GFP_NOLOCKDEP", "__GFP_THISNODE"]),
                       hostile_int.map(str), hostile_int.map(hex), st.text(max_size=5)),
             min_size=1, max_size=5).map(lambda ps: "|".join(ps).encode()),
    st.binary(max_size=40),
)


# -- vmcore headers --------------------------------------------------------------

@st.composite
def vmcore_input(draw) -> bytes:
    """An ELF64 header whose program header fields are hostile, then a few
    program headers with hostile offsets and sizes; or kdump magic; or noise."""
    kind = draw(st.sampled_from(["elf", "kdump", "noise"]))
    if kind == "kdump":
        return draw(st.sampled_from([b"KDUMP   ", b"DISKDUMP"])) + draw(st.binary(max_size=64))
    if kind == "noise":
        return draw(st.binary(max_size=128))
    u16 = st.one_of(st.sampled_from([0, 1, 8, 55, 56, 57, 0xffff]), st.integers(0, 0xffff))
    u64 = st.one_of(st.sampled_from([0, 64, 2**63, 2**64 - 1]), st.integers(0, 2**64 - 1))
    phoff = draw(st.one_of(st.just(64), u64))
    phentsize = draw(st.one_of(st.just(56), u16))
    phnum = draw(st.one_of(st.integers(0, 4), u16))
    head = bytearray(b"\x7fELF\x02\x01\x01" + bytes(9))
    head += struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, phoff, 0, 0, 64, phentsize, phnum, 0, 0, 0)
    body = b"".join(struct.pack("<IIQQQQQQ", 4, 0, draw(u64), 0, 0, draw(u64), 0, 0)
                    for _ in range(draw(st.integers(0, 3))))
    data = bytes(head) + body
    return data[:draw(st.integers(0, len(data)))] if draw(st.booleans()) else data


STRATEGIES = {
    "ftrace": ftrace_input,
    "snapshot": mutated_json("snapshot"),
    "fixture": mutated_json("fixture"),
    "procfs": procfs_input(),
    "gfp": gfp_input,
    "vmcore": vmcore_input(),
}
