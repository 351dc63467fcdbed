"""hi3d-engine: one photo of an object -> 16 orbit views -> textured mesh (Hi3D).

The layers, each importing only those before it:

    hi3d.kernels   Triton / CUDA kernels and their torch references
    hi3d.engine    models, conditions, sampler, pipeline, runners, reconstruction
    hi3d.export    ONNX / TensorRT artifacts and the backend registry (make_networks)
    hi3d.serving   the Triton Inference Server repository, launcher and client
    hi3d.cli, hi3d.bench   entry points: parse arguments, read the environment
"""
