"""Regularisation examples against language drift (paper §3, "regularisation dataset").

(a) real: a captioned image folder, filtered to the captions whose text-encoder similarity with the
    class prompt "photo of a {category}" is at least the threshold (the paper: CLIP text similarity
    ≥ 0.85 to retrieve ~200 LAION images). The feature is the base text encoder's pooled output
    (the final-layer-normed hidden state at the end-of-text token — CLIP's sentence feature before
    its projection, which an SD text encoder does not ship), compared by cosine similarity.
(b) generated: the base model's own samples of the class prompt (DreamBooth's prior preservation),
    cached on disk by base fingerprint, prompt, sampler settings and seed.
(c) none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer

from shared.basemodel import BaseModel
from shared.errors import InvalidArgument
from training.config import ConceptConfig, Recipe, as_wordings
from training.data import REG, Example, generator_for, load_image

CAPTIONS_FILE = "captions.txt"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GENERATION_BATCH = 8


def class_prompt(category: str) -> str:
    return f"photo of a {category}"


def read_captioned_folder(folder: str | Path, *, field: str = "reg_dir") -> list[tuple[Path, str]]:
    """(image path, caption) from `folder/captions.txt`, one 'filename<TAB>caption' per line."""
    folder = Path(folder)
    listing = folder / CAPTIONS_FILE
    if not listing.is_file():
        raise InvalidArgument(f"folder {str(folder)!r} has no {CAPTIONS_FILE}", field=field)
    entries = []
    for number, line in enumerate(listing.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        name, tab, caption = line.partition("\t")
        if not tab or not caption.strip():
            raise InvalidArgument(
                f"{listing}:{number}: expected 'filename<TAB>caption', got {line[:80]!r}", field=field
            )
        entries.append((folder / name, caption.strip()))
    return entries


def caption_listing(folder: str | Path, *, field: str = "images") -> dict[str, list[str]]:
    """File name → the wordings of its caption: a file listed on several lines has several."""
    wordings: dict[str, list[str]] = {}
    for path, caption in read_captioned_folder(folder, field=field):
        wordings.setdefault(path.name, []).append(caption)
    return wordings


def captioned_images(folder: str | Path, *, field: str = "images") -> list[tuple[Path, list[str]]]:
    """Every PNG/JPEG in `folder`, by name, with the wordings of its caption from an optional
    captions.txt; an image it does not list has [""] (the concept's default caption)."""
    folder = Path(folder)
    listing = caption_listing(folder, field=field) if (folder / CAPTIONS_FILE).is_file() else {}
    images = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    return [(path, listing.get(path.name, [""])) for path in images]


def write_captioned_folder(folder: str | Path, examples: Sequence[tuple[Image.Image, str | Sequence[str]]]) -> Path:
    """Write (image, caption or its wordings) pairs as a folder `read_captioned_folder` reads (e.g. the
    toy world's `render_reg_pool`), for a REAL regularisation source or a concept's target images."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, (image, captions) in enumerate(examples):
        name = f"{index:05d}.png"
        image.save(folder / name)
        lines += [f"{name}\t{caption}\n" for caption in as_wordings(captions)]
    (folder / CAPTIONS_FILE).write_text("".join(lines))
    return folder


@torch.no_grad()
def pooled_text_features(
    tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, captions: Sequence[str], *, batch_size: int = 64
) -> torch.Tensor:
    """(N, dim) fp32, L2-normalised pooled features of the captions."""
    chunks = []
    for start in range(0, len(captions), batch_size):
        ids = tokenizer(
            list(captions[start : start + batch_size]),
            padding="max_length",
            truncation=True,
            max_length=tokenizer.model_max_length,
            return_tensors="pt",
        ).input_ids.to(text_encoder.device)
        chunks.append(text_encoder(ids).pooler_output.float())
    return torch.nn.functional.normalize(torch.cat(chunks), dim=-1).cpu()


def similar_captions(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    captions: Sequence[str],
    query: str,
    *,
    threshold: float,
    limit: int,
) -> list[tuple[int, float]]:
    """(index, similarity) of the captions with similarity ≥ threshold, most similar first, at most `limit`."""
    if not captions:
        return []
    features = pooled_text_features(tokenizer, text_encoder, [query, *captions])
    similarity = (features[1:] @ features[0]).tolist()
    kept = [(i, s) for i, s in enumerate(similarity) if s >= threshold]
    return sorted(kept, key=lambda item: (-item[1], item[0]))[:limit]


def real_examples(concept: ConceptConfig, recipe: Recipe, base: BaseModel) -> list[Example]:
    entries = read_captioned_folder(concept.reg_dir)  # type: ignore[arg-type]
    pipeline = base.pipeline
    kept = similar_captions(
        pipeline.tokenizer,
        pipeline.text_encoder,
        [caption for _, caption in entries],
        class_prompt(concept.category),
        threshold=recipe.reg_similarity_threshold,
        limit=recipe.num_reg_images,
    )
    if not kept:
        raise InvalidArgument(
            f"no caption in {concept.reg_dir!r} reaches similarity {recipe.reg_similarity_threshold} with "
            f"{class_prompt(concept.category)!r}; lower reg_similarity_threshold or use generated images",
            field="reg_similarity_threshold",
        )
    return [Example(load_image(entries[i][0], field="reg_dir"), (entries[i][1],), REG) for i, _ in kept]


def generated_dir(cache_dir: str | Path, base: BaseModel, category: str, recipe: Recipe) -> Path:
    key = repr((class_prompt(category), recipe.reg_generation_steps, recipe.reg_guidance_scale, recipe.seed))
    return Path(cache_dir) / f"{base.spec.fingerprint}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


@torch.no_grad()
def generate_class_images(cache_dir: str | Path, base: BaseModel, category: str, recipe: Recipe) -> Path:
    """Sample `num_reg_images` images of "photo of a {category}" into the cache (only the missing ones)."""
    folder = generated_dir(cache_dir, base, category, recipe)
    folder.mkdir(parents=True, exist_ok=True)
    prompt = class_prompt(category)
    for start in range(0, recipe.num_reg_images, GENERATION_BATCH):
        names = [f"{i:05d}.png" for i in range(start, min(start + GENERATION_BATCH, recipe.num_reg_images))]
        if all((folder / name).exists() for name in names):
            continue
        images = base.pipeline(
            prompt,
            num_images_per_prompt=len(names),
            num_inference_steps=recipe.reg_generation_steps,
            guidance_scale=recipe.reg_guidance_scale,
            generator=generator_for(recipe.seed, "reg", category, start),
        ).images
        for name, image in zip(names, images, strict=True):
            partial = folder / f".{name}.tmp"
            image.save(partial, format="PNG")
            partial.rename(folder / name)
    return folder


def generated_examples(cache_dir: str | Path, base: BaseModel, category: str, recipe: Recipe) -> list[Example]:
    folder = generated_dir(cache_dir, base, category, recipe)
    caption = class_prompt(category)
    return [Example(load_image(folder / f"{i:05d}.png"), (caption,), REG) for i in range(recipe.num_reg_images)]
