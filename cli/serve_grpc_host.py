"""Makes Ray Serve's gRPC proxy listen on one interface instead of all of them.

Ray Serve 2.60 binds its gRPC proxy to `[::]:port` (`ray.serve._private.grpc_util.start_grpc_server`)
and `gRPCOptions` has no host, so the Generator port would be open to every network the machine is
on. The local stack runs `install` as its Ray job's `worker_process_setup_hook`, with the wanted
host in the environment: in the proxy's process it rewrites the address Serve adds. Every other
process of the job only reads the variable and returns.
"""

from __future__ import annotations

import os
from typing import Any

HOST_ENV = "CDSERVE_SERVE_GRPC_HOST"


def install() -> None:
    host = os.environ.get(HOST_ENV)
    if not host:
        return
    from ray.serve._private import default_impl

    add_on_every_interface = default_impl.add_grpc_address

    def add_on_host(grpc_server: Any, server_address: str) -> None:
        add_on_every_interface(grpc_server, f"{host}:{server_address.rpartition(':')[2]}")

    default_impl.add_grpc_address = add_on_host


def runtime_env(host: str) -> dict[str, Any]:
    """The Ray job runtime_env that installs the hook for `host`."""
    return {"worker_process_setup_hook": f"{__name__}.install", "env_vars": {HOST_ENV: host}}
