"""Hash-grid encoding: the torch reference against hand-computed values, the module's
API and input checks, and the Triton kernels (interpreted on CPU, compiled on a GPU)
against the reference."""
from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from hi3d.kernels.hashgrid import HashGrid, HashGridConfig, hashgrid_encode
from hi3d.kernels.hashgrid_ref import hashgrid_encode_ref, spatial_hash

# 4 levels at resolutions 4, 8, 16, 32 with 2**10 rows: levels 0-1 dense, 2-3 hashed.
SMALL = HashGridConfig(n_levels=4, n_features_per_level=2, log2_hashmap_size=10,
                       base_resolution=4, max_resolution=32)


def _python_hash(i: int, j: int, k: int, rows: int) -> int:
    # Independent oracle: Python's unbounded ints, reduced mod 2**32 explicitly.
    return ((i * 1) ^ (j * 2654435761) ^ (k * 805459861)) % 2**32 % rows


def test_layout_of_small_config():
    assert SMALL.resolutions == (4, 8, 16, 32)
    assert SMALL.dense == (True, True, False, False)
    assert SMALL.level_rows == (125, 729, 1024, 1024)
    assert SMALL.level_offsets == (0, 125, 854, 1878)
    default = HashGridConfig()
    assert default.resolutions[0] == 16 and default.resolutions[-1] == 2048
    assert default.out_dim == 32


def test_spatial_hash_known_inputs():
    assert _python_hash(1, 0, 0, 2**32) == 1
    assert _python_hash(0, 1, 0, 2**32) == 2654435761
    coords = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [7, 300, 2048], [4095, 4095, 4095]])
    got = spatial_hash(coords, 2**19).tolist()
    assert got == [_python_hash(*c, 2**19) for c in coords.tolist()]
    assert got[:3] == [0, 1, 2654435761 % 2**19]


def _linear_dense_table(res: int) -> tuple[torch.Tensor, HashGridConfig]:
    """One dense level whose vertex (i, j, k) holds (i + 2j + 3k, -k): trilinear
    interpolation must reproduce the linear function exactly."""
    cfg = HashGridConfig(n_levels=1, n_features_per_level=2, log2_hashmap_size=10,
                         base_resolution=res, max_resolution=res)
    side = res + 1
    table = torch.zeros(side**3, 2, dtype=torch.float64)
    for i, j, k in itertools.product(range(side), repeat=3):
        table[i + side * j + side * side * k] = torch.tensor([i + 2 * j + 3 * k, -k])
    return table, cfg


