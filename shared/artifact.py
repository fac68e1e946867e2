"""The concept artifact: one `.safetensors` file with the deltas, the modifier-token embeddings
and a JSON header. Nothing here unpickles; every load validates before anything is used.

Tensor names:
  delta.{layer}.{projection}.weight          dense ΔW (out, in)
  delta.{layer}.{projection}.up / .down      low-rank factors, ΔW = up @ down
  token.{modifier token}                     embedding (dim,); with two text encoders (SDXL) the
                                             header's `token_dims` splits it: clip_l, then clip_g
The header lives in the safetensors metadata under the key "cdserve".
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from pydantic import BaseModel as Model
from pydantic import ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from shared.config import validation_error
from shared.delta import PROJECTIONS, ConceptDelta, DeltaWeight
from shared.errors import IncompatibleBase, InvalidArtifact, TooLarge
from shared.spec import FAMILY_NAMES, BaseSpec

FORMAT = "cdserve.concept/1"
METADATA_KEY = "cdserve"
CONCEPT_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
MODIFIER_TOKEN_PATTERN = re.compile(r"<[a-z0-9][a-z0-9._-]{0,62}>")
DELTA_TENSOR = re.compile(r"delta\.(.+)\.(to_[a-z]+)\.(weight|up|down)")
TOKEN_PREFIX = "token."
DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}
"""The safetensors dtypes a delta may use."""
READ_CHUNK_BYTES = 2**20


class ConceptPart(Model):
    """One learned concept inside an artifact (a joint bundle has several)."""

    model_config = ConfigDict(extra="forbid")

    modifier_token: str = Field(description="The V* token, e.g. '<cd-dog>'; appears in prompts verbatim")
    category: str = Field(description="The category word that follows the token, e.g. 'dog'")
    captions: list[str] = Field(description="Training captions; the closed-form merge needs them")


class ArtifactHeader(Model):
    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    concept_id: str
    version: int = Field(0, ge=0, description="0 until the registry assigns one")
    concepts: list[ConceptPart] = Field(min_length=1)
    base_fingerprint: str
    base_family: str | None = Field(
        None, description="'sd1', 'sd2' or 'sdxl'; absent in artifacts written before SDXL (all SD 1.x/2.x)"
    )
    token_dims: list[int] | None = Field(
        None, description="Widths of a token's per-encoder embeddings (SDXL: clip_l, clip_g), stored concatenated"
    )
    delta_kind: str = Field(description="'full', 'lowrank' or 'merged'")
    recipe: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    digest: str = Field("", description="sha256 of the tensors and of this header without the digest")

    @property
    def modifier_tokens(self) -> list[str]:
        return [part.modifier_token for part in self.concepts]


class ArtifactLimits(Model):
    model_config = ConfigDict(extra="forbid")

    max_bytes: int = Field(256 * 2**20, description="Largest artifact file accepted")
    max_header_bytes: int = Field(4 * 2**20, description="Largest JSON header accepted")
    max_concepts: int = Field(16, description="Largest number of modifier tokens in one artifact")
    max_captions: int = Field(1024, description="Largest number of captions per concept")
    max_category_chars: int = Field(64, description="Longest category word(s); it is listed in every ConceptInfo")


class ConceptArtifact:
    """A validated header with its delta."""

    def __init__(self, header: ArtifactHeader, delta: ConceptDelta) -> None:
        self.header = header
        self.delta = delta

    @property
    def concept_id(self) -> str:
        return self.header.concept_id


def _tensors_of(delta: ConceptDelta) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for layer, projections in delta.layers.items():
        for projection, weight in projections.items():
            prefix = f"delta.{layer}.{projection}"
            if weight.is_low_rank:
                tensors[f"{prefix}.up"] = weight.up  # type: ignore[assignment]
                tensors[f"{prefix}.down"] = weight.down  # type: ignore[assignment]
            else:
                tensors[f"{prefix}.weight"] = weight.dense  # type: ignore[assignment]
    for token, embedding in delta.token_embeddings.items():
        tensors[f"{TOKEN_PREFIX}{token}"] = embedding
    return {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}


def content_digest(header: ArtifactHeader, tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes) and the header without its digest."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(_digest_text(header))
    return digest.hexdigest()


def _digest_text(header: ArtifactHeader) -> bytes:
    """The header's part of the content digest: itself without the digest. Fields that older
    artifacts lack are left out while unset, so that their digests still hold."""
    unset = {field for field in ("base_family", "token_dims") if getattr(header, field) is None}
    return header.model_copy(update={"digest": ""}).model_dump_json(exclude=unset).encode()


def to_bytes(header: ArtifactHeader, delta: ConceptDelta) -> bytes:
    """Serialise, stamping the content digest into the header."""
    tensors = _tensors_of(delta)
    stamped = header.model_copy(update={"digest": content_digest(header, tensors)})
    return save_safetensors_bytes(tensors, metadata={METADATA_KEY: stamped.model_dump_json()})


def save(header: ArtifactHeader, delta: ConceptDelta, path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(to_bytes(header, delta))
    return path


def load(path: str | Path, *, base: BaseSpec | None = None, limits: ArtifactLimits | None = None) -> ConceptArtifact:
    path = Path(path)
    limits = limits or ArtifactLimits()
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise TooLarge(f"concept file {path.name!r} is {size} bytes; the limit is {limits.max_bytes}")
    return from_bytes(path.read_bytes(), base=base, limits=limits, name=path.name)


def from_bytes(
    data: bytes,
    *,
    base: BaseSpec | None = None,
    limits: ArtifactLimits | None = None,
    name: str = "artifact",
) -> ConceptArtifact:
    """Decode and fully validate an artifact: structure, dtypes, finiteness, digest, and the base."""
    file = io.BytesIO(data)
    index = read_index(file, len(data), limits=limits, name=name)
    verify_content(file, index, base=base, name=name)
    try:
        tensors = load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise InvalidArtifact(f"{name}: tensor data is corrupt or truncated ({e})") from e
    return ConceptArtifact(index.header, _delta_of(tensors))


# -- validation without loading: the safetensors index, then the content streamed in chunks --------


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in the file, as its safetensors header says."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    """Absolute file offset of its first byte."""
    end: int


@dataclass(frozen=True)
class DeltaShape:
    """One projection's ΔW as stored: its (out, in), whatever the rank, and the rank (0: dense)."""

    matrix: tuple[int, int]
    rank: int


