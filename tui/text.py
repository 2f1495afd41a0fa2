"""
Text
----

The replay and window scores in words, for the TUI's panels: formatting
only (the stepping and the scoring are :mod:`buddyscope.model.stepping`'s
and :mod:`buddyscope.model.window`'s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:   # types only: the TUI's first frame does not wait for the model's import
    from buddyscope.model.replay import AllocRecord
    from buddyscope.model.stepping import ReplayState
    from buddyscope.model.window import RunningScore, WindowScore

__all__ = ("record_text", "replay_status", "running_text", "score_brief", "trace_status",
           "window_text")


def _mt(names: Sequence[str], mt: Optional[int]) -> str:
    if mt is None:
        return "?"
    return names[mt] if 0 <= mt < len(names) else str(mt)


def record_text(r: AllocRecord, names: Sequence[str]) -> str:
    """One scored allocation in one line."""
    pred = f"{r.predicted_pfn:#x}" if r.predicted_pfn is not None else "none"
    verdict = "hit" if r.hit else f"MISS {r.reason}"
    return (f"#{r.index:<5} cpu{r.cpu} o{r.order} {_mt(names, r.migratetype):<11} "
            f"model {pred:>8} ({r.path}) kernel {r.actual_pfn:#x} ({r.actual_path}) {verdict}")


def replay_status(state: ReplayState, names: Sequence[str]) -> str:
    """The replay panel's status: the step, the score so far, the event
    just applied (with its verdict when it was an allocation) and the next
    one with the model's prediction."""
    rep = state.report
    pct = f"{100.0 * rep.hits / rep.allocations:.2f} %" if rep.allocations else "n/a"
    naive = f"{100.0 * rep.naive_hits / rep.allocations:.2f} %" if rep.allocations else "n/a"
    lines = [f"step {state.step}/{state.total}: {rep.hits}/{rep.allocations} allocations "
             f"exact ({pct}); naive {naive}"]
    if state.event is None:
        lines.append("last: none (step 0 is the snapshot)")
    else:
        lines.append(f"last: {state.line}")
        rec = state.last_record
        if rec is not None:
            lines.append("  " + record_text(rec, names))
    if state.next_event is None:
        lines.append("next: none (end of the trace)")
    else:
        lines.append(f"next: {state.next_line}")
        if state.next_predicted is not None or state.next_path:
            pred = f"{state.next_predicted:#x}" if state.next_predicted is not None else "none"
            lines.append(f"  the model predicts {pred} ({state.next_path})")
    return "\n".join(lines)


def _pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:.2f} %" if d else "n/a"


def window_text(w: WindowScore) -> str:
    """The last window in a few lines."""
    kinds = ", ".join(f"{n} {k.removeprefix('mm_page_')}" for k, n in w.counts) or "no events"
    head = f"window {w.index}: {w.events} events ({kinds})"
    if not w.valid:
        return f"{head}\n  window invalid, not scored: {w.invalid}"
    lines = [head, f"  {w.hits}/{w.allocations} allocations predicted exactly "
                   f"({_pct(w.hits, w.allocations)})"]
    if w.reasons:
        lines.append("  misses: " + ", ".join(f"{n} {r}" for r, n in w.reasons))
    return "\n".join(lines)


def running_text(r: RunningScore) -> str:
    """The running hit rate in one line."""
    out = (f"running: {r.hits}/{r.allocations} allocations exact ({_pct(r.hits, r.allocations)}) "
           f"over {r.scored} scored window{'s' if r.scored != 1 else ''}, {r.events} events")
    if r.invalid:
        out += f"; {r.invalid} window{'s' if r.invalid != 1 else ''} invalid (not scored)"
    return out


def score_brief(r: RunningScore) -> str:
    """The running score for the header: the rate first, so that a narrow
    header cuts the counts, not the rate."""
    n = r.scored
    return (f"exact {_pct(r.hits, r.allocations)} ({r.hits}/{r.allocations}, "
            f"{n} window{'s' if n != 1 else ''})")


def trace_status(running: RunningScore, w: WindowScore, history: Sequence[WindowScore],
                 read_seconds: float, rearmed: bool, workload: Optional[str]) -> str:
    """The Trace panel's status above the window's allocations: the running
    score, the last window, how it was read, the recent windows, and what
    the list below holds (or why it is empty)."""
    notes = [f"trace read in {read_seconds:.2f} s, replayed in {w.seconds:.2f} s"]
    if rearmed:
        notes.append("ring buffer cleared after it: the next window starts at the "
                     "snapshot taken just after")
    recent = " · ".join(
        f"#{x.index} " + ("invalid" if not x.valid else
                          f"{x.hits}/{x.allocations}" if x.allocations else "no allocs")
        for x in history)
    lines = [running_text(running), window_text(w), "  " + "; ".join(notes),
             f"windows: {recent}"]
    if w.records:
        lines.append("the allocations of this window (misses in red; m: next miss):")
    elif w.valid:
        idle = ("" if workload else
                ": the guest runs no workload (start with --workload FILE, e.g. "
                "fixtures/workloads/fork-exec.sh)")
        lines.append(f"no allocations in this window{idle}")
    return "\n".join(lines)
