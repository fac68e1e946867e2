"""Base-model loading, the cross-attention layer map and the base-model fingerprint.

Any SD 1.x/2.x or SDXL diffusers directory or single-file checkpoint (by local path) loads the
same way; the family is read from the pipeline class the configs name. Nothing is ever fetched
from a hub.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from transformers import CLIPTextModel

from shared.errors import InvalidArgument
from shared.spec import BaseSpec, CrossAttentionLayer

REG_CAPTIONS_FILE = "reg_captions.txt"
Pipeline: TypeAlias = StableDiffusionPipeline | StableDiffusionXLPipeline


@dataclass
class BaseModel:
    """A loaded base pipeline with its spec. The pipeline's weights are never written after load."""

    pipeline: Pipeline
    spec: BaseSpec
    source: str

    @property
    def device(self) -> torch.device:
        return self.pipeline.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pipeline.unet.dtype


def cross_attention_layers(unet: UNet2DConditionModel) -> dict[str, Attention]:
    """Every cross-attention module of the UNet by module name (16 `attn2` for SD 1.x)."""
    return {
        name: module
        for name, module in unet.named_modules()
        if isinstance(module, Attention) and module.is_cross_attention
    }


def layer_map(unet: UNet2DConditionModel) -> tuple[CrossAttentionLayer, ...]:
    return tuple(
        CrossAttentionLayer(
            name=name,
            in_features=attn.to_k.in_features,
            out_features=attn.to_k.out_features,
            heads=attn.heads,
            query_dim=attn.to_q.in_features,
        )
        for name, attn in sorted(cross_attention_layers(unet).items())
    )


def fingerprint(
    unet: UNet2DConditionModel, text_encoder: CLIPTextModel, text_encoder_2: torch.nn.Module | None = None
) -> str:
    """sha256 of the base `to_k`/`to_v` weights and the whole text encoder (both, for SDXL).

    Values are hashed after rounding to fp16, so fp32 and fp16 copies of one checkpoint share a
    fingerprint while any retrained or different model does not.
    """
    digest = hashlib.sha256()

    def feed(name: str, tensor: torch.Tensor) -> None:
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float16).contiguous().numpy().tobytes())

    for name, attn in sorted(cross_attention_layers(unet).items()):
        feed(f"{name}.to_k", attn.to_k.weight)
        feed(f"{name}.to_v", attn.to_v.weight)
    for name, param in sorted(text_encoder.state_dict().items()):
        if param.is_floating_point():
            feed(f"text_encoder.{name}", param)
    if text_encoder_2 is not None:
        for name, param in sorted(text_encoder_2.state_dict().items()):
            if param.is_floating_point():
                feed(f"text_encoder_2.{name}", param)
    return digest.hexdigest()[:32]


def family_of(pipeline: Pipeline) -> str:
    """ "sdxl" with a second text encoder; "sd2" with 1024-d text features (OpenCLIP ViT-H); else "sd1"."""
    if getattr(pipeline, "text_encoder_2", None) is not None:
        return "sdxl"
    return "sd2" if pipeline.unet.config.cross_attention_dim == 1024 else "sd1"


def spec_of(pipeline: Pipeline) -> BaseSpec:
    encoders = [pipeline.text_encoder]
    if family_of(pipeline) == "sdxl":
        encoders.append(pipeline.text_encoder_2)
    dims = tuple(encoder.get_input_embeddings().embedding_dim for encoder in encoders)
    return BaseSpec(
        fingerprint=fingerprint(pipeline.unet, *encoders),
        layers=layer_map(pipeline.unet),
        token_dim=sum(dims),
        family=family_of(pipeline),
        token_dims=dims if len(dims) > 1 else (),
    )


def pipeline_class(config_dir: str | Path) -> type[Pipeline]:
    """The pipeline class a diffusers directory's `model_index.json` names (SDXL or SD 1.x/2.x)."""
    index = Path(config_dir)
    index = index if index.name == "model_index.json" else index / "model_index.json"
    try:
        raw = json.loads(index.read_text())
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"{str(index)!r} is not a readable diffusers model_index.json", field="base_model") from e
    is_xl = "XL" in str(raw.get("_class_name", "")) or "text_encoder_2" in raw
    return StableDiffusionXLPipeline if is_xl else StableDiffusionPipeline


def load_base_model(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    single_file_config: str | Path | None = None,
) -> BaseModel:
    """Load a diffusers directory or a single-file `.safetensors`/`.ckpt` checkpoint from disk.

    A single file needs `single_file_config`: a local diffusers directory (or its `model_index.json`
    folder) with the matching configs, because the configs cannot be fetched here.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidArgument(f"base model path {str(path)!r} does not exist", field="base_model")
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise InvalidArgument(
                f"{str(path)!r} is not a diffusers directory (no model_index.json)", field="base_model"
            )
        pipeline = _from_pretrained(pipeline_class(path), path)
    else:
        if single_file_config is None:
            raise InvalidArgument(
                f"single-file checkpoint {path.name!r} needs `single_file_config`, a local diffusers "
                "directory with the matching configs (nothing is downloaded)",
                field="single_file_config",
            )
        config = Path(single_file_config)
        config = config.parent if config.name == "model_index.json" else config
        pipeline = _from_single_file(pipeline_class(config), path, config)
    return prepare_base_model(pipeline, source=str(path), device=device, dtype=dtype)


def _from_pretrained(cls: type[Pipeline], path: Path) -> Pipeline:
    if cls is StableDiffusionXLPipeline:
        return cls.from_pretrained(str(path), local_files_only=True, add_watermarker=False)
    return cls.from_pretrained(str(path), local_files_only=True, safety_checker=None, requires_safety_checker=False)


def _from_single_file(cls: type[Pipeline], path: Path, config: Path) -> Pipeline:
    if cls is StableDiffusionXLPipeline:
        return cls.from_single_file(str(path), config=str(config), local_files_only=True, add_watermarker=False)
    return cls.from_single_file(str(path), config=str(config), local_files_only=True, safety_checker=None)


def prepare_base_model(
    pipeline: Pipeline,
    *,
    source: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> BaseModel:
    """Fingerprint (before any dtype change), move, freeze and wrap an already built pipeline."""
    spec = spec_of(pipeline)
    if pipeline.unet.dtype != dtype:
        pipeline.to(dtype=dtype)
    pipeline.to(device=device)
    pipeline.set_progress_bar_config(disable=True)
    for module in (pipeline.unet, pipeline.vae, pipeline.text_encoder, getattr(pipeline, "text_encoder_2", None)):
        if module is None:
            continue
        module.requires_grad_(False)
        module.eval()
    return BaseModel(pipeline=pipeline, spec=spec, source=source)


def reg_captions_path(model_dir: str | Path) -> Path | None:
    """The generic captions shipped with a base model for the merge's regularisation, if any."""
    candidate = Path(model_dir) / REG_CAPTIONS_FILE
    return candidate if candidate.exists() else None
