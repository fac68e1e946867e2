"""The Custom Diffusion training step (no Ray): one object owns the trainable copy, the optimizer
and the step; the Ray Train worker and the in-process loop both drive it.

Semantics of a step (Eq. 2): z = E(x)·s, ε ~ N(0, I), t ~ U{0..T−1}, z_t = √ᾱ_t z + √(1−ᾱ_t) ε,
loss = ‖ε_θ(z_t, t, c(caption; V*)) − ε‖² on the valid latent region, + λ·(the same on reg samples).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, cast

import torch
from diffusers import DDPMScheduler

from shared.basemodel import BaseModel, cross_attention_layers
from shared.delta import ConceptDelta, DeltaWeight
from shared.sdxl import DualPromptEncoder, prompt_encoder_for
from shared.text import PromptEncoder, TokenizedPrompt
from training.checkpoint import TrainingState
from training.config import STAND_IN, TrainConfig
from training.data import ExampleSource, generator_for
from training.loss import custom_diffusion_loss
from training.tokens import initial_token_embeddings
from training.trainable import PROJECTIONS_BY_MODE, detach_start_of_text, freeze_all_but, projection_module_name

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
STAND_IN_NORMS = (1.0, 1.6)
"""A stand-in's vector: a random direction with a norm drawn from this range, where the modifier
tokens learned on the embedded base end (1.1–1.45, against at most 0.6 for its words): it stands for
another concept's token."""


