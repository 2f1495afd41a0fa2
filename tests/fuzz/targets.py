"""The fuzz targets: one function per parser of outside input, each taking
the raw bytes a user (or a broken disk, or a hostile file) could hand
buddyscope, and going as far with them as the CLI would.

The contract each target checks is the project's: bad input ends in a
:class:`BuddyscopeError` (one line for the user), never any other exception.
A target returns normally when the input was accepted or refused cleanly;
anything else propagates and is a bug.

Shared by the hypothesis tests (``test_fuzz_parsers.py``), the corpus replay
(``test_corpus.py``) and the coverage-guided run (``run_atheris.py``).
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

from buddyscope.errors import BuddyscopeError

__all__ = ("TARGETS", "run")


def _tmpdir() -> Path:
    # One scratch folder per process: the targets write the bytes to a file
    # because the parsers under test take paths, as the CLI does.
    global _TMP
    try:
        return _TMP
    except NameError:
        _TMP = Path(tempfile.mkdtemp(prefix="buddyscope-fuzz-"))
        return _TMP


def _file(name: str, data: bytes) -> Path:
    p = _tmpdir() / name
    p.write_bytes(data)
    return p


def ftrace(data: bytes) -> None:
    """ftrace / trace-cmd text, read as ``replay --trace`` reads it: once
    leniently (bad lines counted) and once strictly (the first raises)."""
    from buddyscope.model.ftrace import parse_file, parse_lines

    text = data.decode("utf-8", errors="replace")
    lenient = parse_lines(text.splitlines(), strict=False)
    for bad in lenient.bad_lines:
        assert isinstance(bad.lineno, int) and bad.lineno >= 1
    try:
        strict = parse_lines(text.splitlines())
    except BuddyscopeError:
        assert lenient.bad_lines, "strict parsing refused what lenient parsing had no fault with"
    else:
        assert not lenient.bad_lines and len(strict.events) == len(lenient.events)
    # The same bytes as a file, and gzip'd (parse_file reads .gz).
    try:
        parse_file(_file("trace.txt", data))
    except BuddyscopeError:
        pass
    try:
        parse_file(_file("trace.txt.gz", data))
    except BuddyscopeError:
        pass


def _replay_snapshot(snap) -> None:
    """What ``snapshot``, ``predict`` and ``replay`` do with a loaded snapshot."""
    from buddyscope.model.predict import model_after, predict_request
    from buddyscope.model.report import format_snapshot
    from buddyscope.model.request import make_request

    format_snapshot(snap, lists=True)
    snap.to_dict()
    if not snap.has_pfns:
        return
    alloc = model_after(snap)
    for order in (0, 3):
        for mt in ("Unmovable", "Movable"):
            try:
                req = make_request(alloc, order, 0, migratetype=mt)
            except BuddyscopeError:
                continue
            predict_request(alloc, req, 2)


def snapshot(data: bytes) -> None:
    """A snapshot file (gzip'd or plain JSON), loaded and used."""
    from buddyscope.model.snapshot import Snapshot

    try:
        snap = Snapshot.load(_file("snap.json", data))
    except BuddyscopeError:
        return
    try:
        _replay_snapshot(snap)
    except BuddyscopeError:
        pass


def fixture(data: bytes) -> None:
    """A fixture file, loaded, its trace parsed and replayed."""
    from buddyscope.model.fixture import Fixture
    from buddyscope.model.ftrace import parse_lines
    from buddyscope.model.replay import format_report, replay

    try:
        fx = Fixture.load(_file("fx.json", data))
        parsed = parse_lines(fx.trace, strict=False)
        rep = replay(fx.snapshot, parsed.events)
        format_report(rep)
        rep.to_dict()
    except BuddyscopeError:
        pass


def _split3(data: bytes) -> list:
    parts = data.split(b"\0\0", 2)
    return parts + [b""] * (3 - len(parts))


def procfs(data: bytes) -> None:
    """``buddyinfo``, ``pagetypeinfo`` and ``zoneinfo`` (the bytes split in
    three at ``\\0\\0``), read as ``snapshot --procfs`` reads a folder."""
    from buddyscope.model.report import format_snapshot
    from buddyscope.probe.procfs import read_procfs

    root = _tmpdir() / "proc"
    (root / "sys/kernel").mkdir(parents=True, exist_ok=True)
    (root / "sys/kernel/osrelease").write_text("6.1.0-fuzz\n")
    for name, part in zip(("buddyinfo", "pagetypeinfo", "zoneinfo"), _split3(data)):
        (root / name).write_bytes(part)
    try:
        snap = read_procfs(root)
    except BuddyscopeError:
        return
    format_snapshot(snap)


def gfp(data: bytes) -> None:
    """A gfp string (``--gfp``, ``gfp_flags=``) of each series, and back."""
    from buddyscope.model.gfp import GFP_SERIES, gfp_names, parse_gfp

    text = data.decode("utf-8", errors="replace")
    for series in GFP_SERIES:
        try:
            mask = parse_gfp(text, series)
        except BuddyscopeError:
            continue
        assert mask >= 0
        names = gfp_names(mask, series)
        assert parse_gfp(names, series) == mask, (text, names)


def vmcore(data: bytes) -> None:
    """The header checks a ``--vmcore`` file gets before drgn opens it."""
    from buddyscope.probe.sources import _check_vmcore

    try:
        _check_vmcore(_file("vmcore", data))
    except BuddyscopeError:
        pass


TARGETS = {
    "ftrace": ftrace,
    "snapshot": snapshot,
    "fixture": fixture,
    "procfs": procfs,
    "gfp": gfp,
    "vmcore": vmcore,
}


def run(target: str, data: bytes) -> None:
    """Run one target; BuddyscopeError is a clean refusal, anything else
    escapes (a bug)."""
    try:
        TARGETS[target](data)
    except BuddyscopeError:
        pass


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


if os.environ.get("BUDDYSCOPE_FUZZ_DEBUG"):  # pragma: no cover
    import sys

    print(f"fuzz scratch: {_tmpdir()}", file=sys.stderr)
