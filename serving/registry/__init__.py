"""The concept registry: publishes, versions and streams concept artifacts over gRPC.

Layers, top to bottom: `server` (factory: grpc.aio server, interceptors, health, reflection,
metrics endpoint) → `servicer` (proto ↔ domain only) → `service.Registry` (the rules, no grpc) →
`storage` interfaces, with the embedded `sqlite_store` and `blob_files` implementations.
"""

from serving.registry.config import RegistryConfig
from serving.registry.server import RegistryHandle, start_registry

__all__ = ["RegistryConfig", "RegistryHandle", "start_registry"]
