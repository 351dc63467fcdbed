"""PNG plots of benchmark JSON (matplotlib, Agg: no display needed).

    python -m hi3d.bench.plots stages results/latency.json --out results/stages.png
    python -m hi3d.bench.plots concurrency bench/results/serving.json [more.json] --out results/concurrency.png

`stages`: one stacked bar per backend of where an end-to-end run's time goes (median of
each stage; per-step figures are not stacked, they are inside `sample`).
`concurrency`: p50 and p95 latency, and throughput, against the number of concurrent
clients, one line per JSON file of bench/serving.py (e.g. `hi3d` and `hi3d_stage1`):

    {"model": "hi3d", "host": .., "cpus": ..,
     "results": [{"concurrency": 1, "throughput_rps": .., "latency_p50_s": .., "latency_p95_s": .., ...}, ...]}
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from hi3d.bench.common import STACK, read_json  # noqa: E402


def _save(fig: plt.Figure, out: Path) -> Path:
    """Atomic: render to a temp file beside `out`, then rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".png", dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return out


def stage_breakdown(latency: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{backend: {stage: median seconds}} for the stages that exist in the report."""
    backends = latency.get("backends")
    if not backends:
        raise ValueError("latency JSON has no 'backends': is it bench/latency.py output?")
    return {
        b: {s: r["components"][s]["median_ms"] / 1e3 for s in STACK if s in r.get("components", {})}
        for b, r in backends.items()
    }


def plot_stages(latency: dict[str, Any], out: Path) -> Path:
    data = stage_breakdown(latency)
    stages = [s for s in STACK if any(s in d for d in data.values())]
    if not stages:
        raise ValueError("latency JSON has none of the stages to plot: " + ", ".join(STACK))
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(data), 5))
    colours = plt.get_cmap("tab20").colors
    bottoms = [0.0] * len(data)
    for i, s in enumerate(stages):
        heights = [d.get(s, 0.0) for d in data.values()]
        ax.bar(list(data), heights, bottom=bottoms, label=s, color=colours[i % len(colours)], width=0.6)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    for x, total in enumerate(bottoms):
        ax.text(x, total, f"{total:.2f} s", ha="center", va="bottom")
    m = latency.get("machine", {})
    ax.set_ylabel("seconds (median per stage)")
    ax.set_title(f"Hi3D {latency.get('preset')} preset, {latency.get('steps')} steps, "
                 f"{m.get('gpu', m.get('device', ''))} {latency.get('dtype', '')}", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _save(fig, out)


def concurrency_points(serving: dict[str, Any]) -> list[tuple[int, float, float, float]]:
    """[(concurrency, p50 s, p95 s, requests/s), ...] sorted by concurrency."""
    results = serving.get("results")
    if not isinstance(results, list) or not results:
        raise ValueError("serving JSON needs a non-empty 'results' list: is it bench/serving.py output?")
    points = []
    for i, r in enumerate(results):
        try:
            points.append((int(r["concurrency"]), float(r["latency_p50_s"]), float(r["latency_p95_s"]),
                           float(r["throughput_rps"])))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"serving JSON results[{i}] lacks {e} (concurrency, latency_p50_s, "
                             "latency_p95_s, throughput_rps)") from e
    return sorted(points)


def plot_concurrency(servings: list[dict[str, Any]], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    tput_ax = ax.twinx()
    for i, serving in enumerate(servings):
        pts, label = concurrency_points(serving), serving.get("model", f"run {i + 1}")
        c = [p[0] for p in pts]
        line, = ax.plot(c, [p[1] for p in pts], marker="o", label=f"{label} p50")
        ax.plot(c, [p[2] for p in pts], ls="--", color=line.get_color(), label=f"{label} p95")
        tput_ax.plot(c, [p[3] for p in pts], ls=":", marker="s", color=line.get_color(), label=f"{label} req/s")
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("latency s")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())  # 1, 2, 4, not 2^0, 2^1, 2^2
    tput_ax.set_ylabel("requests / s (dotted)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = tput_ax.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    hosts = sorted({f"{s.get('host', '?')} ({s.get('cpus', '?')} CPUs)" for s in servings})
    ax.set_title(f"latency vs concurrency, {', '.join(hosts)}", fontsize=9)
    return _save(fig, out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="PNG plots of benchmark JSON")
    ap.add_argument("kind", choices=["stages", "concurrency"])
    ap.add_argument("json", type=Path, nargs="+", help="stages: one latency JSON; concurrency: serving JSONs")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        data = [read_json(p) for p in args.json]
    except (FileNotFoundError, ValueError) as e:
        ap.error(str(e))
    if args.kind == "stages" and len(data) != 1:
        ap.error("stages takes one latency JSON")
    try:
        path = plot_stages(data[0], args.out) if args.kind == "stages" else plot_concurrency(data, args.out)
    except ValueError as e:
        ap.error(str(e))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
