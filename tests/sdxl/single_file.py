"""Test helper: write a diffusers SDXL pipeline as an original (SGM) single-file checkpoint.

The reverse of what `StableDiffusionXLPipeline.from_single_file` converts: the UNet and VAE as for
SD (`tests/shared/single_file.py`), CLIP-L under `conditioner.embedders.0.transformer.` (HF layout)
and OpenCLIP-G under `conditioner.embedders.1.model.` (fused `in_proj` q/k/v, `resblocks`, `ln_*`,
`mlp.c_fc`/`c_proj`, a transposed `text_projection`), as `convert_open_clip_checkpoint` reads them.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from diffusers import StableDiffusionXLPipeline
from safetensors.torch import save_file
from transformers import CLIPTextModelWithProjection

from tests.shared.single_file import UNET_PREFIX, VAE_PREFIX, clip_to_ldm, unet_to_ldm, vae_to_ldm

CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
_OPEN_CLIP_TOP = {
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
_HF_LAYER = re.compile(r"text_model\.encoder\.layers\.(\d+)\.(.+)")
_OPEN_CLIP_LAYER = {
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
    "self_attn.out_proj.": "attn.out_proj.",
}


def open_clip_to_ldm(text_encoder: CLIPTextModelWithProjection) -> dict[str, torch.Tensor]:
    """CLIPTextModelWithProjection state dict -> OpenCLIP keys (without the prefix)."""
    state = text_encoder.state_dict()
    out = {ldm: state[hf] for hf, ldm in _OPEN_CLIP_TOP.items()}
    out["text_projection"] = state["text_projection.weight"].T.contiguous()
    for key, value in state.items():
        match = _HF_LAYER.fullmatch(key)
        if match is None:
            continue
        index, rest = match.groups()
        block = f"transformer.resblocks.{index}."
        if rest.startswith("self_attn.q_proj."):  # q, k and v go into one fused in_proj
            kind = rest.rsplit(".", 1)[1]
            fused = [state[f"text_model.encoder.layers.{index}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
            out[f"{block}attn.in_proj_{kind}"] = torch.cat(fused)
        elif not rest.startswith(("self_attn.k_proj.", "self_attn.v_proj.")):
            old = next(old for old in _OPEN_CLIP_LAYER if rest.startswith(old))
            out[block + _OPEN_CLIP_LAYER[old] + rest.removeprefix(old)] = value
    return out


def save_sdxl_single_file(pipeline: StableDiffusionXLPipeline, path: str | Path) -> Path:
    """Write the pipeline as one SGM-layout `.safetensors` checkpoint; returns the path."""
    state: dict[str, torch.Tensor] = {}
    for prefix, part in (
        (UNET_PREFIX, unet_to_ldm(pipeline.unet)),
        (VAE_PREFIX, vae_to_ldm(pipeline.vae)),
        (CLIP_L_PREFIX, clip_to_ldm(pipeline.text_encoder)),
        (OPEN_CLIP_PREFIX, open_clip_to_ldm(pipeline.text_encoder_2)),
    ):
        state.update({prefix + k: v.detach().to("cpu").contiguous().clone() for k, v in part.items()})
    path = Path(path)
    save_file(state, str(path))
    return path
