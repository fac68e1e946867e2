"""A GenerateRequest checked against the limits, before any work: every error names the field,
the value and the allowed range. Zero values mean "server default", as the proto documents.

Text that is echoed (request_id) or parsed (concept refs) is bounded first and then named by its
length, never repeated: an error message must stay small whatever the request held.

Prompts may hold any text but control characters other than tab, newline and carriage return: they
mean nothing to the tokenizer (which would drop or mangle them silently), a NUL cuts strings short
in C libraries and logs, and pasted text never needs them. Format characters (zero-width joiners,
direction marks) stay allowed: real text in many scripts and emoji sequences use them.
"""

from __future__ import annotations

import math
import re
import secrets
import unicodedata
from dataclasses import dataclass

from proto import generator_pb2
from serving.concepts.merger import MultiConcept
from serving.config import RequestLimits
from serving.engine.request import GenerationRequest
from serving.engine.schedulers import DEFAULT, SCHEDULERS
from shared.errors import InvalidArgument

MODES = {
    generator_pb2.MULTI_CONCEPT_MODE_UNSPECIFIED: MultiConcept.MERGE,
    generator_pb2.MERGE: MultiConcept.MERGE,
    generator_pb2.NAIVE_SUM: MultiConcept.NAIVE_SUM,
}
MAX_SEED = 2**63 - 1
MAX_REQUEST_ID_CHARS = 128
REQUEST_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_REQUEST_ID_CHARS}}}")
"""Printable ASCII without spaces: what request ids (UUIDs, trace ids) are made of, safe to log."""
MAX_REF_CHARS = 96
"""Longer than any valid "id@version" (a 63-character id, '@', a 20-digit version)."""
ALLOWED_CONTROLS = frozenset("\t\n\r")
SIZE_CONDITIONING = ("original_width", "original_height", "crop_top", "crop_left", "target_width", "target_height")
"""SDXL's micro-conditioning fields: the UNet of other families has no input for them."""
MAX_SIZE_CONDITIONING_PX = 16384
"""Bound on each size-conditioning value: beyond any image size SDXL sees, so it refuses only
numbers that are no size at all."""


@dataclass(frozen=True)
class GenerateParams:
    """A validated request with every default filled in: the engine's request (its `delta` is
    concept resolution's to fill in) and what only serving uses, the concepts to resolve and the id
    to answer with."""

    generation: GenerationRequest
    concepts: tuple[str, ...]
    mode: MultiConcept
    request_id: str


def _within(field: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise InvalidArgument(f"{field} {value:g} is outside [{low:g}, {high:g}]", field=field)


def _shown(text: str, most: int = 40) -> str:
    """`text` quoted for an error message, cut after `most` characters."""
    return repr(text) if len(text) <= most else f"{text[:most]!r}… ({len(text)} characters)"


def _check_text(field: str, text: str) -> None:
    for position, char in enumerate(text):
        if unicodedata.category(char) == "Cc" and char not in ALLOWED_CONTROLS:
            raise InvalidArgument(
                f"{field} holds the control character U+{ord(char):04X} at position {position}; remove it",
                field=field,
            )


def _check_request_id(request_id: str) -> None:
    if request_id and not REQUEST_ID.fullmatch(request_id):
        raise InvalidArgument(
            f"request_id ({len(request_id)} characters) must be 1 to {MAX_REQUEST_ID_CHARS} printable ASCII "
            "characters without spaces",
            field="request_id",
        )


def _check_size_conditioning(request: generator_pb2.GenerateRequest, *, accepted: bool) -> None:
    for field in SIZE_CONDITIONING:
        value = getattr(request, field)
        if value and not accepted:
            raise InvalidArgument(
                f"{field} {value} is size conditioning, which only SDXL base models take; "
                "this replica serves another family: leave it 0",
                field=field,
            )
        if value > MAX_SIZE_CONDITIONING_PX:
            raise InvalidArgument(f"{field} {value} exceeds {MAX_SIZE_CONDITIONING_PX} pixels", field=field)


def validate_request(
    request: generator_pb2.GenerateRequest,
    limits: RequestLimits,
    *,
    default_size: int,
    size_multiple: int,
    size_conditioning: bool,
) -> GenerateParams:
    """`size_conditioning`: whether the base model takes SDXL's size and crop fields."""
    if not request.prompt.strip():
        raise InvalidArgument("prompt is empty; describe the image to generate", field="prompt")
    for field in ("prompt", "negative_prompt"):
        length = len(getattr(request, field))
        if length > limits.max_prompt_chars:
            raise InvalidArgument(
                f"{field} has {length} characters; the limit is {limits.max_prompt_chars}", field=field
            )
        _check_text(field, getattr(request, field))
    if len(request.concepts) > limits.max_concepts:
        raise InvalidArgument(
            f"concepts names {len(request.concepts)} concepts; the limit is {limits.max_concepts}", field="concepts"
        )
    for i, ref in enumerate(request.concepts):
        if len(ref) > MAX_REF_CHARS:
            raise InvalidArgument(
                f"concepts[{i}] has {len(ref)} characters; a ref is 'id' or 'id@version', at most {MAX_REF_CHARS}",
                field="concepts",
            )
    _check_request_id(request.request_id)
    if request.multi_concept not in MODES:
        raise InvalidArgument(f"multi_concept {request.multi_concept} is not a known mode", field="multi_concept")
    steps = request.steps or limits.default_steps
    _within("steps", steps, limits.min_steps, limits.max_steps)
    guidance = request.guidance_scale or limits.default_guidance_scale
    if not math.isfinite(guidance):
        raise InvalidArgument(f"guidance_scale {guidance} is not a finite number", field="guidance_scale")
    _within("guidance_scale", guidance, limits.min_guidance_scale, limits.max_guidance_scale)
    width, height = request.width or default_size, request.height or default_size
    for field, size, most in (("width", width, limits.max_width_px), ("height", height, limits.max_height_px)):
        _within(field, size, size_multiple, most)
        if size % size_multiple:
            raise InvalidArgument(f"{field} {size} must be a multiple of {size_multiple}", field=field)
    num_images = request.num_images or 1
    _within("num_images", num_images, 1, limits.max_num_images)
    scheduler = request.scheduler or limits.default_scheduler
    if scheduler not in (DEFAULT, *SCHEDULERS):
        raise InvalidArgument(
            f"scheduler {_shown(scheduler)} is not one of {sorted([DEFAULT, *SCHEDULERS])}", field="scheduler"
        )
    if request.HasField("seed") and request.seed > MAX_SEED:
        raise InvalidArgument(f"seed {request.seed} exceeds {MAX_SEED}", field="seed")
    _check_size_conditioning(request, accepted=size_conditioning)
    generation = GenerationRequest(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        steps=steps,
        guidance_scale=guidance,
        seed=request.seed if request.HasField("seed") else secrets.randbelow(MAX_SEED),
        height=height,
        width=width,
        num_images=num_images,
        scheduler=scheduler,
        # stock diffusers' defaults where the request left the fields 0 (always, on other families)
        original_size=(request.original_height or height, request.original_width or width),
        crop_top_left=(request.crop_top, request.crop_left),
        target_size=(request.target_height or height, request.target_width or width),
    )
    return GenerateParams(
        generation,
        concepts=tuple(request.concepts),
        mode=MODES[request.multi_concept],
        request_id=request.request_id or secrets.token_hex(8),
    )
