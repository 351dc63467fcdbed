"""Compile Triton kernels for sm_90 (Hopper) without a GPU, in a process of their own.

Triton fixes at ``@triton.jit`` time whether a function is interpreted, and without a GPU the
test session turns the interpreter on before triton is imported (tests/conftest.py). A real
compilation therefore needs a fresh interpreter started without TRITON_INTERPRET: tests call
``compile_sm90``, which runs this file as

    python tests/kernels/sm90_compile.py SPECS.json REPORT.json

A spec names a kernel (``module``, ``kernel``), its ``constexprs``, the ``types`` of the
arguments that are not fp32 pointers (``*_ptr``) or i32 scalars, and compile ``options``.
The report maps each spec's key to the kernel's PTX and cubin size, or says which CUDA tool
this triton build lacks (the tests then skip).
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource


def compile_sm90(specs: dict[str, dict], workdir: Path) -> dict[str, dict]:
    """{key: {"ptx": str, "cubin_bytes": int}} for every spec; skips without ptxas."""
    spec_path, report_path = workdir / "sm90_specs.json", workdir / "sm90_report.json"
    spec_path.write_text(json.dumps(specs))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, __file__, str(spec_path), str(report_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"sm_90 compilation failed:\n{proc.stderr[-4000:]}"
    report = json.loads(report_path.read_text())
    if "toolchain_missing" in report:
        pytest.skip(f"Triton cannot compile for CUDA here: {report['toolchain_missing']}")
    return report["kernels"]


def _compile(spec: dict) -> dict:
    fn = getattr(importlib.import_module(spec["module"]), spec["kernel"])
    constexprs, types = spec["constexprs"], spec.get("types", {})
    signature = {
        name: "constexpr" if name in constexprs else types.get(name, "*fp32" if name.endswith("_ptr") else "i32")
        for name in fn.arg_names
    }
    compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                              target=GPUTarget("cuda", 90, 32), options=spec.get("options"))
    return {"ptx": compiled.asm["ptx"], "cubin_bytes": len(compiled.asm["cubin"])}


def main() -> None:
    spec_path, report_path = map(Path, sys.argv[1:])
    specs = json.loads(spec_path.read_text())
    try:
        report = {"kernels": {key: _compile(spec) for key, spec in specs.items()}}
    except FileNotFoundError as exc:  # no ptxas shipped with this triton build
        report = {"toolchain_missing": str(exc)}
    except RuntimeError as exc:
        if "ptxas" not in str(exc):
            raise
        report = {"toolchain_missing": str(exc)}
    report_path.write_text(json.dumps(report))


if __name__ == "__main__":
    main()
