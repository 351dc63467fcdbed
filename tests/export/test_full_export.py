"""The full-size export path on CPU for the VAE encoder and the CLIP image tower (slow:
ViT-H/14 and the 512x512 VAE encoder take minutes on two cores, and ~10 GB of memory)."""
import pytest

from hi3d.engine.config import full
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
