"""Draw docs/architecture.png: the request path and a concept's life cycle, as the code has them.

    python -m tools.draw_architecture            # writes docs/architecture.png
    python -m tools.draw_architecture --check    # only checks that the picture's imports exist

A solid arrow stands for imports: every one lists the (module, imported module) pairs it draws, and
`--check` (run by tests/contract/test_architecture.py) fails when the code no longer has one of
them, so the picture cannot drift from the code unnoticed. A dashed arrow crosses a process
boundary (gRPC, a Ray Job's entrypoint) and names the call.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "architecture.png"

INK = (33, 37, 41)
MUTED = (90, 98, 110)
SERVE = (225, 236, 250)
TRAIN = (228, 244, 230)
STORE = (252, 240, 222)
PLAIN = (245, 245, 245)
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class Box:
    title: str
    lines: tuple[str, ...]
    xy: tuple[int, int, int, int]  # left, top, width, height
    fill: tuple[int, int, int] = PLAIN

    @property
    def left(self) -> int:
        return self.xy[0]

    @property
    def top(self) -> int:
        return self.xy[1]

    @property
    def right(self) -> int:
        return self.xy[0] + self.xy[2]

    @property
    def bottom(self) -> int:
        return self.xy[1] + self.xy[3]

    @property
    def mid_x(self) -> int:
        return self.xy[0] + self.xy[2] // 2

    @property
    def mid_y(self) -> int:
        return self.xy[1] + self.xy[3] // 2


@dataclass(frozen=True)
class Arrow:
    points: tuple[tuple[int, int], ...]
    label: str = ""
    imports: tuple[tuple[str, str], ...] = ()  # solid: (module, module it imports)
    network: bool = False  # dashed: a gRPC call or a process boundary
    label_at: tuple[int, int] | None = None


@dataclass
class Picture:
    boxes: dict[str, Box] = field(default_factory=dict)
    arrows: list[Arrow] = field(default_factory=list)
    frames: list[Box] = field(default_factory=list)


def picture() -> Picture:
    p = Picture()
    b = p.boxes
    # -- the request path -----------------------------------------------------------------------
    b["gen_client"] = Box("client", ("cdserve generate", "serving/client.py"), (30, 95, 180, 80))
    b["proxy"] = Box("Ray Serve gRPC proxy", ("one per node, :9000", "routes to a replica"), (285, 95, 190, 80), SERVE)
    p.frames.append(
        Box(
            "Generator replica, one per GPU",
            ("Ray shell: serving/deployment.py; core: serving/replica.py",),
            (505, 50, 965, 395),
            (250, 252, 255),
        )
    )
    b["resolver"] = Box(
        "resolver", ("serving/concepts/resolver.py", "id / id@N, tenant visibility"), (530, 115, 215, 80), SERVE
    )
    b["merger"] = Box(
        "merged-set cache", ("serving/concepts/merger.py", "shared/merge.py (Eq. 4-5)"), (785, 115, 200, 80), SERVE
    )
    b["batcher"] = Box("batch queue", ("serving/batcher.py", "mixes concepts in a batch"), (1025, 115, 190, 80), SERVE)
    b["engine"] = Box("DeltaEngine", ("serving/engine (no Ray)", "per-request K/V"), (1255, 115, 195, 80), SERVE)
    p.frames.append(Box("concept cache, LRU by bytes", ("serving/concepts/store.py",), (530, 230, 690, 115), STORE))
    tiers = [("device", "GPU memory"), ("host", "RAM"), ("disk", "artifact files"), ("registry", "fetch on miss")]
    for i, (name, what) in enumerate(tiers):
        b[f"tier_{name}"] = Box(name, (what,), (550 + i * 168, 285, 140, 55), (255, 250, 242))
    b["watcher"] = Box(
        "registry watcher", ("serving/concepts/watcher.py", "hot swap: invalidates"), (1240, 250, 220, 80), SERVE
    )
    # -- training and the registry ----------------------------------------------------------------
    b["train_client"] = Box("client", ("cdserve train", "training/client.py"), (30, 560, 180, 80))
    b["service"] = Box("training service", ("training/service (gRPC)", "jobs in SQLite"), (285, 560, 200, 80), TRAIN)
    b["job"] = Box("Ray Job", ("training/job.py", "entrypoint, publishes"), (545, 560, 190, 80), TRAIN)
    b["trainer"] = Box(
        "Ray Train TorchTrainer", ("training/distributed.py", "DDP workers, checkpoints"), (790, 560, 230, 80), TRAIN
    )
    b["loop"] = Box("training loop (no Ray)", ("training/loop.py", "K/V + modifier token"), (1075, 560, 210, 80), TRAIN)
    b["registry"] = Box(
        "concept registry",
        ("serving/registry (gRPC)", "SQLite (WAL) + blob files", "Publish · Fetch · List · Watch"),
        (700, 750, 300, 100),
        STORE,
    )
    b["prometheus"] = Box(
        "Prometheus", ("/metrics of every process", "deploy/prometheus, deploy/grafana"), (30, 760, 260, 80)
    )

    a = p.arrows
    a.append(Arrow(((210, 135), (285, 135)), "Generate", network=True, label_at=(216, 112)))
    a.append(Arrow(((475, 135), (530, 135)), "", network=True))
    a.append(Arrow(((745, 155), (785, 155)), "", (("serving.concepts.resolver", "serving.concepts.merger"),)))
    a.append(Arrow(((985, 155), (1025, 155)), "", (("serving.deployment", "serving.batcher"),)))
    a.append(Arrow(((1215, 155), (1255, 155)), "", (("serving.replica", "serving.engine"),)))
    a.append(
        Arrow(
            ((637, 195), (637, 230)),
            "lease",
            (("serving.replica", "serving.concepts.resolver"), ("serving.concepts.resolver", "serving.concepts.store")),
            label_at=(645, 202),
        )
    )
    for i in range(len(tiers) - 1):
        x = 550 + i * 168 + 140
        a.append(Arrow(((x, 312), (x + 28, 312))))
    a.append(Arrow(((1240, 300), (1220, 300)), "", (("serving.concepts.watcher", "serving.concepts.store"),)))
    # training
    a.append(Arrow(((210, 600), (285, 600)), "Submit", network=True, label_at=(222, 577)))
    a.append(
        Arrow(
            ((485, 600), (545, 600)),
            "Ray Job",
            network=True,
            label_at=(488, 577),
            imports=(("training.service.service", "training.service.launcher"),),
        )
    )
    a.append(Arrow(((735, 600), (790, 600)), "", (("training.job", "training.distributed"),)))
    a.append(Arrow(((1020, 600), (1075, 600)), "", (("training.distributed", "training.loop"),)))
    # gRPC calls to the registry, each drawn from the module whose client makes it
    for points, label, caller, label_at in (
        (((640, 640), (640, 800), (700, 800)), "Publish", "training.job", (647, 770)),
        (((1000, 790), (1047, 790), (1047, 470), (1124, 470), (1124, 340)), "Fetch", "serving.replica", (1132, 450)),
        (((1000, 825), (1400, 825), (1400, 330)), "Watch (events)", "serving.concepts.watcher", (1290, 800)),
    ):
        a.append(Arrow(points, label, ((caller, "shared.registry_client"),), network=True, label_at=label_at))
    return p


# -- checking --------------------------------------------------------------------------------------


def module_path(module: str) -> Path:
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def imported_modules(module: str) -> set[str]:
    """Every module `module` imports, at any depth of its code (lazy imports inside functions too)."""
    tree = ast.parse(module_path(module).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def missing_imports(p: Picture) -> list[str]:
    """The drawn imports the code does not have ('a imports b' lines); empty when the picture holds."""
    missing = []
    for arrow in p.arrows:
        for module, target in arrow.imports:
            if target not in imported_modules(module):
                missing.append(f"{module} imports {target}")
    return missing


# -- drawing ---------------------------------------------------------------------------------------


def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _dashed(draw: ImageDraw.ImageDraw, start: tuple[int, int], end: tuple[int, int], dash: int = 7) -> None:
    (x0, y0), (x1, y1) = start, end
    length = max(abs(x1 - x0), abs(y1 - y0))
    for s in range(0, length, dash * 2):
        e = min(s + dash, length)
        draw.line(
            [
                (x0 + (x1 - x0) * s / length, y0 + (y1 - y0) * s / length),
                (x0 + (x1 - x0) * e / length, y0 + (y1 - y0) * e / length),
            ],
            fill=INK,
            width=2,
        )


def _arrow(draw: ImageDraw.ImageDraw, arrow: Arrow, font: Font) -> None:
    points = arrow.points
    for start, end in itertools.pairwise(points):
        if arrow.network:
            _dashed(draw, start, end)
        else:
            draw.line([start, end], fill=INK, width=2)
    (x0, y0), (x1, y1) = points[-2], points[-1]
    dx, dy = (x1 > x0) - (x1 < x0), (y1 > y0) - (y1 < y0)
    head = 9
    draw.polygon(
        [
            (x1, y1),
            (x1 - dx * head - dy * head / 2, y1 - dy * head - dx * head / 2),
            (x1 - dx * head + dy * head / 2, y1 - dy * head + dx * head / 2),
        ],
        fill=INK,
    )
    if arrow.label:
        draw.text(arrow.label_at or (x0 + 4, y0 - 18), arrow.label, fill=MUTED, font=font)


def _box(draw: ImageDraw.ImageDraw, box: Box, title_font: Font, line_font: Font) -> None:
    left, top, width, height = box.xy
    draw.rounded_rectangle([left, top, left + width, top + height], radius=8, fill=box.fill, outline=INK, width=2)
    draw.text((left + 10, top + 7), box.title, fill=INK, font=title_font)
    for i, line in enumerate(box.lines):
        draw.text((left + 10, top + 30 + i * 18), line, fill=MUTED, font=line_font)


def draw(p: Picture, out: Path) -> None:
    image = Image.new("RGB", (1500, 870), "white")
    canvas = ImageDraw.Draw(image)
    heading, title, line, small = _font(20), _font(16), _font(14), _font(13)
    canvas.text((30, 18), "Generate: one request", fill=INK, font=heading)
    canvas.text((30, 500), "A concept: trained, published, followed by every replica", fill=INK, font=heading)
    for frame in p.frames:
        _box(canvas, frame, title, line)
    for box in p.boxes.values():
        _box(canvas, box, title, line)
    for arrow in p.arrows:
        _arrow(canvas, arrow, small)
    canvas.text((1080, 24), "solid: imports (checked)   dashed: gRPC / Ray Job", fill=MUTED, font=small)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="only check the drawn imports against the code")
    args = parser.parse_args(argv)
    p = picture()
    missing = missing_imports(p)
    if missing:
        print("the picture no longer matches the code:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    if not args.check:
        draw(p, args.out)
        print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
