"""What the serving tests send: a small RGBA test image, and raw Triton inputs."""
import io

from PIL import Image


def png() -> bytes:
    """A 96x64 RGBA image: two overlapping rectangles on a transparent background."""
    img = Image.new("RGBA", (96, 64), (0, 0, 0, 0))
    img.paste((200, 40, 40, 255), (30, 10, 70, 55))
    img.paste((40, 90, 220, 160), (10, 30, 50, 60))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def triton_inputs(values: dict) -> list:
    """{name: (array, triton dtype)} -> tritonclient.grpc.InferInput list."""
    import tritonclient.grpc as grpcclient

    inputs = []
    for name, (arr, dtype) in values.items():
        inputs.append(grpcclient.InferInput(name, list(arr.shape), dtype))
        inputs[-1].set_data_from_numpy(arr)
    return inputs
