#!/usr/bin/env python3
"""Plots Google Benchmark JSON from bench_ops: time over the memory-traffic floor and effective
bandwidth per op and size. Usage: plot.py OUT.png TITLE bench_ops.json [more.json ...]
(needs matplotlib: pip install matplotlib)."""
import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    out, title, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    series = defaultdict(list)
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for b in data["benchmarks"]:
            name, size = b["name"].split("/")[0].replace("BM_", ""), int(b["name"].split("/")[1])
            series[name].append((size, b["x_floor"], b["GB/s"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, pts in sorted(series.items()):
        pts.sort()
        xs = [p[0] for p in pts]
        ax1.plot(xs, [p[1] for p in pts], marker="o", label=name)
        ax2.plot(xs, [p[2] for p in pts], marker="o", label=name)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("cube edge (voxels)")
        ax.grid(True, alpha=0.3)
    ax1.set_ylabel("median time / memory-traffic floor")
    ax1.axhline(2, color="k", ls="--", lw=0.8)
    ax1.axhline(4, color="k", ls=":", lw=0.8)
    ax2.set_ylabel("effective GB/s (floor bytes / time)")
    ax1.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