@dataclass(frozen=True)
class ArtifactIndex:
    """An artifact's header and tensor layout, checked for structure; no tensor read yet."""

    header: ArtifactHeader
    tensors: dict[str, TensorEntry]
    layers: dict[str, dict[str, DeltaShape]]

    @property
    def max_rank(self) -> int:
        """Largest rank over low-rank deltas; 0 when every delta is dense."""
        return max((d.rank for layer in self.layers.values() for d in layer.values()), default=0)


def read_index(
    file: BinaryIO, size: int, *, limits: ArtifactLimits | None = None, name: str = "artifact"
) -> ArtifactIndex:
    """Parse and check the safetensors header of a `size`-byte file: the cdserve header, every
    tensor's dtype, shape and extent, and the structure of the delta. Reads only the header.

    The metadata may hold the cdserve header and nothing else: anything beside it would ride along
    uncovered by the content digest (and could be megabytes of anything)."""
    limits = limits or ArtifactLimits()
    if size > limits.max_bytes:
        raise TooLarge(f"{name}: {size} bytes; the limit is {limits.max_bytes} (max_bytes)")
    if size < 8:
        raise InvalidArtifact(f"{name}: {size} bytes is too short to be a safetensors file")
    file.seek(0)
    header_len = int.from_bytes(file.read(8), "little")
    if header_len > min(limits.max_header_bytes, size - 8):
        raise InvalidArtifact(
            f"{name}: safetensors header length {header_len} is impossible or above the limit "
            f"{limits.max_header_bytes} (max_header_bytes)"
        )
    try:
        raw = json.loads(file.read(header_len))
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArtifact(f"{name}: the safetensors header is not valid JSON") from e
    if not isinstance(raw, dict):
        raise InvalidArtifact(f"{name}: the safetensors header is not a JSON object")
    metadata = raw.pop("__metadata__", None)
    if not isinstance(metadata, dict) or not isinstance(metadata.get(METADATA_KEY), str):
        raise InvalidArtifact(f"{name}: no '{METADATA_KEY}' header; not a cdserve concept file")
    if extra := sorted(set(metadata) - {METADATA_KEY}):
        raise InvalidArtifact(
            f"{name}: safetensors metadata keys {extra} are not part of a cdserve artifact; only "
            f"'{METADATA_KEY}' is allowed, so that the content digest covers everything",
            field="metadata",
        )
    header = _parse_header(metadata[METADATA_KEY], limits, name)
    tensors = _tensor_entries(raw, 8 + header_len, size, name)
    return ArtifactIndex(header, tensors, _layout(header, tensors, name))


