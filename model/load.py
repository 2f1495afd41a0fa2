"""
Loading
-------

The one reader of what buddyscope is handed as a file: a snapshot, a fixture
(a snapshot and the events traced after it), or a trace (ftrace text, or a
fixture's trace). The CLI and the TUI both open files here, so they accept
and refuse the same files with the same one-line errors.

Pure Python: reads JSON and text, imports neither drgn nor textual.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path
from typing import List, Optional

from buddyscope.errors import BuddyscopeError
from buddyscope.model._jsonfile import read_json
from buddyscope.model.fixture import Fixture, FixtureError
from buddyscope.model.ftrace import PageEvent, ParsedTrace, parse_file, parse_lines
from buddyscope.model.snapshot import Snapshot, SnapshotError

__all__ = ("Recording", "is_fixture", "load_recording", "load_snapshot", "load_trace")


@dataclasses.dataclass(frozen=True)
class Recording:
    """A fixture ready to replay: its snapshot, its events and their lines."""

    snapshot: Snapshot
    events: List[PageEvent]
    #: The fixture's trace lines (event ``lineno`` *n* is line *n*).
    lines: List[str]
    #: The file's name, for messages.
    name: str
    fixture: Fixture
    #: The parse, with the lines it could not read (``bad``, ``bad_lines``).
    parsed: Optional[ParsedTrace] = None


def _json_start(path: Path) -> bytes:
    """The first bytes of the JSON in *path* (gzip'd or not); empty when
    they cannot be read."""
    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 16)
        if raw[:2] == b"\x1f\x8b":
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, 64)
        return raw[:64]
    except (OSError, zlib.error):
        return b""


def is_fixture(path: Path) -> bool:
    """Whether *path* holds a fixture (not whether it is a good one)."""
    # buddyscope writes the format key first: a fixture or a snapshot is
    # known without reading (at 10 M entries: parsing) the whole file.
    start = _json_start(path).replace(b" ", b"")
    if start.startswith((b'{"fixture_format":', b'{"format":')):
        return start.startswith(b'{"fixture_format":')
    try:
        d = read_json(path, FixtureError, "buddyscope fixture")
    except FixtureError:
        return False
    return isinstance(d, dict) and "fixture_format" in d


def load_snapshot(path: Path) -> Snapshot:
    """The snapshot in *path*: a snapshot file, or a fixture's snapshot."""
    # Read once (at 10 M entries the JSON costs seconds), then taken as a
    # fixture, else as a snapshot (a fixture's snapshot is accepted too).
    d = read_json(path, SnapshotError, "buddyscope snapshot")
    try:
        return Fixture.from_dict(d, Path(path)).snapshot
    except FixtureError:
        pass
    if isinstance(d, dict) and "snapshot" in d and "format" not in d:
        d = d["snapshot"]
    return Snapshot.from_dict(d, str(path))


def check_replayable(path, parsed: ParsedTrace, n_events: int) -> None:
    """Refuse, in one line, a trace of *n_events* page events (parsed into
    *parsed*, or streamed) that cannot be replayed."""
    if not n_events and parsed.bad:
        raise BuddyscopeError(f"{path}: none of its {parsed.bad} kmem page event lines can be "
                              f"read; the first: {parsed.bad_lines[0].why}")
    if not n_events:
        raise BuddyscopeError(f"{path} has no kmem page events (mm_page_alloc, mm_page_free, ...)")
    if parsed.lost:
        raise BuddyscopeError(f"{path}: the ring buffer lost events on cpu "
                              f"{', '.join(map(str, sorted(parsed.lost)))}: it cannot be replayed exactly")


def _replayable(path: Path, parsed: ParsedTrace) -> ParsedTrace:
    check_replayable(path, parsed, len(parsed.events))
    return parsed


def parse_trace(path: Path, snap: Optional[Snapshot] = None, strict: bool = True) -> ParsedTrace:
    """The parsed trace in *path*: ftrace text, or a fixture's trace. A
    fixture of another kernel than *snap* is refused, and so is a trace with
    no kmem page events or with lost events (it cannot be replayed exactly).
    With *strict* off, lines that cannot be read are counted in it
    (``bad_lines``) instead of refused."""
    path = Path(path)
    if not path.exists():
        raise BuddyscopeError(f"{path}: no such file")
    try:
        fx = Fixture.load(path)
    except FixtureError:
        fx = None
    if fx is not None:
        if snap is not None and fx.snapshot.kernel.release != snap.kernel.release:
            raise BuddyscopeError(f"{path} is a trace of {fx.snapshot.kernel.release}, "
                                  f"the snapshot is of {snap.kernel.release}")
        parsed = parse_lines(fx.trace, strict)
    else:
        parsed = parse_file(path, strict)
    return _replayable(path, parsed)


def load_trace(path: Path, snap: Optional[Snapshot] = None) -> List[PageEvent]:
    """The events of :func:`parse_trace`, every line read."""
    return parse_trace(path, snap).events


def load_recording(path: Path, strict: bool = True) -> Recording:
    """The fixture in *path*, ready to replay; refused like
    :func:`parse_trace` when its trace cannot be replayed exactly (with
    *strict* off, unreadable lines are counted in ``parsed``)."""
    path = Path(path)
    if not path.exists():
        raise BuddyscopeError(f"{path}: no such file")
    fx = Fixture.load(path)
    parsed = _replayable(path, parse_lines(fx.trace, strict))
    return Recording(fx.snapshot, parsed.events, fx.trace, path.name, fx, parsed)
