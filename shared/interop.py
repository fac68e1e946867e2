"""Interop with stock diffusers' Custom Diffusion layout.

diffusers keeps a concept as `pytorch_custom_diffusion_weights.safetensors` — the *fine-tuned*
weights W (not ΔW) under `{layer}.processor.to_k_custom_diffusion.weight` (and to_v; to_q and
to_out for mode `crossattn`), loaded with `pipe.unet.load_attn_procs` — plus one textual-inversion
file per modifier token (`{token: embedding}`), loaded with `pipe.load_textual_inversion`. On SDXL
the token file holds `{"clip_l": …, "clip_g": …}`, one embedding per text encoder, loaded with one
`load_textual_inversion(state["clip_l"], token=…, text_encoder=pipe.text_encoder,
tokenizer=pipe.tokenizer)` call per encoder (`clip_g` with `text_encoder_2`/`tokenizer_2`).
Export writes that layout; import reads it (safetensors only; pickled `.bin` files are refused).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from shared.artifact import MODIFIER_TOKEN_PATTERN, ArtifactHeader, ConceptArtifact, ConceptPart
from shared.basemodel import BaseModel, cross_attention_layers
from shared.delta import ConceptDelta, DeltaWeight
from shared.errors import InvalidArgument, InvalidArtifact
from shared.sdxl import TEXT_ENCODER_NAMES
from shared.spec import BaseSpec

WEIGHTS_FILE = "pytorch_custom_diffusion_weights.safetensors"
HEADER_FILE = "cdserve_header.json"
_KEY = re.compile(
    r"(?P<layer>.+)\.processor\.(?P<proj>to_[kvq]|to_out)_custom_diffusion(?:\.0)?\.(?P<param>weight|bias)"
)
_SUFFIX = {
    "to_k": "to_k_custom_diffusion",
    "to_v": "to_v_custom_diffusion",
    "to_q": "to_q_custom_diffusion",
    "to_out": "to_out_custom_diffusion.0",
}


def _base_linear(attn: Any, projection: str) -> torch.nn.Linear:
    return attn.to_out[0] if projection == "to_out" else getattr(attn, projection)


TOKEN_FILE_PREFIX = "learned_embeds-"


def token_file_name(token: str) -> str:
    return f"{TOKEN_FILE_PREFIX}{token.strip('<>')}.safetensors"


def _token_file(token: str, embedding: torch.Tensor, spec: BaseSpec) -> dict[str, torch.Tensor]:
    """SD 1.x/2.x: {token: embedding}; SDXL: {"clip_l": first part, "clip_g": second part}."""
    vector = embedding.float().cpu().contiguous()
    if not spec.token_dims:
        return {token: vector}
    parts = torch.split(vector, list(spec.token_dims))
    return {name: part.contiguous() for name, part in zip(TEXT_ENCODER_NAMES, parts, strict=True)}


def _read_token_file(path: Path, spec: BaseSpec) -> dict[str, torch.Tensor]:
    """The token embeddings of one token file, concatenated in encoder order on SDXL; an SDXL file
    names no token, so it is taken from the file name (`token_file_name`)."""
    tensors = _read_safetensors(path)
    if spec.token_dims:
        if set(tensors) != set(TEXT_ENCODER_NAMES):
            raise InvalidArtifact(
                f"{path.name}: an SDXL token file holds exactly {list(TEXT_ENCODER_NAMES)}; found {sorted(tensors)}"
            )
        token = f"<{path.stem.removeprefix(TOKEN_FILE_PREFIX)}>"
        if not path.stem.startswith(TOKEN_FILE_PREFIX) or not MODIFIER_TOKEN_PATTERN.fullmatch(token):
            raise InvalidArtifact(
                f"{path.name}: an SDXL token file must be named like {token_file_name('<name>')!r} "
                "(its name gives the token '<name>')"
            )
        return {token: torch.cat([tensors[name].reshape(-1).float() for name in TEXT_ENCODER_NAMES])}
    for token in tensors:
        if not MODIFIER_TOKEN_PATTERN.fullmatch(token):
            raise InvalidArtifact(f"{path.name}: token {token!r} must look like '<name>'")
    return {token: embedding.reshape(-1).float() for token, embedding in tensors.items()}


@torch.no_grad()
def export_diffusers(concept: ConceptArtifact, base: BaseModel, out_dir: str | Path) -> list[Path]:
    """Write W0 + ΔW for every cross-attention layer, one embedding file per token, and our header."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers = cross_attention_layers(base.pipeline.unet)
    projections = sorted({p for layer in concept.delta.layers.values() for p in layer})
    weights: dict[str, torch.Tensor] = {}
    for name, attn in layers.items():
        for projection in projections:
            linear = _base_linear(attn, projection)
            weight = linear.weight.detach().float().cpu().clone()
            delta = concept.delta.layers.get(name, {}).get(projection)
            if delta is not None:
                weight += delta.to_dense().float().cpu()
            weights[f"{name}.processor.{_SUFFIX[projection]}.weight"] = weight.contiguous()
            if projection == "to_out" and linear.bias is not None:
                weights[f"{name}.processor.{_SUFFIX[projection]}.bias"] = linear.bias.detach().float().cpu().clone()
    written = [out / WEIGHTS_FILE]
    save_file(weights, str(written[0]))
    for token, embedding in concept.delta.token_embeddings.items():
        path = out / token_file_name(token)
        save_file(_token_file(token, embedding, base.spec), str(path))
        written.append(path)
    (out / HEADER_FILE).write_text(concept.header.model_dump_json(indent=1))
    written.append(out / HEADER_FILE)
    return written


