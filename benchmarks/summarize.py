#!/usr/bin/env python3
"""Prints one table from Google Benchmark JSON files: op, size, median ms, GVox/s, GB/s,
time over floor and peak bytes per voxel. Usage: summarize.py bench_*.json [--markdown]"""
import json
import sys


def rows(paths):
    for path in paths:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue  # a benchmark filtered out entirely leaves an empty file
        for b in data.get("benchmarks", []):
            if b.get("run_type") == "aggregate":
                continue
            yield {
                "name": b["name"].split("/manual_time")[0],
                "median_ms": b.get("median_ms", b.get("real_time", 0)),
                "gvox": b.get("GVox/s", 0) ,
                "gbs": b.get("GB/s", 0),
                "floor_ms": b.get("floor_ms", 0),
                "x_floor": b.get("x_floor", 0),
                "bpv": b.get("peak_B/vox", 0),
            }


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    md = "--markdown" in sys.argv
    head = ["op/size", "median ms", "GVox/s", "GB/s", "floor ms", "x floor", "peak B/vox"]
    if md:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
    else:
        print("%-44s %10s %8s %8s %9s %7s %10s" % tuple(head))
    for r in rows(args):
        vals = (r["name"], r["median_ms"], r["gvox"], r["gbs"], r["floor_ms"], r["x_floor"], r["bpv"])
        if md:
            print("| %s | %.3f | %.2f | %.0f | %.3f | %.2f | %.1f |" % vals)
        else:
            print("%-44s %10.3f %8.2f %8.0f %9.3f %7.2f %10.1f" % vals)


if __name__ == "__main__":
    main()
