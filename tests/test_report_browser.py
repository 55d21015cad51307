"""Open the HTML report in a real headless Chromium, offline, and check that every figure renders.

DNS is disabled for the browser (``--host-resolver-rules``), so a report that needed a CDN would show
empty plots. The rendered DOM (``--dump-dom``) must hold plotly's SVG/canvas output inside every
figure section; Chromium's console log (``--enable-logging=stderr``) must show no uncaught error. A
screenshot is kept in ``test-artifacts/`` (git-ignored) for a human look.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _trials_fixture import make_experiment

from ddecs_search.analysis import find_chromium, write_report

CHROMIUM = find_chromium() or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on PATH nor in $BROWSER_PATH: `make browser` (apt-get install chromium; on Ubuntu "
    "sudo snap install chromium) to run the browser test of the report",
)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",  # software WebGL for parcoords / scatter3d (explicit in new Chromes)
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: every host name fails to resolve
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=10000",
)
BROWSER_TIMEOUT_S = 180
SCREENSHOT_SIZE = "1400,3000"
FIGURES = (
    "pareto_2d",
    "pareto_3d",
    "parallel_coordinates",
    "exit_profile",
    "hypervolume",
    "per_class_exits",
    "confusion",
)


def _start(args: list[str], profile: Path, stdout) -> subprocess.Popen:
    return subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: on timeout we end exactly what we started
    )


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=BROWSER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        pytest.fail(f"Chromium did not finish within {BROWSER_TIMEOUT_S} s")
    return out or "", err


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Write a report with every figure, then dump its DOM and screenshot it (two browsers in parallel)."""
    tmp = tmp_path_factory.mktemp("browser")
    exp = make_experiment(
        tmp / "browser-demo",
        n=40,
        devices=("cpu:test", "cuda:test"),
        energy=True,
        objectives=[("val_accuracy", "max"), ("latency_ms", "min"), ("energy_mj", "min")],
        with_exits=True,
    )
    report = write_report(exp)
    shot = tmp / "report.png"
    url = report.resolve().as_uri()
    dom_proc = _start(["--dump-dom", url], tmp / "profile-dom", subprocess.PIPE)
    shot_proc = _start(
        [f"--screenshot={shot}", f"--window-size={SCREENSHOT_SIZE}", url], tmp / "profile-shot", None
    )
    dom, dom_log = _finish(dom_proc)
    _, shot_log = _finish(shot_proc)
    if shot.is_file():
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shot, ARTIFACTS / "report.png")
    return {
        "dom": dom,
        "log": dom_log + shot_log,
        "shot": shot,
        "rc": (dom_proc.returncode, shot_proc.returncode),
    }


def _sections(dom: str) -> dict[str, str]:
    body = re.sub(r"<script\b[^>]*>.*?</script>", "", dom, flags=re.S)  # the rendered page only
    return dict(re.findall(r'<section class="figure" data-figure="(\w+)">(.*?)</section>', body, flags=re.S))


def test_report_loads_without_errors(rendered) -> None:
    assert rendered["rc"] == (0, 0), rendered["log"][-2000:]
    assert "<h1>ddecs-search report: browser-demo</h1>" in rendered["dom"]
    console = [line for line in rendered["log"].splitlines() if ":CONSOLE" in line]
    errors = [line for line in console if "Uncaught" in line or re.search(r"error", line, re.I)]
    assert not errors, "\n".join(errors)


def test_every_figure_renders(rendered) -> None:
    sections = _sections(rendered["dom"])
    assert list(sections) == list(FIGURES)
    for name, html in sections.items():
        assert 'class="plot-container' in html, f"{name}: plotly did not render"
        assert html.count('class="main-svg"') >= 2, f"{name}: no SVG layers"
        assert "WebGL is not supported" not in html, f"{name}: no WebGL"
    assert len(re.findall(r'class="point"', sections["pareto_2d"])) >= 40  # every trial drawn
    assert "<canvas" in sections["pareto_3d"] and "<canvas" in sections["parallel_coordinates"]
    assert 'class="parcoords' in sections["parallel_coordinates"]
    assert 'class="heatmap-label' in sections["per_class_exits"]  # the "17%" cell labels


def test_screenshot_is_saved(rendered) -> None:
    shot = rendered["shot"]
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 100_000  # a blank 1400x3000 page compresses to a few KB
    assert (ARTIFACTS / "report.png").stat().st_size == shot.stat().st_size
