#!/usr/bin/env python3
"""Draws bench/handout-throughput.svg from bench/results.json (standard library only): hand-out
throughput of one integration against connections (8, 64, 256) for the service, the service with
its token cache (when the run measured it), the baseline (one primary-key select) and the ceiling
(a fixed JSON body without the database).

Usage: chart.py results.json out.svg
"""

import json
import math
import sys

SERIES = [
    ("service", "service (from the database)", "#d62728"),
    ("service+cache", "service with cache", "#9467bd"),
    ("baseline", "baseline: axum + sqlx, one PK select", "#1f77b4"),
    ("ceiling", "ceiling: fixed JSON, no database", "#7f7f7f"),
]
WIDTH, HEIGHT = 720, 440
LEFT, RIGHT, TOP, BOTTOM = 80, 250, 50, 60


def log_range(values):
    """Powers of ten around the values (a log axis: the ceiling is ~10x the rest)."""
    low, high = min(values), max(values)
    bottom = 10 ** math.floor(math.log10(max(low, 1)))
    top = 10 ** math.ceil(math.log10(max(high, 1) * 1.05))
    return bottom, top


def ticks(bottom, top):
    out, decade = [], bottom
    while decade <= top:
        out.extend(v for v in (decade, 2 * decade, 5 * decade) if bottom <= v <= top)
        decade *= 10
    return out


def main(source, target):
    with open(source) as f:
        results = json.load(f)
    cells = [c for c in results.get("cells", []) if c["scenario"] == "handout" and c.get("ids") == 1]
    cells.sort(key=lambda c: c["connections"])
    if not cells:
        print("chart: results.json has no hand-out figures; no chart drawn")
        return
    connections = [c["connections"] for c in cells]
    lines = []
    for key, label, colour in SERIES:
        points = []
        for c in cells:
            row = next((r for r in c["rows"] if r["target"] == key), None)
            if row is not None:
                points.append((c["connections"], row["rps"]))
        if points:
            lines.append((label, colour, points))
    bottom, top = log_range([rps for _, _, points in lines for _, rps in points])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(c):
        if len(connections) == 1:
            return LEFT + plot_w / 2
        return LEFT + plot_w * connections.index(c) / (len(connections) - 1)

    def y(v):
        span = math.log10(top) - math.log10(bottom)
        return TOP + plot_h * (1 - (math.log10(max(v, bottom)) - math.log10(bottom)) / span)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="24" font-size="15" font-weight="bold">'
        "Token hand-out throughput (1 integration) against connections</text>",
    ]
    machine = results.get("machine", {})
    date = results.get("options", {}).get("date", "")[:10]
    out.append(
        f'<text x="{LEFT}" y="40" fill="#555">{machine.get("cores", "?")} cores, {machine.get("cpu", "")}, '
        f"wrk on the same machine, {date}</text>"
    )
    for v in ticks(bottom, top):
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    for c in connections:
        out.append(f'<text x="{x(c):.1f}" y="{TOP + plot_h + 20}" text-anchor="middle">{c}</text>')
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 18}" text-anchor="middle">connections (wrk, 2 threads)</text>'
    )
    out.append(
        f'<text x="20" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 20 {TOP + plot_h / 2})">requests per second (log scale)</text>'
    )
    out.append(
        f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#333"/>'
        f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" stroke="#333"/>'
    )
    for n, (label, colour, points) in enumerate(lines):
        path = " ".join(f"{x(c):.1f},{y(v):.1f}" for c, v in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
        for c, v in points:
            out.append(f'<circle cx="{x(c):.1f}" cy="{y(v):.1f}" r="4" fill="{colour}"/>')
            last = c == connections[-1] and len(connections) > 1
            anchor, dx = ("end", -6) if last else ("start", 6)
            out.append(
                f'<text x="{x(c) + dx:.1f}" y="{y(v) - 7:.1f}" text-anchor="{anchor}" fill="{colour}">{v:,.0f}</text>'
            )
        ly = TOP + 10 + n * 22
        out.append(f'<rect x="{LEFT + plot_w + 20}" y="{ly - 9}" width="14" height="4" fill="{colour}"/>')
        out.append(f'<text x="{LEFT + plot_w + 40}" y="{ly - 3}">{label}</text>')
    if not any(label == SERIES[1][1] for label, _, _ in lines):
        ly = TOP + 10 + len(lines) * 22
        out.append(
            f'<text x="{LEFT + plot_w + 20}" y="{ly - 3}" fill="#999">(service with cache: not measured)</text>'
        )
    out.append("</svg>")
    with open(target, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"chart written to {target}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
