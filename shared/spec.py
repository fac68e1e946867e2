"""What a concept must agree with in a base model — importable without torch model code, so that
the registry validates artifacts without loading diffusers or transformers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

SPEC_FILE = "cdserve_base_spec.json"
"""Written next to a base model so that a registry can validate concepts without loading it."""

FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
"""Base-model families: SD 1.x (CLIP ViT-L, 768-d), SD 2.x (OpenCLIP ViT-H, 1024-d) and SDXL
(CLIP ViT-L and OpenCLIP ViT-bigG, whose features are concatenated to 2048-d)."""


@dataclass(frozen=True)
class CrossAttentionLayer:
    """One `attn2` of the UNet: `to_k`/`to_v` map text features (in_features) to (out_features);
    `to_q` maps image features (query_dim) to out_features and `to_out` maps them back."""

    name: str
    in_features: int
    out_features: int
    heads: int
    query_dim: int

    def delta_shape(self, projection: str) -> tuple[int, int]:
        """(out, in) of the weight a delta for `projection` must match."""
        return {
            "to_k": (self.out_features, self.in_features),
            "to_v": (self.out_features, self.in_features),
            "to_q": (self.out_features, self.query_dim),
            "to_out": (self.query_dim, self.out_features),
        }[projection]


@dataclass(frozen=True)
class BaseSpec:
    """What a concept must agree with: the fingerprint, the layer shapes, the token width and the family.

    Serialisable, so that a registry can validate concepts without loading the model. With several
    text encoders (SDXL) a modifier token has one embedding per encoder: `token_dims` holds their
    widths in encoder order and `token_dim` their sum (the width of the concatenated vector).
    """

    fingerprint: str
    layers: tuple[CrossAttentionLayer, ...]
    token_dim: int
    family: str = "sd1"
    token_dims: tuple[int, ...] = ()

    @property
    def encoder_token_dims(self) -> tuple[int, ...]:
        """The embedding width of each text encoder (one entry for SD 1.x/2.x)."""
        return self.token_dims or (self.token_dim,)

    @property
    def layer_map(self) -> dict[str, CrossAttentionLayer]:
        return {layer.name: layer for layer in self.layers}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> BaseSpec:
        raw = json.loads(text)
        layers = tuple(CrossAttentionLayer(**layer) for layer in raw["layers"])
        token_dim = int(raw["token_dim"])
        # Spec files from before families were recorded are SD 1.x or 2.x, told apart by width.
        legacy_family = "sd2" if token_dim == 1024 else "sd1"
        return BaseSpec(
            fingerprint=raw["fingerprint"],
            layers=layers,
            token_dim=token_dim,
            family=raw.get("family", legacy_family),
            token_dims=tuple(int(d) for d in raw.get("token_dims", ())),
        )
