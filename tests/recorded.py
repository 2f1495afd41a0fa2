"""The committed recordings (fixtures/recordings/), each loaded, parsed and
replayed at most once per test run.

A dozen test modules read the same 51 recordings: parsing all their traces
costs about 1.5 s of CPU and replaying them all about 6 s, each time. Every
call here is cached for the whole run, so what it returns is SHARED between
tests: read it, never change it (copy.deepcopy a fixture or snapshot first).
:func:`events` returns a new list each call (of the shared, frozen events).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import List, Union

from buddyscope.model.fixture import Fixture
from buddyscope.model.ftrace import ParsedTrace, PageEvent, parse_lines
from buddyscope.model.replay import replay
from buddyscope.model.replay_report import ReplayReport

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"


def _name(recording: Union[str, Path]) -> str:
    """A recording's name, e.g. ``6.1-2cpu-fork-exec``, from its path, file
    name or name."""
    name = Path(recording).name
    return name[: -len(".json.gz")] if name.endswith(".json.gz") else name


def fixture(recording: Union[str, Path]) -> Fixture:
    """The recording loaded (shared: do not change it)."""
    return _fixture(_name(recording))


def parsed(recording: Union[str, Path]) -> ParsedTrace:
    """``parse_lines`` of the recording's whole trace (shared: do not change it)."""
    return _parsed(_name(recording))


def events(recording: Union[str, Path]) -> List[PageEvent]:
    """The events of the recording's whole trace, a new list."""
    return list(_parsed(_name(recording)).events)


def replayed(recording: Union[str, Path], enabled: bool = False) -> ReplayReport:
    """``replay`` of the recording's snapshot and whole trace (shared: do not
    change it); *enabled*: told the events the recording traced
    (``events_enabled`` of its provenance), as the CLI does."""
    return _replayed(_name(recording), enabled)


@functools.lru_cache(maxsize=None)
def _fixture(name: str) -> Fixture:
    return Fixture.load(RECORDINGS / f"{name}.json.gz")


@functools.lru_cache(maxsize=None)
def _parsed(name: str) -> ParsedTrace:
    return parse_lines(_fixture(name).trace)


@functools.lru_cache(maxsize=None)
def _replayed(name: str, enabled: bool) -> ReplayReport:
    fx = _fixture(name)
    return replay(fx.snapshot, list(_parsed(name).events),
                  events_enabled=fx.provenance.get("events_enabled") if enabled else None)
