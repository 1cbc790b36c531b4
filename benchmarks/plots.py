"""PNG plots of the throughput results (matplotlib, Agg backend: no display needed).

Each function takes the results dict of `benchmarks.throughput.run_throughput`, writes one PNG and returns
whether it did (False when the results hold nothing to plot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_batch(res: dict[str, Any], path: Path) -> bool:
    """Frames/s against batch size: generator alone (XLA on/off, per device) and the pipeline, with the
    limit and the naive loop as horizontal lines."""
    gen = res.get("generator") or []
    if not gen:
        return False
    plt = _pyplot()
    fpf = max(float(res["stages"]["faces_per_frame"]), 1e-9)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for dev, xla in sorted({(r["device"], r["xla"]) for r in gen}):
        rows = sorted((r for r in gen if r["device"] == dev and r["xla"] == xla), key=lambda r: r["batch"])
        ax.plot(
            [r["batch"] for r in rows],
            [r["per_s"] / fpf for r in rows],
            marker="o",
            linestyle="-" if xla else "--",
            label=f"generator alone, {dev}, XLA {'on' if xla else 'off'}",
        )
    e2e = res.get("e2e", {}).get("main") or []
    for xla in (True, False):
        rows = sorted((r for r in e2e if r["xla"] == xla), key=lambda r: r["batch"])
        if rows:
            ax.plot(
                [r["batch"] for r in rows],
                [r["fps"] for r in rows],
                marker="s",
                linestyle="-" if xla else "",
                color="black" if xla else "grey",
                label=f"pipeline end to end, XLA {'on' if xla else 'off'}",
            )
    ref = res.get("references", {})
    for key, style, label in (("limit", ":", "limit: decode + encode"), ("naive", "-.", "naive loop")):
        if key in ref:
            ax.axhline(
                ref[key]["fps"],
                color="tab:red" if key == "naive" else "tab:green",
                linestyle=style,
                label=f"{label} ({ref[key]['fps']:.1f})",
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size (crops per generator call)")
    ax.set_ylabel(f"frames/s ({res['stages']['clip']}, {fpf:g} faces/frame)")
    ax.set_title(f"Throughput vs batch size — {res['machine']['cpu_count']} CPUs, {res['date'][:10]}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_resolution(res: dict[str, Any], path: Path) -> bool:
    """Frames/s of the pipeline and of the decode + encode limit against frame height."""
    rows = [r for r in res.get("e2e", {}).get("resolutions") or [] if "fps" in r]
    if not rows:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    heights = [r["size"][1] for r in rows]
    ax.plot(heights, [r["fps"] for r in rows], marker="o", color="black", label="pipeline end to end")
    ax.plot(
        heights,
        [r["limit_fps"] for r in rows],
        marker="^",
        linestyle=":",
        color="tab:green",
        label="limit: decode + encode",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(heights, [r["name"] for r in rows])
    ax.minorticks_off()
    ax.set_xlabel("resolution")
    ax.set_ylabel("frames/s")
    ax.set_title(f"Throughput vs resolution — {res['machine']['cpu_count']} CPUs, {res['date'][:10]}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
