"""Triton model `hi3d_reconstruct`: 16 uint8 orbit views + elevation + seed -> the .glb mesh
that `hi3d reconstruct` writes, with the reconstruction preset chosen at build-repo."""
import numpy as np
import triton_python_backend_utils as pb_utils

from hi3d.engine.recon import recon_preset
from hi3d.serving import bls, meshing


class TritonPythonModel:
    def initialize(self, args):
        self.recon = recon_preset(bls.parameters(args)["recon_preset"])
        self.device = bls.device_of(args)

    def _run(self, request):
        views = meshing.views_from_uint8(pb_utils.get_input_tensor_by_name(request, "views").as_numpy())
        cfg = meshing.recon_config(self.recon, bls.scalar_input(request, "seed", int), self.device)

        def progress(stage: str, step: int, total: int, loss: float) -> None:
            if request.is_cancelled():  # the client gave up: free this instance now
                raise bls.Cancelled()

        glb = meshing.mesh_glb(views, bls.scalar_input(request, "elevation", float), cfg, progress)
        return [pb_utils.Tensor("mesh_glb", np.array([glb], dtype=np.object_))]

    def execute(self, requests):
        return bls.respond_each(requests, self._run)
