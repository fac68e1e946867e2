"""The GPU check's SDXL part runs its stages within one deadline: each stage's result, error or skip
is on disk as soon as the stage ends, so a part cut short keeps what it measured."""

from __future__ import annotations

import json

from bench.device.sdxl import FINAL_S, STAGE_SECONDS, Stages


def test_a_failed_stage_is_recorded_and_the_next_still_runs(tmp_path):
    result: dict = {"device": "cpu"}
    stages = Stages(tmp_path, FINAL_S + 600, result, enforce=True)
    assert json.loads((tmp_path / "sdxl.json").read_text()) == {"device": "cpu"}

    def fails() -> dict:
        raise ValueError("no such kernel")

    stages.run("merge", fails)
    assert stages.failed
    assert result["merge"]["error"] == "ValueError: no such kernel" and result["merge"]["traceback"]
    assert json.loads((tmp_path / "sdxl.json").read_text())["merge"]["error"] == "ValueError: no such kernel"
    assert stages.run("concept_costs", lambda: {"file_mb": 20.0})["file_mb"] == 20.0
    assert json.loads((tmp_path / "sdxl.json").read_text())["concept_costs"]["file_mb"] == 20.0


def test_a_stage_that_needs_more_than_is_left_is_skipped_unless_a_dry_run(tmp_path):
    short = STAGE_SECONDS["training"] / 2
    ran: list[str] = []
    stages = Stages(tmp_path, FINAL_S + short, {}, enforce=True)
    assert stages.run("training", lambda: ran.append("enforced") or {}) is None
    assert ran == [] and "skipped" in json.loads((tmp_path / "sdxl.json").read_text())["training"]
    assert not stages.failed

    dry = Stages(tmp_path, FINAL_S + short, {}, enforce=False)
    assert dry.run("training", lambda: ran.append("dry") or {}) is not None and ran == ["dry"]
