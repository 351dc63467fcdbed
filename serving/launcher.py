"""Runs tritonserver on a model repository: loopback by default, admin APIs behind a key.

    with TritonServer(repo, install, ports=free_ports(), key="...") as server:
        server.grpc_url  # "127.0.0.1:PORT"

Inference, health and metadata are open; the model repository (load/unload/index),
model config, statistics, shared memory, trace and logging APIs need the key: HTTP header
`ADMIN_HEADER: <key>`, gRPC metadata `triton-grpc-protocol-ADMIN_HEADER: <key>`.

The repository is served in explicit model-control mode (every model loaded at start) so
that the launcher itself can act on it with the key: `Watchdog` reloads a model whose python
stub died (tritonserver would keep calling it ready while every request to it fails), and
`TritonServer.drain` unloads the public entry points on SIGTERM, so new requests get
UNAVAILABLE while those in flight run to the end.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hi3d.engine.errors import InvalidInput
from hi3d.serving.server_install import ServerInstall

ADMIN_HEADER = "hi3d-admin-key"
RESTRICTED = "model-repository,model-config,statistics,shared-memory,trace,logging"
DRAIN_MARKER = ".draining"  # in the repository root while the launcher drains the server
SETTLE_S = 3.0  # how long a drain must see nothing running before it stops the server
IDLE_CPU_S = 0.05  # CPU seconds all stubs together may use in one 0.5 s poll and count as idle


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


def check_ports_free(host: str, ports: Ports) -> None:
    """Fail fast, naming the port, when another process listens there: a server started on
    taken ports would lose the bind, and a readiness check would reach the other server."""
    for name, port in (("gRPC", ports.grpc), ("HTTP", ports.http), ("metrics", ports.metrics)):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError as e:
                raise InvalidInput(f"{name} port {port} on {host} is already in use ({e.strerror}); "
                                   "stop what listens there or choose another port") from None


def server_command(install: ServerInstall, repo: Path, ports: Ports, host: str, key: str) -> list[str]:
    restricted = f"{RESTRICTED}:{ADMIN_HEADER}={key}"
    cmd = [
        str(install.binary), f"--model-repository={repo}", "--model-control-mode=explicit", "--load-model=*",
        f"--grpc-address={host}", f"--grpc-port={ports.grpc}",
        f"--http-address={host}", f"--http-port={ports.http}",
        f"--metrics-address={host}", f"--metrics-port={ports.metrics}",
        f"--grpc-restricted-protocol={restricted}", f"--http-restricted-api={restricted}",
        "--exit-on-error=true", "--strict-readiness=true", "--log-verbose=0", "--exit-timeout-secs=10",
        # build-repo writes complete configs; auto-completing them would make the python backend
        # start one more stub per model, only to ask it for its config (half of a CPU start-up).
        "--disable-auto-complete-config",
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
        """Start the one process this object owns (a second call is an error, not a second server)."""
        if self.process is not None:
            raise RuntimeError("this TritonServer is already running")
        check_ports_free(self.host, self.ports)
        (self.repo / DRAIN_MARKER).unlink(missing_ok=True)  # a new launch serves
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
                    if client.is_server_ready(client_timeout=2.0) and self._bound_by_us():
                        return
                except Exception:  # not listening yet
                    pass
                time.sleep(0.5)
        finally:
            client.close()
        raise TimeoutError(f"tritonserver not ready after {self.startup_timeout_s:.0f} s:\n{self.log_tail()}")

    def _bound_by_us(self) -> bool:
        """Our process says it serves gRPC on our port: the ready answer came from it."""
        log = self.log_tail(1 << 20)
        return f"Started GRPCInferenceService at {self.host}:{self.ports.grpc}" in log

    def client(self):
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(self.grpc_url)

    def stubs(self) -> list["Stub"]:
        return python_stubs(self.process.pid) if self.process is not None else []

    def drain(self, public: Iterable[str], grace_s: float, log: Callable[[str], None] = print) -> bool:
        """Take no new requests (the `preprocess` step, first in every public entry point,
        answers UNAVAILABLE while the marker exists), then wait up to `grace_s` for those in
        flight. True when none was left running."""
        public = list(public)
        (self.repo / DRAIN_MARKER).write_text("the launcher is draining this server\n")
        log(f"draining: no new requests; waiting up to {grace_s:g} s for those in flight")
        deadline = time.monotonic() + grace_s
        client = self.client()
        try:
            time.sleep(1.0)  # a request accepted just now reaches preprocess and is counted
            left, activity = in_flight(client, public, self.admin_headers)
            cpu = stubs_cpu_seconds(self.process.pid)
            log(f"draining: {left} request(s) in flight")
            # Done when the counts say nothing is left, they stopped changing, and no stub
            # burns CPU (a request in flight always runs in one): for SETTLE_S in a row. The
            # counts alone can be misjudged, and one UNet step may take seconds on a busy CPU.
            quiet_since = None
            while time.monotonic() < deadline and self.process.poll() is None:
                time.sleep(0.5)
                left, now = in_flight(client, public, self.admin_headers)
                cpu_now = stubs_cpu_seconds(self.process.pid)
                idle = left <= 0 and now == activity and cpu_now - cpu < IDLE_CPU_S
                activity, cpu = now, cpu_now
                quiet_since = (quiet_since or time.monotonic()) if idle else None
                if quiet_since is not None and time.monotonic() - quiet_since >= SETTLE_S:
                    return True
            return False
        finally:
            client.close()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (tritonserver unloads its models and stops its stubs), then SIGKILL the group."""
        if self.process is None:
            return
        regions = [st.shm_region for st in self.stubs()]
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
        for region in regions:  # what a stub killed with the group could not clean up
            remove_shm(region)
        self._log.close()
        self.process = None

    def __enter__(self) -> "TritonServer":
        return self if self.process is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def in_flight(client, public: list[str], headers: dict[str, str]) -> tuple[int, int]:
    """(requests admitted and not finished, a fingerprint of all activity). Every public
    request passes `preprocess` once and finishes once at its entry point; one refused at the
    door fails on both sides. The fingerprint (all models' counts) changes while anything
    runs, so a drain also waits for it to settle: that covers requests the counts misjudge."""
    stats = {m.name: m.inference_stats for m in client.get_inference_statistics(headers=headers).model_stats}
    door = stats.get("preprocess")
    admitted = door.success.count if door else 0
    refused = door.fail.count if door else 0
    succeeded = sum(stats[m].success.count for m in public if m in stats)
    failed = sum(stats[m].fail.count for m in public if m in stats)
    activity = hash(tuple(sorted((n, s.success.count, s.fail.count, s.compute_infer.count) for n, s in stats.items())))
    return admitted - succeeded - max(0, failed - refused), activity


