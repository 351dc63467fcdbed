"""CMakeLists.txt builds the CUDA kernels ahead of time without a GPU (nvcc only), and the
results hold both hash-grid kernels under the names the CuPy loader asks for."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KERNELS = ("hashgrid_fwd", "hashgrid_bwd")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    missing = [tool for tool in ("cmake", "nvcc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found: cannot build the CUDA kernels")
    build = tmp_path_factory.mktemp("cmake-build")
    # No -DCMAKE_CUDA_ARCHITECTURES: the file's default (80;90) must work without a GPU.
    for cmd in (["cmake", "-S", str(REPO), "-B", str(build)],
                ["cmake", "--build", str(build)]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return build / "kernels"


def test_ptx_defines_both_kernels_as_plain_c_symbols(build_dir):
    ptx = (build_dir / "hashgrid.ptx").read_text()
    entries = re.findall(r"\.visible \.entry (\w+)\(", ptx)
    assert sorted(entries) == sorted(KERNELS)  # extern "C": no C++ name mangling
    assert re.search(r"^\.target sm_90", ptx, re.M)


def test_fatbin_holds_both_kernels_for_each_architecture(build_dir):
    fatbin = (build_dir / "hashgrid.fatbin").read_bytes()
    for name in KERNELS:
        assert name.encode() in fatbin, f"{name} missing from hashgrid.fatbin"
    # Each SASS image is an ELF64 whose e_flags (offset 0x30) hold the SM number: in the
    # low byte before CUDA 12.8's new encoding, in the second byte since.
    arches = set()
    for m in re.finditer(rb"\x7fELF", fatbin):
        flags = int.from_bytes(fatbin[m.start() + 0x30 : m.start() + 0x34], "little")
        arches |= {flags & 0xFF, (flags >> 8) & 0xFF}
    assert {80, 90} <= arches, f"SASS architectures found: {sorted(arches)}"


def test_default_architectures_are_80_and_90(build_dir):
    cache = (build_dir.parent / "CMakeCache.txt").read_text()
    assert "CMAKE_CUDA_ARCHITECTURES:STRING=80;90" in cache
    text = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r'set\(CMAKE_CUDA_ARCHITECTURES "80;90"', text)
