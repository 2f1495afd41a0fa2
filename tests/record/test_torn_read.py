"""A live snapshot read while a list changed under the walk is torn.

``fixtures/torn/6.1-live-busy.json.gz`` is a real in-guest ``record --live``
of a busy 6.1 guest (fresh-clone CI run, 2026-12-01): all 20 attempts
overlapped events and the last one, kept, had cpu1's DMA32 pcp lists read
mid-change (an entry unlinked during the walk: LIST_POISON in its prev;
the lists hold 170 pages against a count of 2132). No split of the
overlapping events can mend that: it replayed at 95.02 %. ``record`` now
retries such a read (lab/record.py ``torn_read``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from buddyscope.lab.record import torn_read
from buddyscope.model.fixture import Fixture
from buddyscope.model.load import load_recording
from buddyscope.model.replay import replay

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TORN = FIXTURES / "torn" / "6.1-live-busy.json.gz"


def test_the_busy_live_read_is_torn_and_replays_badly():
    rec = load_recording(TORN)
    assert torn_read(rec.snapshot)
    kinds = {(a.kind, a.where) for a in rec.snapshot.capture.anomalies}
    assert ("bad_link", "DMA32 cpu1 pcp lists[1]") in kinds
    assert ("count_mismatch", "DMA32 cpu1 pcp") in kinds
    rep = replay(rec.snapshot, rec.events,
                 events_enabled=rec.fixture.provenance.get("events_enabled"))
    assert rep.accuracy < 0.99
    assert rep.reasons.most_common(1)[0][0] == "page_not_free_in_model"


@pytest.mark.parametrize("path", sorted((FIXTURES / "recordings").glob("*.json.gz")),
                         ids=lambda p: p.name.split(".json")[0])
def test_paused_recordings_are_not_torn(path):
    # Read while the guest was stopped: nothing moved during the walk.
    assert not torn_read(Fixture.load(path).snapshot)
