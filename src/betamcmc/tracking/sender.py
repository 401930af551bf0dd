"""The background sender: every logging call of a process is queued and sent, in order, by one
thread per store, so training never waits on the store.

The first call that fails prints one warning for the whole stage (its seed processes included);
it and every later call are written to a spool file under ``<project root>/mlflow-spool/``, sent
later by :mod:`betamcmc.tracking.replay`. A spool file is locked by its process while it lives,
so a replay never sends the calls of a run that is still going.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from betamcmc.tracking.links import Link
from betamcmc.tracking.store import failure_line, set_http_defaults

DRAIN_S = 10.0  # at the end of a stage: how long the calls still queued may take to go out


def apply_call(client: Any, op: Mapping[str, Any], base: Path | None = None) -> None:
    """Carry out one queued or spooled call (``base``: the folder spooled artifact copies are in)."""
    from mlflow.entities import Metric, Param  # lazy: MLflow's import costs seconds

    kind, run = op["op"], op["run"]
    if kind == "batch":
        metrics = [Metric(k, v, t, s) for k, v, t, s in op.get("metrics", [])]
        params = [Param(k, v) for k, v in op.get("params", {}).items()]
        client.log_batch(run, metrics=metrics, params=params)
    elif kind in ("artifact", "artifacts"):
        path = Path(op["path"]) if base is None else base / op["path"]
        log = client.log_artifact if kind == "artifact" else client.log_artifacts
        log(run, str(path), op.get("dir"))
    elif kind == "end":
        client.set_terminated(run, op["status"], op["time"])
    else:
        raise ValueError(f"unknown tracking call {kind!r}")


class _SpoolFile:
    """The calls a store did not take, one JSON line each after a header line naming the store;
    artifacts copied beside it (``<name>.files/``: the outputs may be replaced before the store
    is back). Locked (``flock``) while its process lives, so no replay takes it too early."""

    def __init__(self, folder: Path, uri: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        stem = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}.{int(now * 1000) % 1000:03d}"
        stem += f"-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.path = folder / f"{stem}.jsonl"
        self.files = folder / f"{stem}.files"
        self._lock = threading.Lock()
        self._copies = 0
        self._fh = self.path.open("a", encoding="utf-8")
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        self._line({"uri": uri, "pid": os.getpid(), "created": now})

    def _line(self, record: Mapping[str, Any]) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()  # a process that dies keeps every line written so far

    def write(self, op: Mapping[str, Any]) -> None:
        with self._lock:
            if op["op"] in ("artifact", "artifacts"):
                op = self._copy(op)
            self._line(op)

    def _copy(self, op: Mapping[str, Any]) -> dict[str, Any]:
        self._copies += 1
        source = Path(op["path"])
        dest = self.files / str(self._copies) / source.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if op["op"] == "artifacts":
            shutil.copytree(source, dest)
        else:
            shutil.copy2(source, dest)
        return {**op, "path": str(dest.relative_to(self.path.parent))}

    def close(self) -> None:
        with self._lock:
            self._fh.close()  # releases the lock: a replay may take it now


class _Sink:
    """One process's calls to one store, sent in order by a background thread, so a slow or dead
    store never holds up the caller. The first call that fails marks the store lost (one warning
    per stage); it and every later call go to a :class:`_SpoolFile`."""

    def __init__(self, link: Link) -> None:
        self.uri, self.spool = link.uri, Path(link.spool)
        self.scope, self.stage = link.scope, link.stage
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._inflight: dict[str, Any] | None = None
        self._cond = threading.Condition()
        self._lost: str | None = None
        self._abandoned = self._stopping = False
        self._file: _SpoolFile | None = None
        self._client: Any = None
        set_http_defaults(self.uri)
        self._thread = threading.Thread(target=self._loop, name="betamcmc-tracking", daemon=True)
        self._thread.start()

    def submit(self, op: dict[str, Any]) -> None:
        with self._cond:
            if not self._abandoned:
                self._queue.append(op)
                self._cond.notify_all()
                return
        self._spool(op)  # the thread is stuck on a store that does not answer

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping)
                if self._abandoned or not self._queue:
                    return
                op = self._inflight = self._queue.popleft()
            self._handle(op)
            with self._cond:
                if self._abandoned:
                    return
                self._inflight = None
                self._cond.notify_all()

    def _handle(self, op: dict[str, Any]) -> None:
        if "path" in op and not Path(op["path"]).exists():  # removed since: not the store's fault
            _once(f"gone:{op['path']}", f"warning: {op['path']} was removed before MLflow got it")
            return
        if self._lost is None:
            try:
                if self._client is None:
                    import mlflow  # lazy: MLflow's import costs seconds

                    self._client = mlflow.MlflowClient(self.uri)
                apply_call(self._client, op)
                return
            except Exception as err:  # noqa: BLE001 - whatever the store says, the run goes on
                if self._abandoned:
                    return  # too late: drain() spooled this call when it gave up waiting
                self._mark_lost(failure_line(err))
        self._spool(op)

    def _mark_lost(self, cause: str) -> None:
        if self._lost is None:
            self._lost = cause
            _announce_loss(self, cause)

    def _spool(self, op: dict[str, Any]) -> None:
        try:
            with self._cond:
                if self._file is None:
                    self._file = _SpoolFile(self.spool, self.uri)
            self._file.write(op)
        except OSError as err:  # nowhere to keep it: say so once, the run goes on
            message = (
                f"warning: cannot spool tracking calls to {self.spool}:"
                f" {err.strerror or err}; they are lost"
            )
            _once(f"spool:{self.scope}", message)

    def drain(self, timeout: float | None = None) -> None:
        """Wait until every queued call is sent or spooled; after ``timeout`` s (default
        :data:`DRAIN_S`: a store that takes a call and never answers) spool the rest and stop
        waiting on the store."""
        timeout = DRAIN_S if timeout is None else timeout
        with self._cond:
            if self._cond.wait_for(self._idle, timeout) or self._abandoned:
                return
            self._abandoned = True
            left = [op for op in (self._inflight, *self._queue) if op is not None]
            self._queue.clear()
        self._mark_lost(f"no answer within {timeout:.0f} s")
        for op in left:
            self._spool(op)

    def _idle(self) -> bool:
        return not self._queue and self._inflight is None

    def close(self) -> None:
        self.drain()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)
        if self._file is not None:
            self._file.close()


_SINKS: dict[str, _Sink] = {}
_SINKS_LOCK = threading.Lock()
_SAID: set[str] = set()


def submit_call(link: Link, op: dict[str, Any]) -> None:
    with _SINKS_LOCK:
        sink = _SINKS.get(link.uri)
        if sink is None:
            sink = _SINKS[link.uri] = _Sink(link)
    sink.submit(op)


def close_sink(link: Link) -> None:
    """End of a stage run: its calls go out (or to the spool), the thread stops, the spool file
    is released for replay, and the stage's one-warning marker is removed."""
    with _SINKS_LOCK:
        sink = _SINKS.pop(link.uri, None)
    if sink is not None:
        sink.close()
    with contextlib.suppress(OSError):
        (Path(link.spool) / f"{link.scope}.lost").unlink()


def _once(key: str, message: str) -> None:
    if key not in _SAID:
        _SAID.add(key)
        print(message, file=sys.stderr, flush=True)


def _announce_loss(sink: _Sink, cause: str) -> None:
    """One warning per stage, whichever of its processes (the stage, its seeds) sees the loss
    first: a marker file named after the stage run decides."""
    try:
        sink.spool.mkdir(parents=True, exist_ok=True)
        os.close(os.open(sink.spool / f"{sink.scope}.lost", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    except OSError:
        pass  # no marker: this process warns anyway
    message = (
        f"warning: tracking store {sink.uri} lost during {sink.stage} ({cause}); the stage goes"
        f" on and keeps what it logs in {sink.spool}/, sent by the next stage once the store"
        " answers, or by `betamcmc tracking replay`"
    )
    _once(f"lost:{sink.scope}", message)


def flush_link(link: Link | None) -> None:
    """Wait (at most :data:`DRAIN_S`) for this process's queued calls to ``link``'s store: a
    seed's process calls it before it exits, so nothing queued is lost with it."""
    sink = _SINKS.get(link.uri) if link is not None else None
    if sink is not None:
        sink.drain()
