"""Serving latency and throughput: 1, 2, 4 concurrent gRPC clients against the `hi3d`
ensemble (or `hi3d_stage1`), a bounded number of requests each, loopback only; then the same
levels streaming through `hi3d_stream` with a mesh: time to the first progress event, to the
stage-1 views and to the mesh.

    python -m hi3d.bench.serving                       # builds + starts a tiny CPU server itself
    python -m hi3d.bench.serving --url 127.0.0.1:8001  # an already running server

Prints a table and writes JSON (default bench/results/serving.json). Runs Triton's
perf_analyzer too when a working one is on PATH (NVIDIA's SDK container has it).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image


def _image() -> bytes:
    img = Image.new("RGBA", (256, 192), (0, 0, 0, 0))
    img.paste((200, 40, 40, 255), (80, 30, 180, 160))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def run_level(url: str, concurrency: int, requests: int, steps: int, stage1_only: bool) -> dict:
    from hi3d.serving.client import Hi3DClient

    image = _image()
    clients = [Hi3DClient(url, timeout_s=3600) for _ in range(concurrency)]

    def one(i: int) -> float:
        t0 = time.perf_counter()
        clients[i % concurrency].generate(image, 0.0, i, steps, stage1_only=stage1_only)
        return time.perf_counter() - t0

    clients[0].generate(image, 0.0, 0, steps, stage1_only=stage1_only)  # warm-up
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - t0
    for c in clients:
        c.close()
    return {"concurrency": concurrency, "requests": requests, "wall_s": wall, "throughput_rps": requests / wall,
            "latency_mean_s": statistics.mean(latencies), "latency_p50_s": _percentile(latencies, 0.5),
            "latency_p95_s": _percentile(latencies, 0.95)}


def run_stream_level(url: str, concurrency: int, requests: int, steps: int) -> dict:
    """Streamed requests with want_mesh: when each kind of event first arrived. A mesh the
    server refuses (random weights give noise views: "no surface found") is counted apart."""
    from hi3d.serving.client import Hi3DClient, Hi3DClientError, Mesh, Progress, Stage1Views

    image = _image()
    clients = [Hi3DClient(url, timeout_s=3600) for _ in range(concurrency)]

    def one(i: int) -> dict:
        t0, times = time.perf_counter(), {}
        try:
            for event in clients[i % concurrency].stream(image, 0.0, i, steps, want_mesh=True):
                kind = {Progress: "first_progress", Stage1Views: "stage1_views", Mesh: "mesh"}.get(type(event))
                if kind is not None and kind not in times:
                    times[kind] = time.perf_counter() - t0
        except Hi3DClientError as e:
            times["error"] = str(e)
        return times

    with ThreadPoolExecutor(concurrency) as pool:
        runs = list(pool.map(one, range(requests)))
    for c in clients:
        c.close()

    def mean(kind: str) -> float | None:
        xs = [r[kind] for r in runs if kind in r]
        return statistics.mean(xs) if xs else None

    errors = sorted({r["error"] for r in runs if "error" in r})
    return {"concurrency": concurrency, "requests": requests, "time_to_first_progress_s": mean("first_progress"),
            "time_to_stage1_views_s": mean("stage1_views"), "time_to_mesh_s": mean("mesh"),
            "meshes": sum("mesh" in r for r in runs), "errors": errors}


def unet_batching(url: str, key: str | None) -> dict:
    import tritonclient.grpc as grpcclient

    from hi3d.serving.launcher import grpc_admin_headers

    c = grpcclient.InferenceServerClient(url)
    try:
        out = {}
        for name in ("unet1", "unet2"):
            s = c.get_inference_statistics(name, headers=grpc_admin_headers(key) if key else None, as_json=True)
            m = s["model_stats"][0]
            out[name] = {"inference_count": int(m.get("inference_count", 0)),
                         "execution_count": int(m.get("execution_count", 0)),
                         "batch_sizes": sorted(int(b["batch_size"]) for b in m.get("batch_stats", []))}
        return out
    except Exception as e:  # statistics need the admin key
        return {"error": str(e)}
    finally:
        c.close()


def perf_analyzer(url: str, model: str, steps: int) -> dict | None:
    """Triton's own load generator, when a working binary is installed."""
    exe = shutil.which("perf_analyzer")
    if exe is None or subprocess.run([exe, "--help"], capture_output=True).returncode != 0:
        return None
    data = {"data": [{"image": {"b64": base64.b64encode(_image()).decode()}, "elevation": [0.0], "seed": [0],
                      "steps": [steps]}]}
    with tempfile.TemporaryDirectory() as d:
        inp, csv = Path(d) / "input.json", Path(d) / "out.csv"
        inp.write_text(json.dumps(data))
        r = subprocess.run([exe, "-m", model, "-u", url, "-i", "grpc", "--input-data", str(inp),
                            "--concurrency-range", "1:4:2", "--measurement-mode", "count_windows",
                            "--measurement-request-count", "4", "-f", str(csv)], capture_output=True, text=True)
        return {"returncode": r.returncode, "csv": csv.read_text() if csv.is_file() else "", "stdout": r.stdout[-4000:]}


