"""The C heap: keep freed memory in the process for reuse instead of handing it back to the kernel.

A training step of the text VAE allocates and frees tensors of megabytes (the output layer's
10,002 x 256 weight gradient, the dense embedding gradient, a chunk's logits: about 10 MB each
at the PTB sizes). PyTorch's CPU allocator passes them straight to ``malloc``. With its defaults
glibc serves blocks above its mmap threshold with a fresh ``mmap`` and unmaps them on ``free``; in
the per-thread arenas of the batch split's threads (:mod:`betamcmc.vae.split`) it also releases
emptied heap segments. So the next step touches new pages and the kernel zero-fills them on first
touch: 8,000-18,000 page faults per step on 2 threads at those sizes, and training ran 4-21 %
slower than with the kept heap (``bench/pretrain_heap.py``, docs/results/pretrain.md).

:func:`keep_freed_memory` sets three of glibc's ``mallopt`` parameters so that freed blocks stay
in the process: blocks up to 32 MiB come from the heap (``M_MMAP_THRESHOLD``, glibc's largest
value on 64-bit), the heap is not trimmed below 1 GiB of free space (``M_TRIM_THRESHOLD``), and a
thread arena grows with 256 MiB of padding (``M_TOP_PAD``; more than an arena segment's 64 MiB,
which also keeps glibc from unmapping emptied segments). The cost: the process keeps its peak
heap as resident memory instead of returning what it frees. Numbers are unchanged; this only
decides where memory comes from. Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

SETTINGS = {
    M_MMAP_THRESHOLD: 32 << 20,
    M_TRIM_THRESHOLD: 1 << 30,
    M_TOP_PAD: 256 << 20,
}


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):  # not glibc (musl has no gnu_get_libc_version)
        return None
    return libc


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's heap to keep freed memory (see the module docstring), once per process.

    Returns whether it took effect: False off glibc or where ``mallopt`` refuses a value."""
    libc = _glibc()
    if libc is None:
        return False
    return all(libc.mallopt(param, value) == 1 for param, value in SETTINGS.items())
