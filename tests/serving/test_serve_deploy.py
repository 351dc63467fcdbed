"""The Kubernetes manifests and the compose file agree with the launcher and the generated
repository: servers run under `hi3d serve start` (watchdog, drain on SIGTERM) on the same
ports, probes on Triton's health, model endpoints of models that exist and our real-inference
liveness probe, build-repo commands our CLI accepts, non-root."""
import shlex
from pathlib import Path

import pytest
import yaml

from hi3d.cli import make_parser
from hi3d.serving.launcher import Ports
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


def _check_start(argv: list[str], repo: str) -> float:
    """`hi3d serve start` as our CLI parses it, on the built repository and the usual ports;
    the admin key comes from $HI3D_ADMIN_KEY (not a flag). Returns its drain grace."""
    args = make_parser().parse_args(argv)
    assert args.func.__name__ == "cmd_start" and str(args.repo) == repo and args.key is None
    assert (args.http_port, args.grpc_port, args.metrics_port) == (PORTS["http"], PORTS["grpc"], PORTS["metrics"])
    return args.grace


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
    grace = _check_start(server["command"][1:], out)
    assert pod["terminationGracePeriodSeconds"] > grace  # the drain finishes before the kubelet kills
    assert server["env"][0]["name"] == "HI3D_ADMIN_KEY" and "secretKeyRef" in server["env"][0]["valueFrom"]
    assert {p["name"]: p["containerPort"] for p in server["ports"]} == PORTS
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    probe = make_parser().parse_args(server["livenessProbe"]["exec"]["command"][1:])
    assert probe.func.__name__ == "cmd_probe" and probe.preset == "full"
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
        (_, *start) = shlex.split(serve)  # exec hi3d serve start ...
        _check_start(start[1:], out)
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
