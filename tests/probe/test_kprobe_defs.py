"""The kprobe definitions ``record`` and ``tui --lab`` add (probe/tracing.py):
one helper finds a function and the x86-64 registers of its parameters.
Default tier: the helper's rules on a stand-in program. Lab tier: each
cached kernel's own debug info, against the parameter lists of the kernel
source (no guest is booted)."""

import types

import drgn
import pytest

from buddyscope.probe import tracing


class _Fn:
    def __init__(self, *params):
        self.type_ = types.SimpleNamespace(
            parameters=[types.SimpleNamespace(name=p) for p in params])


class _Prog:
    """What the helper asks of a drgn.Program: its platform and functions."""

    def __init__(self, arch=drgn.Architecture.X86_64, **functions):
        self.platform = None if arch is None else types.SimpleNamespace(arch=arch)
        self.functions = functions

    def function(self, name):
        try:
            return self.functions[name]
        except KeyError:
            raise LookupError(name) from None


SIX = ("a", "b", "c", "d", "e", "f")


def test_arg_registers_follow_the_calling_convention():
    prog = _Prog(f=_Fn(*SIX, "g"))
    assert tracing._arg_registers(prog, ("f",), "a", "d", "f") == ("f", ["%di", "%cx", "%r9"])
    assert tracing._arg_registers(prog, ("f",)) == ("f", [])
    # The seventh goes on the stack: no register to fetch it from.
    assert tracing._arg_registers(prog, ("f",), "a", "g") is None
    assert tracing._arg_registers(prog, ("f",), "nope") is None


def test_arg_registers_take_the_first_function_there_and_only_on_x86_64():
    prog = _Prog(new=_Fn("x"), old=_Fn("gfp", "x"))
    assert tracing._arg_registers(prog, ("gone", "old", "new"), "x") == ("old", ["%si"])
    # The first one found decides, even when it lacks the parameter.
    assert tracing._arg_registers(prog, ("new", "old"), "gfp") is None
    assert tracing._arg_registers(prog, ("gone",), "x") is None
    for arch in (None, drgn.Architecture.AARCH64):
        assert tracing._arg_registers(_Prog(arch, old=_Fn("x")), ("old",), "x") is None
        assert tracing.compaction_kprobes(_Prog(arch)) is None
        assert tracing.watermark_kprobes(_Prog(arch)) is None


def test_each_definition_uses_the_helper_s_answer():
    prog = _Prog(__alloc_pages_bulk=_Fn("gfp", "preferred_nid", "nodemask", "nr_pages"),
                 balance_pgdat=_Fn("pgdat", "order", "highest_zoneidx"),
                 __isolate_free_page=_Fn("page", "order"),
                 refresh_cpu_vm_stats=_Fn("do_pagesets"))
    assert tracing.bulk_alloc_kprobes(prog) == [
        "p:buddyscope/alloc_pages_bulk __alloc_pages_bulk gfp=%di:x32 nr_pages=%cx:s32",
        "r:buddyscope/alloc_pages_bulk_ret __alloc_pages_bulk nr_populated=$retval:s32"]
    assert tracing.reclaim_kprobes(prog)[0] == \
        "p:buddyscope/balance_pgdat balance_pgdat highest_zoneidx=%dx:s32"
    assert tracing.compaction_kprobes(prog)[0] == \
        "p:buddyscope/isolate_free_page __isolate_free_page page=%di:x64 order=%si:u32"
    assert tracing.pcp_decay_kprobes(prog) is None   # no decay_pcp_high (before 6.7)
    assert tracing.vmstat_refresh_kprobes(prog) == [
        "p:buddyscope/refresh_cpu_vm_stats refresh_cpu_vm_stats do_pagesets=%di:u8"]
    assert tracing.vmstat_refresh_kprobes(_Prog()) is None   # inlined: not in the debug info


def _types_and_functions(vmlinux):
    """A program that knows *vmlinux*'s types and functions (no memory)."""
    prog = drgn.Program(drgn.host_platform)
    module = prog.extra_module(str(vmlinux), create=True)
    module.try_file(str(vmlinux))
    assert module.debug_file_path, f"{vmlinux}: no debug info"
    return prog


def _has(prog, name):
    try:
        prog.function(name)
        return True
    except LookupError:
        return False


@pytest.mark.lab
def test_definitions_on_each_cached_kernel(lab_kernel):
    prog = _types_and_functions(lab_kernel.vmlinux)
    # mm/vmscan.c: balance_pgdat(pg_data_t *pgdat, int order, int highest_zoneidx)
    assert tracing.reclaim_kprobes(prog) == [
        "p:buddyscope/balance_pgdat balance_pgdat highest_zoneidx=%dx:s32",
        "r:buddyscope/balance_pgdat_ret balance_pgdat"]
    # mm/vmstat.c: static bool (5.10, 6.1: int) refresh_cpu_vm_stats(bool do_pagesets)
    assert tracing.vmstat_refresh_kprobes(prog) == [
        "p:buddyscope/refresh_cpu_vm_stats refresh_cpu_vm_stats do_pagesets=%di:u8"]
    # mm/page_alloc.c: __isolate_free_page(struct page *page, unsigned int order)
    assert tracing.compaction_kprobes(prog) == [
        "p:buddyscope/isolate_free_page __isolate_free_page page=%di:x64 order=%si:u32",
        "r:buddyscope/isolate_free_page_ret __isolate_free_page nr=$retval:s32"]
    # (gfp_t gfp, int preferred_nid, nodemask_t *nodemask, int nr_pages, ...)
    # under either name.
    bulk = [n for n in ("alloc_pages_bulk_noprof", "__alloc_pages_bulk") if _has(prog, n)]
    want = None if not bulk else [
        f"p:buddyscope/alloc_pages_bulk {bulk[0]} gfp=%di:x32 nr_pages=%cx:s32",
        f"r:buddyscope/alloc_pages_bulk_ret {bulk[0]} nr_populated=$retval:s32"]
    assert tracing.bulk_alloc_kprobes(prog) == want
    # mm/page_alloc.c (6.7+): decay_pcp_high(struct zone *zone, struct per_cpu_pages *pcp)
    off = prog.type("struct zone").member("zone_start_pfn").offset
    want = [f"p:buddyscope/decay_pcp_high decay_pcp_high zone_start_pfn=+{off}(%di):x64"] \
        if _has(prog, "decay_pcp_high") else None
    assert tracing.pcp_decay_kprobes(prog) == want