class Denoiser(torch.nn.Module):
    """UNet + text encoder + the modifier-token embeddings: the one module data parallelism wraps,
    so that the gradients of the UNet's trainable weights and of the tokens are averaged together.

    The embedding table is never changed: the tokens are separate (dim,) parameters injected per
    call by `PromptEncoder`, so only "their rows" can learn and the start-of-text row is untouched.
    On SDXL a token's parameter is both encoders' embeddings concatenated, and the UNet also gets
    the pooled text embedding and each sample's time ids.
    """

    def __init__(
        self,
        unet: Any,
        prompts: PromptEncoder | DualPromptEncoder,
        tokens: list[str],
        embeddings: list[torch.Tensor],
        *,
        train_tokens: bool,
    ) -> None:
        super().__init__()
        self.unet = unet
        if isinstance(prompts, DualPromptEncoder):
            self.text_encoder, self.text_encoder_2 = prompts.first.text_encoder, prompts.second.text_encoder
        else:
            self.text_encoder = prompts.text_encoder
        self.prompts = prompts
        self.tokens = tokens
        self.embeddings = torch.nn.ParameterList(
            [torch.nn.Parameter(e.to(unet.device), requires_grad=train_tokens) for e in embeddings]
        )

    def token_embeddings(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.tokens, self.embeddings, strict=True))

    def forward(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        prompts: tuple[Any, ...],
        stand_ins: tuple[torch.Tensor | None, ...] = (),
        time_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """noisy (B, 4, h, w), timesteps (B,) long → predicted noise (B, 4, h, w); `stand_ins`: per
        prompt, the vector of its STAND_IN (None where it names none); `time_ids` (B, 6): SDXL only."""
        own = self.token_embeddings()
        tables = [own if v is None else {**own, STAND_IN: v} for v in stand_ins] if stand_ins else own
        if isinstance(self.prompts, DualPromptEncoder):
            features, pooled = self.prompts.encode_with_pooled(prompts, tables)
            added = {"text_embeds": pooled, "time_ids": cast(torch.Tensor, time_ids).to(pooled.device, pooled.dtype)}
        else:
            features, added = self.prompts.encode(prompts, tables), None
        return self.unet(noisy, timesteps, encoder_hidden_states=features, added_cond_kwargs=added).sample


class ConceptTrainer:
    """Trains a private copy of the base UNet; the base model itself is never written."""

    def __init__(
        self,
        config: TrainConfig,
        base: BaseModel,
        source: ExampleSource,
        initializer_words: list[str],
        *,
        rank: int = 0,
        world_size: int = 1,
        wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    ) -> None:
        recipe = config.recipe
        self.config = config
        self.source = source
        self.initializer_words = initializer_words
        self.rank = rank
        self.world_size = world_size
        self.per_rank = recipe.batch_size // world_size
        self.device = base.device
        self.vae = base.pipeline.vae
        self.unet = copy.deepcopy(base.pipeline.unet)
        self.trainable = freeze_all_but(self.unet, recipe.mode)
        detach_start_of_text(self.unet)
        self.initial = (
            {} if recipe.mode == "full" else {name: p.detach().float().clone() for name, p in self.trainable.items()}
        )
        prompts = prompt_encoder_for(base.pipeline)
        tokens = [concept.token for concept in config.concepts]
        embeddings = initial_token_embeddings(base.pipeline, initializer_words)
        self.denoiser = Denoiser(self.unet, prompts, tokens, embeddings, train_tokens=recipe.trains_token)
        self.model = wrap(self.denoiser) if wrap else self.denoiser
        groups = [{"params": list(self.trainable.values()), "lr": recipe.effective_learning_rate}]
        if recipe.trains_token:
            groups.append({"params": list(self.denoiser.embeddings), "lr": recipe.effective_token_learning_rate})
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=recipe.weight_decay)
        self.scheduler = DDPMScheduler.from_config(base.pipeline.scheduler.config)
        self.autocast_dtype = AUTOCAST_DTYPES.get(recipe.mixed_precision) if self.device.type == "cuda" else None
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        self.step = 0
        self.losses: list[float] = []
        self._tokenized: dict[str, Any] = {}

    # -- one step -------------------------------------------------------------------------------

    def _autocast(self) -> AbstractContextManager:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _tokenize(self, caption: str) -> TokenizedPrompt:
        if caption not in self._tokenized:
            self._tokenized[caption] = self.denoiser.prompts.tokenize(caption, [*self.denoiser.tokens, STAND_IN])
        return self._tokenized[caption]

    def _stand_in_vectors(self, prompts: tuple[TokenizedPrompt, ...]) -> tuple[torch.Tensor | None, ...]:
        """A fresh vector for each prompt that names STAND_IN (seeded by the step, like the noise),
        so that nothing about it can be learned but that some unknown token came before."""
        named = [any(token == STAND_IN for _, token in prompt.token_positions) for prompt in prompts]
        if not any(named):
            return ()
        generator = generator_for(self.config.recipe.seed, "stand-in vector", self.step, self.rank)
        return tuple(self._random_vector(generator) if names_it else None for names_it in named)

    def _random_vector(self, generator: torch.Generator) -> torch.Tensor:
        """A random direction with a norm drawn from STAND_IN_NORMS, on the training device."""
        direction = torch.randn(self.denoiser.embeddings[0].shape[0], generator=generator)
        low, high = STAND_IN_NORMS
        norm = low + (high - low) * float(torch.rand((), generator=generator))
        return (direction * norm / direction.norm()).to(self.device)

    @torch.no_grad()
    def _latents(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """pixels (B, 3, R, R) in [-1, 1] → latents (B, 4, R/f, R/f) fp32 from the frozen VAE."""
        with self._autocast():
            distribution = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist
            latents = distribution.sample(generator=generator).float()
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return (latents - shift) * self.vae.config.scaling_factor

    def train_step(self) -> float:
        """Run step `self.step` (0-based) and advance; returns this rank's loss."""
        batch = self.source.batch(self.step, per_rank=self.per_rank, rank=self.rank, world_size=self.world_size)
        generator = generator_for(self.config.recipe.seed, "noise", self.step, self.rank)
        latents = self._latents(batch.pixels, generator)
        noise = torch.randn(latents.shape, generator=generator).to(self.device)
        timesteps = torch.randint(
            0, self.scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator
        ).to(self.device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        if self.scheduler.config.prediction_type == "v_prediction":
            target = self.scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        prompts = tuple(self._tokenize(caption) for caption in batch.captions)
        stand_ins = self._stand_in_vectors(prompts)
        with self._autocast():
            prediction = self.model(noisy, timesteps, prompts, stand_ins, batch.time_ids)
        loss = custom_diffusion_loss(
            prediction,
            target,
            batch.masks.to(self.device),
            batch.is_reg.to(self.device),
            prior_loss_weight=self.config.recipe.prior_loss_weight,
        )
        self._update(loss)
        self.step += 1
        value = float(loss.detach())
        self.losses.append(value)
        return value

    def _update(self, loss: torch.Tensor) -> None:
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, self.config.recipe.max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, self.config.recipe.max_grad_norm)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    # -- state ----------------------------------------------------------------------------------

    def trainable_tensors(self) -> dict[str, torch.Tensor]:
        """Everything that can change: 'unet.{name}' and 'token.{modifier token}'."""
        tensors: dict[str, torch.Tensor] = {f"unet.{name}": p for name, p in self.trainable.items()}
        tensors.update({f"token.{token}": e for token, e in self.denoiser.token_embeddings().items()})
        return tensors

    def state(self, metrics: dict | None = None) -> TrainingState:
        return TrainingState(
            step=self.step,
            tensors={name: t.detach() for name, t in self.trainable_tensors().items()},
            optimizer=self.optimizer.state_dict(),
            metrics=metrics or {},
        )

    @torch.no_grad()
    def restore(self, state: TrainingState) -> None:
        tensors = self.trainable_tensors()
        if set(state.tensors) != set(tensors):
            raise ValueError("checkpoint does not match this run's trainable parameters (different mode or concepts?)")
        for name, value in state.tensors.items():
            tensors[name].copy_(value)
        self.optimizer.load_state_dict(state.optimizer)
        self.step = state.step

    # -- results --------------------------------------------------------------------------------

    def delta(self) -> ConceptDelta:
        """ΔW = W_trained − W0 (fp32, CPU) of every trained projection, and the token embeddings."""
        delta = ConceptDelta(
            token_embeddings={t: e.detach().float().cpu().clone() for t, e in self.denoiser.token_embeddings().items()}
        )
        for layer in sorted(cross_attention_layers(self.unet)):
            for projection in PROJECTIONS_BY_MODE[self.config.recipe.mode]:
                name = f"{layer}.{projection_module_name(projection)}.weight"
                change = self.trainable[name].detach().float() - self.initial[name]
                delta.layers.setdefault(layer, {})[projection] = DeltaWeight(dense=change.cpu())
        return delta
