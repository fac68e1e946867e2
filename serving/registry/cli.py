"""`cdserve registry …` (run a registry, write a base spec) and `cdserve concepts …` (use one).

Heavy imports stay inside the handlers so that `cdserve --help` is fast.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.progress import ProgressCallback

REGISTRY_ENV = "CDSERVE_REGISTRY"
TOKEN_ENV = "CDSERVE_TOKEN"
TOKENS_ENV = "CDSERVE_REGISTRY_TOKENS"
"""The server's tokens as YAML/JSON text, like a --tokens file (for secrets injected by env)."""
DEFAULT_REGISTRY = "127.0.0.1:50051"


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_server(subparsers)
    _register_concepts(subparsers)


# -- cdserve registry ---------------------------------------------------------------------------


def _register_server(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "registry",
        help="run the concept registry (gRPC), or write a base spec with `registry spec`",
        description="Serve the concept registry until SIGTERM/SIGINT. Flags override --config (YAML).",
    )
    parser.add_argument("--config", type=Path, help="YAML with RegistryConfig fields")
    parser.add_argument("--data", type=Path, dest="data_dir", help="data folder (metadata, blobs)")
    parser.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="gRPC port (0: any free port, logged at start)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (0: any free port)")
    parser.add_argument("--no-metrics", action="store_true", help="serve no /metrics endpoint")
    parser.add_argument(
        "--base-spec",
        type=Path,
        action="append",
        default=[],
        dest="base_spec_files",
        help="cdserve_base_spec.json of an accepted base model (repeatable)",
    )
    parser.add_argument(
        "--base-model",
        type=Path,
        action="append",
        default=[],
        help="accepted base model directory; its cdserve_base_spec.json is used when "
        "present, else the model is loaded once to compute it (repeatable)",
    )
    parser.add_argument(
        "--tokens",
        type=Path,
        dest="tokens_file",
        help=f"YAML/JSON 'tokens: {{<token>: <tenant>}}'; ${TOKENS_ENV} may hold the same text",
    )
    parser.add_argument("--tls-cert", type=Path, dest="tls_cert_file", help="PEM certificate chain (enables TLS)")
    parser.add_argument("--tls-key", type=Path, dest="tls_key_file", help="PEM private key")
    parser.add_argument("--max-upload-bytes", type=int, help="largest artifact accepted")
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(handler=_serve, registry_parser=parser)

    verbs = parser.add_subparsers(dest="registry_command")
    spec = verbs.add_parser("spec", help="write the base spec of a base model, so a registry needs no model")
    spec.add_argument("--base-model", type=Path, required=True, dest="spec_model", help="diffusers dir or checkpoint")
    spec.add_argument(
        "--single-file-config", type=Path, help="diffusers dir with configs, for a single-file checkpoint"
    )
    spec.add_argument("--out", type=Path, help="output file (default: <base-model dir>/cdserve_base_spec.json)")
    spec.set_defaults(handler=_write_spec)


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from serving.registry.config import RegistryConfig
    from serving.registry.logs import configure_logging
    from shared.auth import parse_tokens
    from shared.config import file_and_flag_fields

    configure_logging(args.log_level)
    fields = file_and_flag_fields(RegistryConfig, args.config, vars(args))
    if args.no_metrics:
        fields["metrics_port"] = None
    if "data_dir" not in fields:
        args.registry_parser.error("--data (or data_dir in --config) is required")
    config = RegistryConfig(**fields)
    specs = [_spec_of_model(path) for path in args.base_model]
    tokens = parse_tokens(os.environ[TOKENS_ENV], source=TOKENS_ENV) if TOKENS_ENV in os.environ else {}
    asyncio.run(_serve_until_signalled(config, specs, tokens))
    return 0


async def _serve_until_signalled(config: Any, specs: list[Any], tokens: dict[str, str]) -> None:
    from serving.registry.server import start_registry
    from shared.rpc_server import wait_for_stop_signal

    handle = await start_registry(config, base_specs=specs, tokens=tokens)
    await wait_for_stop_signal()
    await handle.stop()


def _spec_of_model(path: Path) -> Any:
    from serving.registry.server import load_base_spec
    from shared.basemodel import load_base_model
    from shared.spec import SPEC_FILE

    if (path / SPEC_FILE).exists():
        return load_base_spec(path / SPEC_FILE)
    return load_base_model(path).spec


def _write_spec(args: argparse.Namespace) -> int:
    from shared.basemodel import load_base_model
    from shared.spec import SPEC_FILE

    model = load_base_model(args.spec_model, single_file_config=args.single_file_config)
    out = args.out or (args.spec_model if args.spec_model.is_dir() else args.spec_model.parent) / SPEC_FILE
    out.write_text(model.spec.to_json())
    print(f"wrote {out} (fingerprint {model.spec.fingerprint}, {len(model.spec.layers)} cross-attention layers)")
    return 0


# -- cdserve concepts ---------------------------------------------------------------------------


