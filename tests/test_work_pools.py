"""The container work pools, checked without a Docker daemon or a Kubernetes cluster.

prefect.yaml's `speednet-docker` and `speednet-k8s` deployments are read by Prefect's own
loader, their job variables rendered by prefect-docker's and prefect-kubernetes's own job
configuration classes (the Kubernetes one from deploy/k8s-base-job-template.json, the
template the operator gives `prefect work-pool create`), and the rendered Docker create
arguments and Kubernetes Job go through docker-py and, where it exists, kubectl, offline.
docker/Dockerfile is checked statically, and built only where a Docker daemon answers.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from uuid import uuid4

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "prefect.yaml"
K8S_TEMPLATE = ROOT / "deploy" / "k8s-base-job-template.json"
K8S_VOLUMES = ROOT / "deploy" / "k8s-volumes.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SCALE_DOC = ROOT / "docs" / "SCALE.md"

LOCAL_POOL = "speednet"
POOLS = {"speednet-docker": "docker", "speednet-k8s": "kubernetes"}
IMAGE_ENV = {"SPEEDNET_IMAGE": "registry.example.com/speednet:1.2.3-cpu",
             "SPEEDNET_GPU_IMAGE": "registry.example.com/speednet:1.2.3-cuda"}
CODE_DIR = "/opt/speednet"
DATA_DIR, LIBRARY_DIR = "/data", "/library"
# What each container pool must run every night: flow function -> (cron, parameters it must set).
NIGHTLY = {
    "score_library": ("0 2 * * *", {"ingest_first": True, "library": LIBRARY_DIR}),
    "embed_library": ("0 3 * * *", {}),
    "render_speedups": ("0 4 * * *", {"rate": 3.0}),
}


@cache
def _loaded() -> tuple[list[dict], dict]:
    """prefect.yaml as `prefect deploy` reads it (a schema error makes it skip every deployment)."""
    from rich.console import Console

    from prefect.cli.deploy._config import _load_deploy_configs_and_actions

    return _load_deploy_configs_and_actions(PREFECT_YAML, console=Console(quiet=True))


def _configs() -> list[dict]:
    return copy.deepcopy(_loaded()[0])


def _remote(pool: str | None = None) -> list[dict]:
    return [c for c in _configs() if c["work_pool"]["name"] in POOLS and pool in (None, c["work_pool"]["name"])]


def _pick(names: list[str]) -> list[dict]:
    """The deployments `prefect --no-prompt deploy --name N ...` selects."""
    from rich.console import Console

    from prefect.cli.deploy._config import _pick_deploy_configs

    return _pick_deploy_configs(_configs(), names, False, console=Console(quiet=True), is_interactive=lambda: False)


def _key(config: dict) -> tuple[str, str, str]:
    return config["entrypoint"].split(":")[-1], config["name"], config["work_pool"]["name"]


@cache
def _flow(entrypoint: str):
    from prefect.flows import load_flow_from_entrypoint

    return load_flow_from_entrypoint(str(ROOT / entrypoint))


@pytest.fixture
def image_env(monkeypatch) -> dict[str, str]:
    """The environment the operator runs `prefect deploy` in: it names the images."""
    for name, value in IMAGE_ENV.items():
        monkeypatch.setenv(name, value)
    return IMAGE_ENV


def _as_deployed(config: dict) -> dict:
    """A deployment config after `prefect deploy` fills in `{{ $ENV_VAR }}` placeholders from the environment."""
    import os

    from prefect.utilities.templating import apply_values

    return apply_values(copy.deepcopy(config), dict(os.environ), remove_notset=False)


class _Offline:
    """Stands in for the Prefect client: rendering a job template must need no server."""

    def __getattr__(self, name):
        raise AssertionError(f"rendering asked the Prefect API ({name}): the template references a block or variable")


def _render(config_class, template: dict, job_variables: dict):
    """The job configuration a worker builds for one flow run of a deployment with ``job_variables``."""
    from prefect.client.schemas.objects import FlowRun

    configuration = asyncio.run(config_class.from_template_and_values(template, job_variables, client=_Offline()))
    configuration.prepare_for_flow_run(FlowRun(flow_id=uuid4(), name="nightly-test-run", deployment_id=uuid4()))
    return configuration


def _k8s_template() -> dict:
    return json.loads(K8S_TEMPLATE.read_text())


# --- prefect.yaml -------------------------------------------------------------------------


def test_the_local_pool_keeps_its_deployments_and_is_deployed_by_name():
    configs = _configs()
    local = [_key(c) for c in configs if c["work_pool"]["name"] == LOCAL_POOL]
    assert local and {name for _, name, _ in local} == {"default", "nightly"}
    assert {c["work_pool"]["name"] for c in configs} == {LOCAL_POOL, *POOLS}
    # `prefect deploy --all` stops at the first deployment whose pool the server lacks; these
    # names select exactly the process pool's deployments, and the container ones by theirs.
    assert sorted(map(_key, _pick(["default", "nightly"]))) == sorted(local)
    for pool in POOLS:
        suffix = pool.removeprefix("speednet-")
        assert sorted(map(_key, _pick([f"nightly-{suffix}", f"gpu-{suffix}"]))) == sorted(map(_key, _remote(pool)))


@pytest.mark.parametrize("pool", POOLS)
def test_each_container_pool_runs_the_nightlies(pool):
    nightly = {c["entrypoint"].split(":")[-1]: c for c in _remote(pool) if c.get("schedules")}
    assert set(nightly) == set(NIGHTLY)
    for function, (cron, parameters) in NIGHTLY.items():
        config = nightly[function]
        assert config["schedules"] == [{"cron": cron, "timezone": "UTC", "active": True}], function
        assert parameters.items() <= config["parameters"].items(), function


@pytest.mark.parametrize("config", _remote(), ids=lambda c: "/".join(_key(c)[:2]))
def test_container_deployments_name_real_flows_and_find_the_code_in_the_image(config):
    from prefect.flows import Flow

    flow = _flow(config["entrypoint"])
    assert isinstance(flow, Flow)
    assert config["entrypoint"].split(":")[-1].replace("_", "-") == flow.name  # how `--name flow/deployment` matches
    assert set(config["parameters"]) <= set(flow.parameters.properties), "parameters the flow does not take"
    assert config["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": CODE_DIR}}]
    assert (ROOT / config["entrypoint"].split(":")[0]).is_file()


# --- Docker -------------------------------------------------------------------------------


class _FakeDockerClient:
    def version(self) -> dict:
        return {"Version": "27.3.1", "ApiVersion": "1.47"}


@pytest.mark.parametrize("config", _remote("speednet-docker"), ids=lambda c: "/".join(_key(c)[:2]))
def test_docker_job_configuration_renders(config, image_env):
    from docker.models.containers import _create_container_args
    from prefect_docker.worker import DockerWorker, DockerWorkerJobConfiguration

    gpu = config["name"].startswith("gpu-")
    job_variables = _as_deployed(config)["work_pool"]["job_variables"]
    job = _render(DockerWorkerJobConfiguration, DockerWorker.get_default_base_job_template(), job_variables)

    assert job.image == image_env["SPEEDNET_GPU_IMAGE" if gpu else "SPEEDNET_IMAGE"]
    assert job.command == "prefect flow-run execute"
    assert job.env["SPEEDNET_HOME"] == DATA_DIR
    assert job.env["PREFECT_HOME"] == "/home/speednet/.prefect"  # not the worker's own
    assert "PREFECT__FLOW_RUN_ID" in job.env
    assert job.volumes == ["speednet-data:/data", "speednet-library:/library:ro"]

    # The keyword arguments the worker gives docker-py's containers.create, as docker-py turns them into the API call.
    settings = DockerWorker._build_container_settings(None, _FakeDockerClient(), job)
    create = _create_container_args({**settings, "version": "1.44"})
    host = create["host_config"]
    assert create["image"] == job.image and create["command"] == "prefect flow-run execute"
    assert create["environment"]["SPEEDNET_HOME"] == DATA_DIR
    assert sorted(host["Binds"]) == ["speednet-data:/data", "speednet-library:/library:ro"]
    assert host["ShmSize"] == 2 * 1024**3
    assert host["AutoRemove"] is True
    requests = host.get("DeviceRequests") or []
    if gpu:  # = docker run --gpus all
        assert [(r["Driver"], r["Count"], r["Capabilities"]) for r in requests] == [("nvidia", -1, [["gpu"]])]
    else:
        assert requests == []


# --- Kubernetes ---------------------------------------------------------------------------


def test_k8s_base_job_template_is_the_default_plus_the_volumes():
    from prefect_kubernetes.worker import KubernetesWorker

    default, ours = KubernetesWorker.get_default_base_job_template(), _k8s_template()
    assert set(default["variables"]["properties"]) <= set(ours["variables"]["properties"])
    assert set(ours["job_configuration"]) == set(default["job_configuration"])
    for key in ("data_claim", "library_claim", "gpu_limit", "shm_size"):
        assert key in ours["variables"]["properties"], key
        assert "{{ %s }}" % key in json.dumps(ours["job_configuration"]), f"variable {key} is not used"
    # The claims the template mounts by default are the ones deploy/k8s-volumes.yaml makes, in its namespace.
    documents = [d for d in yaml.safe_load_all(K8S_VOLUMES.read_text()) if d]
    claims = {d["metadata"]["name"]: d for d in documents if d["kind"] == "PersistentVolumeClaim"}
    properties = ours["variables"]["properties"]
    assert set(claims) == {properties["data_claim"]["default"], properties["library_claim"]["default"]}
    assert claims[properties["data_claim"]["default"]]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert {d["metadata"]["namespace"] for d in claims.values()} == {properties["namespace"]["default"]}


def _kubectl_decode(manifest: dict) -> dict | None:
    """The Job as kubectl decodes it into batch/v1 types, offline (`set env --local`); None without kubectl."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    run = subprocess.run([kubectl, "set", "env", "--local", "-f", "-", "-o", "json", "SPEEDNET_KUBECTL_CHECK=1"],
                         input=json.dumps(manifest), capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("config", _remote("speednet-k8s"), ids=lambda c: "/".join(_key(c)[:2]))
