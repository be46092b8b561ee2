"""PNG plots of scoring results (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storage import objects


def plot_speediness(video, rho: float, path: str | Path) -> str:
    """V(t) above the P_i(t) curves of every speed, with ρ marked; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = video.scores
    t = np.arange(video.frames) / video.fps
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True, gridspec_kw={"height_ratios": [1, 1.4]})
    top.step(t, scores.speediness(rho), where="post", color="black")
    top.axhline(2.0, color="C3", linestyle=":", linewidth=1, label="2x: slow motion above")
    top.axhline(1.0, color="C2", linestyle=":", linewidth=1, label="1x: sped up below")
    top.set(ylabel="speediness V(t)", title=f"{Path(video.path).name}: largest speed still judged natural (ρ = {rho})")
    top.legend(loc="upper right", fontsize=8)
    colours = plt.cm.viridis(np.linspace(0, 1, len(scores.speeds)))
    for speed, curve, colour in zip(scores.speeds, scores.p_natural, colours):
        bottom.plot(t, curve, color=colour, linewidth=1, label=f"{speed:.2f}x")
    bottom.axhline(rho, color="grey", linestyle="--", linewidth=1)
    bottom.set(xlabel="time (s)", ylabel="P(natural)", ylim=(0, 1))
    bottom.legend(loc="upper right", fontsize=7, ncol=min(6, len(scores.speeds)))
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> str:
    """Write a matplotlib figure as PNG atomically (a reader never sees half a file) and close it; a path or URI."""
    import matplotlib.pyplot as plt

    try:
        with objects.staging_file(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return str(path)
