"""Loading the official Hi3D weights into our networks, every key accounted for.

    from engine.checkpoints import load_official_weights
    load_official_weights(cfg, build_networks(cfg), Path("weights"))
"""
from engine.checkpoints.errors import CheckpointError
from engine.checkpoints.files import read_state_dict
from engine.checkpoints.official import LAYOUT, load_from, load_official_weights, plan

__all__ = ["CheckpointError", "LAYOUT", "load_from", "load_official_weights", "plan", "read_state_dict"]
