"""The registry's rules, free of gRPC: publish, resolve, fetch, list, delete and watch concepts.

Every method takes the `Caller` (who is asking) and raises typed errors from `shared.errors`; the
servicer only converts. Blocking work (SQLite, file I/O, hashing, artifact validation) runs in
worker threads so the event loop keeps serving other calls and watch streams.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

from serving.registry.config import RegistryConfig
from serving.registry.events import EventHub, Heartbeat
from serving.registry.labels import check_labels
from serving.registry.metrics import RegistryMetrics
from serving.registry.paging import Page, cut_page, decode_page_token
from serving.registry.refs import check_concept_id, check_sequence, not_found, parse_ref
from serving.registry.storage import (
    BlobStore,
    ConceptEventRecord,
    ConceptQuery,
    ConceptRecord,
    ListFilter,
    MetadataStore,
    NewConcept,
    StagedBlob,
)
from shared.artifact import ArtifactIndex, ArtifactLimits, read_index, verify_content
from shared.auth import OPERATOR_TENANT, Caller
from shared.errors import CapacityExceeded, IncompatibleBase, InvalidArgument, NotFound, PermissionDenied, TooLarge
from shared.spec import BaseSpec

log = logging.getLogger("cdserve.registry")

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
WATCH_BATCH = 256
MAX_FILTER_CHARS = 256
"""Longest List filter value: longer than any id, fingerprint or category that can exist."""


@dataclass(frozen=True)
class PublishIntent:
    """The header of an upload: what the client promises to send."""

    total_bytes: int
    sha256: str
    concept_id: str = ""
    """Empty: the concept id in the artifact's header."""
    public: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishResult:
    """What a publish committed."""

    concept: ConceptRecord
    deduplicated: bool
    """The bytes were already stored for an earlier version of the caller's concept: no new blob was written."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class Registry:
    """One registry over a metadata store and a blob store.

    Commits and deletes (with their blob garbage collection) hold one lock, so a blob found present
    by a publish cannot be collected before that publish's row references it.
    """

    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        *,
        config: RegistryConfig,
        base_specs: Sequence[BaseSpec],
        metrics: RegistryMetrics,
    ) -> None:
        self._metadata = metadata
        self._blobs = blobs
        self._config = config
        self._specs = {spec.fingerprint: spec for spec in base_specs}
        self._limits = ArtifactLimits(max_bytes=config.max_upload_bytes, max_header_bytes=config.max_header_bytes)
        self._metrics = metrics
        self._commit_lock = asyncio.Lock()
        self._uploads = 0
        self._recover()
        self._hub = EventHub(metadata.latest_sequence())

    def _recover(self) -> None:
        """Drop what a crash left behind: staged uploads and blobs no live version references."""
        staged = self._blobs.clear_staging()
        orphans = set(self._blobs.digests()) - self._metadata.live_digests()
        for sha256 in orphans:
            self._blobs.delete(sha256)
        if staged or orphans:
            log.info("recovered", extra={"fields": {"staged_removed": staged, "orphan_blobs_removed": len(orphans)}})
        self._metrics.set_totals(*self._metadata.totals())

    @property
    def latest_sequence(self) -> int:
        return self._hub.latest

    @property
    def accepted_fingerprints(self) -> list[str]:
        return sorted(self._specs)

    async def close(self) -> None:
        await self._hub.close()

    # -- publish -------------------------------------------------------------------------------

    async def publish(self, caller: Caller, intent: PublishIntent, chunks: AsyncIterator[bytes]) -> PublishResult:
        """Stage the stream, check size and digest, validate the artifact from disk, then commit
        atomically. Anything that fails before the commit leaves no trace: the staged file is removed.

        Which ids a tenant may publish under, without an existence oracle: concept ids are one global
        namespace (Generate names concepts by id alone), so an id another tenant holds must be refused,
        and a refusal that only taken ids get tells the caller the id is taken. What the registry
        guarantees is that the refusal says nothing more: an id held by another tenant (public,
        private or deleted) gets one answer, PERMISSION_DENIED "not available to you", whose text
        depends on the id alone; the same bytes as another tenant's concept get that same answer
        (an artifact names its own id, which must be the id it is published under); and the
        `deduplicated` flag can only concern the caller's own versions. With `namespaced_ids` a
        tenant publishes only ids that start with "<tenant>-": every id outside that namespace gets
        the same refusal whether or not it exists, so even that one bit is gone. The operator
        publishes anywhere.
        """
        tenant = caller.require_publisher(intent.concept_id or None)
        self._check_intent(intent)
        if intent.concept_id:
            await self._check_id(check_concept_id(intent.concept_id), tenant)
        if self._uploads >= self._config.max_concurrent_uploads:
            raise CapacityExceeded(
                f"{self._uploads} uploads are in progress, the most this registry receives at once "
                "(max_concurrent_uploads); retry in a moment",
                field="data",
            )
        self._uploads += 1
        try:
            result = await self._receive(caller, tenant, intent, chunks)
        finally:
            self._uploads -= 1
        record = result.concept
        log.info(
            "published",
            extra={
                "fields": {
                    "concept_id": record.concept_id,
                    "version": record.version,
                    "tenant": tenant,
                    "size_bytes": record.size_bytes,
                    "deduplicated": result.deduplicated,
                }
            },
        )
        return result

    async def _receive(
        self, caller: Caller, tenant: str, intent: PublishIntent, chunks: AsyncIterator[bytes]
    ) -> PublishResult:
        staged = self._blobs.stage()
        commit: asyncio.Future[tuple[ConceptRecord, bool]] | None = None
        try:
            async for chunk in chunks:
                if staged.size + len(chunk) > intent.total_bytes:
                    raise InvalidArgument(
                        f"the upload sent more than the {intent.total_bytes} bytes its header declared",
                        field="data",
                    )
                await asyncio.to_thread(staged.write, chunk)
                self._metrics.transfer_bytes.labels(direction="upload").inc(len(chunk))
            if staged.size != intent.total_bytes:
                raise InvalidArgument(
                    f"the upload ended after {staged.size} of {intent.total_bytes} bytes; send the whole file",
                    field="data",
                )
            if staged.sha256 != intent.sha256:
                raise InvalidArgument(
                    f"the upload's sha256 is {staged.sha256}, the header declared {intent.sha256}; "
                    "the file changed or was corrupted in transit",
                    field="sha256",
                )
            index = await asyncio.to_thread(self._validate, staged)
            concept_id = index.header.concept_id
            # The header (its id included) is covered by the content digest and Fetch serves the file
            # unchanged: a record under another id would contradict its own file and header_json.
            if intent.concept_id and intent.concept_id != concept_id:
                raise InvalidArgument(
                    f"the artifact is concept {concept_id!r}, not {intent.concept_id!r}; leave concept_id empty "
                    "or export the concept under the id to publish it as",
                    field="concept_id",
                )
            caller.require_publisher(concept_id)
            await self._check_id(concept_id, tenant)
            # From here the publish completes even if the caller goes away: a commit is never half done.
            new = self._new_concept(concept_id, tenant, intent, index, staged.size)
            commit = asyncio.ensure_future(self._commit(staged, new))
            try:
                record, deduplicated = await asyncio.shield(commit)
            except PermissionDenied as e:  # another tenant took the id meanwhile
                raise self._unavailable(concept_id) from e
        finally:
            if commit is None:
                staged.discard()  # synchronous, so that a cancelled call cannot skip it
        return PublishResult(record, deduplicated)

    async def _commit(self, staged: StagedBlob, new: NewConcept) -> tuple[ConceptRecord, bool]:
        """Store the blob, then the row and its event; a failed insert collects the blob again."""
        try:
            async with self._commit_lock:
                deduplicated = await asyncio.to_thread(staged.commit)
                try:
                    record, sequence = await asyncio.to_thread(self._metadata.insert_version, new)
                except BaseException:
                    await asyncio.to_thread(self._collect, [new.sha256])
                    raise
        finally:
            staged.discard()
        await self._committed(sequence)
        return record, deduplicated

    def _check_intent(self, intent: PublishIntent) -> None:
        if intent.total_bytes <= 0:
            raise InvalidArgument("header.total_bytes must be the artifact's size in bytes", field="total_bytes")
        if intent.total_bytes > self._config.max_upload_bytes:
            raise TooLarge(
                f"the upload is {intent.total_bytes} bytes; this registry accepts at most "
                f"{self._config.max_upload_bytes} (max_upload_bytes)",
                field="total_bytes",
            )
        if not SHA256_PATTERN.fullmatch(intent.sha256):
            raise InvalidArgument("header.sha256 must be 64 lowercase hex digits", field="sha256")
        check_labels(
            intent.labels, max_labels=self._config.max_labels, max_value_chars=self._config.max_label_value_chars
        )

    async def _check_id(self, concept_id: str, tenant: str) -> None:
        """Refuse an id outside the tenant's namespace or held by another tenant (see `publish`);
        `insert_version` re-checks the owner in its transaction."""
        if self._config.namespaced_ids and tenant != OPERATOR_TENANT and not concept_id.startswith(f"{tenant}-"):
            raise self._unavailable(concept_id)
        owner = await asyncio.to_thread(self._metadata.owner_of, concept_id)
        if owner is not None and owner != tenant:
            raise self._unavailable(concept_id)

    def _unavailable(self, concept_id: str) -> PermissionDenied:
        """The one refusal of an id the caller may not publish under; its text depends on the id only."""
        namespaced = self._config.namespaced_ids
        rule = "ids you publish start with '<your tenant>-'" if namespaced else "publish under another id"
        return PermissionDenied(f"concept id {concept_id!r} is not available to you; {rule}", field="concept_id")

    def _validate(self, staged: StagedBlob) -> ArtifactIndex:
        """Check the staged upload from disk a chunk at a time: never the whole file in memory."""
        with staged.sealed() as file:
            index = read_index(file, staged.size, limits=self._limits, name="upload")
            spec = self._specs.get(index.header.base_fingerprint)
            if spec is None:
                raise IncompatibleBase(
                    f"the concept was trained for base model {index.header.base_fingerprint!r}; this registry "
                    f"accepts {self.accepted_fingerprints or 'no base model (start it with --base-spec)'}",
                    field="base_fingerprint",
                )
            verify_content(file, index, base=spec, name="upload")
        return index

    def _new_concept(
        self, concept_id: str, tenant: str, intent: PublishIntent, index: ArtifactIndex, size: int
    ) -> NewConcept:
        header = index.header
        return NewConcept(
            concept_id=concept_id,
            tenant=tenant,
            public=intent.public,
            sha256=intent.sha256,
            size_bytes=size,
            base_fingerprint=header.base_fingerprint,
            modifier_tokens=tuple(header.modifier_tokens),
            category_words=tuple(part.category for part in header.concepts),
            delta_kind=header.delta_kind,
            max_rank=index.max_rank,
            num_layers=len(index.layers),
            created_ms=_now_ms(),
            header_json=header.model_dump_json(),
            labels=dict(intent.labels),
        )

    # -- read ----------------------------------------------------------------------------------

    async def get(self, caller: Caller, ref: str) -> ConceptRecord:
        concept_id, version = parse_ref(ref)
        query = ConceptQuery(viewer=caller.tenant, sees_all=caller.sees_all)
        record = await asyncio.to_thread(self._metadata.find, concept_id, version, query)
        if record is None:
            raise not_found(concept_id, version)
        return record

    async def fetch(
        self, caller: Caller, ref: str, offset: int, chunk_bytes: int
    ) -> tuple[ConceptRecord, AsyncGenerator[tuple[int, bytes]]]:
        """The concept and its file from `offset` as (offset, data) chunks of at most `chunk_bytes`."""
        record = await self.get(caller, ref)
        if offset > record.size_bytes:
            raise InvalidArgument(
                f"offset {offset} is past the end of the {record.size_bytes}-byte file", field="offset"
            )
        chunk_bytes = min(chunk_bytes or self._config.fetch_chunk_bytes, self._config.fetch_chunk_bytes)
        blob = await asyncio.to_thread(self._blobs.open, record.sha256)

        async def chunks() -> AsyncGenerator[tuple[int, bytes]]:
            position = offset
            try:
                await asyncio.to_thread(blob.seek, offset)
                while data := await asyncio.to_thread(blob.read, chunk_bytes):
                    self._metrics.transfer_bytes.labels(direction="download").inc(len(data))
                    yield position, data
                    position += len(data)
            finally:
                blob.close()

        return record, chunks()

    async def list(self, caller: Caller, filters: ListFilter, page_size: int, page_token: str) -> Page:
        if page_size > self._config.max_list_page_size:
            raise InvalidArgument(
                f"page_size {page_size} is above the limit {self._config.max_list_page_size}", field="page_size"
            )
        for name, value in vars(filters).items():
            if isinstance(value, str) and len(value) > MAX_FILTER_CHARS:
                raise InvalidArgument(f"{name} is {len(value)} characters; the limit is {MAX_FILTER_CHARS}", field=name)
        limit = page_size or self._config.list_page_size
        query = ConceptQuery(
            viewer=caller.tenant,
            sees_all=caller.sees_all,
            filters=filters,
            after=decode_page_token(page_token) if page_token else None,
            limit=limit + 1,
        )
        records = await asyncio.to_thread(self._metadata.list, query)
        return cut_page(records, limit, self._config.max_message_bytes)

    # -- delete --------------------------------------------------------------------------------

    async def delete(self, caller: Caller, ref: str) -> builtins.list[ConceptRecord]:
        """Soft-delete one version ("id@N") or all ("id"); blobs nothing live references are removed."""
        tenant = caller.require_tenant("deleting changes the registry")
        concept_id, version = parse_ref(ref)
        target = await self.get(caller, ref)
        if target.tenant != tenant and not caller.sees_all:
            raise PermissionDenied(
                f"concept {concept_id!r} belongs to another tenant; you may not delete it", field="ref"
            )
        deleted = await asyncio.shield(self._delete(concept_id, version))  # completes even if the caller leaves
        if not deleted:
            raise NotFound(f"{ref!r} was deleted meanwhile", field="ref")
        log.info("deleted", extra={"fields": {"ref": ref, "versions": [r.version for r in deleted], "tenant": tenant}})
        return deleted

    async def _delete(self, concept_id: str, version: int | None) -> builtins.list[ConceptRecord]:
        async with self._commit_lock:
            deleted = await asyncio.to_thread(self._metadata.mark_deleted, concept_id, version)
            await asyncio.to_thread(self._collect, {record.sha256 for record, _ in deleted})
        if deleted:
            await self._committed(max(sequence for _, sequence in deleted))
        return [record for record, _ in deleted]

    def _collect(self, digests: Iterable[str]) -> None:
        for sha256 in digests:
            if not self._metadata.is_referenced(sha256):
                self._blobs.delete(sha256)

    async def _committed(self, sequence: int) -> None:
        self._metrics.set_totals(*await asyncio.to_thread(self._metadata.totals))
        await self._hub.publish(sequence)

    # -- watch ---------------------------------------------------------------------------------

    async def watch(
        self, caller: Caller, after_sequence: int, heartbeat_s: float
    ) -> AsyncGenerator[ConceptEventRecord | Heartbeat]:
        """Every event after the cursor that the caller may see, in order, then new ones as they
        commit; a `Heartbeat` after `heartbeat_s` of quiet. Ends when the registry closes."""
        if heartbeat_s > self._config.max_watch_heartbeat_s:
            limit = self._config.max_watch_heartbeat_s
            raise InvalidArgument(f"heartbeat_s {heartbeat_s} is above the limit {limit}", field="heartbeat_s")
        heartbeat_s = heartbeat_s or self._config.watch_heartbeat_s
        cursor = check_sequence(after_sequence, field="after_sequence")
        self._metrics.watchers.inc()
        try:
            while not self._hub.closed:
                events = await asyncio.to_thread(self._metadata.events_after, cursor, WATCH_BATCH)
                for event in events:
                    cursor = event.sequence
                    if caller.may_see(event.concept):
                        yield event
                if events:
                    continue
                if not await self._hub.wait_beyond(cursor, heartbeat_s):
                    yield Heartbeat(cursor, _now_ms())
        finally:
            self._metrics.watchers.dec()
