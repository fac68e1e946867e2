"""A Generator Serve application for the live Prometheus test, in its own process (its own Ray):
starts Ray with a fixed metrics port, deploys deploy/serve-local.yaml's application with local
overrides, makes one successful and one NOT_FOUND request, prints READY and serves until stdin closes.

    python -m tests.deploy.serve_target CONFIG_JSON
"""

from __future__ import annotations

import json
import os
import sys

import yaml

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def main(options: dict) -> None:
    import ray

    from serving.app import run_app
    from serving.client import GeneratorClient
    from serving.config import ServingConfig
    from shared.errors import NotFound
    from tests.deploy.conftest import DEPLOY

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _metrics_export_port=options["metrics_port"],
        log_to_driver=False,
        _system_config={"metrics_report_interval_ms": 500},
    )
    app = yaml.safe_load((DEPLOY / "serve-local.yaml").read_text())["applications"][0]
    config = ServingConfig.model_validate({**app["args"], **options["overrides"]})
    run_app(config)
    with GeneratorClient(f"127.0.0.1:{config.grpc_port}", application=config.app_name, timeout_s=120) as client:
        client.generate(GeneratorClient.request(options["prompt"], concepts=[options["concept"]], steps=2, seed=1))
        try:
            client.generate(GeneratorClient.request("a dog", concepts=["no-such-concept"], steps=2, seed=1))
        except NotFound:
            pass
        else:
            raise AssertionError("an unknown concept must be NOT_FOUND")
    print("READY", flush=True)
    sys.stdin.read()
    ray.shutdown()  # ends the replicas with the local cluster; serve.shutdown() would drain them first


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