def verify_content(
    file: BinaryIO, index: ArtifactIndex, *, base: BaseSpec | None = None, name: str = "artifact"
) -> None:
    """Check the shapes against `base`, then stream every tensor through the finiteness check and
    the content digest, `READ_CHUNK_BYTES` at a time: memory stays bounded whatever the file's size."""
    if base is not None:
        check_compatible(index, base, name=name)
    digest = hashlib.sha256()
    buffer = bytearray(READ_CHUNK_BYTES)
    for key in sorted(index.tensors):
        entry = index.tensors[key]
        digest.update(f"{key}|{entry.dtype}|{entry.shape}|".encode())
        file.seek(entry.start)
        position = entry.start
        while position < entry.end:
            chunk = memoryview(buffer)[: min(READ_CHUNK_BYTES, entry.end - position)]
            read = file.readinto(chunk)  # type: ignore[attr-defined]  # typeshed's BinaryIO lacks readinto; callers pass buffered files
            if not read:
                raise InvalidArtifact(f"{name}: tensor data is truncated at byte {position}")
            digest.update(memoryview(buffer)[:read])
            values = torch.frombuffer(buffer, dtype=entry.dtype, count=read // entry.dtype.itemsize)
            if not bool(torch.isfinite(values).all()):
                raise InvalidArtifact(f"{name}: tensor {key!r} holds NaN or infinite values")
            position += read
    digest.update(_digest_text(index.header))
    if index.header.digest != digest.hexdigest():
        raise InvalidArtifact(
            f"{name}: content digest mismatch (header says {index.header.digest[:16]}…, content is "
            f"{digest.hexdigest()[:16]}…); the file was altered or corrupted",
            field="digest",
        )


def _parse_header(text: str, limits: ArtifactLimits, name: str) -> ArtifactHeader:
    try:
        header = ArtifactHeader.model_validate_json(text)
    except ValidationError as e:
        raise validation_error(e, source=f"{name}: header field", error=InvalidArtifact) from e
    _check_header(header, limits, name)
    return header


def _check_header(header: ArtifactHeader, limits: ArtifactLimits, name: str) -> None:
    if header.format != FORMAT:
        raise InvalidArtifact(f"{name}: format {header.format!r} is not {FORMAT!r}", field="format")
    if header.base_family is not None and header.base_family not in FAMILY_NAMES:
        raise InvalidArtifact(
            f"{name}: base_family {header.base_family!r} is not one of {sorted(FAMILY_NAMES)}", field="base_family"
        )
    if header.token_dims is not None and (len(header.token_dims) != 2 or min(header.token_dims) < 1):
        raise InvalidArtifact(
            f"{name}: token_dims {header.token_dims} must be two positive widths (clip_l, clip_g)", field="token_dims"
        )
    if not CONCEPT_ID_PATTERN.fullmatch(header.concept_id):
        raise InvalidArtifact(
            f"{name}: concept_id {header.concept_id!r} must match {CONCEPT_ID_PATTERN.pattern}", field="concept_id"
        )
    if header.delta_kind not in ("full", "lowrank", "merged"):
        raise InvalidArtifact(f"{name}: delta_kind {header.delta_kind!r} is unknown", field="delta_kind")
    if len(header.concepts) > limits.max_concepts:
        raise TooLarge(f"{name}: {len(header.concepts)} concepts; the limit is {limits.max_concepts}")
    tokens = header.modifier_tokens
    if len(set(tokens)) != len(tokens):
        raise InvalidArtifact(f"{name}: modifier tokens {tokens} repeat", field="concepts")
    for part in header.concepts:
        if not MODIFIER_TOKEN_PATTERN.fullmatch(part.modifier_token):
            raise InvalidArtifact(
                f"{name}: modifier token {part.modifier_token!r} must look like '<name>' "
                f"({MODIFIER_TOKEN_PATTERN.pattern})",
                field="concepts.modifier_token",
            )
        if len(part.category) > limits.max_category_chars:
            raise TooLarge(
                f"{name}: category {part.category!r} is {len(part.category)} characters; the limit is "
                f"{limits.max_category_chars}",
                field="concepts.category",
            )
        if len(part.captions) > limits.max_captions:
            raise TooLarge(f"{name}: {len(part.captions)} captions; the limit is {limits.max_captions}")
    normalised = len(header.model_dump_json().encode())
    if normalised > limits.max_header_bytes:
        raise TooLarge(
            f"{name}: the header is {normalised} bytes once normalised; the limit is {limits.max_header_bytes} "
            "(max_header_bytes)",
            field="header",
        )


def _tensor_entries(raw: dict[str, Any], data_start: int, size: int, name: str) -> dict[str, TensorEntry]:
    """Every tensor's dtype, shape and extent; together they must tile the data exactly."""
    entries: dict[str, TensorEntry] = {}
    for key, info in raw.items():
        try:
            dtype = DTYPES[info["dtype"]]
            shape = tuple(info["shape"])
            begin, end = info["data_offsets"]
            if not all(isinstance(n, int) and n >= 0 for n in (*shape, begin, end)):
                raise TypeError("negative or non-integer")
        except KeyError as e:
            allowed = ", ".join(DTYPES)
            raise InvalidArtifact(f"{name}: tensor {key!r} lacks a field or has a dtype other than {allowed}") from e
        except (TypeError, ValueError) as e:
            raise InvalidArtifact(f"{name}: tensor {key!r} has a malformed shape or data_offsets") from e
        if end - begin != math.prod(shape) * dtype.itemsize:
            size_needed = math.prod(shape) * dtype.itemsize
            raise InvalidArtifact(f"{name}: tensor {key!r} spans {end - begin} bytes; its shape needs {size_needed}")
        entries[key] = TensorEntry(dtype, shape, data_start + begin, data_start + end)
    position = data_start
    for entry in sorted(entries.values(), key=lambda e: e.start):
        if entry.start != position:
            raise InvalidArtifact(f"{name}: the tensors' data_offsets overlap or leave gaps")
        position = entry.end
    if position != size:
        raise InvalidArtifact(f"{name}: tensor data is corrupt or truncated (ends at byte {position} of {size})")
    return entries


def _layout(header: ArtifactHeader, tensors: dict[str, TensorEntry], name: str) -> dict[str, dict[str, DeltaShape]]:
    """layer → projection → ΔW shape, from the tensor names; every name and shape must fit the format."""
    parts: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}
    tokens: set[str] = set()
    for key, entry in tensors.items():
        if key.startswith(TOKEN_PREFIX):
            if len(entry.shape) != 1:
                raise InvalidArtifact(f"{name}: embedding {key!r} has shape {entry.shape}; expected (dim,)")
            tokens.add(key[len(TOKEN_PREFIX) :])
            continue
        match = DELTA_TENSOR.fullmatch(key)
        if not match or match.group(2) not in PROJECTIONS:
            raise InvalidArtifact(f"{name}: unexpected tensor {key!r}")
        parts.setdefault((match.group(1), match.group(2)), {})[match.group(3)] = entry.shape
    if tokens != set(header.modifier_tokens):
        raise InvalidArtifact(
            f"{name}: embeddings for {sorted(tokens)} but the header names {sorted(header.modifier_tokens)}"
        )
    layers: dict[str, dict[str, DeltaShape]] = {}
    for (layer, projection), found in parts.items():
        layers.setdefault(layer, {})[projection] = _delta_shape(found, f"{name}: {layer}.{projection}")
    if header.delta_kind == "full" and any(d.rank for layer in layers.values() for d in layer.values()):
        raise InvalidArtifact(f"{name}: delta_kind 'full' but low-rank factors are stored", field="delta_kind")
    return layers


