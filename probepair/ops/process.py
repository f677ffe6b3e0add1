"""Process tuning for a running probe, done by the CLI's ``run`` (never by ``Probe``,
which tests and benches also run inside their own processes).

The garbage collector's thresholds (``settle_gc``), and giving the heap memory a burst
freed back to the OS (issue 9: RSS returns after a burst).

CPython objects larger than 512 bytes (long datagrams, long alerts, list and dict
tables) come from glibc's malloc. When a burst ends they are freed, but glibc returns
only the top of its heap to the OS: a few objects still alive above the freed ones keep
the whole range resident, so RSS stays at the burst's peak. ``malloc_trim(0)`` releases
the free pages wherever they are (``madvise(MADV_DONTNEED)``). The runtime calls it
every ``TRIM_INTERVAL`` seconds; where the C library has no ``malloc_trim`` (musl,
macOS) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable
from typing import Final

import trio

logger = logging.getLogger(__name__)

TRIM_INTERVAL: Final = 5.0  # seconds; a trim of a ~100 MiB heap takes about a millisecond


def malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)`` as a callable, or None without glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        func = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_size_t]
    func.restype = ctypes.c_int
    return lambda: func(0)


async def trim_heap_forever(interval: float = TRIM_INTERVAL) -> None:
    """Trim the heap every ``interval`` seconds until cancelled (returns at once
    where there is nothing to call)."""
    trim = malloc_trim()
    if trim is None:
        logger.info("no malloc_trim in this C library: freed heap memory stays mapped")
        return
    while True:
        await trio.sleep(interval)
        trim()


GC_THRESHOLD0 = 20_000  # allocations between young collections (CPython's default: 700)


def settle_gc() -> None:
    """Keep the cyclic collector off the per-datagram path.

    At 100k events/s the pipeline allocates ~10 short-lived container objects an event
    (lists, dicts, tuples), so the default threshold runs a young collection every
    ~70 events, and each one walks the batch still being processed. ``freeze()``
    moves what exists once the feed starts (modules, trio, the compiled rules) out of
    the collections; a higher young threshold lets most objects die before one runs.
    Cycles are still collected.
    """
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, GC_THRESHOLD0), gen1, gen2)
