"""Operations: Prometheus metrics scraped and parsed, gRPC health and reflection, TLS, and the
`cdserve concepts` / `cdserve registry spec` command lines."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from prometheus_client.parser import text_string_to_metric_families

from cli.main import main as cdserve
from shared.errors import NotFound, Unavailable
from shared.spec import SPEC_FILE, BaseSpec


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_are_scraped_and_parsed(server_factory, make_artifact):
    server = server_factory(metrics_port=0)
    data = make_artifact("dog")
    with server.client("tok-acme") as client:
        client.publish(data)
        client.fetch("dog")
        with pytest.raises(NotFound):
            client.get("cat")
        with client.watch(heartbeat_s=1, include_heartbeats=True) as watch:
            events = iter(watch)
            next(events)
            during_watch = scrape(server.handle.metrics_port)

    assert during_watch[("cdserve_registry_watchers_active", ())] == 1
    metrics = scrape(server.handle.metrics_port)
    assert metrics[("cdserve_registry_requests_total", (("code", "OK"), ("method", "Registry/Publish")))] == 1
    assert metrics[("cdserve_registry_requests_total", (("code", "NOT_FOUND"), ("method", "Registry/Get")))] == 1
    assert metrics[("cdserve_registry_request_duration_seconds_count", (("method", "Registry/Fetch"),))] == 1
    assert metrics[("cdserve_registry_transfer_bytes_total", (("direction", "upload"),))] == len(data)
    assert metrics[("cdserve_registry_transfer_bytes_total", (("direction", "download"),))] == len(data)
    assert metrics[("cdserve_registry_stored_bytes", ())] == len(data)
    assert metrics[("cdserve_registry_concepts_live", ())] == 1
    label_values = {value for _, labels in metrics for _, value in labels}
    assert "dog" not in label_values, "a concept id must never be a label"


def test_health_and_reflection(server):
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "cdserve.v1.Registry"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert "cdserve.v1.Registry" in services and "grpc.health.v1.Health" in services


def test_tls(server_factory, tls_certificate, make_artifact):
    cert, key = tls_certificate
    server = server_factory(tls_cert_file=cert, tls_key_file=key)
    with server.client("tok-acme", tls_ca_file=cert) as client:
        assert client.publish(make_artifact("dog")).concept.version == 1
    with server.client("tok-acme", timeout_s=2) as plaintext, pytest.raises(Unavailable):
        plaintext.get("dog")


def test_concepts_command_line(server, make_artifact, tmp_path, capsys):
    source = tmp_path / "dog.safetensors"
    source.write_bytes(make_artifact("dog"))
    options = ["--registry", server.target, "--token", "tok-acme"]

    assert cdserve(["concepts", "publish", str(source), "--public", "--label", "team=vision", *options]) == 0
    assert "published dog@1" in capsys.readouterr().out
    assert cdserve(["concepts", "list", *options]) == 0
    assert "dog@1" in capsys.readouterr().out
    assert cdserve(["concepts", "show", "dog@1", *options]) == 0
    assert '"team": "vision"' in capsys.readouterr().out
    out = tmp_path / "fetched.safetensors"
    assert cdserve(["concepts", "fetch", "dog", "--out", str(out), *options]) == 0
    assert out.read_bytes() == source.read_bytes()
    assert cdserve(["concepts", "delete", "dog", *options]) == 0
    assert "deleted dog@1" in capsys.readouterr().out
    assert cdserve(["concepts", "show", "dog", *options]) == 1
    assert "error (NOT_FOUND)" in capsys.readouterr().err


def test_registry_spec_command_writes_the_spec_of_a_model_folder(tiny_base, tmp_path, capsys):
    model_dir = tmp_path / "tiny"
    tiny_base.pipeline.save_pretrained(model_dir)
    assert cdserve(["registry", "spec", "--base-model", str(model_dir)]) == 0
    assert BaseSpec.from_json((model_dir / SPEC_FILE).read_text()) == tiny_base.spec
