"""The tiny pipeline end to end: shapes, determinism per seed, and that the seed matters."""
import pytest
import torch

from hi3d.engine.errors import InvalidInput
from hi3d.engine.pipeline import GenerationParams


def _inputs(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    r1, r2 = cfg.stage1.resolution, cfg.stage2.resolution
    return torch.rand(1, 3, r1, r1, generator=g) * 2 - 1, torch.rand(1, 3, r2, r2, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def views(tiny_pipeline, tiny_cfg):
    return tiny_pipeline(*_inputs(tiny_cfg), GenerationParams(elevation=10.0, seed=3))


def test_end_to_end_shapes_and_range(views, tiny_cfg):
    r1, r2 = tiny_cfg.stage1.resolution, tiny_cfg.stage2.resolution
    assert views.stage1.shape == (16, 3, r1, r1)
    assert views.stage2.shape == (16, 3, r2, r2)
    for v in (views.stage1, views.stage2):
        assert torch.isfinite(v).all() and v.min() >= -1 and v.max() <= 1
        assert v.std() > 1e-3  # not a constant image


def test_same_seed_same_views(tiny_pipeline, tiny_cfg, views):
    again = tiny_pipeline(*_inputs(tiny_cfg), GenerationParams(elevation=10.0, seed=3))
    assert torch.equal(again.stage1, views.stage1)
    assert torch.equal(again.stage2, views.stage2)


def test_seed_and_elevation_change_stage1(tiny_pipeline, tiny_cfg, views):
    image1, _ = _inputs(tiny_cfg)
    other_seed = tiny_pipeline.generate_stage1(image1, GenerationParams(elevation=10.0, seed=4))
    other_elev = tiny_pipeline.generate_stage1(image1, GenerationParams(elevation=30.0, seed=3))
    assert not torch.allclose(other_seed, views.stage1, atol=1e-4)
    assert not torch.allclose(other_elev, views.stage1, atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    ({"elevation": 91.0}, "elevation"),
    ({"elevation": float("nan")}, "elevation"),
    ({"steps": 0}, "steps"),
    ({"steps": 201}, "steps"),
    ({"seed": -1}, "seed"),
])
def test_bad_parameters_are_refused_on_construction(kwargs, match):
    with pytest.raises(InvalidInput, match=match):
        GenerationParams(**kwargs)


def test_wrong_image_size(tiny_pipeline, tiny_cfg):
    image1, image2 = _inputs(tiny_cfg)
    with pytest.raises(ValueError, match="image1 must have shape"):
        tiny_pipeline(image1[..., :-1], image2, GenerationParams())
