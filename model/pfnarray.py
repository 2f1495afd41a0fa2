"""
PFN arrays
----------

A list of PFNs held as an :class:`array.array` of unsigned words (4 bytes
while every PFN fits, else 8) instead of a Python int per page, and written
into a snapshot file (format 2, ``docs/snapshot-format.md``) as one JSON
object::

    {"count": N, "word": 4, "data": "<base64>"}

``data`` is zlib over the N little-endian words with their bytes regrouped
by significance (every word's byte 0, then every byte 1, ...): the high
bytes of PFNs of one zone barely change, and regrouped they compress to
almost nothing. Each step runs at C speed (slicing, zlib, base64), so a
list of 10 M PFNs packs and unpacks in a fraction of a second and loading
makes no Python int per page; the model makes them for a list the first
time it uses it.

Pure standard library (array, base64, zlib).
"""

from __future__ import annotations

import array
import base64
import binascii
import sys
import zlib
from typing import Any, Iterator, Sequence

__all__ = ("MAX_ENTRIES", "SLICE", "PfnPackError", "check_aligned", "is_packed", "pack", "slices",
           "unpack", "pfn_array")

#: Typecode of an unsigned 4-byte and 8-byte word on this platform.
_U32 = next(c for c in "IL" if array.array(c).itemsize == 4)
_U64 = "Q"
_TYPECODE = {4: _U32, 8: _U64}
_BIG_ENDIAN = sys.byteorder == "big"

#: The most PFNs one file may unpack to, all lists together: a 1 TiB host
#: with every other 4 KiB page free holds 2^27. A few KiB of zlib can
#: claim gigabytes; this bounds what a file makes us allocate.
MAX_ENTRIES = 1 << 28

_KEYS = frozenset({"count", "word", "data"})


class PfnPackError(ValueError):
    """A packed PFN list that cannot be unpacked (says why, not where)."""


#: PFNs a C-speed step (set.update, list +=, Counter.update) takes at a
#: time where a UI thread may be waiting for the GIL: Python switches
#: threads between two steps only, and one call over 10 M PFNs held it for
#: a second.
SLICE = 1 << 18


def slices(pfns: Sequence[int]) -> Iterator[Sequence[int]]:
    """*pfns* in slices of :data:`SLICE`."""
    for i in range(0, len(pfns), SLICE):
        yield pfns[i:i + SLICE]


def pfn_array(pfns: Sequence[int]) -> array.array:
    """*pfns* (a list of ints, or an array) as an array of 4-byte words if
    every PFN fits, else 8-byte ones. An array of either is returned as is."""
    if isinstance(pfns, array.array) and pfns.typecode in (_U32, _U64):
        return pfns
    try:
        return array.array(_U32, pfns)
    except OverflowError:
        return array.array(_U64, pfns)


def _regroup(raw: bytes, word: int) -> bytes:
    """Byte k of every word, for k = 0 .. word - 1, one after the other."""
    return b"".join(raw[k::word] for k in range(word))


def _ungroup(planes: bytes, word: int) -> bytearray:
    n = len(planes) // word
    view = memoryview(planes)
    out = bytearray(len(planes))
    for k in range(word):
        out[k::word] = view[k * n:(k + 1) * n]
    return out


def pack(pfns: Sequence[int], level: int = 1) -> dict[str, Any]:
    """*pfns* as the JSON object of a packed list (see the module's text).

    zlib *level* 1: the regrouped high bytes compress as well at 1 as at 6,
    the low ones barely at either, and 1 is several times faster."""
    a = pfn_array(pfns)
    if _BIG_ENDIAN:
        a = array.array(a.typecode, a)
        a.byteswap()
    word = a.itemsize
    data = zlib.compress(_regroup(a.tobytes(), word), level)
    return {"count": len(a), "word": word, "data": base64.b64encode(data).decode("ascii")}


def is_packed(v: Any) -> bool:
    """Whether *v* is a packed list's object (not whether it is a good one)."""
    return isinstance(v, dict) and "data" in v


def unpack(obj: Any, limit: int = MAX_ENTRIES) -> array.array:
    """The array a packed list's object holds, of at most *limit* PFNs (what
    is left of the :data:`MAX_ENTRIES` a file may unpack to).

    :raises PfnPackError: the object is not a packed list, or its data does
        not hold *count* words.
    """
    if not isinstance(obj, dict) or set(obj) != _KEYS:
        raise PfnPackError(f"a packed PFN list has exactly the keys count, word, data, not "
                           f"{', '.join(sorted(map(str, obj))) if isinstance(obj, dict) else type(obj).__name__}")
    count, word, data = obj["count"], obj["word"], obj["data"]
    if type(word) is not int or word not in _TYPECODE:
        raise PfnPackError(f"word is {word!r}, not 4 or 8")
    if type(count) is not int or count < 0:
        raise PfnPackError(f"count is {count!r}, not a number of PFNs")
    if count > limit:
        raise PfnPackError(f"count is {count}, more than the {limit} PFNs the file may still hold")
    if not isinstance(data, str):
        raise PfnPackError(f"data is {type(data).__name__}, not a string")
    size = count * word
    try:
        z = base64.b64decode(data, validate=True)
        d = zlib.decompressobj()
        # Bounded: a few KiB of zlib can claim gigabytes.
        planes = d.decompress(z, size + 1)
    except binascii.Error:
        raise PfnPackError("data is not base64") from None
    except zlib.error as e:
        raise PfnPackError(f"data is not zlib ({e})") from None
    if len(planes) != size or not d.eof or d.unused_data:
        raise PfnPackError(f"data does not hold {count} words of {word} bytes")
    a = array.array(_TYPECODE[word])
    a.frombytes(_ungroup(planes, word))
    if _BIG_ENDIAN:
        a.byteswap()
    return a


def check_aligned(a: array.array, order: int) -> bool:
    """Whether every PFN in the array *a* is aligned to *order*: the low
    bytes of its words read at C speed (bytes.translate), no int per PFN."""
    mask = (1 << order) - 1
    if not mask or not a:
        return True
    raw = a.tobytes()
    w = a.itemsize
    for k in range(w):
        m = (mask >> (8 * k)) & 0xFF
        if not m:
            break
        plane = raw[(w - 1 - k if _BIG_ENDIAN else k)::w]
        # Delete every byte with none of the mask's bits: anything left is misaligned.
        if plane.translate(None, bytes(x for x in range(256) if not x & m)):
            return False
    return True