def test_reference_reproduces_linear_field_on_a_dense_level():
    table, cfg = _linear_dense_table(4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 3, generator=g, dtype=torch.float64)
    x = torch.cat([x, torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.25, 0.5, 1.0]],
                                   dtype=torch.float64)])
    x.requires_grad_(True)
    out = hashgrid_encode_ref(x, table, cfg)
    expected = torch.stack([4 * (x[:, 0] + 2 * x[:, 1] + 3 * x[:, 2]), -4 * x[:, 2]], dim=1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # d(out[:, 0])/dx = 4 * (1, 2, 3) everywhere inside the cube.
    (grad,) = torch.autograd.grad(out[:, 0].sum(), x)
    torch.testing.assert_close(grad, torch.tensor([4.0, 8.0, 12.0], dtype=torch.float64)
                               .expand_as(grad))


def test_reference_at_vertices_and_cell_centres_on_hashed_levels():
    g = torch.Generator().manual_seed(1)
    table = torch.randn(SMALL.total_rows, 2, generator=g, dtype=torch.float64)
    level = 3  # hashed, resolution 32
    res, offset, rows = SMALL.resolutions[level], SMALL.level_offsets[level], SMALL.level_rows[level]
    cols = slice(2 * level, 2 * level + 2)
    vertices = [(0, 0, 0), (5, 17, 31), (31, 2, 9)]
    x = torch.tensor(vertices, dtype=torch.float64) / res
    out = hashgrid_encode_ref(x, table, SMALL)[:, cols]
    for row, v in zip(out, vertices):
        torch.testing.assert_close(row, table[offset + _python_hash(*v, rows)])
    # A cell centre is the mean of its 8 corners.
    cell = (5, 17, 30)
    centre = (torch.tensor(cell, dtype=torch.float64) + 0.5) / res
    corners = [table[offset + _python_hash(cell[0] + a, cell[1] + b, cell[2] + c, rows)]
               for a, b, c in itertools.product((0, 1), repeat=3)]
    got = hashgrid_encode_ref(centre[None], table, SMALL)[0, cols]
    torch.testing.assert_close(got, torch.stack(corners).mean(0))


def test_reference_clamps_points_outside_the_cube():
    g = torch.Generator().manual_seed(2)
    table = torch.randn(SMALL.total_rows, 2, generator=g, dtype=torch.float64)
    x = torch.tensor([[-0.5, 0.3, 1.7], [2.0, -1.0, 0.5]], dtype=torch.float64, requires_grad=True)
    out = hashgrid_encode_ref(x, table, SMALL)
    torch.testing.assert_close(out, hashgrid_encode_ref(x.detach().clamp(0, 1), table, SMALL))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad[0, 0] == 0 and grad[0, 2] == 0 and grad[1, 0] == 0 and grad[1, 1] == 0


def test_module_forward_shape_init_and_cpu_auto():
    torch.manual_seed(0)
    grid = HashGrid(SMALL)  # auto -> torch on CPU
    assert grid.resolved_impl(torch.device("cpu")) == "torch"
    assert grid.table.shape == (SMALL.total_rows, 2) and grid.table.dtype == torch.float32
    assert grid.table.abs().max() <= 1e-4
    x = torch.rand(300, 3)
    out = grid(x)
    assert out.shape == (300, SMALL.out_dim)
    torch.testing.assert_close(out, hashgrid_encode_ref(x, grid.table, SMALL))
    out.sum().backward()
    assert grid.table.grad is not None and grid.table.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(10, 2), r"x must have shape \[N, 3\]"),
        (torch.rand(10), r"x must have shape \[N, 3\]"),
        (torch.randint(0, 2, (10, 3)), "x must be a floating-point tensor"),
        ("not a tensor", "x must be a torch.Tensor"),
        (torch.empty(10, 3, device="meta"), "x is on meta but the hash-grid table is on cpu"),
    ],
)
def test_bad_inputs_name_the_argument(x, match):
    grid = HashGrid(SMALL, impl="torch")
    with pytest.raises((ValueError, TypeError), match=match):
        grid(x)


def test_bad_config_and_impl():
    with pytest.raises(ValueError, match="n_features_per_level"):
        HashGridConfig(n_features_per_level=3)
    with pytest.raises(ValueError, match="max_resolution"):
        HashGridConfig(base_resolution=64, max_resolution=32)
    with pytest.raises(ValueError, match="impl must be one of"):
        HashGrid(SMALL, impl="magic")
    with pytest.raises(ValueError, match="impl='cuda' needs x and the table on a CUDA device"):
        HashGrid(SMALL, impl="cuda")(torch.rand(4, 3))
    with pytest.raises(TypeError, match="table must be float32"):
        hashgrid_encode(torch.rand(4, 3), torch.zeros(SMALL.total_rows, 2, dtype=torch.float64),
                        SMALL, "triton")


# --- Triton kernels, on triton_device (the CPU interpreter without a GPU) ---

F4 = HashGridConfig(n_levels=3, n_features_per_level=4, log2_hashmap_size=9,
                    base_resolution=3, max_resolution=20)
CASES = {  # name: (config, points, position gradient wanted)
    "small": (SMALL, 300, True),
    "f4": (F4, 300, True),
    "table_grad_only": (SMALL, 100, False),
}


