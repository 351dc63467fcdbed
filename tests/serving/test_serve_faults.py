"""Faults, with the real launcher: `hi3d serve start` in a process of its own, on 127.0.0.1.

One launch runs exactly one tritonserver; a second launch on taken ports fails fast naming
the port; a SIGKILLed model stub is noticed and its model reloaded (health says not ready
meanwhile) and the server serves again; NaN / inf / out-of-range inputs to internal models
are refused with INVALID_ARGUMENT; SIGTERM drains: the request in flight finishes, new ones
get UNAVAILABLE, the server, its stubs and their shared memory are gone. Every process is
stopped by its id, whatever happens."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hi3d.engine.config import tiny
from hi3d.serving.launcher import free_ports, grpc_admin_headers, python_stubs
from hi3d.serving.probe import probe
from hi3d.serving.repository import RepositoryOptions, build_repository, default_python_paths
from hi3d.serving.server_install import _pytriton_root, prepare

pytestmark = pytest.mark.skipif(_pytriton_root() is None, reason="needs pip install --no-deps nvidia-pytriton==0.7.0")
grpcclient = pytest.importorskip("tritonclient.grpc")

KEY = "fault-test-key"
HEAL_LIMIT_S = 240  # detection (2 s rounds) + unload + load of one tiny model, on a loaded 2-core machine


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


def _inputs(steps: int, elevation: float = 0.0) -> list:
    ins = [grpcclient.InferInput("image", [1], "BYTES"), grpcclient.InferInput("elevation", [1], "FP32"),
           grpcclient.InferInput("seed", [1], "INT64"), grpcclient.InferInput("steps", [1], "INT32")]
    ins[0].set_data_from_numpy(np.array([_png()], dtype=object))
    ins[1].set_data_from_numpy(np.array([elevation], np.float32))
    ins[2].set_data_from_numpy(np.array([0], np.int64))
    ins[3].set_data_from_numpy(np.array([steps], np.int32))
    return ins


class Launched:
    """`hi3d serve start` as a user runs it, its output collected line by line."""

    def __init__(self, repo: Path, cache: Path):
        self.repo, self.ports = repo, free_ports()
        self.url = f"127.0.0.1:{self.ports.grpc}"
        cmd = [sys.executable, "-m", "hi3d.cli", "serve", "start", "--repo", str(repo), "--key", KEY,
               "--grpc-port", str(self.ports.grpc), "--http-port", str(self.ports.http),
               "--metrics-port", str(self.ports.metrics), "--cache-dir", str(cache), "--grace", "120",
               "--watchdog-interval", "1"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("ready: gRPC", 900)
        self.server_pid = int(self.wait_for("pid ", 10).split()[1].rstrip(";"))

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout_s: float, after: int = 0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if text in line:
                    return line
            if self.proc.poll() is not None and not any(text in line for line in self.lines[after:]):
                time.sleep(0.5)  # the reader may still be draining the pipe
                if not any(text in line for line in self.lines[after:]):
                    raise AssertionError(f"launcher exited {self.proc.returncode}:\n" + "\n".join(self.lines[-40:]))
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} within {timeout_s} s:\n" + "\n".join(self.lines[-40:]))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """Whatever state it is in: the launcher, then its server's session (the stubs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(180)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.killpg(self.server_pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    install = prepare(Path.home() / ".cache" / "hi3d" / "triton")
    repo = tmp_path_factory.mktemp("faults") / "repo"
    build_repository(repo, RepositoryOptions(preset="tiny", instances=(("stage1", 1), ("stage2", 1)),
                                             python_paths=default_python_paths(install.numpy_dir)))
    return repo


@pytest.fixture(scope="module")
def launches(repo):
    """A launch shared by the tests that leave it running; the drain test ends it, and the
    next test that needs one starts another (so any order works)."""
    started: list[Launched] = []
    cache = Path.home() / ".cache" / "hi3d" / "triton"

    def get() -> Launched:
        if not started or not started[-1].alive():
            started.append(Launched(repo, cache))
        return started[-1]

    yield get
    for launched in started:
        launched.kill()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_one_launch_runs_exactly_one_server(launches):
    launched = launches()
    servers = [p for p in _children(launched.proc.pid) if "tritonserver" in _cmd(p).split()[0]]
    assert servers == [launched.server_pid]
    log = launched.repo.parent / f"{launched.repo.name}.tritonserver.log"  # the launcher's default
    assert log.read_text().count("Started GRPCInferenceService at") == 1


def test_a_second_launch_on_taken_ports_fails_fast_naming_the_port(launches, repo):
    launched = launches()
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "hi3d.cli", "serve", "start", "--repo", str(repo), "--key", "other",
                        "--grpc-port", str(launched.ports.grpc)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert f"gRPC port {launched.ports.grpc} on 127.0.0.1 is already in use" in r.stderr
    assert time.monotonic() - t0 < 120  # no server was started and waited for
    with grpcclient.InferenceServerClient(launched.url) as c:  # the first one is untouched
        assert c.is_server_ready()


