"""Test helper: write a diffusers SD pipeline as an original (LDM / CompVis) single-file checkpoint.

The exact reverse of diffusers' `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint` and
`convert_ldm_clip_checkpoint` (`diffusers/loaders/single_file_utils.py`), for SD pipelines
(`UNet2DConditionModel`, `AutoencoderKL`, `CLIPTextModel`; SDXL's second encoder: `tests/sdxl/single_file.py`):

- UNet -> `model.diffusion_model.*` (`input_blocks`, `middle_block`, `output_blocks`, `time_embed`, `out`,
  SDXL's `label_emb`),
- VAE -> `first_stage_model.*` (`encoder.down.{i}.block.{j}`, `decoder.up.{n-1-i}`, `mid.block_1/attn_1`,
  1x1-conv attention projections),
- CLIP -> `cond_stage_model.transformer.text_model.*`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextModel

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",  # SDXL's text_time embedding
    "add_embedding.linear_2.": "label_emb.0.2.",
}
_UNET_RESNET = {
    "norm1.": "in_layers.0.",
    "conv1.": "in_layers.2.",
    "norm2.": "out_layers.0.",
    "conv2.": "out_layers.3.",
    "time_emb_proj.": "emb_layers.1.",
    "conv_shortcut.": "skip_connection.",
}
_VAE_ATTENTION = {
    "group_norm.": "norm.",
    "to_q.": "q.",
    "to_k.": "k.",
    "to_v.": "v.",
    "to_out.0.": "proj_out.",
}


def _rename(rest: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if rest.startswith(old):
            return new + rest[len(old) :]
    raise KeyError(f"no LDM name for {rest!r}")


def unet_to_ldm(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """Diffusers UNet state dict -> LDM `diffusion_model` keys (without the prefix)."""
    per_block = unet.config.layers_per_block
    if not isinstance(per_block, int):
        raise ValueError("only an int layers_per_block is supported")
    has_attention = {
        i: any(k.startswith(f"up_blocks.{i}.attentions.") for k in unet.state_dict())
        for i in range(len(unet.up_blocks))
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in unet.state_dict().items():
        parts = key.split(".")
        if parts[0] in ("down_blocks", "up_blocks"):
            block, kind, layer, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if parts[0] == "down_blocks":
                base = 1 + block * (per_block + 1)
                if kind == "resnets":
                    name = f"input_blocks.{base + layer}.0.{_rename(rest, _UNET_RESNET)}"
                elif kind == "attentions":
                    name = f"input_blocks.{base + layer}.1.{rest}"
                else:  # downsamplers.0.conv.*
                    name = f"input_blocks.{base + per_block}.0.op.{rest.removeprefix('conv.')}"
            else:
                base = block * (per_block + 1)
                if kind == "resnets":
                    name = f"output_blocks.{base + layer}.0.{_rename(rest, _UNET_RESNET)}"
                elif kind == "attentions":
                    name = f"output_blocks.{base + layer}.1.{rest}"
                else:  # upsamplers.0.conv.*: after the attention when the block has one
                    slot = 2 if has_attention[block] else 1
                    name = f"output_blocks.{base + per_block}.{slot}.{rest}"
        elif parts[0] == "mid_block":
            kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            if kind == "resnets":
                name = f"middle_block.{2 * index}.{_rename(rest, _UNET_RESNET)}"
            else:
                name = f"middle_block.1.{rest}"
        else:
            name = _rename(key, _UNET_TOP)
        out[name] = value
    return out


def vae_to_ldm(vae: AutoencoderKL) -> dict[str, torch.Tensor]:
    """Diffusers AutoencoderKL state dict -> LDM `first_stage_model` keys (without the prefix)."""
    num_up = len(vae.config.up_block_types)
    out: dict[str, torch.Tensor] = {}
    for key, value in vae.state_dict().items():
        parts = key.split(".")
        if parts[0] in ("encoder", "decoder") and parts[1] in ("down_blocks", "up_blocks"):
            coder, block, kind = parts[0], int(parts[2]), parts[3]
            ldm_block = f"down.{block}" if parts[1] == "down_blocks" else f"up.{num_up - 1 - block}"
            if kind == "resnets":
                rest = ".".join(parts[5:]).replace("conv_shortcut.", "nin_shortcut.")
                name = f"{coder}.{ldm_block}.block.{parts[4]}.{rest}"
            else:  # downsamplers.0.conv.* / upsamplers.0.conv.*
                sampler = "downsample" if kind == "downsamplers" else "upsample"
                name = f"{coder}.{ldm_block}.{sampler}.{'.'.join(parts[5:])}"
        elif parts[0] in ("encoder", "decoder") and parts[1] == "mid_block":
            coder, kind, index, rest = parts[0], parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                rest = rest.replace("conv_shortcut.", "nin_shortcut.")
                name = f"{coder}.mid.block_{index + 1}.{rest}"
            else:
                name = f"{coder}.mid.attn_1.{_rename(rest, _VAE_ATTENTION)}"
                if value.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                    value = value[:, :, None, None]
        elif parts[0] in ("encoder", "decoder") and parts[1] == "conv_norm_out":
            name = f"{parts[0]}.norm_out.{'.'.join(parts[2:])}"
        else:  # conv_in, conv_out, quant_conv, post_quant_conv keep their names
            name = key
        out[name] = value
    return out


def clip_to_ldm(text_encoder: CLIPTextModel) -> dict[str, torch.Tensor]:
    """CLIPTextModel state dict -> `cond_stage_model.transformer` keys (HF CLIP layout, `text_model.`)."""
    out = {}
    for key, value in text_encoder.state_dict().items():
        out[key if key.startswith("text_model.") else f"text_model.{key}"] = value
    return out


def pipeline_to_ldm_state_dict(pipeline: StableDiffusionPipeline) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for prefix, part in (
        (UNET_PREFIX, unet_to_ldm(pipeline.unet)),
        (VAE_PREFIX, vae_to_ldm(pipeline.vae)),
        (CLIP_PREFIX, clip_to_ldm(pipeline.text_encoder)),
    ):
        state.update({prefix + k: v.detach().to("cpu").contiguous().clone() for k, v in part.items()})
    return state


def save_ldm_single_file(pipeline: StableDiffusionPipeline, path: str | Path) -> Path:
    """Write the pipeline as one LDM-layout `.safetensors` checkpoint; returns the path."""
    path = Path(path)
    save_file(pipeline_to_ldm_state_dict(pipeline), str(path))
    return path
