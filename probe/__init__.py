"""Reading the real allocator state (zones, free lists, pcp lists) with drgn or procfs."""