def _register_concepts(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--registry",
        default=os.environ.get(REGISTRY_ENV, DEFAULT_REGISTRY),
        help=f"host:port (default ${REGISTRY_ENV} or {DEFAULT_REGISTRY})",
    )
    common.add_argument("--token", default=os.environ.get(TOKEN_ENV), help=f"bearer token (default ${TOKEN_ENV})")
    common.add_argument("--tls-ca", type=Path, help="PEM bundle to trust; enables TLS")

    parser = subparsers.add_parser("concepts", help="publish, list, show, delete and fetch concepts in a registry")
    verbs = parser.add_subparsers(dest="concepts_command", required=True)

    publish = verbs.add_parser("publish", parents=[common], help="upload a concept file as a new version")
    publish.add_argument("file", type=Path)
    publish.add_argument(
        "--id", default="", dest="concept_id", help="the concept id in the file, checked before the upload (optional)"
    )
    publish.add_argument("--public", action="store_true", help="visible to every tenant")
    publish.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    publish.set_defaults(handler=_with_client(_publish))

    listing = verbs.add_parser("list", parents=[common], help="list concepts visible to you")
    listing.add_argument("--tenant", default="")
    listing.add_argument("--base-fingerprint", default="")
    listing.add_argument("--category", default="")
    listing.add_argument("--prefix", default="", dest="id_prefix")
    listing.add_argument("--all-versions", action="store_true")
    listing.add_argument("--include-deleted", action="store_true")
    listing.set_defaults(handler=_with_client(_list))

    show = verbs.add_parser("show", parents=[common], help="print a concept's metadata as JSON")
    show.add_argument("ref", help="'id' (latest) or 'id@N'")
    show.set_defaults(handler=_with_client(_show))

    delete = verbs.add_parser("delete", parents=[common], help="delete 'id@N', or every version of 'id'")
    delete.add_argument("ref")
    delete.set_defaults(handler=_with_client(_delete))

    fetch = verbs.add_parser("fetch", parents=[common], help="download a concept file")
    fetch.add_argument("ref")
    fetch.add_argument("--out", type=Path, help="output file (default: ./<id>@<version>.safetensors)")
    fetch.set_defaults(handler=_with_client(_fetch))


def _with_client(command: Callable[[Any, argparse.Namespace], None]) -> Callable[[argparse.Namespace], int]:
    """Run `command` with a client of the registry the flags name."""

    def handler(args: argparse.Namespace) -> int:
        from shared.registry_client import RegistryClient

        with RegistryClient(args.registry, token=args.token, tls_ca_file=args.tls_ca) as client:
            command(client, args)
        return 0

    return handler


def _progress_bar(description: str) -> tuple[Any, ProgressCallback]:
    from tqdm import tqdm

    bar = tqdm(desc=description, unit="B", unit_scale=True, unit_divisor=1024, leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, update


def _ref(concept: Any) -> str:
    return f"{concept.concept_id}@{concept.version}"


def _publish(client: Any, args: argparse.Namespace) -> None:
    from shared.errors import InvalidArgument

    malformed = [label for label in args.label if "=" not in label]
    if malformed:
        raise InvalidArgument(f"--label {malformed[0]!r} must look like KEY=VALUE", field="label")
    labels = dict(label.split("=", 1) for label in args.label)
    bar, progress = _progress_bar(f"publish {args.file.name}")
    with bar:
        result = client.publish(
            args.file, concept_id=args.concept_id, public=args.public, labels=labels, progress=progress
        )
    note = " (same content as an earlier version)" if result.deduplicated else ""
    print(
        f"published {_ref(result.concept)} sha256={result.concept.sha256[:16]}… {result.concept.size_bytes} bytes{note}"
    )


def _list(client: Any, args: argparse.Namespace) -> None:
    concepts = client.list(
        tenant=args.tenant,
        base_fingerprint=args.base_fingerprint,
        category=args.category,
        id_prefix=args.id_prefix,
        all_versions=args.all_versions,
        include_deleted=args.include_deleted,
    )
    print(f"{'REF':32} {'TENANT':12} {'PUBLIC':6} {'KIND':8} {'SIZE':>10} {'TOKENS'}")
    for concept in concepts:
        ref = _ref(concept) + (" (deleted)" if concept.deleted else "")
        print(
            f"{ref:32} {concept.tenant:12} {str(concept.public).lower():6} {concept.delta_kind:8} "
            f"{concept.size_bytes:>10} {' '.join(concept.modifier_tokens)}"
        )


def _show(client: Any, args: argparse.Namespace) -> None:
    from google.protobuf.json_format import MessageToJson

    print(MessageToJson(client.get(args.ref), indent=1))


def _delete(client: Any, args: argparse.Namespace) -> None:
    for concept in client.delete(args.ref):
        print(f"deleted {_ref(concept)}")


def _fetch(client: Any, args: argparse.Namespace) -> None:
    concept = client.get(args.ref)
    out = args.out or Path(f"{_ref(concept)}.safetensors")
    bar, progress = _progress_bar(f"fetch {_ref(concept)}")
    with bar:
        data = client.fetch(_ref(concept), progress=progress)
    out.write_bytes(data)
    print(f"wrote {out} ({len(data)} bytes, sha256 verified)")