def _delta_shape(found: dict[str, tuple[int, ...]], where: str) -> DeltaShape:
    if set(found) == {"weight"}:
        dense = found["weight"]
        if len(dense) != 2:
            raise InvalidArtifact(f"{where}: dense delta has shape {dense}; expected (out, in)")
        return DeltaShape((dense[0], dense[1]), 0)
    if set(found) == {"up", "down"}:
        up, down = found["up"], found["down"]
        if len(up) != 2 or len(down) != 2 or up[1] != down[0]:
            raise InvalidArtifact(f"{where}: low-rank factors up {up} and down {down} do not chain")
        return DeltaShape((up[0], down[1]), up[1])
    raise InvalidArtifact(f"{where}: needs either 'weight' or both 'up' and 'down', found {sorted(found)}")


def _delta_of(tensors: dict[str, torch.Tensor]) -> ConceptDelta:
    """The delta of tensors whose names and shapes `read_index` has checked."""
    delta = ConceptDelta()
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        if key.startswith(TOKEN_PREFIX):
            delta.token_embeddings[key[len(TOKEN_PREFIX) :]] = tensor
        else:
            layer, projection, param = DELTA_TENSOR.fullmatch(key).groups()  # type: ignore[union-attr]
            parts.setdefault((layer, projection), {})[param] = tensor
    for (layer, projection), found in parts.items():
        dense = found.get("weight")
        weight = DeltaWeight(dense=dense) if dense is not None else DeltaWeight.low_rank(found["up"], found["down"])
        delta.layers.setdefault(layer, {})[projection] = weight
    return delta


