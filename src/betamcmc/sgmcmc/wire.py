"""The one message format between the master and its workers.

Every message, in both directions, is one contiguous float32 tensor ``[8-float header | D floats]``
(D = number of model parameters) sent with ``torch.distributed`` point-to-point (gloo): no
pickling, one buffer per direction allocated once per process and reused for every message. The
header is written and read through a NumPy view of the same memory (a few hundred nanoseconds per
field, against microseconds for tensor indexing).

Header of a worker's message: ``kind, chain step, master version last pulled, gradients so far,
comm seconds, compute seconds, collective bytes, last minibatch loss``. Header of a master's reply:
``kind, master version, staleness of the push just applied`` (the rest zero). Heartbeats are
header-only in meaning (the payload is not read) and keep a silent worker visibly alive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

HEADER = 8
BYTES_PER_FLOAT = 4

# message kinds, worker -> master
SAMPLE, DONE, PUSH, EXCHANGE, ERROR, ABORT, HEARTBEAT = 1, 2, 3, 4, 5, 6, 7
# master -> worker
PARAMS, STOP = 10, 11

# header slots of a worker's message
KIND, STEP, VERSION, GRADS, COMM_S, COMPUTE_S, COLLECTIVE_BYTES, LOSS = range(HEADER)
# header slots of a master's reply (KIND as above)
REPLY_VERSION, REPLY_STALENESS = 1, 2

# why a worker aborted (the LOSS slot of an ABORT message)
ABORT_PEER_LOST, ABORT_SIGTERM, ABORT_SIGINT = 1.0, 15.0, 2.0


class Message:
    """A preallocated message buffer: ``tensor`` is what goes over the wire, ``header`` a NumPy
    view of its first 8 floats, ``payload`` a tensor view of the rest."""

    def __init__(self, dim: int):
        self.tensor = torch.zeros(HEADER + dim, dtype=torch.float32)
        self.header: np.ndarray = self.tensor.numpy()[:HEADER]
        self.payload = self.tensor[HEADER:]
        self.nbytes = (HEADER + dim) * BYTES_PER_FLOAT

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
        return self.tensor

    @property
    def kind(self) -> int:
        return int(self.header[KIND])

    def fields(self) -> list[float]:
        return self.header.tolist()
