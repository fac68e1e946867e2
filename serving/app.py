"""Builds the Serve application and the proxy options from a `ServingConfig`.

`app_builder` is the entry for Serve config files (`deploy/serve-*.yaml`: `import_path:
serving.app:app_builder`, `args:` = ServingConfig fields); `run_app` is what `cdserve up` and the
tests call on a running Ray.
"""

from __future__ import annotations

from typing import Any, cast

from ray import serve
from ray.serve import Application, Deployment
from ray.serve.config import HTTPOptions, gRPCOptions

from serving.config import ServingConfig
from serving.deployment import Generator

SERVICER_FUNCTION = "serving.proxy_status.add_to_proxy"
"""Registers the Generator service in Serve's gRPC proxy and gives failures our status (`serving.proxy_status`)."""


def deployment_options(config: ServingConfig, *, cluster_has_gpu: bool) -> dict[str, Any]:
    actor = config.ray_actor_options
    num_gpus = (1.0 if cluster_has_gpu else 0.0) if actor.num_gpus == "auto" else actor.num_gpus
    ray_actor_options: dict[str, Any] = {"num_cpus": actor.num_cpus, "num_gpus": num_gpus}
    if actor.memory_bytes:
        ray_actor_options["memory"] = actor.memory_bytes
    options: dict[str, Any] = {
        "ray_actor_options": ray_actor_options,
        "max_ongoing_requests": config.queue.max_ongoing_requests,
        "max_queued_requests": config.queue.max_queued_requests,
    }
    if config.autoscaling is None:
        options["num_replicas"] = config.num_replicas
    else:
        autoscaling = config.autoscaling
        options["autoscaling_config"] = {
            **autoscaling.model_dump(),
            "initial_replicas": max(autoscaling.min_replicas, 1),
        }
    return options


def build_app(config: ServingConfig) -> Application:
    import ray

    has_gpu = ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0
    # `@serve.deployment` made the class a Deployment; mypy does not apply class decorators to the name.
    deployment = cast(Deployment, Generator)
    return deployment.options(**deployment_options(config, cluster_has_gpu=has_gpu)).bind(config.model_dump_json())


def app_builder(args: dict[str, Any]) -> Application:
    """Serve config-file entry point: `args` are ServingConfig fields (unknown keys are errors)."""
    return build_app(ServingConfig.model_validate(args))


def grpc_options(config: ServingConfig) -> gRPCOptions:
    return gRPCOptions(port=config.grpc_port, grpc_servicer_functions=[SERVICER_FUNCTION])


def http_options(config: ServingConfig, host: str) -> HTTPOptions:
    """Serve's HTTP proxy (the HTTP face and playground, `serving.http`) on `host`: the interface the
    rest of the stack binds, so a stack told to serve other hosts serves its page to them too."""
    return HTTPOptions(host=host, port=config.http_port)


def run_app(config: ServingConfig, *, host: str = "127.0.0.1", blocking: bool = False) -> None:
    """Start Serve's proxies (gRPC on `grpc_port`, HTTP on `host`:`http_port`) and deploy the
    application on the current Ray. The gRPC proxy's interface is set apart (`cli.serve_grpc_host`)."""
    serve.start(grpc_options=grpc_options(config), http_options=http_options(config, host))
    serve.run(build_app(config), name=config.app_name, route_prefix=config.route_prefix, blocking=blocking)
