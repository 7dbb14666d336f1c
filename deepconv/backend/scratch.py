"""Scratch memory that ops reuse from call to call (split-K workspaces,
per-row partial results), so that a training step allocates nothing once it
has run once.

One buffer per (thread, device, purpose), grown when a call needs more. Per
thread, because two Python threads may launch on the same device at once;
within one thread, launches on a device run in order (the emulator runs each
to completion; on CUDA they queue on the thread's current stream), so a
buffer is never in use by two launches at the same time.
"""

from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


def scratch(backend, device, nbytes: int, purpose: str):
    """A uint8 array of at least ``nbytes`` on ``device`` (at least 1 byte),
    the same one for every call from this thread with this ``purpose`` until
    a larger one is needed."""
    buffers = _local.__dict__.setdefault("buffers", {})
    key = (device, purpose)
    buf = buffers.get(key)
    if buf is None or buf.nbytes < nbytes:
        buf = backend.empty((max(int(nbytes), 1),), np.uint8, device)
        buffers[key] = buf
    return buf
