"""Builds and runs the HTTP application beside the Generator's (same Ray, same Serve, Serve's HTTP
proxy on `ServingConfig.http_port`). Run it after `serving.app.run_app`, which starts the proxies.

`app_builder` is the entry for Serve config files: a second application with `import_path:
serving.http.app:app_builder` and `args: {serving: <the Generator app's args>, http: <HttpConfig>}`.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from serving.config import ServingConfig
from serving.http.config import HttpConfig
from serving.http.deployment import HttpIngress


def build_http_app(serving: ServingConfig, config: HttpConfig) -> Application:
    # No CPU reserved, like Serve's own proxies: the ingress waits on I/O, and a share of a CPU here
    # would leave a two-core node without the whole CPU a training worker asks for.
    options = {"num_replicas": config.num_replicas, "ray_actor_options": {"num_cpus": 0, "num_gpus": 0}}
    return HttpIngress.options(**options).bind(  # type: ignore[attr-defined]
        serving.model_dump_json(), config.model_dump_json()
    )


def app_builder(args: dict[str, Any]) -> Application:
    """Serve config-file entry point (unknown keys are errors)."""
    unknown = set(args) - {"serving", "http"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}: expected 'serving' and 'http'")
    return build_http_app(
        ServingConfig.model_validate(args.get("serving") or {}), HttpConfig.model_validate(args.get("http") or {})
    )


def run_http_app(serving: ServingConfig, config: HttpConfig, *, url_host: str = "127.0.0.1") -> str:
    """Deploy the HTTP application; returns the playground's URL as seen from `url_host`."""
    serve.run(build_http_app(serving, config), name=config.app_name, route_prefix=config.route_prefix)
    return playground_url(serving, config, url_host)


def playground_url(serving: ServingConfig, config: HttpConfig, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{serving.http_port}{config.route_prefix.rstrip('/')}/"
