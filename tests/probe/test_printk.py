"""Finding warn_alloc's "page allocation failure" among printk records, in
the formats of mm/page_alloc.c:warn_alloc and lib/dump_stack.c of the four
lab kernels."""

from typing import NamedTuple, Optional

import pytest

pytest.importorskip("drgn")

from buddyscope.probe.printk import find_alloc_failure  # noqa: E402


class Rec(NamedTuple):
    text: bytes
    seq: int
    timestamp: int
    caller_tid: Optional[int]
    caller_cpu: Optional[int]


FAIL = (b"kworker/u4:2: page allocation failure: order:3, mode:0x40dc0"
        b"(GFP_KERNEL|__GFP_COMP|__GFP_ZERO), nodemask=(null),cpuset=/,mems_allowed=0")


@pytest.mark.parametrize("cpu_line", [
    b"CPU: 1 PID: 77 Comm: kworker/u4:2 Not tainted 6.1.0-57-amd64 #1  Debian 6.1.192-3",
    b"CPU: 1 UID: 0 PID: 77 Comm: kworker/u4:2 Not tainted 7.2.13+deb14-amd64 #1 Debian",
])
def test_the_last_failure_with_its_cpu(cpu_line):
    recs = [Rec(b"old: page allocation failure: order:1, mode:0x820(GFP_ATOMIC), nodemask=(null)",
                1, 10, 5, None),
            Rec(FAIL, 2, 2_500_000_000, 77, None),
            Rec(b"CPU: 0 PID: 12 Comm: other", 3, 2_500_000_001, 12, None),
            Rec(cpu_line, 4, 2_500_000_002, 77, None),
            Rec(b"Call Trace:", 5, 2_500_000_003, 77, None)]
    f = find_alloc_failure(recs)
    assert (f.order, f.gfp_mask, f.gfp_names, f.comm, f.cpu, f.seq) == (
        3, 0x40dc0, "GFP_KERNEL|__GFP_COMP|__GFP_ZERO", "kworker/u4:2", 1, 2)


def test_a_failure_outside_task_context_has_the_records_cpu():
    f = find_alloc_failure([Rec(FAIL, 1, 0, None, 3)])
    assert f.cpu == 3


def test_a_log_without_a_failure():
    assert find_alloc_failure([Rec(b"Linux version 6.1.0", 0, 0, 0, None)]) is None
    assert find_alloc_failure([]) is None
