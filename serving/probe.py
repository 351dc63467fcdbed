"""A liveness probe that does real inference: one small request to every network model.

tritonserver's own /v2/health/live (and a model's ready flag) stay true while a model whose
python stub died fails every request, so an orchestrator watching them never restarts a
broken pod. This probe calls each network at its export profile's smallest shapes and
checks the answer is finite: it fails exactly when a request would.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hi3d.engine.config import Hi3DConfig
from hi3d.serving.networks import BATCHED, NETWORKS


@dataclass(frozen=True)
class ProbeResult:
    model: str
    ok: bool
    detail: str  # "ok", or the server's error


def probe(url: str, cfg: Hi3DConfig, timeout_s: float = 30.0, models: tuple[str, ...] = NETWORKS) -> list[ProbeResult]:
    import tritonclient.grpc as grpcclient

    from hi3d.export.specs import export_specs

    specs = export_specs(cfg)
    results = []
    with grpcclient.InferenceServerClient(url) as client:
        for name in models:
            spec = specs[name]
            inputs = []
            for t, x in zip(spec.inputs, spec.sample_inputs(spec.sizes("min"))):
                arr = x.numpy()
                if name in BATCHED and arr.ndim == 1:  # a per-call scalar travels as [B, 1] (config reshape)
                    arr = arr[:, None]
                inp = grpcclient.InferInput(t.name, list(arr.shape), "FP32")
                inp.set_data_from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
                inputs.append(inp)
            try:
                out = client.infer(name, inputs, client_timeout=timeout_s)
                finite = all(np.isfinite(out.as_numpy(o.name)).all() for o in spec.outputs)
                results.append(ProbeResult(name, finite, "ok" if finite else "non-finite output"))
            except grpcclient.InferenceServerException as e:
                results.append(ProbeResult(name, False, f"{e.status()}: {e.message()}"))
    return results
