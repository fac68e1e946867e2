"""The Serve options built from a ServingConfig: every autoscaling setting reaches Serve's own
AutoscalingConfig as configured."""

from __future__ import annotations

from ray.serve.config import AutoscalingConfig as ServeAutoscaling

from serving.app import deployment_options
from serving.config import AutoscalingConfig, ServingConfig


def test_every_autoscaling_setting_reaches_serve_as_configured() -> None:
    settings = AutoscalingConfig(
        min_replicas=0,
        max_replicas=3,
        target_ongoing_requests=2.5,
        upscale_delay_s=7.0,
        downscale_delay_s=90.0,
        metrics_interval_s=1.5,
        look_back_period_s=12.0,
    )
    options = deployment_options(ServingConfig(autoscaling=settings), cluster_has_gpu=False)
    serve = ServeAutoscaling(**options["autoscaling_config"])
    for name, value in settings.model_dump().items():
        assert getattr(serve, name) == value, name
    assert serve.initial_replicas == 1  # scaled to zero when idle, but one replica to start with
    assert "num_replicas" not in options


def test_without_autoscaling_the_replica_count_is_fixed() -> None:
    options = deployment_options(ServingConfig(num_replicas=2), cluster_has_gpu=False)
    assert options["num_replicas"] == 2 and "autoscaling_config" not in options