def test_k8s_job_manifest_renders(config, image_env):
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    gpu = config["name"].startswith("gpu-")
    job_variables = _as_deployed(config)["work_pool"]["job_variables"]
    job = _render(KubernetesWorkerJobConfiguration, _k8s_template(), job_variables)
    manifest = job.job_manifest

    assert job.namespace == "speednet" and manifest["metadata"]["namespace"] == "speednet"
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == image_env["SPEEDNET_GPU_IMAGE" if gpu else "SPEEDNET_IMAGE"]
    assert container["args"] == ["prefect", "flow-run", "execute"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SPEEDNET_HOME"] == DATA_DIR and "PREFECT__FLOW_RUN_ID" in env
    assert env["PREFECT_HOME"] == "/home/speednet/.prefect"  # not the worker's own
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[DATA_DIR]["name"]]["persistentVolumeClaim"] == {"claimName": "speednet-data"}
    assert not mounts[DATA_DIR].get("readOnly")
    assert volumes[mounts[LIBRARY_DIR]["name"]]["persistentVolumeClaim"] == {"claimName": "speednet-library", "readOnly": True}
    assert mounts[LIBRARY_DIR]["readOnly"] is True
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert pod["securityContext"]["runAsUser"] == 1000
    limits = container["resources"]["limits"]
    assert limits.get("nvidia.com/gpu") == (1 if gpu else None)
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 86400

    decoded = _kubectl_decode(manifest)
    if decoded is None:
        pytest.skip("no kubectl here: the manifest was rendered but not decoded as a batch/v1 Job")
    assert decoded["kind"] == "Job" and decoded["apiVersion"] == "batch/v1"
    pod = decoded["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == image_env["SPEEDNET_GPU_IMAGE" if gpu else "SPEEDNET_IMAGE"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {DATA_DIR, LIBRARY_DIR, "/dev/shm"}
    assert {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v} == {
        "speednet-data", "speednet-library"}
    assert ("nvidia.com/gpu" in container["resources"].get("limits", {})) == gpu
    assert pod["securityContext"]["fsGroup"] == 1000


# --- the image ----------------------------------------------------------------------------


def _dockerfile() -> str:
    return DOCKERFILE.read_text()


def test_dockerfile_copies_what_exists_and_pins_the_cpu_torch():
    text = _dockerfile()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    sources = [s for line in re.findall(r"^COPY\s+(.+)$", text, re.M) for s in line.split()[:-1] if not s.startswith("--")]
    assert sources and all((ROOT / s).exists() for s in sources), sources
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu$", text, re.M)
    torch_pin = re.search(r"^ARG TORCH_VERSION=(\S+)$", text, re.M).group(1)
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"torch>=2.4,<={torch_pin}" in dependencies, "the image's torch must be the one pyproject allows at most"
    assert '"torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"' in text
    assert re.search(rf"^WORKDIR {CODE_DIR}$", text, re.M), "the deployments' pull step sets this directory"
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line and not line.startswith("#")}
    assert {".venv", "var", ".git", "**/__pycache__"} <= ignored
    assert not ignored & {s.rstrip("/") for s in sources}, "the image copies something the build context leaves out"


