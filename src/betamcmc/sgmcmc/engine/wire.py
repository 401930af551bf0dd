"""The one message format between the master and its workers.

Every message, in both directions, is one contiguous float32 tensor
``[12-float header | D floats | 1-float stamp]`` (D = number of model parameters) sent with
``torch.distributed`` point-to-point (gloo): no pickling, buffers allocated once per process and
reused for every message. The header is written and read through a NumPy view of the same memory
(a few hundred nanoseconds per field, against microseconds for tensor indexing).

The **stamp** is the last float and is always written non-zero. gloo receives straight into the
tensor's memory, in order, in its own I/O thread, while the work object reports completion only
inside ``wait()``; a receiver that zeroes the stamp before posting ``irecv`` can therefore see
that a reply has fully arrived by reading one float, and only then call ``wait()``, which returns
at once. That lets a worker keep sampling while its exchange travels without a helper thread.

Header of a worker's message: ``kind, chain step, master version last pulled, gradients so far,
comm seconds, compute seconds, collective bytes, last minibatch loss, step scale, steps, wait seconds`` (the
factor a staleness-aware step size applied to the steps pushed, 1 otherwise; the local steps
this push or exchange carries; seconds the sampler waited for late replies), read by name as a
:class:`WorkerHeader`; an ABORT sends its reason in the loss slot
(:attr:`WorkerHeader.abort_reason`). Header of a master's reply: ``kind, master version,
staleness of the push just applied`` (the rest zero). Heartbeats are header-only in meaning
(the payload is not read) and keep a silent worker visibly alive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

HEADER = 12
TRAILER = 1  # the stamp
BYTES_PER_FLOAT = 4

# message kinds, worker -> master
SAMPLE, DONE, PUSH, EXCHANGE, ERROR, ABORT, HEARTBEAT = 1, 2, 3, 4, 5, 6, 7
# master -> worker
PARAMS, STOP = 10, 11

# header slots of a worker's message (slot 11 is spare)
(
    KIND,
    STEP,
    VERSION,
    GRADS,
    COMM_S,
    COMPUTE_S,
    COLLECTIVE_BYTES,
    LOSS,
    STEP_SCALE,
    PUSH_STEPS,
    WAIT_S,
) = range(11)
# header slots of a master's reply (KIND as above)
REPLY_VERSION, REPLY_STALENESS = 1, 2

# why a worker aborted: an ABORT message carries no loss, so its LOSS slot holds the reason
ABORT_REASON = LOSS
ABORT_PEER_LOST, ABORT_SIGTERM, ABORT_SIGINT = 1.0, 15.0, 2.0


class WorkerHeader(NamedTuple):
    """A worker's message header, read by name (the slots above, in order; all floats)."""

    kind: float
    step: float
    version: float
    grads: float
    comm_s: float
    compute_s: float
    collective_bytes: float
    loss: float
    step_scale: float
    push_steps: float
    wait_s: float
    spare: float

    @property
    def abort_reason(self) -> float:
        """Why the worker aborted (``ABORT_*``; an ABORT message's LOSS slot)."""
        return self.loss


class Message:
    """A preallocated message buffer: ``tensor`` is what goes over the wire, ``header`` a NumPy
    view of its first 12 floats, ``payload`` a tensor view of the D parameters."""

    def __init__(self, dim: int):
        self.tensor = torch.zeros(HEADER + dim + TRAILER, dtype=torch.float32)
        values = self.tensor.numpy()
        self.header: np.ndarray = values[:HEADER]
        self.payload = self.tensor[HEADER : HEADER + dim]
        self._stamp = values[HEADER + dim :]
        self.nbytes = (HEADER + dim + TRAILER) * BYTES_PER_FLOAT

    def write(
        self, kind: int, fields: Sequence[float] = (), payload: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Fill the header (``kind``, then ``fields`` in slot order, zeros after) and optionally
        copy ``payload`` in; returns the tensor to send."""
        h = self.header
        h[:] = 0.0
        h[KIND] = kind
        h[1 : 1 + len(fields)] = fields
        if payload is not None:
            self.payload.copy_(payload)
        self._stamp[0] = 1.0
        return self.tensor

    def expect(self) -> None:
        """Clear the stamp before this buffer receives (see :meth:`arrived`)."""
        self._stamp[0] = 0.0

    def arrived(self) -> bool:
        """Has a message fully landed here since :meth:`expect`? (Its stamp, the last float, is
        written by gloo's I/O thread after everything before it.)"""
        return bool(self._stamp[0] != 0.0)

    @property
    def kind(self) -> int:
        return int(self.header[KIND])

    def fields(self) -> list[float]:
        return self.header.tolist()

    def worker_header(self) -> WorkerHeader:
        """The header of a worker's message, by name."""
        return WorkerHeader(*self.header.tolist())
