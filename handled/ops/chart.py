"""The System page's chart: inline SVG built in Python (no JavaScript, no build step).

Bars: PRIMARY session lookups per minute over the last hour. Line: the session
cache hit ratio per minute (hits / (hits + misses)), drawn only for minutes with
lookups; the ratio axis runs from 0 at the bottom to 1 at the top.
"""

from __future__ import annotations

WIDTH, HEIGHT, PAD = 600, 140, 24


def hour_chart(series: list[dict]) -> dict:
    plot_h = HEIGHT - 2 * PAD
    slot = (WIDTH - 2 * PAD) / max(len(series), 1)
    peak = max([row["primary"] for row in series] + [1])
    bars, points = [], []
    for i, row in enumerate(series):
        x = PAD + i * slot
        height = plot_h * row["primary"] / peak
        if row["primary"]:
            bars.append({"x": round(x + 1, 1), "y": round(PAD + plot_h - height, 1),
                         "w": round(max(slot - 2, 1), 1), "h": round(height, 1), "count": row["primary"]})
        looked_up = row["hit"] + row["miss"]
        if looked_up:
            ratio = row["hit"] / looked_up
            points.append(f"{x + slot / 2:.1f},{PAD + plot_h * (1 - ratio):.1f}")
    totals = {key: sum(row[key] for row in series) for key in ("primary", "hit", "miss")}
    checked = totals["hit"] + totals["miss"]
    return {"width": WIDTH, "height": HEIGHT, "pad": PAD, "bars": bars, "line": " ".join(points),
            "peak": peak, "totals": totals,
            "hit_ratio": round(totals["hit"] / checked, 3) if checked else None,
            "baseline": PAD + plot_h}
