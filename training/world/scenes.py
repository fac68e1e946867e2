"""The toy world: scenes of one or two flat objects on a coloured background, rendered at 64×64.

Everything is a pure function of a `numpy.random.Generator`, so a seed fixes a dataset exactly.
Objects carry an *appearance* (`pattern` + colours). The base model learns plain objects first,
then every pattern in every colour pair — except the concept catalogue's appearances, the held-out
particulars a Custom Diffusion concept ("a <cd-x> star") must teach it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
_SUPERSAMPLE = 4  # shapes are drawn at 256×256 and box-filtered down: anti-aliased edges

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (245, 215, 40),
    "purple": (145, 60, 195),
    "orange": (245, 140, 30),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "pink": (250, 190, 205),
}
SIZES: tuple[str, ...] = ("small", "large")
PLAIN = "plain"
# Pattern families; each concept of the catalogue is one held-out appearance of one of them.
CONCEPT_PATTERNS: tuple[str, ...] = ("striped", "dotted", "checkered", "twotone", "outlined")
PATTERNS: tuple[str, ...] = (PLAIN, *CONCEPT_PATTERNS)

# Object extent in pixels (bounding box side) by (object count, size word). With an f=8 VAE a pair's
# objects span 2.5–3.5 latent cells: at 2 cells most patterns did not survive a VAE round trip;
# SD's objects span a dozen cells and more.
_EXTENT_PX: dict[tuple[int, str], tuple[float, float]] = {
    (1, "small"): (20.0, 24.0),
    (1, "large"): (36.0, 42.0),
    (2, "small"): (19.0, 22.0),
    (2, "large"): (25.0, 28.0),
}
_PATTERN_CELL_PX = 4  # stripes, checks and dot spacing: fine enough to read as a texture per latent cell
_OUTLINE_FRACTION = 0.12  # border width relative to the object's extent (≥ 2 px): small objects keep a fill


@dataclass(frozen=True)
class Appearance:
    """How an object is painted: `colour` alone when plain; `colour2` is the pattern's second colour
    (for two-tone, the right half)."""

    colour: str
    pattern: str = PLAIN
    colour2: str | None = None

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise ValueError(f"colour={self.colour!r} is not one of {sorted(COLOURS)}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern={self.pattern!r} is not one of {PATTERNS}")
        if (self.pattern == PLAIN) != (self.colour2 is None):
            raise ValueError(f"colour2={self.colour2!r}: required for patterns, forbidden when plain")
        if self.colour2 is not None and (self.colour2 not in COLOURS or self.colour2 == self.colour):
            raise ValueError(f"colour2={self.colour2!r} must be a colour other than {self.colour!r}")


@dataclass(frozen=True)
class WorldObject:
    shape: str
    appearance: Appearance
    size: str
    cx: float  # centre, pixels of the 64×64 image
    cy: float
    extent: float  # bounding-box side, pixels


@dataclass(frozen=True)
class Scene:
    """One image's content. Objects are ordered left to right, the order the caption names them."""

    background: str
    objects: tuple[WorldObject, ...]


def random_appearance(rng: np.random.Generator, patterns: tuple[str, ...] = (PLAIN,)) -> Appearance:
    pattern = str(rng.choice(patterns))
    colour = str(rng.choice(list(COLOURS)))
    if pattern == PLAIN:
        return Appearance(colour)
    colour2 = str(rng.choice([c for c in COLOURS if c != colour]))
    return Appearance(colour, pattern, colour2)


def place(
    rng: np.random.Generator, shape: str, appearance: Appearance, size: str, slot: int, count: int
) -> WorldObject:
    """Put an object in `slot` (0 = left or alone, 1 = right) with jittered position and extent."""
    lo, hi = _EXTENT_PX[(count, size)]
    extent = float(rng.uniform(lo, hi))
    if count == 1:
        cx, cy = 32.0 + rng.uniform(-6, 6), 32.0 + rng.uniform(-6, 6)
    else:
        cx, cy = (16.0 if slot == 0 else 48.0) + rng.uniform(-1.5, 1.5), 32.0 + rng.uniform(-8, 8)
    return WorldObject(shape, appearance, size, float(cx), float(cy), extent)


