"""The concept registry: publishes, versions and streams concept artifacts over gRPC.

Layers, top to bottom: `server.start_registry` (grpc.aio server, interceptors, health, reflection,
metrics endpoint) → `servicer` (proto ↔ domain only) → `service.Registry` (the rules, no grpc) →
`storage` interfaces, with the embedded `sqlite_store` and `blob_files` implementations.
Nothing is imported here, so that `cdserve --help` stays fast.
"""
