"""Replay: the calls a store did not take (spooled by :mod:`betamcmc.tracking.sender`) are sent
by the next stage that opens a run on the same store, or by ``betamcmc tracking replay``.
Files still locked by a live process are left alone; what fails stays spooled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from betamcmc.tracking.sender import apply_call
from betamcmc.tracking.store import (
    TrackingError,
    check_store,
    failure_line,
    set_http_defaults,
    spool_dir,
)


@dataclass(frozen=True)
class Replayed:
    """What one spool file's replay did: ``sent`` calls went to ``uri``, ``left`` stay spooled."""

    file: str
    uri: str
    sent: int
    left: int
    cause: str | None = None

    def line(self) -> str:
        if not self.left:
            return f"tracking: sent {self.sent} spooled call(s) to {self.uri} ({self.file})"
        return (
            f"tracking: {self.left} spooled call(s) for {self.uri} kept in {self.file}"
            f" ({self.cause})"
        )


def replay(uri: str | None = None, root: Path | None = None) -> list[Replayed]:
    """Send the spooled calls (:data:`SPOOL_DIR`) to their stores, oldest first; only ``uri``'s
    if given. Files still locked by a live process are left alone; what fails stays spooled."""
    folder = spool_dir(root)
    if not folder.is_dir():
        return []
    done = []
    for path in sorted(folder.glob("*.jsonl")):
        outcome = _replay_file(path, uri)
        if outcome is not None:
            done.append(outcome)
    return done


def replay_at_start(uri: str) -> None:
    """A stage that opens a run on a store that answers first sends what earlier runs spooled
    (never fails the stage: what cannot be sent stays spooled)."""
    try:
        outcomes = replay(uri)
    except OSError as err:
        outcomes = []
        print(f"warning: tracking spool {spool_dir()}: {err.strerror or err}", file=sys.stderr)
    for outcome in outcomes:
        print(outcome.line(), file=sys.stdout if not outcome.left else sys.stderr, flush=True)


def _replay_file(path: Path, only_uri: str | None) -> Replayed | None:
    try:
        fh = path.open("r+", encoding="utf-8")
    except FileNotFoundError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # its process is still running
        if not _same_file(path, fh):
            return None  # replayed and removed by another process meanwhile
        header, ops = _read_spool(fh)
        if header is None or (only_uri is not None and header.get("uri") != only_uri):
            return None
        sent, cause = _send_all(header["uri"], ops, path.parent)
        if sent == len(ops):
            path.unlink()
            shutil.rmtree(path.with_suffix(".files"), ignore_errors=True)
        elif sent:
            _rewrite(path, header, ops[sent:])
        return Replayed(
            file=path.name, uri=header["uri"], sent=sent, left=len(ops) - sent, cause=cause
        )


def _same_file(path: Path, fh: Any) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
    except FileNotFoundError:
        return False


def _read_spool(fh: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Header and calls of a spool file; a line cut short by a killed process is skipped."""
    records = []
    for line in fh.read().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    if not records or "uri" not in records[0]:
        return None, []
    return records[0], records[1:]


def _send_all(uri: str, ops: list[dict[str, Any]], base: Path) -> tuple[int, str | None]:
    """Send ``ops`` in order; how many went out, and why the rest did not."""
    import mlflow  # lazy: MLflow's import costs seconds

    try:
        check_store(uri)
    except TrackingError as err:
        return 0, err.cause
    set_http_defaults(uri)
    client = mlflow.MlflowClient(uri)
    for i, op in enumerate(ops):
        try:
            apply_call(client, op, base)
        except Exception as err:  # noqa: BLE001 - kept for the next replay, not a traceback
            return i, failure_line(err)
    return len(ops), None


def _rewrite(path: Path, header: Mapping[str, Any], ops: Sequence[Mapping[str, Any]]) -> None:
    """Keep only the calls not sent (atomic replace; the artifact copies stay beside it)."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_text("".join(json.dumps(r) + "\n" for r in (header, *ops)), encoding="utf-8")
    os.replace(temp, path)
