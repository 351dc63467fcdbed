"""Run Triton kernels under the CPU interpreter inside an already-running test process.

Triton decides at ``@triton.jit`` time whether a function is interpreted, and that holds
for its own standard library too (``tl.sum``, ``tl.zeros``, ``tl.cumsum`` are jit
functions). Setting TRITON_INTERPRET=1 after something imported triton is therefore not
enough: this context manager also swaps triton.language's jit functions for interpreted
ones and re-imports the given kernel modules, then undoes both.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def interpreted(*module_names: str) -> Iterator[None]:
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    saved_env = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    swapped = []
    for namespace in (tl, tl.standard, tl.math, tl.core):
        for name, obj in list(vars(namespace).items()):
            if isinstance(obj, JITFunction):
                swapped.append((namespace, name, obj))
    replacements = {id(obj): InterpretedFunction(obj.fn) for _, _, obj in swapped}
    for namespace, name, obj in swapped:
        setattr(namespace, name, replacements[id(obj)])
    saved_modules = {name: sys.modules.pop(name, None) for name in module_names}
    try:
        for name in module_names:
            importlib.import_module(name)
        yield
    finally:
        for name, module in saved_modules.items():
            sys.modules.pop(name, None)
            parent, _, child = name.rpartition(".")
            if module is not None:
                sys.modules[name] = module
            if parent in sys.modules:  # `import pkg.mod` reads the package attribute first
                if module is not None:
                    setattr(sys.modules[parent], child, module)
                elif hasattr(sys.modules[parent], child):
                    delattr(sys.modules[parent], child)
        for namespace, name, obj in swapped:
            setattr(namespace, name, obj)
        if saved_env is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved_env
