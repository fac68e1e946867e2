"""Synchronous client of the concept registry, for training jobs, replicas, the CLI and tests.

Get, List and Delete are retried by gRPC on UNAVAILABLE (the registry restarting or out of reach;
see `shared.rpc_client`); Publish is not, since a repeated upload would add a version. `fetch`
resumes an interrupted download at its offset (pinned to the version it started); `watch`
reconnects forever and resumes after the last sequence it delivered, so a consumer misses no
event. Every failure surfaces as a typed `shared.errors` error.
"""

from __future__ import annotations

import builtins
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

import grpc

from proto import common_pb2, registry_pb2, registry_pb2_grpc
from shared.errors import InvalidArtifact
from shared.grpc_status import error_from_rpc
from shared.progress import ProgressCallback
from shared.rpc_client import ChannelOptions, MiB, RetryPolicy, RpcClient

TRANSIENT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True)
class PublishedConcept:
    """What a publish produced: the new version, and whether its bytes were already stored."""

    concept: common_pb2.ConceptInfo
    deduplicated: bool


class RegistryClient(RpcClient):
    """One channel to a registry at `target` ("host:port").

    `token` (a bearer token) is sent with every call: writes need it, and reads with it also see
    the tenant's private concepts. `tls_ca_file` switches to TLS, trusting that PEM bundle.
    """

    SERVICE = registry_pb2.DESCRIPTOR.services_by_name["Registry"]
    STUB = registry_pb2_grpc.RegistryStub
    RETRIED_METHODS = ("Get", "List", "Delete")

    MAX_MESSAGE_BYTES = 8 * MiB

    def __init__(
        self,
        target: str,
        *,
        transfer_timeout_s: float = 600.0,
        chunk_bytes: int = MiB,
        **options: Unpack[ChannelOptions],
    ) -> None:
        """`transfer_timeout_s` is the deadline of a whole Publish or Fetch; `chunk_bytes` the data
        size of one message of either."""
        super().__init__(target, **options)
        self._transfer_timeout_s = transfer_timeout_s
        self._chunk_bytes = chunk_bytes

    # -- calls ---------------------------------------------------------------------------------

    def publish(
        self,
        artifact: str | Path | bytes,
        *,
        concept_id: str = "",
        public: bool = False,
        labels: Mapping[str, str] | None = None,
        token: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> PublishedConcept:
        """Upload an artifact (a path or its bytes) as the next version of `concept_id` (default:
        the id in its header). It waits for a registry that is (re)starting, then uploads once:
        a failed upload raises and the caller decides (had the registry committed it before the
        reply was lost, a second publish adds one more version with the same content,
        `deduplicated`)."""
        data = bytes(artifact) if isinstance(artifact, (bytes, bytearray, memoryview)) else Path(artifact).read_bytes()
        header = registry_pb2.PublishHeader(
            concept_id=concept_id,
            total_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            public=public,
            labels=dict(labels or {}),
        )

        def requests() -> Iterator[registry_pb2.PublishRequest]:
            yield registry_pb2.PublishRequest(header=header)
            view = memoryview(data)
            for start in range(0, len(data), self._chunk_bytes):
                end = min(start + self._chunk_bytes, len(data))
                yield registry_pb2.PublishRequest(data=bytes(view[start:end]))
                if progress:
                    progress(end, len(data))

        response = self._call_once(self._stub.Publish, requests(), timeout_s=self._transfer_timeout_s, token=token)
        return PublishedConcept(response.concept, response.deduplicated)

    def get(self, ref: str) -> common_pb2.ConceptInfo:
        """Metadata of "id" (latest live version) or "id@N"."""
        return self._call(self._stub.Get, registry_pb2.GetConceptRequest(ref=ref))

    def fetch(self, ref: str, *, progress: ProgressCallback | None = None) -> bytes:
        """The artifact's bytes, checked against its sha256. A broken stream is resumed at the
        received offset of the same version; only consecutive failures without progress count."""
        buffer = bytearray()
        concept: common_pb2.ConceptInfo | None = None
        failures = 0
        while True:
            pinned = ref if concept is None else f"{concept.concept_id}@{concept.version}"
            request = registry_pb2.FetchRequest(ref=pinned, offset=len(buffer), chunk_bytes=self._chunk_bytes)
            try:
                for chunk in self._stub.Fetch(request, timeout=self._transfer_timeout_s, metadata=self._metadata()):
                    if chunk.HasField("concept"):
                        concept = chunk.concept
                    if chunk.offset != len(buffer):
                        raise InvalidArtifact(
                            f"fetch of {ref!r}: chunk at offset {chunk.offset}, expected {len(buffer)}"
                        )
                    if chunk.data:
                        buffer += chunk.data
                        failures = 0
                        if progress and concept is not None:
                            progress(len(buffer), concept.size_bytes)
                break
            except grpc.RpcError as e:
                failures += 1
                if e.code() not in TRANSIENT_CODES or failures >= self._retry.max_attempts:
                    raise error_from_rpc(e) from e
                time.sleep(self._retry.delay_s(failures))
        return _verified(ref, concept, bytes(buffer))

    def list(
        self,
        *,
        tenant: str = "",
        base_fingerprint: str = "",
        category: str = "",
        id_prefix: str = "",
        all_versions: bool = False,
        include_deleted: bool = False,
        page_size: int = 0,
    ) -> Iterator[common_pb2.ConceptInfo]:
        """Every matching concept the caller may see, fetching pages as the iteration advances."""
        request = registry_pb2.ListConceptsRequest(
            page_size=page_size,
            tenant=tenant,
            base_fingerprint=base_fingerprint,
            category=category,
            id_prefix=id_prefix,
            all_versions=all_versions,
            include_deleted=include_deleted,
        )
        while True:
            page = self._call(self._stub.List, request)
            yield from page.concepts
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def delete(self, ref: str, *, token: str | None = None) -> builtins.list[common_pb2.ConceptInfo]:
        """Soft-delete "id@N", or every version of "id"; returns what was deleted. Retried on
        UNAVAILABLE: the registry ends in the same state, though a retry after a delete that
        committed but lost its answer reports NotFound."""
        response = self._call(self._stub.Delete, registry_pb2.DeleteConceptRequest(ref=ref), token=token)
        return list(response.deleted)

    def watch(self, after_sequence: int = 0, *, heartbeat_s: int = 0, include_heartbeats: bool = False) -> ConceptWatch:
        """Events after `after_sequence` (0: all), then live ones; see `ConceptWatch`."""

        def open_stream(cursor: int) -> grpc.Call:
            request = registry_pb2.WatchRequest(after_sequence=cursor, heartbeat_s=heartbeat_s)
            return self._stub.Watch(request, metadata=self._metadata())

        return ConceptWatch(open_stream, self._retry, after_sequence, include_heartbeats=include_heartbeats)


def _verified(ref: str, concept: common_pb2.ConceptInfo | None, data: bytes) -> bytes:
    if concept is None:
        raise InvalidArtifact(f"fetch of {ref!r}: the registry sent no concept metadata")
    if len(data) != concept.size_bytes or hashlib.sha256(data).hexdigest() != concept.sha256:
        raise InvalidArtifact(
            f"fetch of {ref!r}: received {len(data)} bytes that do not match the registry's "
            f"size {concept.size_bytes} and sha256 {concept.sha256[:16]}…; fetch again"
        )
    return data


class ConceptWatch:
    """An endless iterator of `ConceptEvent`s that survives registry restarts.

    Made to be consumed by a background thread: `close()` (from any thread) ends the iteration
    promptly, also while it is blocked waiting for the next event. `sequence` is the cursor to
    persist for a later `watch(after_sequence=...)`. Errors that retrying cannot fix (e.g. an
    unknown token) are raised from the iteration.
    """

    def __init__(
        self,
        open_stream: Callable[[int], grpc.Call],
        retry: RetryPolicy,
        after_sequence: int,
        *,
        include_heartbeats: bool,
    ) -> None:
        self._open_stream = open_stream
        self._retry = retry
        self.sequence = after_sequence
        self._include_heartbeats = include_heartbeats
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._call: grpc.Call | None = None

    def close(self) -> None:
        self._stopped.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()

    def __enter__(self) -> ConceptWatch:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[registry_pb2.ConceptEvent]:
        failures = 0
        while True:
            with self._lock:
                if self._stopped.is_set():
                    return
                call = self._call = self._open_stream(self.sequence)
            try:
                for event in call:
                    failures = 0
                    self.sequence = max(self.sequence, event.sequence)
                    if event.kind != registry_pb2.ConceptEvent.HEARTBEAT or self._include_heartbeats:
                        yield event
            except grpc.RpcError as e:
                if self._stopped.is_set():
                    return
                if e.code() not in TRANSIENT_CODES:
                    raise error_from_rpc(e) from e
            finally:
                with self._lock:
                    call.cancel()
                    self._call = None
            # the stream broke, or the registry ended it while stopping: reconnect after a backoff
            failures += 1
            self._stopped.wait(self._retry.delay_s(failures))
