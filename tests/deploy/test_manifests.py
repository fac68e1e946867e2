"""The Kubernetes manifests, the cluster launcher and the container file: every object is valid for
its schema, and every cross-reference (names, labels, ports, mounted files, config keys the code
reads) points at something that exists and agrees with the code's own config models."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.config import ServingConfig
from serving.registry.config import RegistryConfig
from tests.deploy.conftest import DEPLOY, K8S, ROOT, find, k8s_objects, load_documents, load_yaml
from training.job import JobSpec
from training.service.config import TrainingServiceConfig

NAMESPACE = "cdserve"
KUBERNETES_VERSION = "1.30.0"
GiB = 2**30

# Fields of KubeRay's ray.io/v1 API that these manifests may use: an unknown key (a typo) fails.
RAYSERVICE_SPEC = {
    "serveConfigV2",
    "rayClusterConfig",
    "serveService",
    "upgradeStrategy",
    "excludeHeadPodFromServeSvc",
    "deploymentUnhealthySecondThreshold",
    "serviceUnhealthySecondThreshold",
}
RAYJOB_SPEC = {
    "entrypoint",
    "rayClusterSpec",
    "clusterSelector",
    "submissionMode",
    "shutdownAfterJobFinishes",
    "ttlSecondsAfterFinished",
    "activeDeadlineSeconds",
    "backoffLimit",
    "runtimeEnvYAML",
    "submitterPodTemplate",
    "entrypointNumCpus",
    "entrypointNumGpus",
    "entrypointResources",
    "suspend",
}
RAYCLUSTER_SPEC = {
    "rayVersion",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "headGroupSpec",
    "workerGroupSpecs",
    "authOptions",
    "headServiceAnnotations",
    "suspend",
    "gcsFaultToleranceOptions",
}
AUTOSCALER_OPTIONS = {
    "upscalingMode",
    "idleTimeoutSeconds",
    "resources",
    "env",
    "envFrom",
    "image",
    "imagePullPolicy",
    "securityContext",
    "volumeMounts",
    "version",
}
HEAD_GROUP = {"rayStartParams", "template", "serviceType", "headService", "enableIngress"}
WORKER_GROUP = {
    "groupName",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "rayStartParams",
    "template",
    "numOfHosts",
    "scaleStrategy",
    "suspend",
    "idleTimeoutSeconds",
}


def serve_args(serve_config: dict[str, Any]) -> dict[str, Any]:
    return serve_config["applications"][0]["args"]  # the Generator's; the HTTP face's comes second


def rayservice() -> dict[str, Any]:
    return find("RayService", "cdserve")


def ray_pod_templates() -> list[tuple[str, dict[str, Any]]]:
    """(where, pod template) of every Ray head and worker group, of the RayService and the RayJob."""
    templates = []
    for kind, name, key in (
        ("RayService", "cdserve", "rayClusterConfig"),
        ("RayJob", "cdserve-train-example", "rayClusterSpec"),
    ):
        cluster = find(kind, name)["spec"][key]
        templates.append((f"{kind}/{name} head", cluster["headGroupSpec"]["template"]))
        for group in cluster["workerGroupSpecs"]:
            templates.append((f"{kind}/{name} group {group['groupName']}", group["template"]))
    return templates


def workload_pod_templates() -> list[tuple[str, dict[str, Any]]]:
    deployments = [
        (f"Deployment/{d.body['metadata']['name']}", d.body["spec"]["template"])
        for d in k8s_objects()
        if d.body["kind"] == "Deployment"
    ]
    submitter = ("RayJob submitter", find("RayJob", "cdserve-train-example")["spec"]["submitterPodTemplate"])
    return [*deployments, *ray_pod_templates(), submitter]


def container(template: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = template["spec"]["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    (match,) = [c for c in containers if c["name"] == name]
    return match


def port(c: dict[str, Any], name: str) -> int:
    (match,) = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == name]
    return match


def mounted_file(template: dict[str, Any], c: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """The volume that provides `path` inside container `c`, and the path relative to the mount."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    best = None
    for mount in c.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if (path + "/").startswith(prefix) and (best is None or len(prefix) > len(best[1])):
            best = (mount, prefix)
    assert best is not None, f"{path} is not under any volume mounted in container {c['name']}"
    mount, prefix = best
    return volumes[mount["name"]], posixpath.relpath(path, prefix.rstrip("/"))


def config_map_yaml(name: str, key: str) -> dict[str, Any]:
    return yaml.safe_load(find("ConfigMap", name)["data"][key])


