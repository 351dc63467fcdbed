"""Triton models `stage1` and `stage2` (BLS): the pipeline's own stage methods, with every
network behind a `TritonRunner` that calls that network's model on this server. The
random draws are the pipeline's, so a seed gives the same views as `hi3d generate`."""
from hi3d.engine.config import preset
from hi3d.engine.pipeline import Hi3DPipeline
from hi3d.serving import bls


class TritonPythonModel:
    def initialize(self, args):
        params = bls.parameters(args)
        self.stage = int(params["stage"])
        self.cfg = preset(params["preset"])
        self.device = bls.device_of(args)  # a GPU instance keeps the sampling loop on its device
        self.pipe = Hi3DPipeline(self.cfg, bls.networks(self.cfg, self.device))

    def _run(self, request):
        p = bls.generation_params(request)

        def progress(stage: str, step: int, total: int) -> None:
            if request.is_cancelled():  # the client gave up: free this instance now
                raise bls.Cancelled()

        if self.stage == 1:
            views = self.pipe.generate_stage1(bls.input_tensor(request, "image1", bls.PIXELS, self.device), p, progress)  # [F, 3, R1, R1]
            outputs = [bls.output("views1", views)]
        else:
            image2, views1 = (bls.input_tensor(request, n, bls.PIXELS, self.device) for n in ("image2", "views1"))
            views = self.pipe.generate_stage2(image2, views1, p, progress)  # [F, 3, R2, R2]
            outputs = []
        return outputs + [bls.output(f"views{self.stage}_uint8", bls.uint8_views(views))]

    def execute(self, requests):
        return bls.respond_each(requests, self._run)