def _docker_daemon() -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_cpu_image_builds_and_imports_the_flows():
    if not _docker_daemon():
        pytest.skip("no Docker daemon answers here")
    tag = f"speednet-test:{uuid4().hex[:8]}"
    try:
        build = subprocess.run(["docker", "build", "-f", str(DOCKERFILE), "-t", tag, str(ROOT)], capture_output=True,
                               text=True, timeout=3500)
        assert build.returncode == 0, build.stderr[-5000:]
        run = subprocess.run(["docker", "run", "--rm", tag, "python", "-c",
                              "import torch, flows.score; assert not torch.cuda.is_available(); print(torch.__version__)"],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and "+cpu" in run.stdout, run.stderr[-3000:]
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)


# --- the operator's document --------------------------------------------------------------


def test_scale_doc_names_only_deployments_that_exist():
    text = SCALE_DOC.read_text()
    names = set(re.findall(r"--name\s+'?([\w/-]+)'?", text))
    assert names, "docs/SCALE.md gives no `prefect deploy --name` command"
    known = {c["name"] for c in _configs()} | {f"{_key(c)[0].replace('_', '-')}/{c['name']}" for c in _configs()}
    assert names <= known, names - known
    for pool, kind in POOLS.items():
        assert f"prefect work-pool create {pool} --type {kind}" in text
        assert f"prefect worker start --pool {pool}" in text
    assert "deploy/k8s-base-job-template.json" in text