@contextlib.contextmanager
def _server(args):
    if args.url:
        yield args.url, args.key
        return
    from hi3d.serving.launcher import TritonServer, free_ports
    from hi3d.serving.repository import (
        RepositoryOptions,
        build_repository,
        default_python_paths,
    )
    from hi3d.serving.server_install import prepare

    install = prepare(Path.home() / ".cache" / "hi3d" / "triton")
    with tempfile.TemporaryDirectory() as d:
        repo = Path(d) / "repo"
        build_repository(repo, RepositoryOptions(preset="tiny", batch_delay_us=args.batch_delay_us,
                                                 instances=(("stage1", args.max_concurrency),
                                                            ("stage2", 1 if args.stage1_only else args.max_concurrency),
                                                            ("hi3d_stream", args.max_concurrency)),
                                                 recon_preset=args.recon_preset,
                                                 python_paths=default_python_paths(install.numpy_dir)))
        print(f"starting tritonserver on {repo} ...", file=sys.stderr, flush=True)
        with TritonServer(repo, install, free_ports(), key="bench") as server:
            yield server.grpc_url, "bench"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running server's gRPC endpoint (default: start a tiny one on 127.0.0.1)")
    p.add_argument("--key", default=os.environ.get("HI3D_ADMIN_KEY"), help="admin key, for UNet batch statistics")
    p.add_argument("--concurrency", default="1,2,4")
    p.add_argument("--requests", type=int, default=8, help="requests per concurrency level")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--stage1-only", action="store_true", help="the preview model `hi3d_stage1`")
    p.add_argument("--batch-delay-us", type=int, default=20000, help="UNet batch window of the self-started server")
    p.add_argument("--recon-preset", default="test", help="reconstruction schedule of the self-started server")
    p.add_argument("--no-stream", action="store_true", help="skip the streamed (hi3d_stream + mesh) levels")
    p.add_argument("--out", type=Path, default=Path("bench/results/serving.json"))
    args = p.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    args.max_concurrency = max(levels)  # sampler instances of a self-started server
    model = "hi3d_stage1" if args.stage1_only else "hi3d"
    with _server(args) as (url, key):
        results = []
        for c in levels:
            results.append(run_level(url, c, max(args.requests, c), args.steps, args.stage1_only))
            r = results[-1]
            print(f"concurrency {c}: {r['throughput_rps']:.3f} req/s, p50 {r['latency_p50_s']:.2f} s", file=sys.stderr)
        streamed = [] if args.no_stream else [run_stream_level(url, c, c, args.steps) for c in levels]
        report = {"model": model, "url": url, "steps": args.steps, "host": platform.node(), "cpus": os.cpu_count(),
                  "results": results, "stream": streamed, "unet_batching": unet_batching(url, key),
                  "perf_analyzer": perf_analyzer(url, model, args.steps)}
    print(f"\n{model}, steps={args.steps}, {os.cpu_count()} CPUs")
    print(f"{'clients':>8} {'requests':>9} {'req/s':>8} {'mean s':>8} {'p50 s':>8} {'p95 s':>8}")
    for r in results:
        print(f"{r['concurrency']:>8} {r['requests']:>9} {r['throughput_rps']:>8.3f} {r['latency_mean_s']:>8.2f} "
              f"{r['latency_p50_s']:>8.2f} {r['latency_p95_s']:>8.2f}")
    if streamed:
        print(f"\nhi3d_stream with want_mesh (mean s) {'clients':>8} {'progress':>9} {'stage1':>8} {'mesh':>8}")
        fmt = lambda x: f"{x:>8.2f}" if x is not None else f"{'-':>8}"  # noqa: E731
        for r in streamed:
            print(f"{'':>34} {r['concurrency']:>8} {fmt(r['time_to_first_progress_s']):>9} "
                  f"{fmt(r['time_to_stage1_views_s'])} {fmt(r['time_to_mesh_s'])}  {'; '.join(r['errors'])}")
    print(f"UNet batching: {json.dumps(report['unet_batching'])}")
    if report["perf_analyzer"] is None:
        print("perf_analyzer: not installed (or not runnable here); skipped")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, args.out)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
