"""Triton model `hi3d_stream` (decoupled): image -> progress events, stage-1 views, views and
optionally the mesh, each sent as soon as it exists, then the final flag. In a repository
built with --t2i, a `prompt` may come instead of the image: the `t2i` model makes the image
first, and it is streamed (`input_image`) before the views.

It runs the pipeline's stage methods itself, every network behind a TritonRunner (so the
UNets stay batched with everyone else's calls), and the reconstruction in this instance.
After every denoising or optimisation step it checks whether the client cancelled,
disconnected or ran out of time, and stops there: the instance takes the next request.
"""
import time

import numpy as np
import triton_python_backend_utils as pb_utils

from hi3d.engine.config import preset
from hi3d.engine.pipeline import Hi3DPipeline
from hi3d.engine.recon import recon_preset
from hi3d.serving import bls, meshing

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
PROGRESS_INTERVAL_S = 0.25  # at most ~4 progress responses a second (plus each stage's last step)


class TritonPythonModel:
    def initialize(self, args):
        params = bls.parameters(args)
        self.cfg = preset(params["preset"])
        self.recon = recon_preset(params["recon_preset"])
        # The networks run in their own models; on a GPU instance the sampling loop and the
        # reconstruction run on its device.
        self.device = bls.device_of(args)
        self.pipe = Hi3DPipeline(self.cfg, bls.networks(self.cfg, self.device))
        self.log = pb_utils.Logger

    def _run(self, request, sender) -> None:
        p = bls.generation_params(request)
        want_mesh = bls.scalar_input(request, "want_mesh", bool)
        image = pb_utils.get_input_tensor_by_name(request, "image")
        prompt = pb_utils.get_input_tensor_by_name(request, "prompt")
        if (image is None) == (prompt is None):
            raise bls.InvalidInput("give exactly one of the inputs 'image' and 'prompt'" if image is not None
                                   else "missing input 'image'")
        recon = meshing.recon_config(self.recon, p.seed, self.device) if want_mesh else None
        steps = (p.steps or self.cfg.stage1.sampler.steps) + (p.steps or self.cfg.stage2.sampler.steps)
        total = steps + (meshing.recon_steps(recon) if want_mesh else 0)
        done, last_sent = 0, -float("inf")

        def progress(stage: str, step: int, stage_total: int, *loss) -> None:
            nonlocal done, last_sent
            done += 1
            if request.is_cancelled() or sender.is_cancelled():
                raise bls.Cancelled(f"{stage} {step}/{stage_total}")
            now = time.monotonic()
            if now - last_sent >= PROGRESS_INTERVAL_S or step == stage_total:
                last_sent = now
                sender.send(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("event", np.array([f"{stage} {step}/{stage_total}".encode()], dtype=np.object_)),
                    pb_utils.Tensor("progress", np.array([done / total], np.float32))]))

        if prompt is not None:  # InvalidInput naming `prompt` for a bad one; `t2i` checks cancellation itself
            (png,) = bls.call("t2i", [prompt, pb_utils.Tensor("seed", np.array([p.seed], np.int64))], ("image",))
            if request.is_cancelled() or sender.is_cancelled():
                raise bls.Cancelled("t2i")
            image = pb_utils.Tensor("image", png)
            sender.send(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("input_image", png)]))
        image1, image2 = (bls.from_pb(t, self.device) for t in  # InvalidInput for a bad image
                          bls.exec_request("preprocess", [image], ("image1", "image2"), self.device))
        views1 = self.pipe.generate_stage1(image1, p, progress)
        sender.send(pb_utils.InferenceResponse(output_tensors=[bls.output("stage1_views", bls.uint8_views(views1))]))
        views2 = self.pipe.generate_stage2(image2, views1, p, progress)
        views = bls.uint8_views(views2)
        sender.send(pb_utils.InferenceResponse(output_tensors=[bls.output("views", views)]))
        if want_mesh:  # from the uint8 views the client got: the same mesh as hi3d_mesh gives
            glb = meshing.mesh_glb(meshing.views_from_uint8(views.numpy()), p.elevation, recon, progress)
            sender.send(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("mesh_glb", np.array([glb], dtype=np.object_))]))

    def execute(self, requests):
        # One request at a time per instance: more instances serve more requests at once.
        for request in requests:
            sender = request.get_response_sender()
            try:
                self._run(request, sender)
                sender.send(flags=FINAL)
            except bls.Cancelled as e:
                self.log.log_info(f"hi3d_stream: request cancelled at {e}")
                _close(sender)
            except Exception as e:
                try:
                    sender.send(bls.error_response(e), flags=FINAL)
                except Exception:  # the client is gone: nobody to tell
                    _close(sender)
        return None


def _close(sender) -> None:
    """Complete a stream whose client cancelled (Triton may already have closed it)."""
    try:
        sender.send(flags=FINAL)
    except Exception:
        pass
