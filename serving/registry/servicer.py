"""The Registry gRPC servicer: converts proto ↔ domain and delegates to `service.Registry`.

Typed errors propagate to `interceptors.ObservabilityInterceptor`, which sets the status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from grpc.aio import ServicerContext

from proto import common_pb2, registry_pb2, registry_pb2_grpc
from serving.registry.events import Heartbeat
from serving.registry.service import PublishIntent, Registry
from serving.registry.storage import DELETED, PUBLISHED, ConceptRecord, ListFilter
from shared.auth import current_caller
from shared.errors import InvalidArgument

EVENT_KINDS = {PUBLISHED: registry_pb2.ConceptEvent.PUBLISHED, DELETED: registry_pb2.ConceptEvent.DELETED}


def concept_info(record: ConceptRecord) -> common_pb2.ConceptInfo:
    return common_pb2.ConceptInfo(
        concept_id=record.concept_id,
        version=record.version,
        tenant=record.tenant,
        public=record.public,
        sha256=record.sha256,
        size_bytes=record.size_bytes,
        base_fingerprint=record.base_fingerprint,
        modifier_tokens=record.modifier_tokens,
        category_words=record.category_words,
        delta_kind=record.delta_kind,
        max_rank=record.max_rank,
        num_layers=record.num_layers,
        created_ms=record.created_ms,
        deleted=record.deleted,
        header_json=record.header_json,
        labels=record.labels,
    )


async def _upload_data(
    first: registry_pb2.PublishRequest, rest: AsyncIterator[registry_pb2.PublishRequest]
) -> AsyncIterator[bytes]:
    if first.data:
        yield first.data
    async for message in rest:
        if message.HasField("header"):
            raise InvalidArgument("only the first Publish message may carry a header", field="header")
        yield message.data


class RegistryServicer(registry_pb2_grpc.RegistryServicer):
    """Each RPC acts for the authenticated caller (`current_caller`); the registry decides what that
    caller may see and change."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def Publish(
        self, request_iterator: AsyncIterator[registry_pb2.PublishRequest], context: ServicerContext
    ) -> registry_pb2.PublishResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("header"):
            raise InvalidArgument("the first Publish message must carry the header", field="header")
        header = first.header
        intent = PublishIntent(
            total_bytes=header.total_bytes,
            sha256=header.sha256.lower(),
            concept_id=header.concept_id,
            public=header.public,
            labels=dict(header.labels),
        )
        result = await self._registry.publish(current_caller(), intent, _upload_data(first, request_iterator))
        return registry_pb2.PublishResponse(concept=concept_info(result.concept), deduplicated=result.deduplicated)

    async def Get(self, request: registry_pb2.GetConceptRequest, context: ServicerContext) -> common_pb2.ConceptInfo:
        return concept_info(await self._registry.get(current_caller(), request.ref))

    async def Fetch(
        self, request: registry_pb2.FetchRequest, context: ServicerContext
    ) -> AsyncIterator[registry_pb2.FetchChunk]:
        record, chunks = await self._registry.fetch(current_caller(), request.ref, request.offset, request.chunk_bytes)
        async with aclosing(chunks):
            yield registry_pb2.FetchChunk(concept=concept_info(record), offset=request.offset)
            async for offset, data in chunks:
                yield registry_pb2.FetchChunk(offset=offset, data=data)

    async def List(
        self, request: registry_pb2.ListConceptsRequest, context: ServicerContext
    ) -> registry_pb2.ListConceptsResponse:
        filters = ListFilter(
            tenant=request.tenant,
            base_fingerprint=request.base_fingerprint,
            category=request.category,
            id_prefix=request.id_prefix,
            all_versions=request.all_versions,
            include_deleted=request.include_deleted,
        )
        page = await self._registry.list(current_caller(), filters, request.page_size, request.page_token)
        return registry_pb2.ListConceptsResponse(
            concepts=[concept_info(record) for record in page.concepts], next_page_token=page.next_page_token
        )

    async def Delete(
        self, request: registry_pb2.DeleteConceptRequest, context: ServicerContext
    ) -> registry_pb2.DeleteConceptResponse:
        deleted = await self._registry.delete(current_caller(), request.ref)
        return registry_pb2.DeleteConceptResponse(deleted=[concept_info(record) for record in deleted])

    async def Watch(
        self, request: registry_pb2.WatchRequest, context: ServicerContext
    ) -> AsyncIterator[registry_pb2.ConceptEvent]:
        events = self._registry.watch(current_caller(), request.after_sequence, request.heartbeat_s)
        async with aclosing(events):
            async for item in events:
                if isinstance(item, Heartbeat):
                    yield registry_pb2.ConceptEvent(
                        sequence=item.sequence, kind=registry_pb2.ConceptEvent.HEARTBEAT, time_ms=item.time_ms
                    )
                else:
                    yield registry_pb2.ConceptEvent(
                        sequence=item.sequence,
                        kind=EVENT_KINDS[item.kind],
                        concept=concept_info(item.concept),
                        time_ms=item.time_ms,
                    )
