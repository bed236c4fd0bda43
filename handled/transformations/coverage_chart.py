"""The coverage summary as a chart: inline SVG built in Python (no JavaScript, no build step),
like the System page's chart (handled/ops/chart.py).

One group per shown service: two stacked bars of 100 %, the upper the share of
destination ZIP3s, the lower the share of their population, split into reached in
1, 2, 3, 4, 5+ days and not served; the colours are the page's score colours.
"""

from __future__ import annotations

from handled.transformations.coverage import BUCKETS

WIDTH, LABEL, BAR, GAP, TOP = 640, 92, 11, 9, 26
COLOURS = {"1": "#1a9850", "2": "#91cf60", "3": "#fee08b", "4": "#fc8d59", "5+": "#d73027", "none": "#d9d9d9"}
LEGEND = {"1": "1 day", "2": "2 days", "3": "3 days", "4": "4 days", "5+": "5+ days", "none": "no service"}


def summary_chart(summary: list[dict]) -> dict:
    plot_w = WIDTH - LABEL - 12
    groups = []
    for n, item in enumerate(summary):
        y = TOP + n * (2 * BAR + GAP)
        bars = []
        for offset, (kind, shares) in enumerate((("ZIP3s", item["zip3_share"]),
                                                 ("population", item["population_share"]))):
            x, segments = LABEL, []
            for bucket in BUCKETS + ("none",):
                share = shares[bucket]
                if not share:
                    continue
                width = plot_w * share
                segments.append({"x": round(x, 1), "w": round(width, 2), "fill": COLOURS[bucket],
                                 "title": f"{kind}: {share * 100:.1f} % {LEGEND[bucket]}"})
                x += width
            bars.append({"y": y + offset * BAR, "segments": segments, "empty": not segments})
        groups.append({"label": f"{item['service'][0]} {item['service'][1]}", "y": y, "bars": bars})
    legend = [{"x": LABEL + i * 86, "fill": COLOURS[b], "text": LEGEND[b]} for i, b in enumerate(BUCKETS + ("none",))]
    return {"width": WIDTH, "height": TOP + len(summary) * (2 * BAR + GAP) + 4, "label_x": LABEL - 6,
            "bar": BAR, "groups": groups, "legend": legend, "plot_w": plot_w, "label": LABEL}
