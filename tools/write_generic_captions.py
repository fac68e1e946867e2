"""Write shared/assets/generic_captions.txt: generic captions for the closed-form merge's C_reg.

Deterministic; rerun only to change the set (the cached C_regᵀC_reg is keyed by the file's digest).
"""

import itertools
import random
from pathlib import Path

SUBJECTS = [
    "dog",
    "cat",
    "horse",
    "bird",
    "car",
    "bicycle",
    "house",
    "tree",
    "flower",
    "mountain",
    "river",
    "beach",
    "city street",
    "kitchen",
    "living room",
    "woman",
    "man",
    "child",
    "teddy bear",
    "chair",
    "table",
    "cup of coffee",
    "bowl of fruit",
    "guitar",
    "book",
    "lamp",
    "boat",
    "train",
    "bridge",
    "castle",
    "forest",
    "garden",
    "sunset",
    "cake",
    "sandwich",
    "pizza",
    "backpack",
    "clock",
    "vase",
    "sofa",
    "painting",
    "statue",
    "robot",
    "airplane",
    "motorcycle",
    "bus",
    "church",
    "lake",
    "desert",
    "field of grass",
    "snowy hill",
    "waterfall",
    "barn",
    "cow",
    "sheep",
    "duck",
    "fish",
    "shoe",
    "hat",
]
TEMPLATES = [
    "a photo of a {s}",
    "a picture of a {s}",
    "a close up photo of a {s}",
    "a {s} in the morning light",
    "a painting of a {s}",
    "a drawing of a {s}",
    "a {s} on a sunny day",
    "a blurry photo of a {s}",
    "a black and white photo of a {s}",
    "a {s} at night",
    "a small {s}",
    "a large {s}",
    "an old {s}",
    "a {s} in the rain",
    "a bright photo of a {s}",
    "a cropped photo of a {s}",
    "a {s} seen from above",
    "a watercolor of a {s}",
    "a {s} in a museum",
    "a {s} next to a window",
]


def main() -> None:
    captions = [t.format(s=s) for t, s in itertools.product(TEMPLATES, SUBJECTS)]
    random.Random(0).shuffle(captions)
    out = Path(__file__).resolve().parent.parent / "shared" / "assets" / "generic_captions.txt"
    out.write_text("\n".join(captions) + "\n")
    print(f"wrote {len(captions)} captions to {out}")


if __name__ == "__main__":
    main()