@torch.no_grad()
def import_diffusers(
    directory: str | Path,
    base: BaseModel,
    *,
    concept_id: str,
    categories: Sequence[str] | None = None,
    captions: Sequence[Sequence[str]] | None = None,
) -> tuple[ArtifactHeader, ConceptDelta]:
    """Read a diffusers Custom Diffusion folder into a cdserve concept: ΔW = W − W0 per layer.

    `categories`/`captions` (one entry per modifier token, in sorted token order) are needed when
    the folder has no cdserve header: the merge uses the captions.
    """
    directory = Path(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.exists():
        pickled = directory / WEIGHTS_FILE.replace(".safetensors", ".bin")
        hint = " (a pickled .bin is never loaded: convert it to safetensors first)" if pickled.exists() else ""
        raise InvalidArgument(f"{directory}: no {WEIGHTS_FILE}{hint}", field="directory")
    weights = _read_safetensors(weights_path)
    layers = cross_attention_layers(base.pipeline.unet)
    delta = ConceptDelta()
    for key, value in weights.items():
        match = _KEY.fullmatch(key)
        if match is None or match["layer"] not in layers:
            raise InvalidArtifact(f"{weights_path.name}: unexpected key {key!r}")
        linear = _base_linear(layers[match["layer"]], match["proj"])
        if match["param"] == "bias":
            if linear.bias is None or not torch.allclose(value.float(), linear.bias.detach().float().cpu(), atol=1e-6):
                raise InvalidArtifact(
                    f"{weights_path.name}: {key} differs from the base model's bias; cdserve deltas change "
                    "weights only (retrain with the to_out bias frozen)"
                )
            continue
        if tuple(value.shape) != tuple(linear.weight.shape):
            raise InvalidArtifact(
                f"{weights_path.name}: {key} has shape {tuple(value.shape)}, "
                f"the base needs {tuple(linear.weight.shape)}"
            )
        change = value.float() - linear.weight.detach().float().cpu()
        delta.layers.setdefault(match["layer"], {})[match["proj"]] = DeltaWeight(dense=change)
    for path in sorted(directory.glob("*.safetensors")):
        if path.name == WEIGHTS_FILE:
            continue
        delta.token_embeddings.update(_read_token_file(path, base.spec))
    tokens = sorted(delta.token_embeddings)
    if not tokens:
        raise InvalidArtifact(f"{directory}: no modifier-token embedding file found")
    header_path = directory / HEADER_FILE
    if header_path.exists():
        header = ArtifactHeader.model_validate_json(header_path.read_text())
        header = header.model_copy(update={"concept_id": concept_id, "digest": "", "delta_kind": "full"})
    else:
        if categories is None or len(categories) != len(tokens):
            raise InvalidArgument(
                f"{directory}: tokens {tokens} need one category each (got {list(categories or [])})",
                field="categories",
            )
        parts = [
            ConceptPart(
                modifier_token=token,
                category=category,
                captions=list(captions[i]) if captions else [f"photo of a {token} {category}"],
            )
            for i, (token, category) in enumerate(zip(tokens, categories, strict=True))
        ]
        header = ArtifactHeader(
            concept_id=concept_id,
            concepts=parts,
            base_fingerprint=base.spec.fingerprint,
            base_family=base.spec.family,
            token_dims=list(base.spec.token_dims) or None,
            delta_kind="full",
            recipe={"imported_from": "diffusers"},
        )
    return header, delta


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise InvalidArtifact(f"{path.name}: not a readable safetensors file ({e})") from e
