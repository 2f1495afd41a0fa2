"""Why exact prediction is off for a snapshot's kernel: the names the probe
records in ``kernel.unpredictable`` (buddyscope.probe.unpredictable reads
them from the kernel), each said in one sentence."""

from __future__ import annotations

__all__ = ("REASONS", "SHORT", "unpredictable_reasons", "unpredictable_short",
           "unpredictable_summary")

REASONS = {
    "page_alloc.shuffle": (
        "free-list shuffling is on (page_alloc.shuffle): a block that a free leaves at the "
        "largest order goes to the head or the tail of its list at random (shuffle_pick_tail)"),
    "page_reporting": (
        "free page reporting is on (a balloon device): it takes high-order free blocks off the "
        "lists, puts them back and rotates the lists with no kmem event"),
    "debug_guardpage": (
        "debug guard pages are on (debug_guardpage_minorder): split-off halves become guard "
        "pages, not free-list entries, which the model does not follow"),
}

#: A few words each, for a status line.
SHORT = {
    "page_alloc.shuffle": "free lists shuffled (page_alloc.shuffle)",
    "page_reporting": "free page reporting",
    "debug_guardpage": "debug guard pages",
}


def unpredictable_short(names: list[str]) -> str:
    """``exact prediction off: free lists shuffled (page_alloc.shuffle)`` or ""."""
    if not names:
        return ""
    return "exact prediction off: " + ", ".join(SHORT.get(n, n) for n in names)


def unpredictable_reasons(names: list[str]) -> list[str]:
    """One sentence per name; a name this buddyscope does not know is said as is."""
    return [REASONS.get(n, f"{n} is on") for n in names]


def unpredictable_summary(names: list[str]) -> str:
    """``exact prediction is off: ...`` or "" when nothing is."""
    if not names:
        return ""
    return "exact prediction is off: " + "; ".join(unpredictable_reasons(names))
