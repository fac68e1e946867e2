"""What one Generator replica does, without Ray: validate and resolve a request, run a batch of
requests on the engine, turn results into responses. The Serve deployment only schedules and maps
errors; everything here runs (and is tested) in a plain process.

Per-request state lives in `PendingRequest`; the core holds only shared, read-mostly objects.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from proto import generator_pb2
from serving.basemodels import default_model_dir
from serving.concepts.merger import ConceptMerger
from serving.concepts.observer import CacheObserver, CacheStats, Observers
from serving.concepts.resolver import ConceptResolver, ResolvedConcepts
from serving.concepts.store import ConceptStore, TierBudgets
from serving.concepts.watcher import RegistryWatcher
from serving.config import RegistryLink, ServingConfig
from serving.engine import DeltaEngine, GenerationRequest, GenerationResult, create_engine
from serving.validation import GenerateParams, validate_request
from shared.auth import Caller
from shared.basemodel import load_base_model, reg_captions_path
from shared.errors import Cancelled
from shared.images import to_png
from shared.merge import RegularizationCache, load_captions
from shared.progress import ProgressCallback
from shared.registry_client import RegistryClient
from shared.rpc_client import RetryPolicy

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class PendingRequest:
    params: GenerateParams
    resolved: ResolvedConcepts
    request: GenerationRequest
    received_s: float
    prepared_s: float
    """When validation and concept resolution (loads, merges) ended: its queue time starts here."""
    on_progress: ProgressCallback | None = None
    """Told (steps done, total steps) after each denoising step of the request's batch."""
    cancelled: bool = False
    """Set when the caller went away (deadline, disconnect): dropped before its batch starts."""
    timings_ms: dict[str, float] = field(default_factory=dict)


Outcome = generator_pb2.GenerateResponse | BaseException


class ReplicaCore:
    def __init__(
        self, engine: DeltaEngine, resolver: ConceptResolver, config: ServingConfig, *, replica: str = ""
    ) -> None:
        self.engine = engine
        self.resolver = resolver
        self.config = config
        self.replica = replica

    def prepare(
        self, message: generator_pb2.GenerateRequest, caller: Caller, on_progress: ProgressCallback | None = None
    ) -> PendingRequest:
        """Validate, resolve the concepts `caller` may see (loading or merging them if needed) and
        check that the prompts only use modifier tokens the concepts provide. Blocking: call it off
        the event loop."""
        received = time.perf_counter()
        params = validate_request(
            message,
            self.config.limits,
            default_size=self.engine.default_size,
            size_multiple=self.engine.size_multiple,
            size_conditioning=self.engine.size_conditioning,
        )
        resolved = self.resolver.resolve(params.concepts, caller, params.mode)
        try:
            for text in (params.generation.prompt, params.generation.negative_prompt):
                self.engine.prompts.tokenize(text, resolved.modifier_tokens)
        except BaseException:
            resolved.release()
            raise
        request = replace(params.generation, delta=resolved.delta)
        return PendingRequest(params, resolved, request, received, time.perf_counter(), on_progress)

    def run_batch(self, pending: Sequence[PendingRequest]) -> list[Outcome]:
        """One engine call per sampling key (steps, size, scheduler), in arrival order; requests of
        one call share the UNet batch whatever their concepts. Every lease is released here."""
        outcomes: dict[int, Outcome] = {}
        groups: dict[object, list[int]] = {}
        for i, item in enumerate(pending):
            if item.cancelled:
                item.resolved.release()
                outcomes[i] = Cancelled("the caller went away before its batch started")
            else:
                groups.setdefault(item.request.sampling_key, []).append(i)
        for indices in groups.values():
            group = [pending[i] for i in indices]
            try:
                for i, response in zip(indices, self._run_group(group), strict=True):
                    outcomes[i] = response
            except Exception as e:  # noqa: BLE001 - the whole engine call failed: every request of it learns why
                for i in indices:
                    outcomes[i] = e
            finally:
                for item in group:
                    item.resolved.release()
        return [outcomes[i] for i in range(len(pending))]

    def _run_group(self, group: list[PendingRequest]) -> list[generator_pb2.GenerateResponse]:
        started = time.perf_counter()
        listeners = [item.on_progress for item in group if item.on_progress is not None]

        def progress(step: int, total: int) -> None:
            for listener in listeners:
                listener(step, total)

        results = self.engine.generate([item.request for item in group], progress=progress)
        return [self._response(item, result, started) for item, result in zip(group, results, strict=True)]

    def _response(
        self, item: PendingRequest, result: GenerationResult, started_s: float
    ) -> generator_pb2.GenerateResponse:
        height, width = result.images.shape[1:3]
        timings = generator_pb2.Timings(
            queue_ms=(started_s - item.prepared_s) * 1000.0,
            concept_load_ms=item.resolved.load_ms,
            merge_ms=item.resolved.merge_ms,
            encode_ms=result.timings_ms.get("encode_ms", 0.0),
            denoise_ms=result.timings_ms.get("denoise_ms", 0.0),
            decode_ms=result.timings_ms.get("decode_ms", 0.0),
            total_ms=(time.perf_counter() - item.received_s) * 1000.0,
        )
        return generator_pb2.GenerateResponse(
            request_id=item.params.request_id,
            images=[generator_pb2.Image(png=to_png(image), width=width, height=height) for image in result.images],
            seed=item.request.seed,
            concepts=item.resolved.refs,
            timings=timings,
            batch_requests=result.batch_requests,
            replica=self.replica,
        )


