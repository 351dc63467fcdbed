"""The hash-grid Triton kernels compile for a real GPU target (sm_90, Hopper) without a
GPU: this catches what the interpreter lets through (constexpr rules, typing, layouts)."""
from __future__ import annotations

import pytest

from tests.kernels.sm90_compile import compile_sm90

MODULE = "hi3d.kernels.hashgrid_triton"
SPECS = {
    **{f"fwd_f{f}": {"module": MODULE, "kernel": "_hashgrid_fwd_kernel", "constexprs": {"F": f, "BLOCK": 128},
                     "types": {"levels_ptr": "*i32"}} for f in (2, 4)},
    **{f"bwd_dx_{need_dx}": {"module": MODULE, "kernel": "_hashgrid_bwd_kernel",
                             "constexprs": {"F": 2, "BLOCK": 128, "NEED_DX": need_dx},
                             "types": {"levels_ptr": "*i32"}} for need_dx in (True, False)},
}

@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, dict]:
    return compile_sm90(SPECS, tmp_path_factory.mktemp("hashgrid_sm90"))


@pytest.mark.parametrize("f", [2, 4])
def test_forward_compiles_for_sm90(compiled, f):
    ptx = compiled[f"fwd_f{f}"]["ptx"]
    assert ".target sm_90" in ptx
    assert ".entry _hashgrid_fwd_kernel" in ptx


@pytest.mark.parametrize("need_dx", [True, False])
def test_backward_compiles_for_sm90(compiled, need_dx):
    ptx = compiled[f"bwd_dx_{need_dx}"]["ptx"]
    assert ".target sm_90" in ptx
    assert ".entry _hashgrid_bwd_kernel" in ptx
    assert "atom.global" in ptx or "red.global" in ptx  # the table gradient's atomics
