"""Image encoding shared by serving (PNG responses) and reports (contact sheets)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] → uint8, rounded like diffusers' `numpy_to_pil`."""
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def to_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def contact_sheet(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]], *, scale: int = 4, label_width: int = 220
) -> Image.Image:
    """One labelled row per entry; images are upscaled `scale`× with nearest neighbour (tiny models)."""
    cell = max(img.shape[0] for _, images in rows for img in images) * scale
    columns = max(len(images) for _, images in rows)
    sheet = Image.new("RGB", (label_width + columns * (cell + 4), len(rows) * (cell + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, images) in enumerate(rows):
        top = r * (cell + 4)
        draw.text((6, top + cell // 2 - 6), label, fill="black")
        for c, image in enumerate(images):
            tile = Image.fromarray(to_uint8(image)).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(tile, (label_width + c * (cell + 4), top))
    return sheet
