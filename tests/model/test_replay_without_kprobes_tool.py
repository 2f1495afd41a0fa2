"""tools/replay_without_kprobes.py: the table issue 12's no-kprobe numbers come from."""

import importlib.util
from pathlib import Path

from buddyscope.model.events import BULK_EVENTS, WATERMARK_EVENTS
from buddyscope.model.load import load_recording
from buddyscope.model.replay import replay

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures" / "recordings" / "6.1-1cpu-pressure-compact.json.gz"


def _tool():
    spec = importlib.util.spec_from_file_location("replay_without_kprobes",
                                                  ROOT / "tools" / "replay_without_kprobes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rows_match_replay_of_the_stripped_trace(capsys):
    tool = _tool()
    # Every kprobe event the recording traced is one the tool strips.
    rec = load_recording(FIXTURE)
    traced = set(rec.fixture.provenance["events_enabled"]) - {
        "mm_page_alloc", "mm_page_alloc_zone_locked", "mm_page_free", "mm_page_free_batched",
        "mm_page_pcpu_drain", "mm_page_alloc_extfrag"}
    assert traced and traced <= set(tool.KPROBE_EVENTS)
    assert tool.main([str(FIXTURE)]) == 0
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line
            for line in capsys.readouterr().out.splitlines() if line.startswith("| 6.1-")}
    kept = [e for e in rec.events if e.name not in tool.KPROBE_EVENTS]
    stripped = replay(rec.snapshot, kept, events_enabled=sorted(
        set(rec.fixture.provenance["events_enabled"]) - traced))
    row = rows[("6.1-1cpu-pressure-compact", "no-kprobe")]
    assert f"| {stripped.allocations} | {100.0 * stripped.hits / stripped.allocations:.2f} % |" in row
    for reason, n in stripped.reasons.items():
        assert f"{n} {reason}" in row
    assert "watermarks_untraced" in row and "bulk_allocator" in row
    whole = rows[("6.1-1cpu-pressure-compact", "recorded")]
    assert "| 0 (0.000 %) |" in whole
    assert set(BULK_EVENTS) | set(WATERMARK_EVENTS) <= set(tool.KPROBE_EVENTS)