def random_scene(
    rng: np.random.Generator,
    *,
    patterns: tuple[str, ...] = (PLAIN,),
    two_object_prob: float = 0.35,
    background: str | None = None,
) -> Scene:
    """A scene drawn uniformly over shapes, colours, sizes and backgrounds (patterns as given)."""
    count = 2 if rng.random() < two_object_prob else 1
    bg = background or str(rng.choice(list(BACKGROUNDS)))
    objects = tuple(
        place(rng, str(rng.choice(SHAPES)), random_appearance(rng, patterns), str(rng.choice(SIZES)), slot, count)
        for slot in range(count)
    )
    return Scene(bg, objects)


def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "star":
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        return [(cx + float(q * np.cos(a)), cy - float(q * np.sin(a))) for q, a in zip(radii, angles, strict=True)]
    raise ValueError(f"shape={shape!r} is not one of {SHAPES}")


def _mask(shape: str, cx: float, cy: float, r: float, w: int, h: int) -> np.ndarray:
    """Binary mask (h, w) float32 of a shape centred at (cx, cy) with half-extent r, in pixels of the mask."""
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(_shape_polygon(shape, cx, cy, r), fill=255)
    return np.asarray(img, dtype=np.float32) / 255.0


def _texture(obj: WorldObject, x0: int, y0: int, w: int, h: int, s: int) -> np.ndarray:
    """(h, w, 3) float32 paint for a crop whose top-left is (x0, y0) in supersampled pixels.

    The pattern is anchored at the object's bounding box, so every instance shows the same phase.
    """
    a = obj.appearance
    c1 = np.asarray(COLOURS[a.colour], np.float32)
    if a.pattern == PLAIN:
        return np.broadcast_to(c1, (h, w, 3))
    c2 = np.asarray(COLOURS[a.colour2 or a.colour], np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs, ys = xs + x0 - (obj.cx - obj.extent / 2) * s, ys + y0 - (obj.cy - obj.extent / 2) * s
    u, v = xs / (s * _PATTERN_CELL_PX), ys / (s * _PATTERN_CELL_PX)
    if a.pattern == "striped":
        second = np.floor(v) % 2 == 1
    elif a.pattern == "checkered":
        second = (np.floor(u) + np.floor(v)) % 2 == 1
    elif a.pattern == "dotted":  # the lattice has a dot at the centre, so even a small star shows one
        du = ((xs - obj.extent / 2 * s) / (2 * s * _PATTERN_CELL_PX) + 0.5) % 1 - 0.5
        dv = ((ys - obj.extent / 2 * s) / (2 * s * _PATTERN_CELL_PX) + 0.5) % 1 - 0.5
        second = du * du + dv * dv < 0.3**2
    elif a.pattern == "twotone":
        second = xs >= obj.extent / 2 * s
    else:  # outlined: a colour border around a colour2 fill; pointed shapes need a deeper inset
        inset = max(2.0, _OUTLINE_FRACTION * obj.extent) * s * (1.6 if obj.shape in ("triangle", "star") else 1.0)
        centre = obj.cx * s - x0, obj.cy * s - y0
        second = _mask(obj.shape, *centre, obj.extent / 2 * s - inset, w, h) > 0.5
    return np.where(second[..., None], c2, c1)


def render(scene: Scene) -> Image.Image:
    """Render a scene as a 64×64 RGB image (drawn 4× larger, then box-filtered)."""
    s = _SUPERSAMPLE
    side = IMAGE_SIZE * s
    canvas = np.empty((side, side, 3), np.float32)
    canvas[:] = np.asarray(BACKGROUNDS[scene.background], np.float32)
    for obj in scene.objects:
        half = obj.extent / 2 * s
        x0, y0 = max(int(obj.cx * s - half) - 2, 0), max(int(obj.cy * s - half) - 2, 0)
        w, h = min(int(2 * half) + 5, side - x0), min(int(2 * half) + 5, side - y0)
        mask = _mask(obj.shape, obj.cx * s - x0, obj.cy * s - y0, half, w, h)[..., None]
        region = canvas[y0 : y0 + h, x0 : x0 + w]
        region[:] = region * (1 - mask) + _texture(obj, x0, y0, w, h, s) * mask
    small = canvas.reshape(IMAGE_SIZE, s, IMAGE_SIZE, s, 3).mean(axis=(1, 3))
    return Image.fromarray(np.clip(np.rint(small), 0, 255).astype(np.uint8), "RGB")


def to_array(images: list[Image.Image]) -> np.ndarray:
    """Stack images as (n, 3, 64, 64) float32 in [-1, 1], the VAE's input range."""
    arr = np.stack([np.asarray(im.convert("RGB"), np.float32) for im in images])
    return arr.transpose(0, 3, 1, 2) / 127.5 - 1.0