def _points(n: int, seed: int) -> torch.Tensor:  # [n + 8, 3]: inside, on, outside the cube
    g = torch.Generator().manual_seed(seed)
    inside = torch.rand(n, 3, generator=g)
    special = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.5],
                            [0.25, 0.5, 0.75],  # vertices of every level
                            [-0.2, 0.5, 0.5], [0.5, 1.3, 0.5], [1.5, -2.0, 3.0],
                            [0.999999, 1e-7, 0.5]])
    return torch.cat([inside, special])


def _case(cfg: HashGridConfig, n: int, need_dx: bool, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = _points(n, seed)
    return {"cfg": dataclasses.asdict(cfg), "x": x, "need_dx": need_dx,
            "table": torch.randn(cfg.total_rows, cfg.n_features_per_level, generator=g),
            "grad_out": torch.randn(x.shape[0], cfg.out_dim, generator=g)}


def _run_triton(case: dict, device: torch.device) -> dict:
    """Forward output and table/position gradients (on the CPU) of the Triton path for one case."""
    cfg = HashGridConfig(**case["cfg"])
    x = case["x"].to(device, copy=True).requires_grad_(case["need_dx"])
    table = case["table"].to(device, copy=True).requires_grad_(True)
    out = hashgrid_encode(x, table, cfg, "triton")
    result = {"out": out.detach().cpu()}
    if case["grad_out"] is not None:
        out.backward(case["grad_out"].to(device))
        result["grad_table"] = table.grad.cpu()
        result["grad_x"] = None if x.grad is None else x.grad.cpu()
    if case.get("create_graph"):
        try:
            torch.autograd.grad(hashgrid_encode(x, table, cfg, "triton").sum(), x, create_graph=True)
            result["create_graph_error"] = None
        except RuntimeError as e:
            result["create_graph_error"] = str(e)
    return result


@pytest.fixture(scope="module")
def triton_results(triton_device) -> dict[str, tuple[dict, dict]]:
    """{case name: (inputs, kernel results)}."""
    cases = {name: _case(cfg, n, dx, seed) for seed, (name, (cfg, n, dx)) in enumerate(CASES.items())}
    once = _case(SMALL, 20, True, seed=9)
    cases["create_graph"] = {**once, "grad_out": None, "create_graph": True}
    return {name: (case, _run_triton(case, triton_device)) for name, case in cases.items()}


def _reference(case: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    cfg = HashGridConfig(**case["cfg"])
    x = case["x"].clone().requires_grad_(case["need_dx"])
    table = case["table"].clone().requires_grad_(True)
    out = hashgrid_encode_ref(x, table, cfg)
    out.backward(case["grad_out"])
    return out.detach(), table.grad, x.grad


@pytest.mark.parametrize("name", ["small", "f4"])
def test_triton_matches_reference_forward_and_backward(triton_results, name):
    case, got = triton_results[name]
    out_r, gt_r, gx_r = _reference(case)
    # Same fp32 arithmetic per corner; only the summation order can differ.
    torch.testing.assert_close(got["out"], out_r, rtol=1e-5, atol=1e-6)
    # Table gradients are summed with atomics in arbitrary order.
    torch.testing.assert_close(got["grad_table"], gt_r, rtol=1e-5, atol=1e-5)
    # Position gradients carry the factor N_l (up to 32) and sum 8 corners x L levels.
    torch.testing.assert_close(got["grad_x"], gx_r, rtol=1e-4, atol=1e-4 * gx_r.abs().max().item())
    assert got["grad_x"][-4:-1].eq(0).sum() >= 4  # clamped axes get no gradient


def test_triton_table_gradient_without_position_gradient(triton_results):
    case, got = triton_results["table_grad_only"]
    out_r, gt_r, _ = _reference(case)
    torch.testing.assert_close(got["out"], out_r, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["grad_table"], gt_r, rtol=1e-5, atol=1e-5)
    assert got["grad_x"] is None


def test_kernel_position_gradient_is_once_differentiable(triton_results):
    _, got = triton_results["create_graph"]
    assert got["create_graph_error"] is not None
    assert "once-differentiable" in got["create_graph_error"]
    assert "impl='torch'" in got["create_graph_error"]
