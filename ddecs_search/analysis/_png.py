"""Static PNG export of plotly figures through kaleido 1.x, which drives a local Chromium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ddecs_search.errors import UserError

if TYPE_CHECKING:
    import plotly.graph_objects as go

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
NO_CHROMIUM = (
    "PNG export needs Chromium: apt-get install chromium (or set BROWSER_PATH to a Chrome/Chromium "
    "executable); the HTML report itself needs no browser"
)


def find_chromium() -> str | None:
    """``$BROWSER_PATH`` when set (kaleido's own override), else the first Chromium/Chrome on ``PATH``."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


_RETRIES = 2  # kaleido's load race (below) hit a retry too under load; three tries in all


def export_pngs(
    figures: Mapping[str, go.Figure],
    out_dir: str | Path,
    *,
    width: int = 1200,
    height: int | None = None,
    scale: float = 1.0,
) -> list[Path]:
    """Write ``<out_dir>/<name>.png`` for every figure, in one Chromium session.

    Args:
        figures: name → figure (e.g. :func:`report_figures`).
        out_dir: created if missing.
        width, height: pixels; height defaults to each figure's own layout height (else 600).
        scale: device pixel ratio (2 for print quality).

    Returns:
        The written paths, in ``figures`` order.

    Raises:
        UserError: no Chromium/Chrome found, or kaleido is not installed.
        RuntimeError: kaleido failed to render a figure.
    """
    browser = find_chromium()
    if browser is None:
        raise UserError(NO_CHROMIUM)
    try:
        import kaleido
    except ImportError:
        raise UserError("PNG export needs kaleido: pip install 'ddecs-search[png]'") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs, paths = [], []
    for name, fig in figures.items():
        path = out / f"{name}.png"
        fig_height = height or fig.layout.height or 600
        specs.append(
            {
                "fig": fig.to_dict(),
                "path": str(path),
                "opts": {"format": "png", "width": width, "height": fig_height, "scale": scale},
            }
        )
        paths.append(path)
    # mathjax=False: the figures use no LaTeX, and the default would fetch MathJax from a CDN
    kopts = {"path": browser, "mathjax": False}
    errors = kaleido.write_fig_from_object_sync(specs, kopts=kopts)
    for _ in range(_RETRIES):
        if not errors:
            break
        # Another go, in a fresh Chromium, for the figures that did not come out: kaleido 1.x can run a
        # figure before its tab has loaded its own script ("kaleido_scopes is not defined"), seen in CI on
        # a loaded 2-core machine, once on the first call and once on the one retry there was then; a
        # figure that fails every try is real and is raised.
        retry = [spec for spec in specs if not _is_png(Path(spec["path"]))]
        errors = kaleido.write_fig_from_object_sync(retry, kopts=kopts) if retry else errors
    if errors:
        raise RuntimeError(f"PNG export failed for {len(errors)} figure(s): {errors[0]!r}")
    return paths


def _is_png(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False
