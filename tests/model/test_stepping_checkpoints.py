"""The stepper's kept replayers: a step reached from a checkpoint (forward,
back, at the end) is the step reached from the snapshot, on real
recordings."""

from pathlib import Path

import pytest

from buddyscope.model.load import load_recording
from buddyscope.model.stepping import Stepper

RECORDINGS = Path(__file__).resolve().parents[2] / "fixtures" / "recordings"
NAMES = [f"{s}-2cpu-fork-exec" for s in ("5.10", "6.1", "6.12", "7.2")]


def _view(state):
    a = state.alloc
    return (state.report.to_dict(), [list(getattr(a, d).items()) for d in
                                     ("nxt", "prv", "buddy", "on_pcp", "pcp_mt", "allocated")],
            [[list(l) for p in z.pcp.values() for l in p.lists] for z in a.zones],
            state.next_predicted, state.next_path)


@pytest.mark.parametrize("name", NAMES)
def test_checkpointed_steps_are_fresh_steps(name):
    rec = load_recording(RECORDINGS / f"{name}.json.gz")
    kept = Stepper.from_recording(rec)
    kept.checkpoint_every = 97
    n = len(kept)
    steps = [n // 2, n // 3, n - 1, n]
    for step in steps:
        fresh = Stepper.from_recording(rec)
        fresh.checkpoint_every = n + 1     # never keeps one
        assert _view(kept.state_at(step)) == _view(fresh.state_at(step)), step
    assert kept._checkpoint_steps and all(s % 97 == 0 for s in kept._checkpoint_steps)
    assert not fresh._checkpoint_steps
