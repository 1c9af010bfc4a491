#!/usr/bin/env python3
"""Draws a dashboard's panels from Prometheus API answers into one PNG.

Grafana cannot run where the tests run; tests/pipeline.rs evaluates every
query of the main dashboard through Prometheus's HTTP API, writes the
answers as JSON and calls this script, so that a person can see what the
dashboard would show at the end of the scenario. Usage:

    plot_dashboard.py ANSWERS.json OUT.png
"""
import json
import math
import re
import sys
from collections import OrderedDict
from datetime import datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MAX_SERIES = 8


def legend(fmt, metric):
    if not fmt:
        return ",".join(f"{k}={v}" for k, v in sorted(metric.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)


def number(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def points(s):
    return s.get("values") or ([s["value"]] if "value" in s else [])


def busiest(targets):
    """The series to draw, at most MAX_SERIES: those with the highest peak
    first (a panel of every cause for every pool is mostly zeros, which
    Grafana draws too but a picture has no room for)."""
    pairs = [(t, s) for t in targets for s in t["series"]]

    def peak(pair):
        vals = [v for v in (number(p[1]) for p in points(pair[1])) if not math.isnan(v)]
        return max((abs(v) for v in vals), default=0.0)

    return sorted(pairs, key=peak, reverse=True)[:MAX_SERIES]


def draw_lines(ax, targets):
    n = 0
    for t, s in busiest(targets):
        pts = points(s)
        xs = [datetime.fromtimestamp(float(p[0])) for p in pts]
        ys = [number(p[1]) for p in pts]
        ax.plot(xs, ys, label=legend(t["legend"], s["metric"])[:40], linewidth=1.2)
        n += 1
    if n:
        ax.legend(fontsize=6, loc="upper left")
    ax.tick_params(axis="x", labelsize=6, rotation=30)
    ax.tick_params(axis="y", labelsize=7)


def draw_heatmap(ax, targets):
    series = [s for t in targets for s in t["series"]]
    buckets = sorted(series, key=lambda s: number(s["metric"].get("le", "inf")))
    if not buckets:
        return
    times = [float(p[0]) for p in buckets[0]["values"]]
    rows = []
    prev = None
    for b in buckets:
        vals = {float(p[0]): number(p[1]) for p in b["values"]}
        cum = [vals.get(t, 0.0) for t in times]
        rows.append([c - (p if prev else 0.0) for c, p in zip(cum, prev or cum)])
        prev = cum
    ax.imshow(rows, aspect="auto", origin="lower", cmap="Oranges", interpolation="nearest")
    ax.set_yticks(range(len(buckets)))
    ax.set_yticklabels([b["metric"].get("le", "") for b in buckets], fontsize=5)
    ax.set_xlabel("time (2 s steps)", fontsize=6)


def draw_bars(ax, targets):
    names, values = [], []
    # barh draws upwards: the largest last, at the top.
    for t, s in reversed(busiest(targets)):
        v = s.get("value") or (s.get("values") or [[0, "nan"]])[-1]
        names.append(legend(t["legend"], s["metric"])[:40])
        values.append(number(v[1]))
    if names:
        ax.barh(range(len(names)), values, color="tab:orange")
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=6)
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.3g}", va="center", fontsize=6)
    ax.tick_params(axis="x", labelsize=7)


def main():
    src, out = sys.argv[1], sys.argv[2]
    data = json.load(open(src))
    panels = OrderedDict()
    for p in data["panels"]:
        e = panels.setdefault(p["panel"], {"type": p["type"], "future": False, "targets": []})
        e["future"] = e["future"] or p["future"]
        e["targets"].append(p)
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 6.5, rows * 3.2))
    axes = [a for row in axes for a in row]
    for ax, (title, p) in zip(axes, panels.items()):
        ax.set_title(title, fontsize=9, loc="left")
        has_data = any(t["series"] for t in p["targets"])
        if not has_data:
            why = "metric not exported yet" if p["future"] else "no data in this scenario"
            ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=9, color="grey",
                    transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        elif p["type"] == "heatmap":
            draw_heatmap(ax, p["targets"])
        elif all(t["instant"] for t in p["targets"]):
            draw_bars(ax, p["targets"])
        else:
            draw_lines(ax, p["targets"])
    for ax in axes[len(panels):]:
        ax.axis("off")
    start = datetime.fromtimestamp(data["start"]).strftime("%H:%M:%S")
    end = datetime.fromtimestamp(data["end"]).strftime("%H:%M:%S")
    fig.suptitle(
        f"{data['title']}: the scenario {start} to {end}, drawn from Prometheus API answers",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(out, dpi=80)


if __name__ == "__main__":
    main()
