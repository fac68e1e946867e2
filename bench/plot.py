"""A small line chart drawn with Pillow (the project does not depend on a plotting library)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 520, 300, 56
COLOURS = ((31, 119, 180), (214, 39, 40))


def _panel(
    draw: ImageDraw.ImageDraw, left: int, points: dict[Any, float], label: str, colour: tuple[int, int, int]
) -> None:
    """One panel: relative throughput (0 to 1.1) over evenly spaced x categories."""
    top, bottom, right = MARGIN // 2 + 14, HEIGHT - MARGIN, left + WIDTH - MARGIN
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    for level in (0.25, 0.5, 0.75, 0.9, 1.0):
        y = bottom - (bottom - top) * level / 1.1
        draw.line([left, y, right, y], fill=(200, 200, 200) if level != 0.9 else (120, 200, 120))
        draw.text((left - 34, y - 6), f"{level:.2f}", fill=(0, 0, 0))
    keys = list(points)
    step = (right - left) / max(1, len(keys))
    xy = []
    for i, key in enumerate(keys):
        x = left + step * (i + 0.5)
        y = bottom - (bottom - top) * min(points[key], 1.1) / 1.1
        xy.append((x, y))
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
        draw.text((x - 12, y - 18), f"{points[key]:.2f}", fill=colour)
        draw.text((x - 8, bottom + 6), str(key), fill=(0, 0, 0))
    if len(xy) > 1:
        draw.line(xy, fill=colour, width=2)
    draw.text((left, bottom + 24), label, fill=(0, 0, 0))


def plot_sweep(sweep: dict[str, dict[Any, float]], path: Path, *, title: str) -> Path:
    """Throughput relative to base against distinct concepts per batch, and against catalogue size."""
    image = Image.new("RGB", (2 * WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, 6), f"{title}: steady-state images/s relative to base (green line: 0.90)", fill=(0, 0, 0))
    _panel(draw, MARGIN, sweep["distinct_per_batch"], "distinct concepts per batch", COLOURS[0])
    _panel(draw, WIDTH + MARGIN, sweep["catalogue"], "catalogue size (Zipf 1.1 traffic)", COLOURS[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
