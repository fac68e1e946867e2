"""The delta-aware inference engine: plain PyTorch/diffusers, no Ray, no gRPC.

`DeltaEngine` holds one base pipeline and runs batches in which every request carries its own
concept delta (or none); the base weights are never written.
"""

from serving.engine.engine import DeltaEngine
from serving.engine.request import GenerationRequest, GenerationResult, SamplingKey
from serving.engine.sdxl import SDXLDeltaEngine
from shared.basemodel import BaseModel


def create_engine(base: BaseModel, *, compile: bool = False) -> DeltaEngine:
    """The engine for the base model's family (SDXL has its own text conditioning)."""
    engine = SDXLDeltaEngine if base.spec.family == "sdxl" else DeltaEngine
    return engine(base, compile=compile)


__all__ = ["DeltaEngine", "GenerationRequest", "GenerationResult", "SDXLDeltaEngine", "SamplingKey", "create_engine"]
