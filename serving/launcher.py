"""Runs tritonserver on a model repository: loopback by default, admin APIs behind a key.

    with TritonServer(repo, install, ports=free_ports(), key="...") as server:
        server.grpc_url  # "127.0.0.1:PORT"

Inference, health and metadata are open; the model repository (load/unload/index),
model config, statistics, shared memory, trace and logging APIs need the key: HTTP header
`ADMIN_HEADER: <key>`, gRPC metadata `triton-grpc-protocol-ADMIN_HEADER: <key>`. The repository is served with
--model-control-mode=none: nothing can be loaded or unloaded at run time anyway.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hi3d.engine.errors import InvalidInput
from hi3d.serving.server_install import ServerInstall

ADMIN_HEADER = "hi3d-admin-key"
RESTRICTED = "model-repository,model-config,statistics,shared-memory,trace,logging"


def grpc_admin_headers(key: str) -> dict[str, str]:
    """tritonserver expects a restricted gRPC protocol's header under this prefix."""
    return {f"triton-grpc-protocol-{ADMIN_HEADER}": key}


@dataclass(frozen=True)
class Ports:
    grpc: int = 8001
    http: int = 8000
    metrics: int = 8002


def free_ports(host: str = "127.0.0.1") -> Ports:
    """Three ports free on `host` right now (bound together, so they differ)."""
    socks = [socket.socket() for _ in range(3)]
    try:
        for s in socks:
            s.bind((host, 0))
        return Ports(*(s.getsockname()[1] for s in socks))
    finally:
        for s in socks:
            s.close()


def server_command(install: ServerInstall, repo: Path, ports: Ports, host: str, key: str) -> list[str]:
    restricted = f"{RESTRICTED}:{ADMIN_HEADER}={key}"
    cmd = [
        str(install.binary), f"--model-repository={repo}", "--model-control-mode=none",
        f"--grpc-address={host}", f"--grpc-port={ports.grpc}",
        f"--http-address={host}", f"--http-port={ports.http}",
        f"--metrics-address={host}", f"--metrics-port={ports.metrics}",
        f"--grpc-restricted-protocol={restricted}", f"--http-restricted-api={restricted}",
        "--exit-on-error=true", "--strict-readiness=true", "--log-verbose=0", "--exit-timeout-secs=10",
        # The python backend moves tensors through shared memory; full-size views are ~50 MB.
        "--backend-config=python,shm-default-byte-size=16777216",
        "--backend-config=python,shm-growth-byte-size=67108864",
    ]
    if install.backend_dir is not None:
        cmd.append(f"--backend-directory={install.backend_dir}")
    return cmd


class TritonServer:
    """A tritonserver process that is always stopped on exit, even when startup fails."""

    def __init__(self, repo: Path, install: ServerInstall, ports: Ports, key: str, host: str = "127.0.0.1",
                 log_file: Path | None = None, startup_timeout_s: float = 600.0):
        if not (Path(repo) / "hi3d" / "config.pbtxt").is_file():
            raise InvalidInput(f"{repo}: no model repository here (run `hi3d serve build-repo` first)")
        if not key:
            raise InvalidInput("an admin key is required (it guards the model-repository and other admin APIs)")
        self.repo, self.install, self.ports, self.key, self.host = Path(repo), install, ports, key, host
        self.log_file = Path(log_file) if log_file else self.repo.parent / f"{self.repo.name}.tritonserver.log"
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.ports.http}"

    @property
    def admin_headers(self) -> dict[str, str]:
        """gRPC metadata for the restricted APIs (HTTP takes `ADMIN_HEADER` itself)."""
        return grpc_admin_headers(self.key)

    def start(self) -> "TritonServer":
        cmd = server_command(self.install, self.repo, self.ports, self.host, self.key)
        self._log = open(self.log_file, "wb")
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=self.install.env(dict(os.environ)), start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.grpc_url)
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"tritonserver exited with code {self.process.returncode} while starting:\n"
                                       f"{self.log_tail()}")
                try:
                    if client.is_server_ready(client_timeout=2.0):
                        return
                except Exception:  # not listening yet
                    pass
                time.sleep(0.5)
        finally:
            client.close()
        raise TimeoutError(f"tritonserver not ready after {self.startup_timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (tritonserver unloads its models and stops its stubs), then SIGKILL the group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        try:  # the server ran in its own session: no stub outlives it
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._log.close()
        self.process = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