@dataclass
class Replica:
    """A core with the resources it owns (registry channel, watch thread)."""

    core: ReplicaCore
    store: ConceptStore
    stats: CacheStats
    watcher: RegistryWatcher
    registry: RegistryClient

    def close(self) -> None:
        self.watcher.close()
        self.registry.close()


def connect_registry(link: RegistryLink) -> RegistryClient:
    """The replica's registry client. Few, short retries: a request waiting on a concept miss
    should fail soon when the registry is away, while the watch keeps reconnecting on its own."""
    return RegistryClient(
        link.address,
        token=link.bearer_token(),
        tls_ca_file=link.tls_ca_file,
        timeout_s=link.timeout_s,
        retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.05, max_backoff_s=1.0),
    )


def resolve_device(config: ServingConfig) -> tuple[str, torch.dtype]:
    """'auto' → cuda when this process sees a GPU, else cpu; dtype 'auto' → fp16 on cuda, fp32 on cpu."""
    device = config.base_model.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = config.base_model.dtype
    if dtype == "auto":
        dtype = "fp16" if device.startswith("cuda") else "fp32"
    return device, DTYPES[dtype]


def build_replica(config: ServingConfig, *, replica: str = "", observer: CacheObserver | None = None) -> Replica:
    """Load the base model once and wire engine, store, merger, resolver and the registry watch."""
    model_dir = config.base_model.path or default_model_dir()
    device, dtype = resolve_device(config)
    base = load_base_model(
        model_dir, device=device, dtype=dtype, single_file_config=config.base_model.single_file_config
    )
    engine = create_engine(base, compile=config.base_model.compile)
    stats = CacheStats()
    observers: CacheObserver = stats if observer is None else Observers(stats, observer)
    registry = connect_registry(config.registry)
    cache = config.cache
    disk_dir = cache.disk_dir or Path(tempfile.mkdtemp(prefix="cdserve-concepts-"))
    budgets = TierBudgets(cache.device_max_bytes, cache.host_max_bytes, cache.disk_max_bytes, cache.merged_max_bytes)
    store = ConceptStore(base.spec, registry, budgets, disk_dir, device=device, dtype=dtype, observer=observers)
    captions_file = reg_captions_path(model_dir) if model_dir.is_dir() else None
    captions = load_captions(captions_file) if captions_file else load_captions()
    merger = ConceptMerger(
        engine.prompts, engine.layers, base.spec.fingerprint, captions, RegularizationCache(cache.reg_cache_dir)
    )
    merger.regularization()  # built (or read from reg_cache_dir) now, so that no request waits for it
    core = ReplicaCore(engine, ConceptResolver(store, merger), config, replica=replica)
    watcher = RegistryWatcher(registry, store, observers, heartbeat_s=config.registry.watch_heartbeat_s).start()
    return Replica(core, store, stats, watcher, registry)
