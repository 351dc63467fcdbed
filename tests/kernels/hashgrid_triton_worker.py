"""Runs the hash-grid Triton kernels under TRITON_INTERPRET=1 in a fresh process.

The interpreter only works when TRITON_INTERPRET is set before triton is first imported
(triton.language's own @jit helpers are built at import), which a shared pytest process
cannot promise; test_hashgrid.py therefore runs this file as a subprocess:

    TRITON_INTERPRET=1 python tests/kernels/hashgrid_triton_worker.py IN.pt OUT.pt

IN.pt holds a list of cases {cfg, x, table, grad_out | None, need_dx}; OUT.pt gets, per
case, the forward output and the table/position gradients of the kernel path.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from kernels.hashgrid import HashGridConfig, hashgrid_encode  # noqa: E402


def run_case(case: dict) -> dict:
    cfg = HashGridConfig(**case["cfg"])
    x = case["x"].clone().requires_grad_(case["need_dx"])
    table = case["table"].clone().requires_grad_(True)
    out = hashgrid_encode(x, table, cfg, "triton")
    result = {"out": out.detach()}
    if case["grad_out"] is not None:
        out.backward(case["grad_out"])
        result["grad_table"] = table.grad
        result["grad_x"] = x.grad
    if case.get("create_graph"):
        try:
            torch.autograd.grad(hashgrid_encode(x, table, cfg, "triton").sum(), x, create_graph=True)
            result["create_graph_error"] = None
        except RuntimeError as e:
            result["create_graph_error"] = str(e)
    return result


def main() -> None:
    if not sys.argv[1:] or len(sys.argv) != 3:
        raise SystemExit("usage: hashgrid_triton_worker.py IN.pt OUT.pt")
    cases = torch.load(sys.argv[1])
    torch.save([run_case(c) for c in cases], sys.argv[2])


if __name__ == "__main__":
    main()
