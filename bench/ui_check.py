"""Check `betamcmc ui` in a real headless browser: its links open the runs and their metrics.

    python bench/ui_check.py [--repo PATH] [--port P] [--out DIR (default: $TMPDIR/betamcmc-ui-check)]

Starts `betamcmc ui` over the store of ``--repo`` (a project where the pipeline ran), opens
every link it prints in headless Chromium (Debian's ``chromium`` package) in a 1600x1000
window (a laptop screen), saves a screenshot of each under ``--out`` and reads the rendered
page: the runs table must show runs, not MLflow 3's GenAI overview ("Traces"). Each
comparison's table (a saved view) must show its runs and its metric columns *in view*: the
grid renders a header cell for each (ag-grid leaves out columns scrolled off to the side) and
needs no horizontal scroll bar, with MLflow's Assistant panel open as a new browser shows it.
Each compare page must show its runs and its Metrics section (that page takes no metric
choice from a link and lists every metric of the runs in a 300 px scrolling grid, so the
README's metrics are checked on the table). One line per link: ``PASS`` / ``FAIL``; exit 1
when one fails. Without a browser it prints ``SKIP: ...`` and exits 0 (the suite's
``tests/test_ui_browser.py`` then skips with that reason). Install one with
``apt-get install chromium``. docs/tracking.md describes the check.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
RENDER_BUDGET_MS = 30_000  # virtual time for the single-page app to fetch and draw the runs
WINDOW = "1600,1000"  # a laptop screen; the metric columns must fit it, not a wider one
H_SCROLL = re.compile(r'ag-body-horizontal-scroll"[^>]*?style="height: (\d+)px')


def find_browser() -> str | None:
    """The first headless-capable Chromium on PATH (``BETAMCMC_BROWSER`` names another)."""
    named = os.environ.get("BETAMCMC_BROWSER")
    return named or next((found for b in BROWSERS if (found := shutil.which(b))), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(repo: Path, port: int) -> tuple[subprocess.Popen, list[str]]:
    """`betamcmc ui` in ``repo`` and the lines it printed before the server took over."""
    cli = Path(sys.executable).parent / "betamcmc"
    proc = subprocess.Popen([str(cli), "ui", "--port", str(port)], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    lines = []
    while len(lines) < 9:  # header (2), runs table (1), two comparisons (3 each)
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
    return proc, lines


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"FAIL: betamcmc ui exited ({proc.returncode})")
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read():
                return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"FAIL: the UI did not answer within {timeout:.0f} s")


def render(browser: str, url: str, shot: Path) -> str:
    """The page's DOM after its scripts ran, and a screenshot (``WINDOW``) of it."""
    common = [browser, "--headless=new", "--no-sandbox", "--disable-gpu",
              f"--window-size={WINDOW}", f"--virtual-time-budget={RENDER_BUDGET_MS}"]  # fmt: skip
    subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, timeout=180)
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True,
                         timeout=180)  # fmt: skip
    return dom.stdout


def out_of_view(dom: str, metrics: tuple[str, ...]) -> list[str]:
    """What keeps ``metrics`` from showing in the runs table of ``dom``: a metric whose column
    has no rendered header cell (hidden, or virtualized away off-screen), or a horizontal
    scroll bar (the columns are wider than the table: some sit outside the window)."""
    missing = [m for m in metrics if f'col-id="metrics.`{m}`"' not in dom]
    scroll = H_SCROLL.search(dom)
    if scroll is None or int(scroll.group(1)) > 0:
        missing.append("columns wider than the table (horizontal scroll bar)")
    return missing


def printed_metrics(head: str) -> tuple[str, ...]:
    """The metric columns ``betamcmc ui`` says a comparison's view shows (the comparison's
    metrics that its runs logged): ``...; metrics a, b (not logged by these runs: c)``."""
    listed = head.split("; metrics ", 1)[1] if "; metrics " in head else ""
    listed = listed.split(" (not logged", 1)[0].strip()
    return tuple(m for m in listed.split(", ") if m)


def expectations(lines: list[str]) -> list[tuple[str, str, list[str], tuple[str, ...]]]:
    """(name, url, texts that must show, metric columns that must be in view) for every
    printed link; no page may show MLflow's GenAI overview ("Traces 0")."""
    from betamcmc.uilinks import COMPARISONS

    checks = []
    table = next(ln for ln in lines if ln.startswith("runs table (Model training): "))
    checks.append(("runs-table", table.split(": ", 1)[1], ["@"], ()))
    for k, comparison in enumerate(COMPARISONS):
        head = next((ln for ln in lines if ln.startswith(comparison.title)), "")
        names = head.split(": ", 1)[1].split(")")[0].split(", ") if "pipeline run" in head else []
        at = lines.index(head) if head else -1
        for kind in ("table", "compare"):
            link = next((ln for ln in lines[at + 1 : at + 3] if ln.strip().startswith(kind)), "")
            url = link.split(": ", 1)[1].strip() if link else ""
            if kind == "table":
                shown = printed_metrics(head) or comparison.metrics
                checks.append((f"{k}-{kind}", url, [*names, *shown], shown))
            else:
                checks.append((f"{k}-{kind}", url, [*names, "Metrics"], ()))
    return checks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=Path("."))
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "betamcmc-ui-check")
    args = ap.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print(f"SKIP: no headless browser ({', '.join(BROWSERS)}); apt-get install chromium")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    port = args.port or free_port()
    proc, lines = start_ui(args.repo.resolve(), port)
    failed = 0
    try:
        wait_healthy(port, proc)
        for name, url, shown, in_view in expectations(lines):
            dom = render(browser, url, args.out / f"{name}.png") if url else ""
            missing = [t for t in shown if t not in dom] + [t for t in ["Traces 0"] if t in dom]
            missing += out_of_view(dom, in_view) if in_view else []
            failed += bool(missing) or not url
            said = "PASS" if url and not missing else f"FAIL (missing or wrong: {missing or url})"
            print(f"{said}: {name}: {url} (screenshot {args.out / f'{name}.png'})")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