@dataclass(frozen=True)
class Stub:
    """One python-backend stub process: a model instance, in its own process."""

    pid: int
    model: str
    shm_region: str  # its /dev/shm file, which tritonserver does not remove when the stub dies


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (so field N of proc(5) is index N - 3), or
    None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"  # a zombie is dead, just not reaped


def python_stubs(server_pid: int) -> list[Stub]:
    """The live stubs tritonserver `server_pid` started (its children running the stub binary;
    argv: stub, <repo>/<model>/<version>/model.py, <shm region>, ...)."""
    stubs = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None or fields[0] == "Z" or int(fields[1]) != server_pid:
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue  # exited meanwhile
        if argv[0].endswith("triton_python_backend_stub") and len(argv) > 2:
            stubs.append(Stub(int(entry.name), Path(argv[1]).parents[1].name, argv[2]))
    return stubs


def stubs_cpu_seconds(server_pid: int) -> float:
    """User + system CPU time of the server's stubs so far."""
    ticks = 0
    for st in python_stubs(server_pid):
        fields = _stat(st.pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of proc(5))
    return ticks / os.sysconf("SC_CLK_TCK")


def remove_shm(region: str) -> None:
    Path("/dev/shm", region).unlink(missing_ok=True)


class Watchdog:
    """Heals a served repository whose python stub died (OOM kill, segfault): the model is
    unloaded (so health says not ready), the dead stub's shared memory removed, the model
    loaded again with fresh stubs. Runs on a thread until `stop()`."""

    def __init__(self, server: TritonServer, interval_s: float = 2.0, log: Callable[[str], None] = print):
        self.server, self.interval_s, self.log = server, interval_s, log
        self.healed: list[tuple[str, float]] = []  # (model, seconds from detection to ready)
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._known = {st.pid: st for st in server.stubs()}
        self._thread = threading.Thread(target=self._run, name="hi3d-watchdog", daemon=True)

    def __enter__(self) -> "Watchdog":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def pause(self, paused: bool = True) -> None:
        """Stop looking (e.g. while the server drains); `pause(False)` resumes."""
        (self._paused.set if paused else self._paused.clear)()

    def check(self) -> list[str]:
        """One round: heal every model with a dead stub; returns their names."""
        dead = [st for pid, st in self._known.items() if not _alive(pid)]
        models = sorted({st.model for st in dead})
        for model in models:
            self._heal(model, [st for st in dead if st.model == model])
        if models or len(self._known) == 0:
            self._known = {st.pid: st for st in self.server.stubs()}
        return models

    def _heal(self, model: str, dead: list[Stub], unload_timeout_s: float = 120.0) -> None:
        t0 = time.monotonic()
        client = self.server.client()
        headers = self.server.admin_headers
        try:
            client.unload_model(model, headers=headers)  # from here on, health says not ready
            self.log(f"watchdog: the stub of {model} (pid {', '.join(str(st.pid) for st in dead)}) died; "
                     "unloaded it, reloading")
            deadline = time.monotonic() + unload_timeout_s
            while time.monotonic() < deadline:  # unload is asynchronous: load only once it is done
                states = {m.name: m.state for m in client.get_model_repository_index(headers=headers).models}
                if states.get(model) not in ("READY", "UNLOADING"):
                    break
                time.sleep(0.2)
            for st in dead:
                remove_shm(st.shm_region)
            client.load_model(model, headers=headers)
        finally:
            client.close()
        self.healed.append((model, time.monotonic() - t0))
        self.log(f"watchdog: {model} serves again after {time.monotonic() - t0:.1f} s")

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self._paused.is_set() or self.server.process is None or self.server.process.poll() is not None:
                continue
            try:
                self.check()
            except Exception as e:  # noqa: BLE001 - keep watching; the next round retries
                self.log(f"watchdog: {type(e).__name__}: {e}")
