"""The playground in a real headless Chromium (Debian's, driven by Playwright; nothing downloaded):
the page lists the caller's concepts, composes a prompt from token chips, generates with live
progress, shows the images, and puts the merge and the naive sum side by side."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.artifact import to_bytes
from tests.http.conftest import HttpStack
from tests.support.synthetic import random_concept

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(),
    reason="chromium is not installed (tools/install-test-prerequisites.sh, run by ./dev test, installs it)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="cdserve-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, viewport={"width": 1280, "height": 900}
        )
        yield context
        context.close()


def test_the_playground_generates_with_a_concept_and_compares_merge_with_naive_sum(
    http_stack: HttpStack, browser: object, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(http_stack.url)
    page.fill("#token", "tok-acme")
    page.click("#token-form button")
    expect(page.locator("#token-state")).to_have_text("token set for this tab")
    mine = page.locator("li[data-concept=acme-dog]")
    expect(mine).to_be_visible()
    expect(page.locator("li[data-concept=beta-fox]")).to_have_count(0)  # beta's private concept stays hidden
    preview = mine.locator("img")
    expect(preview).to_have_attribute("src", re.compile("^blob:"), timeout=30_000)  # fetched with the token
    preview.evaluate("img => img.decode()")
    assert preview.evaluate("img => img.naturalWidth") > 0

    artifact = tmp_path / "acme-hat.safetensors"  # a concept file added through the page
    artifact.write_bytes(to_bytes(*random_concept(http_stack.training.spec, "acme-hat", seed=4)))
    page.set_input_files("#artifact", str(artifact))
    page.click("#publish")
    expect(page.locator("li[data-concept=acme-hat]")).to_be_visible()

    page.fill("#prompt", "a ")
    page.locator("#prompt").evaluate("p => p.setSelectionRange(p.value.length, p.value.length)")
    mine.locator("button.token").click()
    expect(page.locator("#prompt")).to_have_value("a <acme-dog> dog ")
    expect(page.locator("#chips .chip")).to_have_text(["acme-dog@1×"])
    page.fill("#steps", "3")
    page.fill("#num-images", "1")
    page.fill("#seed", "11")
    page.click("#generate")
    image = page.locator("#results img.generated")
    expect(image).to_have_count(1, timeout=30_000)
    expect(page.locator("#generate-progress span")).to_have_text("done")
    assert image.evaluate("img => img.complete && img.naturalWidth") > 0
    expect(page.locator("#results h3")).to_contain_text("acme-dog@1")

    page.locator("li[data-concept=beta-cat] button.token").click()  # a second concept: compare the two ways
    page.check("input[name=mode][value=both]")
    page.click("#generate")
    expect(page.locator("#results .result")).to_have_count(2, timeout=30_000)
    expect(page.locator("#results .result h3").first).to_contain_text("closed-form merge")
    expect(page.locator("#results .result h3").last).to_contain_text("naive sum")
    expect(page.locator("#results img.generated")).to_have_count(2)
    page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
    assert (tmp_path / "playground.png").stat().st_size > 0 and not errors


def test_the_playground_uploads_a_folder_for_training_and_cancels_it(
    http_stack: HttpStack, browser: object, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(http_stack.url)
    page.fill("#token", "tok-beta")
    page.click("#token-form button")
    page.set_input_files("#folder", str(EXAMPLES / "twotone-star"))  # its targets/ hold captions.txt, reg/ does not
    expect(page.locator("#folder-summary")).to_have_text("8 images and captions.txt")
    expect(page.locator("#concept-id")).to_have_value("twotone-star")
    expect(page.locator("#modifier-token")).to_have_attribute("placeholder", "<cd-twotone-star>")
    expect(page.locator("#train-steps")).to_have_value("2")  # the deployment's recipe
    page.fill("#category", "star")
    page.fill("#train-steps", "50")
    page.click("#train")
    expect(page.locator("#job-state")).to_contain_text("PENDING")
    page.click("#cancel-training")
    expect(page.locator("#job-state")).to_contain_text("CANCELLED", timeout=30_000)
    job_id = page.locator("#job-state").inner_text().split()[1].rstrip(":")
    job = http_stack.call("GET", f"v1/trainings/{job_id}", token="tok-beta").json()
    assert job["state"] == "CANCELLED" and len(job["spec"]["concepts"]) == 1
    assert job["spec"]["recipe"]["steps"] == 50 and job["spec"]["concepts"][0]["concept_id"] == "twotone-star"
    assert job["spec"]["recipe"]["sample_every"] == 6  # about eight samples over the run
    page.screenshot(path=str(tmp_path / "training.png"), full_page=True)
