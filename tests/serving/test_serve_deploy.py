"""The Kubernetes manifests and the compose file agree with the launcher and the generated
repository: same ports, same restricted APIs and header, probes on Triton's health and
model endpoints of models that exist, build-repo commands our CLI accepts, non-root."""
import shlex
from pathlib import Path

import pytest
import yaml

from hi3d.cli import make_parser
from hi3d.serving.launcher import ADMIN_HEADER, RESTRICTED, Ports
from hi3d.serving.repository import MODELS

DEPLOY = Path(__file__).parents[2] / "serving" / "deploy"
PORTS = {"http": Ports().http, "grpc": Ports().grpc, "metrics": Ports().metrics}


@pytest.fixture(scope="module")
def k8s():
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))
    return {d["kind"]: d for d in docs}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


def _check_server_flags(flags: dict[str, str], key_ref: str) -> None:
    assert flags["model-control-mode"] == "none"
    for opt in ("grpc-restricted-protocol", "http-restricted-api"):
        assert flags[opt] == f"{RESTRICTED}:{ADMIN_HEADER}={key_ref}"
    assert {flags["http-port"], flags["grpc-port"], flags["metrics-port"]} == {str(p) for p in PORTS.values()}
    assert flags["grpc-port"] == str(PORTS["grpc"]) and flags["http-port"] == str(PORTS["http"])


def _check_build_repo(argv: list[str]) -> str:
    """The command parses with our CLI; returns its --out."""
    args = make_parser().parse_args(argv)
    assert args.func.__name__ == "cmd_build_repo"
    assert args.kind == "gpu" and args.backend == "tensorrt"
    assert all(name in MODELS for name, _ in args.instances)
    return str(args.out)


def test_deployment_serves_the_built_repository(k8s):
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (init,) = pod["initContainers"]
    out = _check_build_repo(init["command"][1:])
    (server,) = pod["containers"]
    flags = _flags(server["args"])
    assert flags["model-repository"] == out
    _check_server_flags(flags, "$(HI3D_ADMIN_KEY)")
    assert server["env"][0]["name"] == "HI3D_ADMIN_KEY" and "secretKeyRef" in server["env"][0]["valueFrom"]
    assert {p["name"]: p["containerPort"] for p in server["ports"]} == PORTS
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    model = server["startupProbe"]["httpGet"]["path"].split("/")[3]  # /v2/models/<name>/ready
    assert model in MODELS
    for c in (init, server):
        assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_service_and_network_policy_match_the_pods(k8s):
    labels = k8s["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert k8s["Service"]["spec"]["selector"] == labels
    assert {p["name"]: p["port"] for p in k8s["Service"]["spec"]["ports"]} == PORTS
    policy = k8s["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == labels and policy["policyTypes"] == ["Ingress"]
    allowed = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert allowed == set(PORTS.values())


def test_compose_runs_one_server_per_gpu_on_loopback(compose):
    services = compose["services"]
    gpus, host_ports = [], set()
    for name, svc in services.items():
        (cmd,) = svc["command"]
        build, serve = cmd.split("&&")
        out = _check_build_repo(shlex.split(build)[1:])
        flags = _flags(shlex.split(serve.replace("$$", "$")))
        assert flags["model-repository"] == out
        _check_server_flags(flags, "$HI3D_ADMIN_KEY")
        for mapping in svc["ports"]:
            host, hport, cport = mapping.split(":")
            assert host == "127.0.0.1" and int(cport) in PORTS.values()
            host_ports.add(int(hport))
        (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
        gpus += device["device_ids"]
        assert svc["user"].split(":")[0] != "0"
        assert svc["healthcheck"]["test"][-1].split("/")[5] in MODELS  # .../v2/models/<name>/ready
    assert len(gpus) == len(set(gpus)) == len(services) >= 2
    assert len(host_ports) == 3 * len(services)  # no two servers share a host port
