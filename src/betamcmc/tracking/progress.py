"""Progress of a long loop: on the terminal while it runs, and in MLflow while it runs.

A loop in the library takes an optional callback ``report(done, total, values)`` and calls it
as it goes (``values``: the current loss, KL, beta, accuracy, ...); a stage passes a
:class:`Progress`, which

* on a terminal draws a tqdm bar with the rate, the ETA and the latest values;
* elsewhere (a log file, CI, ``dvc repro`` piped) prints one plain line every ``lines`` -th
  of the total (10 by default) and at the end: ``pretrain@cyclical 400/4000 (10%) kl 1.2 ...
  12 s, ETA 108 s``;
* with ``mlflow=True`` sends the values as step metrics of the stage's MLflow run (or of the
  run ``link`` names: a seed's, in its own process) with their real timestamps, batched: one
  call every ``flush_s`` seconds (and at the end), never one SQLite write per step. The calls go
  through :mod:`betamcmc.tracking`, which sends them on a background thread: a slow or dead
  tracking server never holds up the loop (what it does not take is spooled, see there).

``BETAMCMC_PROGRESS=bar|lines|off`` overrides the choice (``lines`` is forced where several
processes share one terminal, e.g. pretrain's seeds). The loops never import this module; the
stages' work functions (which open the MLflow run) create the :class:`Progress` they pass in.
``prefix`` names the metrics (``train.`` + ``kl``).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from betamcmc import tracking

MODES = ("bar", "lines", "off")


def _mode(stream: TextIO, forced: str | None) -> str:
    chosen = os.environ.get("BETAMCMC_PROGRESS") or forced
    if chosen in MODES:
        return chosen
    interactive = hasattr(stream, "isatty") and stream.isatty() and not os.environ.get("CI")
    return "bar" if interactive else "lines"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class Progress:
    """``report(done, total, values)`` for a loop; see the module docstring."""

    def __init__(
        self,
        desc: str,
        *,
        mlflow: bool = False,
        prefix: str = "",
        link: tracking.Link | None = None,
        mode: str | None = None,
        lines: int = 10,
        flush_s: float = 5.0,
        stream: TextIO | None = None,
    ) -> None:
        self.desc = desc
        self.prefix = prefix
        self.stream = stream or sys.stdout  # stderr carries the one-line errors only
        self.mode = _mode(self.stream, mode)
        self.lines = max(1, lines)
        self.flush_s = flush_s
        self.started = time.monotonic()
        self.total = 0
        self.done = 0
        self.values: dict[str, float] = {}
        self._bar: Any = None
        self._next_line = 0
        self._printed = -1
        self._pending: list[tuple[str, float, int, int]] = []
        self._last_flush = time.monotonic()
        # ``link``: a run of another process's stage (a seed's); else the stage run open here
        self._owns_link = link is not None
        self.link = link if link is not None else (tracking.current_link() if mlflow else None)

    # ----------------------------------------------------------------------- the callback
    def __call__(self, done: int, total: int, values: Mapping[str, float] | None = None) -> None:
        self.total, self.done = total, done
        clean = {
            self.prefix + k: float(v) for k, v in (values or {}).items() if math.isfinite(float(v))
        }
        self.values.update(clean)
        if self.link is not None and clean:
            now = int(time.time() * 1000)
            self._pending += [(k, v, now, done) for k, v in clean.items()]
            if time.monotonic() - self._last_flush >= self.flush_s or len(self._pending) >= 1000:
                self.flush()
        if self.mode == "bar":
            self._draw_bar()
        elif self.mode == "lines":
            step = max(1, math.ceil(total / self.lines))
            # at a tenth (and at the end) once: a loop may report several times at one step
            if done > self._printed and (done >= (self._next_line or step) or done >= total):
                self._print_line()
                self._printed = done
                self._next_line = (done // step + 1) * step

    def _draw_bar(self) -> None:
        if self._bar is None:
            from tqdm import tqdm  # lazy: only a terminal bar needs it, the plain lines do not

            self._bar = tqdm(
                total=self.total,
                desc=self.desc,
                file=self.stream,
                leave=True,
                dynamic_ncols=True,
                mininterval=0.5,
            )
        self._bar.total = self.total
        self._bar.n = self.done
        self._bar.set_postfix({k: _fmt(v) for k, v in self.values.items()}, refresh=False)
        self._bar.refresh()

    def _print_line(self) -> None:
        elapsed = time.monotonic() - self.started
        share = self.done / self.total if self.total else 0.0
        eta = elapsed / share - elapsed if share > 0 else math.nan
        shown = " ".join(f"{k} {_fmt(v)}" for k, v in self.values.items())
        print(
            f"{self.desc} {self.done}/{self.total} ({share:.0%}) {shown} "
            f"{elapsed:.0f} s, ETA {eta:.0f} s".replace("  ", " "),
            file=self.stream,
            flush=True,
        )

    # ----------------------------------------------------------------------- the end
    def flush(self) -> None:
        """Hand the buffered step metrics to the tracking thread (one call per 1000); returns at
        once, whatever the store is doing."""
        if self.link is not None and self._pending:
            tracking.send_metrics(self.link, self._pending)
        self._pending = []
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush; with a ``link`` of its own (a seed's process, which exits next), also wait,
        bounded, for the calls to go out or be spooled, so none is lost with the process."""
        self.flush()
        if self._owns_link:
            tracking.flush_link(self.link)
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
