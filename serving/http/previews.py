"""A concept's preview image: drawn on first request by the Generator itself, then kept by the
artifact's sha256.

The registry stores artifacts only, and a concept reaches it by several paths (a training job,
`cdserve concepts publish`, an import from diffusers), so the preview is made where all of them
meet: the first time anyone asks. Keyed by content, a preview never goes stale (a new version is
new content) and two versions with the same bytes share one. Settings are fixed (`PreviewConfig`),
so every replica and restart draws the same picture.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from proto import common_pb2, generator_pb2
from serving.http.config import PreviewConfig
from shared.auth import Caller

STAND_IN = "<stand-in>"
Generate = Callable[[generator_pb2.GenerateRequest, Caller], Awaitable[generator_pb2.GenerateResponse]]


def preview_prompt(info: common_pb2.ConceptInfo) -> str:
    """The shortest training caption of the (first) concept, which shows it as it was taught;
    without captions, "photo of a V* category"."""
    header = json.loads(info.header_json) if info.header_json else {}
    parts = header.get("concepts") or [{}]
    token = parts[0].get("modifier_token") or (info.modifier_tokens[0] if info.modifier_tokens else "")
    category = parts[0].get("category") or (info.category_words[0] if info.category_words else "")
    captions = [c for c in parts[0].get("captions", ()) if token in c and STAND_IN not in c]
    return min(captions, key=len) if captions else f"photo of a {token} {category}".strip()


class Previews:
    def __init__(self, config: PreviewConfig, generate: Generate) -> None:
        self._config = config
        self._generate = generate
        self._dir = config.cache_dir or Path(tempfile.mkdtemp(prefix="cdserve-previews-"))
        self._dir.mkdir(parents=True, exist_ok=True)
        self._drawing: dict[str, asyncio.Future[bytes]] = {}

    def request(self, info: common_pb2.ConceptInfo) -> generator_pb2.GenerateRequest:
        return generator_pb2.GenerateRequest(
            prompt=preview_prompt(info),
            concepts=[f"{info.concept_id}@{info.version}"],
            steps=self._config.steps,
            guidance_scale=self._config.guidance_scale,
            seed=self._config.seed,
            num_images=1,
        )

    async def png(self, info: common_pb2.ConceptInfo, caller: Caller) -> bytes:
        """The preview of a concept the caller may see (the caller's visibility was checked by
        the registry lookup that produced `info`). Concurrent first requests draw it once."""
        path = self._dir / f"{info.sha256}.png"
        if path.is_file():
            return path.read_bytes()
        drawing = self._drawing.get(info.sha256)
        if drawing is None:
            drawing = self._drawing[info.sha256] = asyncio.ensure_future(self._draw(info, caller, path))
            drawing.add_done_callback(lambda _: self._drawing.pop(info.sha256, None))
        return await asyncio.shield(drawing)

    async def _draw(self, info: common_pb2.ConceptInfo, caller: Caller, path: Path) -> bytes:
        response = await self._generate(self.request(info), caller)
        png = response.images[0].png
        fd, partial = tempfile.mkstemp(dir=self._dir, suffix=".partial")
        with os.fdopen(fd, "wb") as out:
            out.write(png)
        os.replace(partial, path)  # atomic: a reader sees no file or the whole image
        return png
