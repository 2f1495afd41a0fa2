"""NR_FREE_PAGES as the watermark checks read it (``zone_page_state``): the
global counter lags the exact count by each CPU's ``vm_stat_diff``, which
``__mod_zone_page_state`` folds in only past ``stat_threshold`` (6.12
mm/vmstat.c L342), and ``refresh_cpu_vm_stats`` folds before each zone's
``decay_pcp_high``. Checked on a real 6.12 snapshot (a committed recording);
no committed recording has a miss that depends on it (the held-out
6.12-4cpu-pressure-anon trace does: see the vmstat branch's report)."""

from pathlib import Path

from buddyscope.model.allocator import Allocator
from buddyscope.model.fixture import Fixture

RECORDING = Path(__file__).resolve().parents[2] / "fixtures" / "recordings" / \
    "6.12-2cpu-pressure-compact.json.gz"


def _allocator():
    a = Allocator(Fixture.load(RECORDING).snapshot)
    assert a.profile.watermark_lagging_free
    return a


def _big_free_block(a, z):
    for order in range(a.nr_orders - 1, 5, -1):
        for mt in range(a.nr_mt):
            head = a.head(z.index, order, mt)
            if head is not None:
                return head
    raise AssertionError("no free block of order 6 or more")


def test_global_count_lags_until_the_cpus_delta_passes_its_threshold():
    a = _allocator()
    z = next(z for z in a.zones if z.name == "DMA32")
    a.set_vm_cpu(1)
    t = z.stat_threshold[1]
    # calculate_normal_threshold: 2 * fls(2 cpus) * (1 + fls(managed >> 15)).
    assert t == min(125, 2 * 2 * (1 + (z.managed >> 15).bit_length()))
    before = a.zone_page_state(z)
    assert before == z.free_pages          # no per-CPU deltas in this snapshot
    base = _big_free_block(a, z)
    for i in range(t):
        a.take_block(base + i, 0)
        assert z.free_pages == before - i - 1
        assert a.zone_page_state(z) == before, f"folded after {i + 1} pages"
    assert z.vm_diff == [0, -t]
    a.take_block(base + t, 0)               # |x| = t + 1 > t: the whole delta folds
    assert a.zone_page_state(z) == z.free_pages == before - t - 1
    assert z.vm_diff == [0, 0]


def test_each_cpu_keeps_its_own_delta_and_vmstat_update_folds_it():
    a = _allocator()
    z = next(z for z in a.zones if z.name == "DMA32")
    base = _big_free_block(a, z)
    before = a.zone_page_state(z)
    a.set_vm_cpu(0)
    a.take_block(base, 0)
    a.take_block(base + 1, 0)
    a.set_vm_cpu(1)
    a.take_block(base + 2, 0)
    assert z.vm_diff == [-2, -1] and a.zone_page_state(z) == before
    a.fold_vm_diffs(1, z)                   # refresh_cpu_vm_stats on cpu 1
    assert z.vm_diff == [-2, 0] and a.zone_page_state(z) == before - 1
    a.set_vm_cpu(0)
    a.free_one_page(z, base, 0, a.pageblock_mt_of(z, base))
    assert z.vm_diff == [-1, 0] and a.zone_page_state(z) == before - 1
