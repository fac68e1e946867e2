"""The delta-aware inference engine: plain PyTorch/diffusers, no Ray, no gRPC.

`DeltaEngine` holds one base pipeline and runs batches in which every request carries its own
concept delta (or none); the base weights are never written.
"""

from serving.engine.engine import DeltaEngine
from serving.engine.request import GenerationRequest, GenerationResult, SamplingKey

__all__ = ["DeltaEngine", "GenerationRequest", "GenerationResult", "SamplingKey"]
