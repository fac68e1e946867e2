"""Scheduler choice by name. A fresh scheduler is made for every batch (schedulers are stateful)."""

from __future__ import annotations

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    SchedulerMixin,
)
from diffusers.configuration_utils import FrozenDict

from shared.errors import InvalidArgument

DEFAULT = "default"
SCHEDULERS: dict[str, type[SchedulerMixin]] = {
    "ddim": DDIMScheduler,
    "pndm": PNDMScheduler,
    "euler": EulerDiscreteScheduler,
    "dpmpp_2m": DPMSolverMultistepScheduler,
}
"""Deterministic schedulers only: a request's image must not depend on its batch neighbours."""


def make_scheduler(name: str, base_config: FrozenDict, base_class: type[SchedulerMixin]) -> SchedulerMixin:
    """`name` or "default" (the base model's own scheduler), configured like the base model's."""
    if name == DEFAULT:
        return base_class.from_config(base_config)
    if name not in SCHEDULERS:
        raise InvalidArgument(f"scheduler {name!r} is not one of {sorted([DEFAULT, *SCHEDULERS])}", field="scheduler")
    return SCHEDULERS[name].from_config(base_config)
