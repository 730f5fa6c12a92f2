#!/usr/bin/env python3
"""Plot identify p50 latency against gallery size for facevault's modes and FAISS's indexes.

  bench/plot.py [RESULTS_DIR] [OUT_PNG]     (defaults: bench/results, docs/lookup-latency.png)

Reads the JSON objects that ../shared/bench/compare.sh prints (one file per gallery size, saved as
RESULTS_DIR/n<N>.json) and, where present, facevault exact-mode runs
(FACEVAULT_BENCH_SCAN=exact compare.sh N) saved as RESULTS_DIR/n<N>-exact.json. Needs matplotlib (pip install matplotlib into the bench venv).
"""
import glob, json, os, sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main():
    results = sys.argv[1] if len(sys.argv) > 1 else "bench/results"
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/lookup-latency.png"
    series = {}
    for path in sorted(glob.glob(os.path.join(results, "n*.json"))):
        data = json.load(open(path))
        if path.endswith("-exact.json"):
            # An exact-mode run beside FAISS: its FAISS figures repeat the main run's, so only
            # facevault's line is taken from it.
            ours = data.get("facevault", data)
            series.setdefault(f"facevault {ours['mode']}", []).append((ours["n"], ours["identify_p50_us"]))
        elif "faiss" in data:
            n = data["n"]
            for name, index in data["faiss"].items():
                series.setdefault(f"FAISS {name}", []).append((n, index["p50_us"]))
            ours = data["facevault"]
            series.setdefault(f"facevault {ours['mode']}", []).append((n, ours["identify_p50_us"]))
        elif "identify_p50_us" in data:
            series.setdefault(f"facevault {data['mode']}", []).append((data["n"], data["identify_p50_us"]))
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, points in sorted(series.items()):
        points.sort()
        xs, ys = zip(*points)
        style = "-o" if name.startswith("facevault") else "--s"
        ax.plot(xs, ys, style, label=name, linewidth=2.5 if name.startswith("facevault") else 1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("gallery size (templates, d=512)")
    ax.set_ylabel("identify p50, µs (one query, k=1, one thread)")
    ax.set_title("Identify latency: facevault through its audited door vs FAISS (same run, same files)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(out)


if __name__ == "__main__":
    main()
