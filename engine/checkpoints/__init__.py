"""Loading the official Hi3D weights into our networks, every key accounted for.

    from hi3d.engine.checkpoints import load_official_weights
    load_official_weights(cfg, build_networks(cfg), Path("weights"))
"""
from hi3d.engine.checkpoints.errors import CheckpointError
from hi3d.engine.checkpoints.files import read_state_dict
from hi3d.engine.checkpoints.official import (
    LAYOUT,
    load_from,
    load_official_weights,
    plan,
)

__all__ = ["CheckpointError", "LAYOUT", "load_from", "load_official_weights", "plan", "read_state_dict"]
