"""One Submit stream → a validated `TrainConfig` with its images stored in the job directory.

Every check happens here, before anything is scheduled, and each failure is an InvalidArgument
whose `field` names the request field ("spec.recipe.steps", "image[3].data", …).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from proto import training_pb2
from shared.config import validated
from shared.errors import InvalidArgument
from training.config import ConceptConfig, Recipe, TrainConfig
from training.regularization import CAPTIONS_FILE
from training.service.config import SubmitLimits

FORMATS = {"PNG": ".png", "JPEG": ".jpg"}
REGULARIZATION = {
    training_pb2.REGULARIZATION_MODE_UNSPECIFIED: "auto",
    training_pb2.REAL: "real",
    training_pb2.GENERATED: "generated",
    training_pb2.NONE: "none",
}


SUBMITTED_MODES = ("kv", "crossattn", "token")
"""What a job may train: the paper's method, its cross-attention variant and the token alone. The
other `training.config.Mode`s are ablations for the benches (`full` writes UNet weights, which the
registry cannot hold; `kv_frozen_token` freezes the token the method learns)."""


def recipe_from_proto(recipe: training_pb2.Recipe, limits: SubmitLimits) -> Recipe:
    """The paper's recipe with the fields the request set; service limits on top of the model's."""
    raw = {f.name: getattr(recipe, f.name) for f in recipe.DESCRIPTOR.fields if recipe.HasField(f.name)}
    if "mode" in raw and raw["mode"] not in SUBMITTED_MODES:
        raise InvalidArgument(
            f"spec.recipe.mode: {shown(raw['mode'])} is not one of {', '.join(SUBMITTED_MODES)}",
            field="spec.recipe.mode",
        )
    result = validated(Recipe, raw, field="spec.recipe")
    if result.steps is not None and result.steps > limits.max_steps:
        raise InvalidArgument(
            f"spec.recipe.steps: {result.steps} exceeds this service's limit {limits.max_steps}",
            field="spec.recipe.steps",
        )
    if result.num_workers > limits.max_workers:
        raise InvalidArgument(
            f"spec.recipe.num_workers: {result.num_workers} exceeds this service's limit {limits.max_workers}",
            field="spec.recipe.num_workers",
        )
    return result


def check_image(data: bytes, limits: SubmitLimits, *, field: str) -> str:
    """Size, format and decodability of one encoded image; returns its file suffix."""
    if not data:
        raise InvalidArgument(f"{field}: the image is empty", field=field)
    if len(data) > limits.max_image_bytes:
        raise InvalidArgument(f"{field}: {len(data)} bytes exceeds the limit of {limits.max_image_bytes}", field=field)
    try:
        with Image.open(io.BytesIO(data)) as image:
            if max(image.size) > limits.max_image_side:
                raise InvalidArgument(
                    f"{field}: {image.width}×{image.height} exceeds the largest side {limits.max_image_side}",
                    field=field,
                )
            if image.format not in FORMATS:
                raise InvalidArgument(f"{field}: format {image.format} is not PNG or JPEG", field=field)
            image.load()
            return FORMATS[image.format]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InvalidArgument(f"{field}: not a decodable PNG/JPEG ({e})", field=field) from e


def server_path(uri: str, roots: Sequence[Path], *, field: str, kind: str = "file") -> Path:
    """The real path (symlinks and '..' resolved) of a file (or folder) a request names on this
    server: a plain path or a file:// URI under one of `roots` (real paths themselves).

    Outside the roots, and missing or of the other kind inside them, give one message, so that no
    caller learns what exists on the server."""
    if "://" in uri and not uri.startswith("file://"):
        raise InvalidArgument(f"{field}: only local paths and file:// URIs are allowed, not {shown(uri)}", field=field)
    path = Path(uri.removeprefix("file://"))
    if not path.is_absolute():
        raise InvalidArgument(f"{field}: {shown(uri)} must be an absolute path", field=field)
    real = Path(os.path.realpath(path))
    inside = any(real.is_relative_to(root) for root in roots)
    if not inside or not (real.is_dir() if kind == "folder" else real.is_file()):
        raise unreadable(field=field, kind=kind)
    return real


def unreadable(*, field: str, kind: str = "file") -> InvalidArgument:
    """The one refusal of a server path: it names the field, not the path, so that it reads the same
    whatever the server holds."""
    return InvalidArgument(
        f"{field}: not a {kind} this service may read; upload the images, or ask the operator which "
        "server folders are allowed (allowed_image_roots)",
        field=field,
    )


def shown(value: str, limit: int = 200) -> str:
    """`value` for an error message, cut so that a huge input is not echoed back whole."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


