"""GET /v1/concepts, /v1/concepts/{ref} and its preview: the registry, read with the caller's own
token, so that each caller sees exactly what the registry shows them over gRPC (another tenant's
private concept is NOT_FOUND there, and so here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from serving.http.api import Context, Identity
from serving.http.schemas import ConceptList, ConceptOut
from shared.errors import InvalidArgument
from shared.registry_client import RegistryClient

BOOLEANS = {"true": True, "false": False}
PUBLISH_FORM = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["artifact"],
            "properties": {
                "artifact": {"type": "string", "format": "binary", "description": "a concept .safetensors"},
                "concept_id": {"type": "string", "description": "'' : the id in the artifact's header"},
                "public": {"type": "string", "enum": ["true", "false"], "default": "false"},
            },
        }
    }
}


class Published(BaseModel):
    concept: ConceptOut
    deduplicated: bool = Field(description="the same bytes were already stored")


class Deleted(BaseModel):
    deleted: list[ConceptOut]


class ConceptFilters(BaseModel):
    """The filters of the registry's List (page size and token aside: every match is returned)."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = ""
    base_fingerprint: str = ""
    category: str = ""
    id_prefix: str = ""
    all_versions: bool = Field(False, description="every version, not only the latest live one")
    include_deleted: bool = False


def router(context: Context, identity: Any) -> APIRouter:
    routes = APIRouter(prefix="/v1/concepts", tags=["concepts"])

    @contextmanager
    def registry(who: Identity) -> Iterator[RegistryClient]:
        with RegistryClient(
            context.registry_address, token=who.token, timeout_s=context.config.request_timeout_s
        ) as client:
            yield client

    def get(who: Identity, ref: str) -> Any:
        with registry(who) as client:
            return client.get(ref)

    @routes.get("", response_model=ConceptList)
    async def list_concepts(filters: Annotated[ConceptFilters, Query()], who: Identity = identity) -> ConceptList:
        """List: every concept the caller may see that matches the filters."""

        def read() -> list[Any]:
            with registry(who) as client:
                return list(client.list(**filters.model_dump()))

        return ConceptList(concepts=[ConceptOut.of(info) for info in await run_in_threadpool(read)])

    @routes.post(
        "", response_model=Published, openapi_extra={"requestBody": {"required": True, "content": PUBLISH_FORM}}
    )
    async def publish_concept(request: Request, who: Identity = identity) -> Published:
        """Publish: an artifact (multipart `artifact`) as the next version of its id, owned by the
        caller's tenant; the registry validates it whole before anything becomes visible."""
        async with request.form(max_files=1) as form:
            artifact, concept_id, public = form.get("artifact"), form.get("concept_id", ""), form.get("public", "false")
            if not isinstance(artifact, UploadFile):
                raise InvalidArgument("the form needs an 'artifact' file: a concept .safetensors", field="artifact")
            if not isinstance(concept_id, str) or public not in BOOLEANS:
                raise InvalidArgument("'concept_id' is text and 'public' is 'true' or 'false'", field="public")
            data = await artifact.read()

        def publish() -> Published:
            with registry(who) as client:
                result = client.publish(data, concept_id=concept_id, public=BOOLEANS[public])
            return Published(concept=ConceptOut.of(result.concept), deduplicated=result.deduplicated)

        return await run_in_threadpool(publish)

    @routes.delete("/{ref}", response_model=Deleted)
    async def delete_concept(ref: str, who: Identity = identity) -> Deleted:
        """Delete "id@N", or every version of "id" (the caller's own; the operator's any)."""

        def delete() -> Deleted:
            with registry(who) as client:
                return Deleted(deleted=[ConceptOut.of(info) for info in client.delete(ref)])

        return await run_in_threadpool(delete)

    @routes.get("/{ref}", response_model=ConceptOut)
    async def show_concept(ref: str, who: Identity = identity) -> ConceptOut:
        """Get: "id" (latest live version) or "id@N", with the artifact's header."""
        return ConceptOut.of(await run_in_threadpool(get, who, ref), with_header=True)

    @routes.get("/{ref}/preview", response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def concept_preview(ref: str, who: Identity = identity) -> Response:
        """A picture of the concept, drawn by the Generator on first request and kept."""
        info = await run_in_threadpool(get, who, ref)
        png = await context.previews.png(info, who.caller)
        pinned = "@" in ref  # "id" moves to each new version; "id@N" never changes
        return Response(
            png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400" if pinned else "no-cache"}
        )

    return routes
