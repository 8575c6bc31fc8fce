"""A long-lived process's heap on few malloc arenas.

glibc gives each new thread its own malloc arena, up to eight per core, and an arena keeps
the memory it once held. `byoi serve` has a dozen long-lived threads and many short ones (a
run's servers), so over a day its RSS crept up with arenas half empty (bench/soak.py, 10,000
runs: +11.5 %; held to two arenas, +9.1 %). Python's own small objects do not use these
arenas; what does is SQLite's page cache, JSON and HTTP bodies.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
"""glibc's mallopt parameter (malloc.h)."""
ARENAS = 2


def cap_arenas(arenas: int = ARENAS) -> bool:
    """Hold malloc to ``arenas`` arenas from now on; True if it took. Leaves an operator's
    MALLOC_ARENA_MAX alone when it is a number glibc takes (a positive one; glibc ignores
    anything else, so byoi caps then); does nothing on a C library without mallopt (macOS);
    musl keeps one heap anyway."""
    chosen = os.environ.get("MALLOC_ARENA_MAX", "").strip()
    if chosen.isdigit() and int(chosen) > 0:
        log.info("malloc arenas: MALLOC_ARENA_MAX=%s, as set", chosen)
        return False
    if chosen:
        log.warning(
            "MALLOC_ARENA_MAX=%r is no number of arenas: byoi holds malloc to %d", chosen, arenas
        )
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    capped = bool(mallopt(M_ARENA_MAX, arenas))
    if capped:
        log.info("malloc arenas: held to %d", arenas)
    return capped