class Submission:
    """Collects one Submit stream into `job_dir`, validating each message as it arrives."""

    def __init__(self, job_dir: Path, limits: SubmitLimits, *, roots: Sequence[Path] = ()) -> None:
        """`roots`: the server folders image_uris and regularization_uri may name (see `server_path`)."""
        self.job_dir = job_dir
        self.limits = limits
        self.roots = [Path(os.path.realpath(root)) for root in roots]
        self.referenced: list[list[Path]] = []
        self.reg_dirs: list[Path | None] = []
        self.spec: training_pb2.TrainingSpec | None = None
        self.recipe: Recipe | None = None
        self.uploads: list[list[tuple[Path, list[str]]]] = []
        self.total_bytes = 0
        self.count = 0

    def accept(self, message: training_pb2.SubmitRequest) -> None:
        part = message.WhichOneof("part")
        if self.spec is None:
            if part != "spec":
                raise InvalidArgument("the first Submit message must carry the spec", field="spec")
            self._accept_spec(message.spec)
        elif part == "image":
            self._accept_image(message.image)
        else:
            raise InvalidArgument("only the first Submit message may carry a spec", field="spec")

    def _accept_spec(self, spec: training_pb2.TrainingSpec) -> None:
        count = len(spec.concepts)
        if not 1 <= count <= self.limits.max_concepts:
            raise InvalidArgument(
                f"spec.concepts: {count} concepts; give 1 to {self.limits.max_concepts}", field="spec.concepts"
            )
        self.recipe = recipe_from_proto(spec.recipe, self.limits)
        for index, concept in enumerate(spec.concepts):
            field = f"spec.concepts[{index}]"
            if concept.captions and len(concept.captions) not in (1, len(concept.image_uris)):
                raise InvalidArgument(
                    f"{field}.captions: {len(concept.captions)} captions for {len(concept.image_uris)} image_uris; "
                    "give none, one for all images, or one per image_uri",
                    field=f"{field}.captions",
                )
            if concept.alternative_captions and len(concept.alternative_captions) != len(concept.image_uris):
                raise InvalidArgument(
                    f"{field}.alternative_captions: {len(concept.alternative_captions)} entries for "
                    f"{len(concept.image_uris)} image_uris; give none or one per image_uri",
                    field=f"{field}.alternative_captions",
                )
            if len(concept.image_uris) > self.limits.max_images_per_concept:
                raise InvalidArgument(
                    f"{field}.image_uris: {len(concept.image_uris)} images; at most "
                    f"{self.limits.max_images_per_concept} per concept",
                    field=f"{field}.image_uris",
                )
            self.referenced.append(
                [
                    self._copy_referenced(
                        uri, field=f"{field}.image_uris[{number}]", concept_index=index, number=number
                    )
                    for number, uri in enumerate(concept.image_uris)
                ]
            )
            self.reg_dirs.append(self._reg_dir(concept.regularization_uri, field=f"{field}.regularization_uri"))
        self.spec = spec
        self.uploads = [[] for _ in spec.concepts]

    def _copy_referenced(self, uri: str, *, field: str, concept_index: int, number: int) -> Path:
        """Check a referenced image and copy it into the job: the job reads what was checked, even
        if the server file changes later."""
        path = server_path(uri, self.roots, field=field)
        try:
            size = path.stat().st_size
            if size > self.limits.max_image_bytes:
                raise InvalidArgument(f"{field}: {shown(uri)} exceeds {self.limits.max_image_bytes} bytes", field=field)
            data = path.read_bytes()
        except OSError as e:
            raise unreadable(field=field) from e
        self._count_bytes(len(data), field=field)
        suffix = check_image(data, self.limits, field=field)
        copy = self.job_dir / "images" / str(concept_index) / f"uri-{number:04d}{suffix}"
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(data)
        return copy

    def _count_bytes(self, size: int, *, field: str) -> None:
        self.total_bytes += size
        if self.total_bytes > self.limits.max_total_bytes:
            raise InvalidArgument(f"{field}: the images exceed {self.limits.max_total_bytes} bytes in all", field=field)

    def _reg_dir(self, uri: str, *, field: str) -> Path | None:
        if not uri:
            return None
        folder = server_path(uri, self.roots, field=field, kind="folder")
        if not (folder / CAPTIONS_FILE).is_file():
            raise InvalidArgument(f"{field}: {shown(uri)} has no {CAPTIONS_FILE}", field=field)
        return folder

    def _accept_image(self, upload: training_pb2.ImageUpload) -> None:
        field = f"image[{self.count}]"
        self.count += 1
        if upload.concept_index >= len(self.uploads):
            raise InvalidArgument(
                f"{field}.concept_index: {upload.concept_index} but the spec has {len(self.uploads)} concepts",
                field=f"{field}.concept_index",
            )
        images = self.uploads[upload.concept_index]
        uris = len(self.spec.concepts[upload.concept_index].image_uris)  # type: ignore[union-attr]
        if len(images) + uris >= self.limits.max_images_per_concept:
            raise InvalidArgument(
                f"{field}: concept {upload.concept_index} already has the most images allowed "
                f"({self.limits.max_images_per_concept})",
                field=f"{field}.concept_index",
            )
        self._count_bytes(len(upload.data), field=f"{field}.data")
        suffix = check_image(upload.data, self.limits, field=f"{field}.data")
        path = self.job_dir / "images" / str(upload.concept_index) / f"{len(images):04d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(upload.data)
        images.append((path, [upload.caption, *upload.alternative_captions]))

    def train_config(self, *, base_model: str, output_dir: Path) -> TrainConfig:
        """The run the submission describes; call after the stream ended."""
        if self.spec is None or self.recipe is None:
            raise InvalidArgument("the Submit stream carried no spec", field="spec")
        concepts = [self._concept(index, spec) for index, spec in enumerate(self.spec.concepts)]
        raw = {
            "base_model": base_model,
            "concepts": concepts,
            "recipe": self.recipe,
            "output_dir": str(output_dir),
            "bundle_id": self.spec.bundle_id or None,
        }
        return validated(TrainConfig, raw, field="spec")

    def _concept(self, index: int, spec: training_pb2.ConceptSpec) -> ConceptConfig:
        field = f"spec.concepts[{index}]"
        uploads = self.uploads[index]
        images = [str(path) for path in self.referenced[index]] + [str(path) for path, _ in uploads]
        if not images:
            raise InvalidArgument(
                f"{field}: concept {spec.concept_id!r} has no images; upload or reference at least 1",
                field=f"{field}.image_uris",
            )
        shared = spec.captions[0] if len(spec.captions) == 1 else ""
        uri_captions = (
            list(spec.captions) if len(spec.captions) == len(spec.image_uris) else [shared] * len(spec.image_uris)
        )
        uri_alternatives = [list(a.captions) for a in spec.alternative_captions] or [[] for _ in spec.image_uris]
        uri_wordings = [[caption, *more] for caption, more in zip(uri_captions, uri_alternatives, strict=True)]
        upload_wordings = [[wordings[0] or shared, *wordings[1:]] for _, wordings in uploads]
        captions = uri_wordings + upload_wordings
        if spec.regularization not in REGULARIZATION:  # proto3 enums are open: any number arrives
            raise InvalidArgument(
                f"{field}.regularization: {spec.regularization} is not a RegularizationMode",
                field=f"{field}.regularization",
            )
        raw = {
            "concept_id": spec.concept_id,
            "category": spec.category,
            "modifier_token": spec.modifier_token or None,
            "images": images,
            "captions": captions,
            "regularization": REGULARIZATION[spec.regularization],
            "reg_dir": str(self.reg_dirs[index]) if self.reg_dirs[index] else None,
        }
        return validated(ConceptConfig, raw, field=field)
