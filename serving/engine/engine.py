"""DeltaEngine: one base pipeline, batches where every request brings its own concept delta."""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence

import numpy as np
import torch

from serving.engine.conditioning import RowLayout, build_conditioning
from serving.engine.processor import BatchConditioning, install_delta_processors
from serving.engine.request import GenerationRequest, GenerationResult
from serving.engine.schedulers import make_scheduler
from serving.engine.unet import UNetRunner
from shared.basemodel import BaseModel, cross_attention_layers
from shared.errors import InvalidArgument
from shared.progress import ProgressCallback
from shared.text import PromptEncoder


class DeltaEngine:
    """Generates batches of requests with per-request concepts, without ever writing base weights.

    The only set-up change to the pipeline is installing `DeltaAttnProcessor` on the cross-attention
    layers (self-attention keeps its stock processor) and a read-only token-embedding hook (see
    `shared.text`); both hold no per-call state.
    """

    size_conditioning = False
    """Whether the UNet takes SDXL's per-request size and crop conditioning (`GenerationRequest.original_size`…)."""

    def __init__(self, base: BaseModel, *, compile: bool = False) -> None:
        """`compile`: run the UNet through `torch.compile`, batches padded to buckets (`serving.engine.unet`)."""
        self.base = base
        pipe = base.pipeline
        self.unet, self.vae, self.pipeline = pipe.unet, pipe.vae, pipe
        self.unet_runner = UNetRunner(self.unet, compile=compile)
        self.prompts = PromptEncoder(pipe.tokenizer, pipe.text_encoder)
        self.layers = cross_attention_layers(self.unet)
        install_delta_processors(self.layers)
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.size_multiple = self.vae_scale * 2 ** (len(self.unet.config.block_out_channels) - 1)
        self.default_size = int(self.unet.config.sample_size) * self.vae_scale

    @torch.no_grad()
    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[GenerationResult]:
        """Run compatible requests (same steps, size, scheduler) as one UNet batch with CFG;
        `progress(steps done, total steps)` after each denoising step."""
        self._check_compatible(requests)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        features, added = self._encode(requests)
        layout = RowLayout([r.num_images for r in requests])
        conditioning = build_conditioning(self.layers, features, [r.delta for r in requests], layout)
        timings["encode_ms"] = _ms_since(started)

        started = time.perf_counter()
        latents = self._denoise(requests, features, conditioning, layout, progress, added)
        timings["denoise_ms"] = _ms_since(started)

        started = time.perf_counter()
        images = self._decode(latents)
        timings["decode_ms"] = _ms_since(started)
        results, first = [], 0
        for request in requests:
            results.append(GenerationResult(images[first : first + request.num_images], dict(timings), len(requests)))
            first += request.num_images
        return results

    def _check_compatible(self, requests: Sequence[GenerationRequest]) -> None:
        if not requests:
            raise InvalidArgument("a batch needs at least one request", field="requests")
        keys = {r.sampling_key for r in requests}
        if len(keys) > 1:
            raise InvalidArgument(f"one batch mixes sampling settings {sorted(map(str, keys))}", field="requests")
        key = next(iter(keys))
        for name, size in (("height", key.height), ("width", key.width)):
            if size <= 0 or size % self.size_multiple:
                raise InvalidArgument(f"{name} {size} must be a positive multiple of {self.size_multiple}", field=name)

    def _encode(self, requests: Sequence[GenerationRequest]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(2 · requests, tokens, dim) features as [uncond r1…rR, cond r1…rR] in the UNet dtype, and the
        UNet's added conditioning in the same row order (none for SD 1.x/2.x; see `serving.engine.sdxl`)."""
        tokenized, tables = self._tokenize(requests)
        return self.prompts.encode(tokenized, tables).to(self.unet.dtype), {}

    def _tokenize(self, requests: Sequence[GenerationRequest]) -> tuple[list, list]:
        """Tokenized prompts and their modifier-token tables as [uncond r1…rR, cond r1…rR]."""
        tokenized, tables = [], []
        for text_of in (lambda r: r.negative_prompt, lambda r: r.prompt):
            for request in requests:
                table = request.delta.token_embeddings if request.delta else {}
                tokenized.append(self.prompts.tokenize(text_of(request), list(table)))
                tables.append(table)
        return tokenized, tables

    def _initial_latents(self, requests: Sequence[GenerationRequest]) -> torch.Tensor:
        """Each request draws its own noise from its own seed: batch neighbours change nothing. The
        noise is drawn in fp32 and then cast: some torch versions draw other numbers for an fp16
        `randn` than for an fp32 one, and a seed must give the same image on every replica."""
        channels = self.unet.config.in_channels
        noise = []
        for r in requests:
            generator = torch.Generator("cpu").manual_seed(r.seed)
            shape = (r.num_images, channels, r.height // self.vae_scale, r.width // self.vae_scale)
            noise.append(torch.randn(shape, generator=generator, dtype=torch.float32))
        return torch.cat(noise).to(self.unet.device, self.unet.dtype)

    def _denoise(
        self,
        requests: Sequence[GenerationRequest],
        features: torch.Tensor,
        conditioning: BatchConditioning,
        layout: RowLayout,
        progress: ProgressCallback | None,
        added: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        first = requests[0]
        scheduler = make_scheduler(first.scheduler, self.pipeline.scheduler.config, type(self.pipeline.scheduler))
        scheduler.set_timesteps(first.steps, device=self.unet.device)
        step_kwargs = {"eta": 0.0} if "eta" in inspect.signature(scheduler.step).parameters else {}
        latents = self._initial_latents(requests) * scheduler.init_noise_sigma
        guidance = torch.tensor(
            [r.guidance_scale for r in requests for _ in range(r.num_images)], device=latents.device
        ).view(-1, 1, 1, 1)
        unet_context = features[layout.feature_rows.to(features.device)]
        added_cond = {k: v[layout.feature_rows.to(v.device)] for k, v in added.items()} or None
        unet_step = self.unet_runner.bind(unet_context, conditioning, added_cond)
        total = len(scheduler.timesteps)
        for i, t in enumerate(scheduler.timesteps):
            model_input = scheduler.scale_model_input(torch.cat([latents, latents]), t)
            noise = unet_step(model_input, t)
            uncond, cond = noise.chunk(2)
            noise = uncond + guidance.to(noise.dtype) * (cond - uncond)
            latents = scheduler.step(noise, t, latents, **step_kwargs, return_dict=False)[0]
            if progress is not None:
                progress(i + 1, total)
        return latents

    def _decode(self, latents: torch.Tensor) -> np.ndarray:
        images = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        images = (images / 2 + 0.5).clamp(0, 1)
        return images.float().permute(0, 2, 3, 1).cpu().numpy()


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
