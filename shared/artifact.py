"""The concept artifact: one `.safetensors` file with the deltas, the modifier-token embeddings
and a JSON header. Nothing here unpickles; every load validates before anything is used.

Tensor names:
  delta.{layer}.{projection}.weight          dense ΔW (out, in)
  delta.{layer}.{projection}.up / .down      low-rank factors, ΔW = up @ down
  token.{modifier token}                     embedding (dim,)
The header lives in the safetensors metadata under the key "cdserve".
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel as Model
from pydantic import ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from shared.spec import BaseSpec
from shared.delta import PROJECTIONS, ConceptDelta, DeltaWeight
from shared.errors import IncompatibleBase, InvalidArtifact, TooLarge

FORMAT = "cdserve.concept/1"
METADATA_KEY = "cdserve"
ALLOWED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
CONCEPT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MODIFIER_TOKEN_PATTERN = re.compile(r"^<[a-z0-9][a-z0-9._-]{0,62}>$")


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
        tensors[f"token.{token}"] = embedding
    return {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}


def content_digest(header: ArtifactHeader, tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes) and the header without its digest."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(header.model_copy(update={"digest": ""}).model_dump_json().encode())
    return digest.hexdigest()


def to_bytes(header: ArtifactHeader, delta: ConceptDelta) -> bytes:
    """Serialise, stamping the content digest into the header."""
    tensors = _tensors_of(delta)
    stamped = header.model_copy(update={"digest": content_digest(header, tensors)})
    return save_safetensors_bytes(tensors, metadata={METADATA_KEY: stamped.model_dump_json()})


def save(header: ArtifactHeader, delta: ConceptDelta, path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(to_bytes(header, delta))
    return path


def load(
    path: str | Path, *, base: BaseSpec | None = None, limits: ArtifactLimits | None = None
) -> ConceptArtifact:
    path = Path(path)
    limits = limits or ArtifactLimits()
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise TooLarge(f"concept file {path.name!r} is {size} bytes; the limit is {limits.max_bytes}")
    return from_bytes(path.read_bytes(), base=base, limits=limits, name=path.name)


def read_header(data: bytes, *, limits: ArtifactLimits | None = None, name: str = "artifact") -> ArtifactHeader:
    """Parse and schema-check the JSON header only (cheap: no tensor is decoded)."""
    limits = limits or ArtifactLimits()
    if len(data) < 8:
        raise InvalidArtifact(f"{name}: {len(data)} bytes is too short to be a safetensors file")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > min(limits.max_header_bytes, len(data) - 8):
        raise InvalidArtifact(f"{name}: safetensors header length {header_len} is impossible or too large")
    try:
        raw = json.loads(data[8 : 8 + header_len])
        metadata = raw.get("__metadata__") or {}
        text = metadata[METADATA_KEY]
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArtifact(f"{name}: the safetensors header is not valid JSON") from e
    except (KeyError, AttributeError, TypeError) as e:
        raise InvalidArtifact(f"{name}: no '{METADATA_KEY}' header; not a cdserve concept file") from e
    try:
        header = ArtifactHeader.model_validate_json(text)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidArtifact(f"{name}: header field {where!r}: {first['msg']}", field=where) from e
    _check_header(header, limits, name)
    return header


def _check_header(header: ArtifactHeader, limits: ArtifactLimits, name: str) -> None:
    if header.format != FORMAT:
        raise InvalidArtifact(f"{name}: format {header.format!r} is not {FORMAT!r}", field="format")
    if not CONCEPT_ID_PATTERN.match(header.concept_id):
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
        if not MODIFIER_TOKEN_PATTERN.match(part.modifier_token):
            raise InvalidArtifact(
                f"{name}: modifier token {part.modifier_token!r} must look like '<name>' "
                f"({MODIFIER_TOKEN_PATTERN.pattern})",
                field="concepts.modifier_token",
            )
        if len(part.captions) > limits.max_captions:
            raise TooLarge(f"{name}: {len(part.captions)} captions; the limit is {limits.max_captions}")


def from_bytes(
    data: bytes,
    *,
    base: BaseSpec | None = None,
    limits: ArtifactLimits | None = None,
    name: str = "artifact",
) -> ConceptArtifact:
    """Decode and fully validate an artifact: structure, dtypes, finiteness, digest, and the base."""
    limits = limits or ArtifactLimits()
    if len(data) > limits.max_bytes:
        raise TooLarge(f"{name}: {len(data)} bytes; the limit is {limits.max_bytes}")
    header = read_header(data, limits=limits, name=name)
    try:
        tensors = load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise InvalidArtifact(f"{name}: tensor data is corrupt or truncated ({e})") from e
    delta = _delta_from_tensors(tensors, header, name)
    expected = content_digest(header, tensors)
    if header.digest != expected:
        raise InvalidArtifact(
            f"{name}: content digest mismatch (header says {header.digest[:16]}…, content is {expected[:16]}…); "
            "the file was altered or corrupted",
            field="digest",
        )
    if base is not None:
        check_compatible(header, delta, base, name=name)
    return ConceptArtifact(header, delta)


def _delta_from_tensors(tensors: dict[str, torch.Tensor], header: ArtifactHeader, name: str) -> ConceptDelta:
    for key, tensor in tensors.items():
        if tensor.dtype not in ALLOWED_DTYPES:
            raise InvalidArtifact(f"{name}: tensor {key!r} has dtype {tensor.dtype}; allowed: fp16, bf16, fp32")
        if not bool(torch.isfinite(tensor).all()):
            raise InvalidArtifact(f"{name}: tensor {key!r} holds NaN or infinite values")
    delta = ConceptDelta()
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        if key.startswith("token."):
            delta.token_embeddings[key[len("token.") :]] = tensor
            continue
        match = re.match(r"^delta\.(.+)\.(to_[a-z]+)\.(weight|up|down)$", key)
        if not match or match.group(2) not in PROJECTIONS:
            raise InvalidArtifact(f"{name}: unexpected tensor {key!r}")
        parts.setdefault((match.group(1), match.group(2)), {})[match.group(3)] = tensor
    for (layer, projection), found in parts.items():
        delta.layers.setdefault(layer, {})[projection] = _delta_weight(found, f"{name}: {layer}.{projection}")
    if set(delta.token_embeddings) != set(header.modifier_tokens):
        raise InvalidArtifact(
            f"{name}: embeddings for {sorted(delta.token_embeddings)} but the header names "
            f"{sorted(header.modifier_tokens)}"
        )
    for token, embedding in delta.token_embeddings.items():
        if embedding.dim() != 1:
            raise InvalidArtifact(f"{name}: embedding of {token!r} has shape {tuple(embedding.shape)}; expected (dim,)")
    if header.delta_kind == "full" and delta.max_rank:
        raise InvalidArtifact(f"{name}: delta_kind 'full' but low-rank factors are stored", field="delta_kind")
    return delta


def _delta_weight(found: dict[str, torch.Tensor], where: str) -> DeltaWeight:
    if set(found) == {"weight"}:
        dense = found["weight"]
        if dense.dim() != 2:
            raise InvalidArtifact(f"{where}: dense delta has shape {tuple(dense.shape)}; expected (out, in)")
        return DeltaWeight(dense=dense)
    if set(found) == {"up", "down"}:
        up, down = found["up"], found["down"]
        if up.dim() != 2 or down.dim() != 2 or up.shape[1] != down.shape[0]:
            raise InvalidArtifact(
                f"{where}: low-rank factors up {tuple(up.shape)} and down {tuple(down.shape)} do not chain"
            )
        return DeltaWeight.low_rank(up, down)
    raise InvalidArtifact(f"{where}: needs either 'weight' or both 'up' and 'down', found {sorted(found)}")


def check_compatible(header: ArtifactHeader, delta: ConceptDelta, base: BaseSpec, *, name: str = "artifact") -> None:
    """Raise unless the artifact was made for `base`: same fingerprint, known layers, right shapes."""
    if header.base_fingerprint != base.fingerprint:
        raise IncompatibleBase(
            f"{name}: concept {header.concept_id!r} was trained for base model {header.base_fingerprint!r}, "
            f"this base model is {base.fingerprint!r}; retrain or publish it for this base",
            field="base_fingerprint",
        )
    layers = base.layer_map
    for layer_name, projections in delta.layers.items():
        layer = layers.get(layer_name)
        if layer is None:
            raise InvalidArtifact(f"{name}: layer {layer_name!r} is not a cross-attention layer of the base model")
        for projection, weight in projections.items():
            expected = layer.delta_shape(projection)
            if weight.shape != expected:
                raise InvalidArtifact(
                    f"{name}: {layer_name}.{projection} delta has shape {weight.shape}; the base needs {expected}"
                )
    for token, embedding in delta.token_embeddings.items():
        if embedding.shape[0] != base.token_dim:
            raise InvalidArtifact(
                f"{name}: embedding of {token!r} has width {embedding.shape[0]}; the base needs {base.token_dim}"
            )


