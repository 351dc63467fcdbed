"""The same sphere check on CUDA, through the kernels' fused paths (impl="auto")."""
from dataclasses import replace

import pytest
import torch

from hi3d.engine.recon import recon_preset, reconstruct
from hi3d.engine.recon.quality import chamfer_distance, volume_iou

ELEVATION = 10.0  # the views of conftest.py
SPHERE_MAX_CHAMFER = 0.01  # as in test_reconstruct.py
SPHERE_MIN_IOU = 0.9

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_full_chain_on_cuda(sphere_views, gt_meshes):
    cfg = replace(recon_preset("test"), device="cuda")
    mesh = reconstruct(sphere_views[..., :3].permute(0, 3, 1, 2), ELEVATION, cfg)
    assert chamfer_distance(mesh, gt_meshes["sphere"]) < SPHERE_MAX_CHAMFER
    assert volume_iou(mesh, gt_meshes["sphere"]) > SPHERE_MIN_IOU