def test_internal_models_refuse_nonfinite_and_out_of_range_inputs(launches):
    launched = launches()
    cfg = tiny()
    r1 = cfg.stage1.resolution
    with grpcclient.InferenceServerClient(launched.url) as c:
        for bad, message in ((np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (3.0, "must lie in [-1, 1]")):
            image = np.full((1, 3, r1, r1), bad, np.float32)
            ins = [grpcclient.InferInput("image1", list(image.shape), "FP32")]
            ins[0].set_data_from_numpy(image)
            for name, dtype, value in (("elevation", np.float32, 0.0), ("seed", np.int64, 0), ("steps", np.int32, 1)):
                ins.append(grpcclient.InferInput(name, [1], {np.float32: "FP32", np.int64: "INT64",
                                                             np.int32: "INT32"}[dtype]))
                ins[-1].set_data_from_numpy(np.array([value], dtype))
            with pytest.raises(grpcclient.InferenceServerException) as e:
                c.infer("stage1", ins, client_timeout=120)
            assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and message in e.value.message()
        size = cfg.clip.image_size
        pixels = np.full((1, 3, size, size), np.nan, np.float32)
        ins = [grpcclient.InferInput("pixels", list(pixels.shape), "FP32")]
        ins[0].set_data_from_numpy(pixels)
        with pytest.raises(grpcclient.InferenceServerException) as e:
            c.infer("clip", ins, client_timeout=120)
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and "pixels holds NaN" in e.value.message()
        c.infer("hi3d_stage1", _inputs(1), client_timeout=300)  # still serving


def test_a_killed_stub_is_noticed_and_its_model_reloaded(launches):
    launched = launches()
    (victim,) = [st for st in python_stubs(launched.server_pid) if st.model == "unet1"]
    mark = len(launched.lines)
    os.kill(victim.pid, signal.SIGKILL)
    t0 = time.monotonic()
    launched.wait_for("watchdog: the stub of unet1", 30, after=mark)
    with grpcclient.InferenceServerClient(launched.url) as c:
        ready_during = c.is_server_ready()
        launched.wait_for("watchdog: unet1 serves again", HEAL_LIMIT_S, after=mark)
        healed_s = time.monotonic() - t0
        assert c.is_server_ready()
        c.infer("hi3d_stage1", _inputs(1), client_timeout=300)  # through unet1 again
    assert not ready_during  # health said not ready while it healed (strict readiness)
    assert not Path("/dev/shm", victim.shm_region).exists()
    assert all(r.ok for r in probe(launched.url, tiny(), timeout_s=120)), "the liveness probe passes again"
    print(f"healed in {healed_s:.1f} s")


def test_sigterm_lets_the_request_in_flight_finish_and_refuses_new_ones(launches):
    launched = launches()
    stubs = python_stubs(launched.server_pid)
    results: dict[str, object] = {}

    def long_request():
        with grpcclient.InferenceServerClient(launched.url) as c:
            try:
                results["in_flight"] = c.infer("hi3d_stage1", _inputs(12), client_timeout=600).as_numpy("views")
            except grpcclient.InferenceServerException as e:
                results["in_flight"] = f"{e.status()}: {e.message()}"

    def preprocessed(c) -> int:
        (stats,) = c.get_inference_statistics("preprocess", headers=grpc_admin_headers(KEY)).model_stats
        return stats.inference_stats.success.count

    with grpcclient.InferenceServerClient(launched.url) as c:
        before = preprocessed(c)
        thread = threading.Thread(target=long_request)
        thread.start()
        deadline = time.monotonic() + 300
        while preprocessed(c) == before and time.monotonic() < deadline:  # in flight: past the door
            time.sleep(0.1)
    mark = len(launched.lines)
    launched.proc.send_signal(signal.SIGTERM)
    launched.wait_for("draining:", 60, after=mark)
    with grpcclient.InferenceServerClient(launched.url) as c:
        with pytest.raises(grpcclient.InferenceServerException) as e:
            c.infer("hi3d_stage1", _inputs(1), client_timeout=60)
        assert e.value.status() == "StatusCode.UNAVAILABLE"
    thread.join(600)
    assert isinstance(results["in_flight"], np.ndarray), (results["in_flight"], launched.lines[mark:])
    assert launched.proc.wait(180) == 0
    time.sleep(1.0)
    for pid in [launched.server_pid, *(st.pid for st in stubs)]:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not [st.shm_region for st in stubs if Path("/dev/shm", st.shm_region).exists()]


def test_the_admin_apis_still_need_the_key(launches):
    launched = launches()
    with grpcclient.InferenceServerClient(launched.url) as c:
        with pytest.raises(grpcclient.InferenceServerException):
            c.unload_model("hi3d", headers=grpc_admin_headers("wrong"))
        assert c.is_model_ready("hi3d")
