"""The full-size export path on CPU for the VAE encoder, the CLIP image tower and the
stage-1 UNet (slow: ViT-H/14 and the 512x512 VAE encoder take minutes on two cores and
~10 GB of memory; the 1.5 B-parameter UNet ~15 minutes and ~8.5 GB, see docs/export.md)."""
import onnx
import pytest

from hi3d.engine.config import full
from hi3d.engine.models import build_seeded
from hi3d.engine.models.clip import CLIPImageTower
from hi3d.engine.models.vae import VAEEncoder
from hi3d.export.onnx_export import ensure_onnx, export_key
from hi3d.export.specs import export_specs, network_config
from hi3d.export.tensorrt_build import profile_from_onnx

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["clip", "vae_encoder"])
def test_full_network_exports_and_matches_torch(tmp_path, name):
    cfg = full()
    spec = export_specs(cfg)[name]
    # Only this network is built (all seven full-size networks need ~18 GB).
    build = {"clip": lambda: CLIPImageTower(cfg.clip), "vae_encoder": lambda: VAEEncoder(cfg.vae)}[name]
    key = export_key(spec, network_config(cfg, name), "test: standalone random init")
    a = ensure_onnx(spec, key, tmp_path / f"{name}.onnx", build, parity_points=("min",))
    assert a.parity is not None and a.parity.ok
    assert a.parity.results[0].shape[0] == 1
    assert profile_from_onnx(a.path, spec) == spec.profile()


def test_full_stage1_unet_exports_with_external_data_and_matches_torch(tmp_path):
    cfg = full()
    spec = export_specs(cfg)["unet1"]
    key = export_key(spec, network_config(cfg, "unet1"), "test: seeded")
    a = ensure_onnx(spec, key, tmp_path / "unet1.onnx", lambda: build_seeded(cfg, "unet1", cfg.seed_weights))
    assert a.parity is not None and a.parity.ok and {r.point for r in a.parity.results} == {"min", "opt"}
    data = a.path.with_name(a.path.name + ".data")
    assert data.stat().st_size > 2**31  # over one protobuf message: the external-data path
    onnx.checker.check_model(str(a.path))
    assert profile_from_onnx(a.path, spec) == spec.profile()
