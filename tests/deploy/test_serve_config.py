"""Serve configs (deploy/serve-local.yaml, deploy/serve-cluster.yaml and the RayService's
serveConfigV2) are accepted by Ray's own schema and name what the serving code defines: the
application builders (the Generator's, then the HTTP face's), the Generator deployment, the gRPC
servicer and ServingConfig's and HttpConfig's fields."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve.schema import HTTPOptionsSchema, ServeApplicationSchema, ServeDeploySchema, gRPCOptionsSchema

from serving import app as serving_app
from serving.config import ServingConfig
from serving.deployment import Generator
from serving.http import app as http_app
from serving.http.config import HttpConfig
from tests.deploy.conftest import DEPLOY, find

CONFIGS = {
    "serve-local.yaml": lambda: yaml.safe_load((DEPLOY / "serve-local.yaml").read_text()),
    "serve-cluster.yaml": lambda: yaml.safe_load((DEPLOY / "serve-cluster.yaml").read_text()),
    "k8s/rayservice.yaml serveConfigV2": lambda: yaml.safe_load(find("RayService", "cdserve")["spec"]["serveConfigV2"]),
}


def resolve(import_path: str) -> Any:
    """'module:attribute' (Serve's import_path) or 'module.attribute' (a gRPC servicer function)."""
    module, _, attribute = import_path.partition(":") if ":" in import_path else import_path.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


@pytest.fixture(params=sorted(CONFIGS))
def serve_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return CONFIGS[request.param]()


def test_rays_schema_accepts_the_config(serve_config: dict[str, Any]) -> None:
    schema = ServeDeploySchema.model_validate(serve_config)
    assert [app.name for app in schema.applications] == ["cdserve", "cdserve-http"]
    # Ray ignores unknown keys at these levels, so a misspelt option would silently not apply.
    for section, model in (
        (serve_config, ServeDeploySchema),
        (serve_config["grpc_options"], gRPCOptionsSchema),
        (serve_config["http_options"], HTTPOptionsSchema),
        (serve_config["applications"][0], ServeApplicationSchema),
    ):
        assert set(section) <= set(model.model_fields), set(section) - set(model.model_fields)


def test_the_application_is_the_serving_codes_builder_with_valid_args(serve_config: dict[str, Any]) -> None:
    app = ServeDeploySchema.model_validate(serve_config).applications[0]
    assert resolve(app.import_path) is serving_app.app_builder
    config = ServingConfig.model_validate(app.args)  # unknown keys fail (extra="forbid")
    assert (app.name, app.route_prefix) == (config.app_name, config.route_prefix)
    grpc = serve_config["grpc_options"]
    assert grpc["port"] == config.grpc_port and serve_config["http_options"]["port"] == config.http_port
    assert grpc["grpc_servicer_functions"] == [serving_app.SERVICER_FUNCTION]
    resolve(serving_app.SERVICER_FUNCTION)  # importable where Serve's proxy will import it
    for override in serve_config["applications"][0].get("deployments", []):
        assert override["name"] == Generator.name


def test_the_builder_binds_the_generator_with_the_configured_resources(serve_config: dict[str, Any]) -> None:
    app = serve_config["applications"][0]
    config = ServingConfig.model_validate(app["args"])
    bound = serving_app.app_builder(app["args"])._bound_deployment
    assert bound.name == Generator.name == "Generator"
    assert bound.ray_actor_options["num_cpus"] == config.ray_actor_options.num_cpus
    assert bound.max_ongoing_requests == config.queue.max_ongoing_requests
    if config.ray_actor_options.num_gpus != "auto":
        assert bound.ray_actor_options["num_gpus"] == config.ray_actor_options.num_gpus
    if config.autoscaling is not None:
        autoscaling = bound._deployment_config.autoscaling_config
        assert (autoscaling.min_replicas, autoscaling.max_replicas) == (
            config.autoscaling.min_replicas,
            config.autoscaling.max_replicas,
        )
        assert autoscaling.target_ongoing_requests == config.autoscaling.target_ongoing_requests


def test_the_http_application_builds_the_http_face_over_the_generators_args(serve_config: dict[str, Any]) -> None:
    generator, http = serve_config["applications"]
    assert set(http) <= set(ServeApplicationSchema.model_fields), set(http) - set(ServeApplicationSchema.model_fields)
    assert resolve(http["import_path"]) is http_app.app_builder
    assert http["args"]["serving"] == generator["args"]  # it reaches the Generator by that app's name
    config = HttpConfig.model_validate(http["args"]["http"])
    assert (http["name"], http["route_prefix"]) == (config.app_name, config.route_prefix)
    assert config.training_address, "the playground trains through the training service"
    bound = http_app.app_builder(http["args"])._bound_deployment
    assert bound.name == "Http" and bound.ray_actor_options.get("num_gpus", 0) == 0


def test_the_cluster_config_gives_each_replica_one_gpu_and_autoscales() -> None:
    config = ServingConfig.model_validate(CONFIGS["serve-cluster.yaml"]()["applications"][0]["args"])
    assert config.ray_actor_options.num_gpus == 1
    assert config.autoscaling is not None and config.autoscaling.min_replicas < config.autoscaling.max_replicas
    assert config.base_model.path is not None and Path(config.base_model.path).is_absolute()
    assert config.cache.disk_dir is not None, "the disk tier must live on the pod's cache volume"
