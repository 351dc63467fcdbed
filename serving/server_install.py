"""Finds a `tritonserver` binary and prepares what it needs to run our python models.

Two kinds of installation:
- NVIDIA's container (or any `tritonserver` on PATH / given by path): used as it is.
- The `nvidia-pytriton` wheel (`pip install --no-deps nvidia-pytriton==0.7.0`), which
  bundles tritonserver 2.51 with the python backend. Its stub needs three things, prepared
  once in a cache folder: a backend folder holding the stub built for this Python; this
  interpreter's libpython found first (so the stub sees this interpreter's packages); and
  a numpy<2 of its own (with numpy 2 loaded, its output tensors arrive empty), which every
  generated model.py puts first on sys.path.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hi3d.engine.errors import InvalidInput

PYTRITON_HINT = "pip install --no-deps nvidia-pytriton==0.7.0"


@dataclass(frozen=True)
class ServerInstall:
    binary: Path
    backend_dir: Path | None  # None: the binary's own default (a container's /opt/tritonserver/backends)
    library_path: tuple[str, ...]  # prepended to LD_LIBRARY_PATH
    numpy_dir: Path | None  # numpy<2 for the stub; None when not needed

    def env(self, base: dict[str, str]) -> dict[str, str]:
        env = dict(base)
        # Every model instance is a stub process with its own OpenMP pool. With libgomp's default
        # active wait, the idle pools keep spinning on the cores the busy ones need: on 2 cores, 2
        # concurrent `hi3d` requests ran at 0.070 req/s against 0.196 for one alone; passive, 0.204.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        if self.library_path:
            env["LD_LIBRARY_PATH"] = os.pathsep.join([*self.library_path, *filter(None, [base.get("LD_LIBRARY_PATH")])])
        return env


def _pytriton_root() -> Path | None:
    spec = importlib.util.find_spec("pytriton")  # no import: pytriton's own __init__ needs extra packages
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    return root if (root / "tritonserver" / "bin" / "tritonserver").is_file() else None


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _prepare_backend(root: Path, cache: Path) -> Path:
    """backends/python with the stub for this Python version next to the backend library."""
    server = root / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise RuntimeError(f"nvidia-pytriton has no python backend stub for Python {version} ({stub})")
    dst = cache / "backends" / "python"
    dst.mkdir(parents=True, exist_ok=True)
    for src in (server / "backends" / "python" / "libtriton_python.so",
                server / "backends" / "python" / "triton_python_backend_utils.py", stub):
        target = dst / src.name
        if not target.is_file() or target.stat().st_size != src.stat().st_size:
            _copy_atomic(src, target)
    return dst.parent


def _prepare_numpy(cache: Path) -> Path:
    """A numpy<2 folder for the stub (pip install --target), installed once."""
    dst = cache / "numpy1"
    if (dst / "numpy" / "__init__.py").is_file():
        return dst
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".numpy1."))
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(tmp), "numpy<2"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"could not install numpy<2 for the python backend stub ({' '.join(cmd)}):\n{r.stderr[-2000:]}")
    os.replace(tmp, dst)
    return dst


def prepare(cache: Path, binary: Path | None = None) -> ServerInstall:
    """The server to run: `binary` if given, else the pytriton wheel's, else `tritonserver` on PATH."""
    cache = Path(cache)
    if binary is not None:
        if not Path(binary).is_file():
            raise InvalidInput(f"{binary}: no such tritonserver binary")
        return ServerInstall(Path(binary), None, (), None)
    root = _pytriton_root()
    if root is None:
        found = shutil.which("tritonserver")
        if found is None:
            raise InvalidInput(f"no tritonserver found: {PYTRITON_HINT}, or run NVIDIA's tritonserver container")
        return ServerInstall(Path(found), None, (), None)
    cache.mkdir(parents=True, exist_ok=True)
    backends = _prepare_backend(root, cache)
    numpy_dir = _prepare_numpy(cache) if int(np.__version__.split(".")[0]) >= 2 else None
    libs = (sysconfig.get_config_var("LIBDIR"), str(root.parent / "nvidia_pytriton.libs"))
    return ServerInstall(root / "tritonserver" / "bin" / "tritonserver", backends, libs, numpy_dir)


def numpy_dir_for_stub(cache: Path) -> Path | None:
    """The numpy<2 folder build-repo records in model.py files (prepared if needed)."""
    if int(np.__version__.split(".")[0]) < 2 or _pytriton_root() is None:
        return None
    Path(cache).mkdir(parents=True, exist_ok=True)
    return _prepare_numpy(Path(cache))
