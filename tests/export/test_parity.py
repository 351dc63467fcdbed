"""The parity check: worst-element reporting, and that it catches a graph that is wrong."""
from pathlib import Path

import numpy as np
import pytest
import torch

from hi3d.engine.config import tiny
from hi3d.engine.models import build_networks
from hi3d.export.parity import ParityError, check_parity, compare
from hi3d.export.specs import export_specs


def test_compare_names_the_worst_element():
    ref = np.zeros((2, 3), np.float32)
    got = ref.copy()
    got[1, 2] = 0.5
    got[0, 0] = 0.1
    r = compare("min", "y", ref, got, atol=0.2, rtol=0.0)
    assert not r.ok and r.worst_index == (1, 2) and r.ort_value == 0.5 and r.torch_value == 0.0
    assert r.max_abs_err == pytest.approx(0.5)
    assert compare("min", "y", ref, got, atol=0.6, rtol=0.0).ok


def test_compare_relative_bound_and_nan():
    ref = np.array([100.0, 1.0])
    assert compare("opt", "y", ref, ref + np.array([0.05, 0.0]), atol=0.0, rtol=1e-3).ok
    assert not compare("opt", "y", ref, ref + np.array([0.0, 0.01]), atol=0.0, rtol=1e-3).ok
    nan = compare("opt", "y", ref, np.array([np.nan, 1.0]), atol=1.0, rtol=1.0)
    assert not nan.ok and nan.worst_index == (0,)
    with pytest.raises(ValueError, match="shape"):
        compare("opt", "y", ref, ref[:1], 1.0, 1.0)


def test_parity_fails_on_a_graph_that_does_not_match(tiny_build):
    """The exported CLIP graph vs a CLIP whose last projection was perturbed by 1%."""
    out, _ = tiny_build
    cfg = tiny()
    spec = export_specs(cfg)["clip"]
    clip = build_networks(cfg, seed=cfg.seed_weights)["clip"]
    onnx_path = Path(out) / "tiny" / "onnx" / "clip.onnx"
    assert check_parity(spec, clip, onnx_path).ok  # the untouched module matches
    with torch.no_grad():
        clip.model.visual_projection.weight.mul_(1.01)
    with pytest.raises(ParityError, match=r"image_embeds\[1, 32\] at min: .*worst element \(0, \d+\): torch .* vs ort"):
        check_parity(spec, clip, onnx_path)
