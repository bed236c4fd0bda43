"""The coverage summary as a chart: inline SVG built in Python (no JavaScript, no build step),
like the System page's chart (handled/ops/chart.py).

One group per shown service: two stacked bars of 100 %, the upper the share of
destination ZIP3s, the lower the share of their population, split into reached in
1, 2, 3, 4, 5+ days and not served; the colours are the page's score colours.
"""

from __future__ import annotations

import math

from handled.transformations.coverage import BUCKETS

WIDTH, LABEL, BAR, GAP, TOP = 560, 86, 11, 9, 26
COLOURS = {"1": "#157a41", "2": "#91cf60", "3": "#fee08b", "4": "#fc8d59", "5+": "#d73027", "none": "#d9d9d9"}
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
    legend = [{"x": LABEL + i * 76, "fill": COLOURS[b], "text": LEGEND[b]} for i, b in enumerate(BUCKETS + ("none",))]
    return {"width": WIDTH, "height": TOP + len(summary) * (2 * BAR + GAP) + 4, "label_x": LABEL - 6,
            "bar": BAR, "groups": groups, "legend": legend, "plot_w": plot_w, "label": LABEL}


# The map: every destination ZIP3 as a dot at its centre (zip3_reference's population-weighted
# centre), coloured by the days of one service. No tiles and no outlines: 900 dots draw the
# country by themselves. Albers equal-area conic for the lower 48 (parallels 29.5 and 45.5 N,
# centred on 37.5 N 96 W); Alaska, Hawaii and the territories fall outside and are counted instead.
MAP_W, MAP_PAD = 560, 8
_P1, _P2, _P0, _L0 = (math.radians(v) for v in (29.5, 45.5, 37.5, -96.0))
_N = (math.sin(_P1) + math.sin(_P2)) / 2
_C = math.cos(_P1) ** 2 + 2 * _N * math.sin(_P1)
_RHO0 = math.sqrt(_C - 2 * _N * math.sin(_P0)) / _N
LOWER_48 = (24.3, 49.5, -125.0, -66.8)     # south, north, west, east


def albers(lat: float, lng: float) -> tuple[float, float]:
    rho = math.sqrt(_C - 2 * _N * math.sin(math.radians(lat))) / _N
    theta = _N * (math.radians(lng) - _L0)
    return rho * math.sin(theta), _RHO0 - rho * math.cos(theta)


def _bounds():
    south, north, west, east = LOWER_48
    points = [albers(lat, lng) for lat in (south, north) for lng in (west, (west + east) / 2, east)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), max(xs), min(ys), max(ys)


_X0, _X1, _Y0, _Y1 = _bounds()
_SCALE = (MAP_W - 2 * MAP_PAD) / (_X1 - _X0)
MAP_H = round((_Y1 - _Y0) * _SCALE + 2 * MAP_PAD)


def dot_map(rows, index: int, label: str) -> dict:
    """Dots per colour bucket for the service at ``index`` of the rows' cells."""
    south, north, west, east = LOWER_48
    groups = {bucket: [] for bucket in BUCKETS + ("none",)}
    outside = 0
    for row in rows:
        if row.lat is None or row.lng is None:
            continue
        if not (south <= row.lat <= north and west <= row.lng <= east):
            outside += 1
            continue
        x, y = albers(row.lat, row.lng)
        cell = row.cells[index]
        bucket = "none" if cell is None else BUCKETS[min(max(cell.days, 1), 5) - 1]
        where = ", ".join(part for part in (row.city, row.state) if part)
        groups[bucket].append({"x": round(MAP_PAD + (x - _X0) * _SCALE, 1), "y": round(MAP_PAD + (_Y1 - y) * _SCALE, 1),
                               "title": f"{row.zip3} {where}: " + ("no service" if cell is None else
                                                                    f"{cell.days} day{'s' if cell.days != 1 else ''}")})
    drawn = sum(len(dots) for dots in groups.values())
    return {"width": MAP_W, "height": MAP_H, "label": label, "drawn": drawn, "outside": outside,
            "groups": [{"fill": COLOURS[b], "dots": dots} for b, dots in groups.items() if dots]}