# -- parsing and schemas ------------------------------------------------------------------------


def test_every_yaml_under_deploy_parses_and_every_k8s_object_is_namespaced_and_labelled() -> None:
    docs = load_documents()
    files = {d.path for d in docs}
    assert {
        DEPLOY / "serve-local.yaml",
        DEPLOY / "serve-cluster.yaml",
        DEPLOY / "cluster-launcher.yaml",
        DEPLOY / "prometheus" / "prometheus.yml",
        DEPLOY / "prometheus" / "alerts.yml",
    } <= files
    kinds = {d.body["kind"] for d in k8s_objects()}
    assert {
        "Namespace",
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
        "ConfigMap",
        "Secret",
        "RayService",
        "RayJob",
    } <= kinds
    for doc in k8s_objects():
        meta = doc.body["metadata"]
        if doc.body["kind"] != "Namespace":
            assert meta.get("namespace") == NAMESPACE, doc.where
        assert meta.get("labels", {}).get("app.kubernetes.io/part-of") == NAMESPACE, doc.where


def test_core_objects_and_embedded_pod_templates_match_the_kubernetes_schema() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")

    def check(obj: dict[str, Any], where: str) -> None:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{where}: {e.message} at {'/'.join(map(str, e.path))}")

    core = [d for d in k8s_objects() if d.body["apiVersion"] in ("v1", "apps/v1")]
    assert len(core) >= 10
    for doc in core:
        check(doc.body, doc.where)
    # KubeRay's CRDs are not in the schema set; their pod templates and Service are core types.
    for where, template in workload_pod_templates():
        if where.startswith(("RayService", "RayJob")):
            check({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}, where)
    serve_service = rayservice()["spec"]["serveService"]
    check({"apiVersion": "v1", "kind": "Service", **serve_service}, "RayService serveService")

    broken = find("Deployment", "cdserve-registry") | {}
    broken = yaml.safe_load(yaml.safe_dump(broken))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):  # the validator is not a no-op
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("kind", "name", "cluster_key", "spec_fields"),
    [
        ("RayService", "cdserve", "rayClusterConfig", RAYSERVICE_SPEC),
        ("RayJob", "cdserve-train-example", "rayClusterSpec", RAYJOB_SPEC),
    ],
)
def test_kuberay_objects_use_known_fields_and_autoscale(
    kind: str, name: str, cluster_key: str, spec_fields: set[str]
) -> None:
    import ray

    obj = find(kind, name)
    assert obj["apiVersion"] == "ray.io/v1"
    assert set(obj["spec"]) <= spec_fields, set(obj["spec"]) - spec_fields
    cluster = obj["spec"][cluster_key]
    assert set(cluster) <= RAYCLUSTER_SPEC, set(cluster) - RAYCLUSTER_SPEC
    assert cluster["rayVersion"] == ray.__version__, "Ray in the image (this venv) and rayVersion must agree"
    assert cluster["enableInTreeAutoscaling"] is True
    assert set(cluster.get("autoscalerOptions", {})) <= AUTOSCALER_OPTIONS
    assert set(cluster["headGroupSpec"]) <= HEAD_GROUP
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", "no replicas or training workers on the head"
    for group in cluster["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP, set(group) - WORKER_GROUP
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), "rayStartParams values are strings"
        resources = container(group["template"])["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"


def test_every_container_has_resources_and_the_services_have_grpc_health_probes() -> None:
    from serving.registry.server import SERVICE_NAME as REGISTRY_SERVICE
    from training.service.server import SERVICE_NAME as TRAINING_SERVICE

    for where, template in workload_pod_templates():
        for c in template["spec"]["containers"]:
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{where} {c['name']} {bound}"
    for name, config_map, key, service in (
        ("cdserve-registry", "cdserve-registry-config", "registry.yaml", REGISTRY_SERVICE),
        ("cdserve-training", "cdserve-training-config", "training.yaml", TRAINING_SERVICE),
    ):
        c = container(find("Deployment", name)["spec"]["template"])
        grpc_port = config_map_yaml(config_map, key)["port"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == grpc_port, f"{name} {probe}"
        assert c["readinessProbe"]["grpc"]["service"] == service, "readiness names the service the server registers"


# -- services, labels, ports ------------------------------------------------------------------------


def test_services_select_their_pods_and_target_declared_container_ports() -> None:
    for doc in k8s_objects():
        if doc.body["kind"] != "Service":
            continue
        service = doc.body
        (deployment,) = [
            d.body
            for d in k8s_objects()
            if d.body["kind"] == "Deployment" and d.body["metadata"]["name"] == service["metadata"]["name"]
        ]
        template = deployment["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), doc.where
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        c = container(template)
        for service_port in service["spec"]["ports"]:
            assert service_port["port"] == port(c, service_port["targetPort"]), f"{doc.where} {service_port['name']}"


def test_registry_is_one_writer_and_its_ports_match_its_config() -> None:
    deployment = find("Deployment", "cdserve-registry")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    config = RegistryConfig.model_validate(config_map_yaml("cdserve-registry-config", "registry.yaml"))
    c = container(deployment["spec"]["template"])
    assert (config.host, port(c, "grpc"), port(c, "metrics")) == ("0.0.0.0", config.port, config.metrics_port)
    template = deployment["spec"]["template"]
    data_volume, _ = mounted_file(template, c, str(config.data_dir))
    claim = data_volume["persistentVolumeClaim"]["claimName"]
    assert find("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_training_service_reaches_the_ray_head_and_the_registry() -> None:
    config = TrainingServiceConfig.model_validate(config_map_yaml("cdserve-training-config", "training.yaml"))
    c = container(find("Deployment", "cdserve-training")["spec"]["template"])
    assert (port(c, "grpc"), port(c, "metrics")) == (config.port, config.metrics_port)
    # KubeRay names the head service of a RayService "<name>-head-svc".
    head = container(rayservice()["spec"]["rayClusterConfig"]["headGroupSpec"]["template"])
    assert (
        config.ray_address
        == f"http://{rayservice()['metadata']['name']}-head-svc.{NAMESPACE}.svc:{port(head, 'dashboard')}"
    )
    assert_registry_address(config.registry)
    assert (
        config.job_python.startswith("/opt/venv/")
        and "python3 -m venv /opt/venv" in (DEPLOY / "Dockerfile").read_text()
    )


def assert_registry_address(address: str | None) -> None:
    service = find("Service", "cdserve-registry")
    host, _, service_port = (address or "").rpartition(":")
    assert host in (service["metadata"]["name"], f"{service['metadata']['name']}.{NAMESPACE}.svc"), address
    assert int(service_port) == next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")


def test_serve_ports_agree_between_serve_config_ray_pods_and_the_generator_service() -> None:
    spec = rayservice()["spec"]
    serve_config = yaml.safe_load(spec["serveConfigV2"])
    assert serve_config == load_yaml(DEPLOY / "serve-cluster.yaml"), (
        "serveConfigV2 must equal deploy/serve-cluster.yaml"
    )
    args = ServingConfig.model_validate(serve_args(serve_config))
    assert serve_config["grpc_options"]["port"] == args.grpc_port
    assert serve_config["http_options"]["port"] == args.http_port
    ports = {p["name"]: p for p in spec["serveService"]["spec"]["ports"]}
    assert ports["grpc"]["targetPort"] == args.grpc_port and ports["grpc"]["appProtocol"] == "grpc"
    assert ports["serve"]["targetPort"] == args.http_port
    cluster = spec["rayClusterConfig"]
    for group in (cluster["headGroupSpec"], *cluster["workerGroupSpecs"]):
        c = container(group["template"])
        assert (
            group["rayStartParams"]["metrics-export-port"] == str(args.metrics_export_port) == str(port(c, "metrics"))
        )
        assert port(c, "grpc") == args.grpc_port and port(c, "serve") == args.http_port
    assert_registry_address(args.registry.address)


def test_gpu_workers_fit_the_serve_replicas_and_their_cache() -> None:
    spec = rayservice()["spec"]
    args = ServingConfig.model_validate(serve_args(yaml.safe_load(spec["serveConfigV2"])))
    assert args.ray_actor_options.num_gpus == 1 and args.autoscaling is not None
    assert args.autoscaling.min_replicas < args.autoscaling.max_replicas
    (gpu,) = spec["rayClusterConfig"]["workerGroupSpecs"]
    assert gpu["maxReplicas"] >= args.autoscaling.max_replicas, "one single-GPU pod per replica at max_replicas"
    template = gpu["template"]
    c = container(template)
    assert float(c["resources"]["limits"]["cpu"]) >= args.ray_actor_options.num_cpus
    assert quantity(c["resources"]["limits"]["memory"]) > args.cache.host_max_bytes, "host tier must fit in the pod"
    cache_volume, _ = mounted_file(template, c, str(args.cache.disk_dir))
    assert quantity(cache_volume["emptyDir"]["sizeLimit"]) >= args.cache.disk_max_bytes
    model_volume, _ = mounted_file(template, c, str(args.base_model.path))
    assert model_volume["persistentVolumeClaim"]["claimName"] == "cdserve-models"


def quantity(text: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([KMGT]i)?", text).groups()  # type: ignore[union-attr]
    return float(number) * units[unit or ""]


# -- volumes, files, secrets ---------------------------------------------------------------------------


def test_every_volume_claim_config_map_and_secret_reference_resolves() -> None:
    claims = {d.body["metadata"]["name"] for d in k8s_objects() if d.body["kind"] == "PersistentVolumeClaim"}
    maps = {d.body["metadata"]["name"]: d.body["data"] for d in k8s_objects() if d.body["kind"] == "ConfigMap"}
    secrets = {d.body["metadata"]["name"]: d.body["stringData"] for d in k8s_objects() if d.body["kind"] == "Secret"}
    for where, template in workload_pod_templates():
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        containers = template["spec"]["containers"]
        for c in containers:
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{where}: mount {mount['name']} has no volume"
            for env in c.get("env", []):
                if ref := env.get("valueFrom", {}).get("secretKeyRef"):
                    assert ref["key"] in secrets[ref["name"]], f"{where}: {env['name']} → {ref}"
        used = {m["name"] for c in containers for m in c.get("volumeMounts", [])}
        assert used == set(volumes), f"{where}: volumes never mounted: {set(volumes) - used}"
        for volume in volumes.values():
            if claim := volume.get("persistentVolumeClaim"):
                assert claim["claimName"] in claims, where
            if source := volume.get("configMap"):
                assert {i["key"] for i in source["items"]} <= set(maps[source["name"]]), where
            if source := volume.get("secret"):
                assert {i["key"] for i in source["items"]} <= set(secrets[source["secretName"]]), where
    for env in rayservice()["spec"]["rayClusterConfig"]["autoscalerOptions"]["env"]:
        if ref := env.get("valueFrom", {}).get("secretKeyRef"):
            assert ref["key"] in secrets[ref["name"]]


def file_behind(template: dict[str, Any], c: dict[str, Any], path: str) -> str:
    """The ConfigMap/Secret text that `path` resolves to inside the container."""
    volume, relative = mounted_file(template, c, path)
    source = volume.get("configMap") or volume.get("secret")
    assert source is not None, f"{path} is not a ConfigMap or Secret file"
    (key,) = [i["key"] for i in source["items"] if i["path"] == relative]
    if "configMap" in volume:
        return find("ConfigMap", source["name"])["data"][key]
    return find("Secret", source["secretName"])["stringData"][key]


def test_files_the_services_read_are_mounted_where_their_configs_say() -> None:
    from shared.auth import TokensFile

    for name, flag_index in (("cdserve-registry", 2), ("cdserve-training", 2)):
        template = find("Deployment", name)["spec"]["template"]
        c = container(template)
        config_text = file_behind(template, c, c["args"][flag_index])
        config = yaml.safe_load(config_text)
        TokensFile.model_validate(yaml.safe_load(file_behind(template, c, config["tokens_file"])))
        for key in ("data_dir",):
            volume, _ = mounted_file(template, c, config[key])
            assert "persistentVolumeClaim" in volume and not volume["persistentVolumeClaim"].get("readOnly")
        for path in config.get("base_spec_files", []):
            volume, _ = mounted_file(template, c, path)
            assert volume["persistentVolumeClaim"]["claimName"] == "cdserve-models"


def test_one_base_model_and_one_training_volume_path_everywhere() -> None:
    serve = ServingConfig.model_validate(serve_args(load_yaml(DEPLOY / "serve-cluster.yaml")))
    registry = config_map_yaml("cdserve-registry-config", "registry.yaml")
    training = config_map_yaml("cdserve-training-config", "training.yaml")
    assert {str(serve.base_model.path), training["base_model"]} == {
        posixpath.dirname(p) for p in registry["base_spec_files"]
    }
    # The training service writes job directories that Ray pods (job drivers, Train workers) read.
    for where, template in ray_pod_templates():
        volume, relative = mounted_file(template, container(template), training["data_dir"])
        assert volume["persistentVolumeClaim"]["claimName"] == "cdserve-training-data" and relative == ".", where
    training_template = find("Deployment", "cdserve-training")["spec"]["template"]
    volume, _ = mounted_file(training_template, container(training_template), training["data_dir"])
    assert volume["persistentVolumeClaim"]["claimName"] == "cdserve-training-data"
    assert find("PersistentVolumeClaim", "cdserve-training-data")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_serve_config_carries_no_secret_and_secrets_are_placeholders_kept_out_of_kustomize() -> None:
    for path in (DEPLOY / "serve-cluster.yaml", DEPLOY / "serve-local.yaml"):
        assert ServingConfig.model_validate(serve_args(load_yaml(path))).registry.token is None, path
    cluster = ServingConfig.model_validate(serve_args(load_yaml(DEPLOY / "serve-cluster.yaml")))
    assert str(cluster.registry.token_file) == "/etc/cdserve/serve-token/token"  # the mounted Secret
    for doc in k8s_objects():
        if doc.body["kind"] == "Secret":
            assert all("REPLACE" in value for value in doc.body["stringData"].values()), doc.where
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert "secrets.yaml" not in kustomization["resources"]
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource


def test_rayjob_runs_a_valid_job_spec_from_a_mounted_file() -> None:
    job = find("RayJob", "cdserve-train-example")
    template = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    head = container(template)
    entrypoint = job["spec"]["entrypoint"].split()
    assert entrypoint[:3] == ["python", "-m", "training.job"] and entrypoint[3] == "--spec"
    spec = JobSpec.model_validate_json(file_behind(template, head, entrypoint[4]))
    assert spec.train.recipe.num_workers <= sum(
        g["maxReplicas"] for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    )
    for path in (spec.options.job_dir, spec.train.output_dir, *spec.train.concepts[0].images):
        volume, _ = mounted_file(template, head, path)
        assert volume["persistentVolumeClaim"]["claimName"] == "cdserve-training-data"
    assert spec.train.output_dir.startswith(spec.options.job_dir + "/")
    assert_registry_address(spec.registry)
    token_volume, _ = mounted_file(template, head, spec.registry_token_file)  # the driver publishes with a token,
    assert token_volume["secret"]["secretName"] == "cdserve-tokens"  # from a file: Ray shows a job's environment
    assert not any("TOKEN" in e["name"] and "REGISTRY" in e["name"] for e in head["env"])


# -- container file and entry point ------------------------------------------------------------------


def test_container_args_are_valid_cdserve_command_lines() -> None:
    from cli.main import build_parser

    script = (DEPLOY / "docker-entrypoint.sh").read_text()
    roles = dict(re.findall(r"^\s{4}(\w+)\)\n\s+shift\n\s+exec cdserve ([a-z ]+) \"\$@\"", script, flags=re.M))
    assert roles == {"registry": "registry", "training": "training serve"}
    parser = build_parser()
    for name in ("cdserve-registry", "cdserve-training"):
        role, *flags = container(find("Deployment", name)["spec"]["template"])["args"]
        args = parser.parse_args([*roles[role].split(), *flags])  # exits (SystemExit) on an unknown flag
        assert args.config == Path(flags[flags.index("--config") + 1])
    (up,) = re.findall(r'^\s+exec cdserve (up [^"]+) "\$@"', script, flags=re.M)
    args = parser.parse_args(up.split())
    assert str(args.config).startswith("/app/deploy/") and (DEPLOY / args.config.name).is_file()


def test_dockerfile_copies_every_package_and_the_deploy_files_it_names() -> None:
    import tomllib

    dockerfile = (DEPLOY / "Dockerfile").read_text()
    sources = [
        src
        for line in dockerfile.splitlines()
        if line.startswith("COPY") and "--from" not in line
        for src in line.split()[1:-1]
        if not src.startswith("--")
    ]
    for src in sources:
        assert (ROOT / src).exists(), src
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {pattern.rstrip("*") for pattern in include} <= set(sources)
    assert "ENTRYPOINT" in dockerfile and "docker-entrypoint.sh" in dockerfile
    exposed = {int(p) for line in dockerfile.splitlines() if line.startswith("EXPOSE") for p in line.split()[1:]}
    registry = config_map_yaml("cdserve-registry-config", "registry.yaml")
    training = config_map_yaml("cdserve-training-config", "training.yaml")
    serve = ServingConfig.model_validate(serve_args(load_yaml(DEPLOY / "serve-cluster.yaml")))
    assert {
        registry["port"],
        registry["metrics_port"],
        training["port"],
        training["metrics_port"],
        serve.grpc_port,
        serve.http_port,
        serve.metrics_export_port,
    } <= exposed
    images = {container(t, c["name"])["image"] for _, t in ray_pod_templates() for c in t["spec"]["containers"]}
    assert len(images) == 1, "every Ray node must run the same image (same Ray and Python)"


# -- cluster launcher ------------------------------------------------------------------------------


def test_cluster_launcher_config_passes_rays_own_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = load_yaml(DEPLOY / "cluster-launcher.yaml")
    validate_config(prepare_config(yaml.safe_load(yaml.safe_dump(raw))))
    gpu = raw["available_node_types"]["gpu_worker"]
    serve = ServingConfig.model_validate(serve_args(load_yaml(DEPLOY / "serve-cluster.yaml")))
    assert gpu["resources"]["GPU"] == 1 and gpu["max_workers"] >= serve.autoscaling.max_replicas  # type: ignore[union-attr]
    assert raw["head_node_type"] == "head" and raw["available_node_types"]["head"]["resources"]["CPU"] == 0
    starts = " ".join(raw["head_start_ray_commands"] + raw["worker_start_ray_commands"])
    assert starts.count(f"--metrics-export-port={serve.metrics_export_port}") == 2
    (ray_image,) = {container(t)["image"] for _, t in ray_pod_templates()}
    assert raw["docker"]["image"] == ray_image

    typo = yaml.safe_load(yaml.safe_dump(raw))
    typo["available_node_types"]["gpu_worker"]["max_worker"] = typo["available_node_types"]["gpu_worker"].pop(
        "max_workers"
    )
    with pytest.raises(Exception, match="max_worker"):  # the validator is strict
        validate_config(prepare_config(typo))


# -- TLS front of the Generator ------------------------------------------------------------------------
# Envoy cannot be installed here, so its config is not run; its structure and its cross-references
# are checked (mounted certificate files, ports, the upstream Service). Envoy's API protos
# (xds-protos) are not used: that package overwrites modules of opentelemetry-proto and
# googleapis-common-protos, which silences every Ray actor's metrics.


def generator_tls_front() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(pod template, Envoy container, Envoy config) of the Generator's TLS front."""
    template = find("Deployment", "cdserve-generator-tls")["spec"]["template"]
    c = container(template)
    config_path = c["args"][c["args"].index("--config-path") + 1]
    return template, c, yaml.safe_load(file_behind(template, c, config_path))


def test_the_generator_tls_front_terminates_tls_and_forwards_http2_to_the_serve_grpc_proxy() -> None:
    template, c, envoy = generator_tls_front()
    assert set(envoy) == {"static_resources"}, "no admin listener: its endpoints would be open to the cluster"

    (listener,) = envoy["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["port_value"] == port(c, "grpc-tls")
    (chain,) = listener["filter_chains"]
    tls = chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert tls["alpn_protocols"] == ["h2"], "gRPC clients negotiate HTTP/2 with ALPN"
    (pair,) = tls["tls_certificates"]
    for field, key in (("certificate_chain", "tls.crt"), ("private_key", "tls.key")):
        volume, relative = mounted_file(template, c, pair[field]["filename"])
        assert volume["secret"]["secretName"] == "cdserve-generator-tls"
        assert {"key": key, "path": relative} in volume["secret"]["items"]
    assert find("Secret", "cdserve-generator-tls")["type"] == "kubernetes.io/tls"

    (manager,) = chain["filters"]
    routing = manager["typed_config"]
    assert routing["codec_type"] == "HTTP2" and routing["http_filters"][-1]["name"] == "envoy.filters.http.router"
    (host,) = routing["route_config"]["virtual_hosts"]
    (route,) = host["routes"]
    assert route["route"]["timeout"] == "0s", "a route timeout would cut GenerateStream; the caller's deadline rules"
    (cluster,) = envoy["static_resources"]["clusters"]
    assert route["route"]["cluster"] == cluster["name"]
    protocol = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in protocol["explicit_http_config"], "Serve's gRPC proxy speaks HTTP/2 only"
    (endpoint,) = [e for group in cluster["load_assignment"]["endpoints"] for e in group["lb_endpoints"]]
    upstream = endpoint["endpoint"]["address"]["socket_address"]
    serve_service = rayservice()["spec"]["serveService"]
    assert upstream["address"] == f"{serve_service['metadata']['name']}.{NAMESPACE}.svc"
    grpc_port = next(p["port"] for p in serve_service["spec"]["ports"] if p["name"] == "grpc")
    assert (
        upstream["port_value"]
        == grpc_port
        == ServingConfig.model_validate(serve_args(load_yaml(DEPLOY / "serve-cluster.yaml"))).grpc_port
    )