def check_compatible(index: ArtifactIndex, base: BaseSpec, *, name: str = "artifact") -> None:
    """Raise unless the artifact was made for `base`: same family, fingerprint and token split, known
    layers, right shapes."""
    header = index.header
    declared = header.base_family
    if (base.family == "sdxl") if declared is None else (declared != base.family):
        made_for = FAMILY_NAMES[declared] if declared else "SD 1.x/2.x"
        raise IncompatibleBase(
            f"{name}: concept {header.concept_id!r} was made for an {made_for} base model and this base model "
            f"is {FAMILY_NAMES.get(base.family, base.family)}; retrain or import it for this base",
            field="base_family",
        )
    if tuple(header.token_dims or ()) != base.token_dims:
        raise InvalidArtifact(
            f"{name}: token embeddings split as {header.token_dims}; this base's text encoders need "
            f"{list(base.token_dims) or None}",
            field="token_dims",
        )
    if header.base_fingerprint != base.fingerprint:
        raise IncompatibleBase(
            f"{name}: concept {header.concept_id!r} was trained for base model {header.base_fingerprint!r}, "
            f"this base model is {base.fingerprint!r}; retrain or publish it for this base",
            field="base_fingerprint",
        )
    layers = base.layer_map
    for layer_name, projections in index.layers.items():
        layer = layers.get(layer_name)
        if layer is None:
            raise InvalidArtifact(f"{name}: layer {layer_name!r} is not a cross-attention layer of the base model")
        for projection, shape in projections.items():
            expected = layer.delta_shape(projection)
            if shape.matrix != expected:
                raise InvalidArtifact(
                    f"{name}: {layer_name}.{projection} delta has shape {shape.matrix}; the base needs {expected}"
                )
    for token in header.modifier_tokens:
        width = index.tensors[f"{TOKEN_PREFIX}{token}"].shape[0]
        if width != base.token_dim:
            raise InvalidArtifact(f"{name}: embedding of {token!r} has width {width}; the base needs {base.token_dim}")
