"""Pause the cyclic garbage collector around bulk, acyclic work.

Compiling and planning 100k NICs builds a few hundred thousand small objects (rule drafts,
desired rules, covers) that hold no reference cycles and that reference counting frees. Each
full collection they trigger walks the whole heap, inventory included (a million objects at
100k NICs, ~0.7 s each); they cost the compiler about a quarter of its time. Collection
resumes afterwards, so garbage that does form cycles is still collected, only later.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
