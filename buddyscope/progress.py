"""
Progress
--------

Progress of long work on a terminal, with Rich (which Textual brings):
phases of ``lab fetch`` and ``record`` with a spinner and their time, and a
bar for the events of a long ``replay``. When stdout or stderr is not a
terminal nothing extra is drawn: phases are the plain lines on stderr they
always were, and a replay prints only its report.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterator, Optional

__all__ = ("on_terminal", "phases", "replay_progress")


def on_terminal() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()


@contextlib.contextmanager
def phases(enabled: Optional[bool] = None, plain: bool = True) -> Iterator[Callable[[str], None]]:
    """Yields a ``log(message)`` for the phases of a long job. On a terminal
    the current phase shows with a spinner and its elapsed time, and each
    finished phase stays above as a line with the time it took. Elsewhere
    each phase is a plain line on stderr, or nothing without *plain*."""
    if not (on_terminal() if enabled is None else enabled):
        yield (lambda m: print(f"  {m}", file=sys.stderr)) if plain else (lambda m: None)
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        state = {"task": None, "text": "", "t0": 0.0}

        def finish() -> None:
            if state["task"] is not None:
                progress.remove_task(state["task"])
                console.print(f"  {state['text']}  [dim]({time.monotonic() - state['t0']:.1f} s)[/]",
                              markup=True, highlight=False)

        def log(message: str) -> None:
            finish()
            state.update(text=message, t0=time.monotonic(),
                         task=progress.add_task(message.replace("[", "\\["), total=None))

        try:
            yield log
        finally:
            finish()


@contextlib.contextmanager
def replay_progress(total: int, enabled: Optional[bool] = None,
                    every: int = 2000) -> Iterator[Optional[Callable[[int, object], None]]]:
    """Yields an ``after_event(index, event)`` callback that advances a bar
    over *total* events on a terminal, or None elsewhere (and for traces
    short enough to need none)."""
    if not (on_terminal() if enabled is None else enabled) or total < 5 * every:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("replaying", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("replay", total=total)

        def after_event(i: int, _event: object) -> None:
            if i % every == 0:
                progress.update(task, completed=i)

        yield after_event
