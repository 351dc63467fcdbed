"""`hi3d serve build-repo | install-server | start` and `hi3d client`: argument parsing only.

hi3d/cli.py registers these with `add_serve_parser(sub)` and `add_client_parser(sub)`.
An entry point: the environment ($HI3D_ADMIN_KEY, $HI3D_CACHE_DIR) is read here, not below.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from hi3d.engine.backends import DTYPES
from hi3d.engine.config import PRESETS
from hi3d.engine.errors import InvalidInput
from hi3d.engine.memory_plans import PLAN_CHOICES
from hi3d.engine.recon.config import PRESETS as RECON_PRESETS
from hi3d.export.backends import BACKENDS

KEY_ENV = "HI3D_ADMIN_KEY"


def _cache_dir(args: argparse.Namespace) -> Path:
    return args.cache_dir or Path(os.environ.get("HI3D_CACHE_DIR", Path.home() / ".cache" / "hi3d")) / "triton"


def _instances(text: str) -> tuple[tuple[str, int], ...]:
    pairs = []
    for item in filter(None, text.split(",")):
        name, _, count = item.partition("=")
        if not count.isdigit():
            raise argparse.ArgumentTypeError(f"--instances wants MODEL=COUNT[,MODEL=COUNT...], got {item!r}")
        pairs.append((name.strip(), int(count)))
    return tuple(pairs)


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _gpus(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(g) for g in text.split(",") if g.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gpus wants comma-separated GPU ids, got {text!r}") from None


def cmd_build_repo(args: argparse.Namespace) -> int:
    from hi3d.serving.repository import (
        RepositoryOptions,
        build_repository,
        default_python_paths,
    )
    from hi3d.serving.server_install import numpy_dir_for_stub

    paths = tuple(args.python_path) if args.python_path else default_python_paths(numpy_dir_for_stub(_cache_dir(args)))
    opts = RepositoryOptions(
        preset=args.preset, backend=args.backend, weights=args.weights, artifacts=args.artifacts, kind=args.kind,
        gpus=args.gpus, instances=args.instances, max_batch=args.max_batch, batch_delay_us=args.batch_delay_us,
        max_image_bytes=args.max_image_bytes, gpu_dtype=args.gpu_dtype, python_paths=paths,
        memory_plan=args.memory_plan,
        recon_preset=args.recon_preset, t2i=args.t2i, t2i_steps=args.t2i_steps, guidance=args.guidance,
    )
    models = build_repository(args.out, opts)
    print(f"{args.out}: {len(models)} models ({', '.join(models)}); {args.backend} backend, {args.preset} preset, "
          f"networks on {args.kind}, reconstruction preset {opts.recon}")
    return 0


def cmd_install_server(args: argparse.Namespace) -> int:
    from hi3d.serving.server_install import prepare

    install = prepare(_cache_dir(args), args.tritonserver)
    print(f"tritonserver: {install.binary}")
    print(f"backends:     {install.backend_dir or '(the binary default)'}")
    print(f"numpy<2 for the python backend stub: {install.numpy_dir or '(not needed)'}")
    return 0


class _Stop(Exception):
    """SIGTERM (or Ctrl-C) asked the launcher to drain and stop."""


def cmd_start(args: argparse.Namespace) -> int:
    from hi3d.serving.launcher import ADMIN_HEADER, Ports, TritonServer, Watchdog
    from hi3d.serving.repository import read_record
    from hi3d.serving.server_install import prepare

    record = read_record(args.repo)  # a clear error before anything is prepared or started
    key = args.key or os.environ.get(KEY_ENV)
    generated = key is None
    key = key or secrets.token_urlsafe(24)
    install = prepare(_cache_dir(args), args.tritonserver)
    ports = Ports(grpc=args.grpc_port, http=args.http_port, metrics=args.metrics_port)
    server = TritonServer(args.repo, install, ports, key, host=args.host, log_file=args.log_file)

    def stop(signum, frame):
        raise _Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)  # as Ctrl-C: drain, then stop the server and its stubs
    print(f"starting {install.binary} on {args.repo} (log: {server.log_file}) ...", flush=True)
    try:
        with server, Watchdog(server, args.watchdog_interval, log=lambda m: print(m, flush=True)) as watchdog:
            print(f"ready: gRPC {server.grpc_url}  HTTP {server.http_url}  metrics {args.host}:{ports.metrics}/metrics")
            print(f"admin APIs need the header {ADMIN_HEADER}: " + (key if generated else f"(the key from --key / ${KEY_ENV})"))
            print(f"pid {server.process.pid}; Ctrl-C or SIGTERM drains (up to {args.grace:g} s) and stops it.", flush=True)
            try:
                while server.process.poll() is None:
                    time.sleep(0.5)
            except (KeyboardInterrupt, _Stop):
                watchdog.pause()
                clean = server.drain(record["public_models"], args.grace, log=lambda m: print(m, flush=True))
                print("stopping" + ("" if clean else f": requests still running after {args.grace:g} s are cut off"),
                      file=sys.stderr, flush=True)
                return 0
            print(f"error: tritonserver exited:\n{server.log_tail()}", file=sys.stderr)
            return 1
    except (TimeoutError, RuntimeError) as e:  # the server's own failure, not the user's input: exit 1
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def cmd_probe(args: argparse.Namespace) -> int:
    """Exit 0 when every network model answers a real request, 1 otherwise (a liveness probe)."""
    from hi3d.engine.config import preset
    from hi3d.serving.probe import probe

    results = probe(args.url, preset(args.preset), args.timeout)
    for r in results:
        print(f"{r.model}: {r.detail}")
    return 0 if all(r.ok for r in results) else 1


def _stream_to(client, args: argparse.Namespace) -> None:
    """Write each result as it arrives, under a progress bar fed by the server's events."""
    from tqdm import tqdm

    from hi3d.engine.files import atomic_write
    from hi3d.engine.images import write_view_pngs
    from hi3d.serving.client import Mesh, Progress, Stage1Views, Views

    scale = 1000  # tqdm counts integers: the overall fraction in thousandths
    with tqdm(total=scale, unit="‰", file=sys.stderr, dynamic_ncols=True) as bar:
        for event in client.stream(args.image.read_bytes(), args.elevation, args.seed, args.steps, args.mesh):
            if isinstance(event, Progress):
                bar.set_description(event.event)
                bar.update(round(event.fraction * scale) - bar.n)
            elif isinstance(event, Stage1Views):
                write_view_pngs(event.views, args.out / "stage1")
            elif isinstance(event, Views):
                write_view_pngs(event.views, args.out / "stage2")
            elif isinstance(event, Mesh):
                atomic_write(args.out / "mesh.glb", event.glb)


def cmd_client(args: argparse.Namespace) -> int:
    from hi3d.serving.client import INVALID_ARGUMENT, Hi3DClient, Hi3DClientError

    if not args.image.is_file():
        raise InvalidInput(f"{args.image}: no such file")
    if args.mesh and args.stage1_only:
        raise InvalidInput("--mesh needs the stage-2 views: drop --stage1-only")
    t0 = time.perf_counter()
    try:
        with Hi3DClient(args.url, timeout_s=args.timeout) as client:
            if args.stage1_only:  # the unary preview model: one response, written when it arrives
                from hi3d.engine.images import write_view_pngs

                views = client.generate(args.image.read_bytes(), args.elevation, args.seed, args.steps, stage1_only=True)
                write_view_pngs(views.stage1, args.out / "stage1")
            else:
                _stream_to(client, args)
    except Hi3DClientError as e:  # bad input is the caller's (2); anything else, the server's or the network's (1)
        print(f"error: {e}" + (f" [{e.status}]" if e.status else ""), file=sys.stderr)
        return 2 if str(e.status) == INVALID_ARGUMENT else 1
    except KeyboardInterrupt:  # leaving the stream cancelled the request on the server
        print("cancelled", file=sys.stderr)
        return 130
    print(f"done in {time.perf_counter() - t0:.1f} s from {args.url} -> {args.out}")
    return 0


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="Triton Inference Server deployment").add_subparsers(dest="serve_command", required=True)
    cache = dict(type=Path, help="where the server's helpers are prepared (default: ~/.cache/hi3d/triton)")

    b = serve.add_parser("build-repo", help="write the Triton model repository")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--preset", choices=list(PRESETS), default="tiny")
    b.add_argument("--backend", choices=list(BACKENDS), default="torch", help="how the network models run")
    b.add_argument("--weights", type=Path, help="official checkpoints folder (torch backend; default: seeded random)")
    b.add_argument("--artifacts", type=Path, default=Path("build"), help="export output (onnxruntime/tensorrt backends)")
    b.add_argument("--kind", choices=["cpu", "gpu"], default="cpu", help="where the networks run")
    b.add_argument("--gpus", type=_gpus, default=(), help="GPU ids for --kind gpu, e.g. 0,1 (default: all)")
    b.add_argument("--instances", type=_instances, default=(),
                   help="instances per model, e.g. stage1=4,unet1=2 (default: max-batch/2 per sampler and hi3d_stream)")
    b.add_argument("--max-batch", type=int, default=8, help="UNet batch limit in CFG rows (2 per request)")
    b.add_argument("--batch-delay-us", type=int, default=5000, help="how long a UNet call waits for others to join")
    b.add_argument("--max-image-bytes", type=int, default=32 << 20)
    b.add_argument("--gpu-dtype", choices=list(DTYPES), default="fp16", help="torch backend on GPU")
    b.add_argument("--memory-plan", default="resident", metavar="|".join(PLAN_CHOICES),
                   help="recorded in the repository only: each served network is its own model with its "
                        "own weights, so no plan changes what the served models hold (docs/serving.md)")
    b.add_argument("--recon-preset", choices=list(RECON_PRESETS),
                   help="reconstruction of hi3d_reconstruct / hi3d_mesh / hi3d_stream (default: cpu_small; gpu with --kind gpu)")
    b.add_argument("--t2i", metavar="DIR|tiny", help="add the text models (t2i, hi3d_text, a prompt input on "
                   "hi3d_stream): a local diffusers text-to-image folder, or tiny (seeded random weights)")
    b.add_argument("--t2i-steps", type=int, help="text-to-image steps (default 30; 2 for tiny)")
    b.add_argument("--guidance", type=float, default=7.5, help="text-to-image guidance scale")
    b.add_argument("--python-path", action="append", help="sys.path entries for model.py (default: this checkout)")
    b.add_argument("--cache-dir", **cache)
    b.set_defaults(func=cmd_build_repo)

    i = serve.add_parser("install-server", help="prepare the bundled tritonserver's python backend")
    i.add_argument("--tritonserver", type=Path, help="a tritonserver binary to use instead of the bundled one")
    i.add_argument("--cache-dir", **cache)
    i.set_defaults(func=cmd_install_server)

    s = serve.add_parser("start", help="run tritonserver on a repository until Ctrl-C")
    s.add_argument("--repo", type=Path, required=True)
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    s.add_argument("--grpc-port", type=int, default=8001)
    s.add_argument("--http-port", type=int, default=8000)
    s.add_argument("--metrics-port", type=int, default=8002)
    s.add_argument("--key", help=f"admin key (default: ${KEY_ENV}, else a generated one, printed)")
    s.add_argument("--tritonserver", type=Path, help="a tritonserver binary to use instead of the bundled one")
    s.add_argument("--log-file", type=Path, help="server log (default: next to the repository)")
    s.add_argument("--grace", type=_seconds, default=30.0,
                   help="seconds requests in flight may take to finish after SIGTERM / Ctrl-C (default 30)")
    s.add_argument("--watchdog-interval", type=_seconds, default=2.0,
                   help="seconds between checks for dead model stubs, which are then reloaded (default 2)")
    s.add_argument("--cache-dir", **cache)
    s.set_defaults(func=cmd_start)
    _add_probe_parser(serve)


def _add_probe_parser(serve) -> None:
    p = serve.add_parser("probe", help="liveness: one small real inference per network model (exit 0 healthy, 1 not)")
    p.add_argument("--url", default="127.0.0.1:8001", help="gRPC endpoint")
    p.add_argument("--preset", choices=list(PRESETS), required=True, help="the preset the repository was built for")
    p.add_argument("--timeout", type=_seconds, default=30.0, help="seconds per request")
    p.set_defaults(func=cmd_probe)


def add_client_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("client", help="stream an image through a running server: views (and mesh) as they arrive")
    c.add_argument("image", type=Path)
    c.add_argument("--url", default="localhost:8001", help="gRPC endpoint")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--elevation", type=float, default=0.0)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--steps", type=int, default=0, help="sampler steps (0: the served preset's)")
    c.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up (the server stops too)")
    c.add_argument("--mesh", action="store_true", help="also reconstruct the mesh: DIR/mesh.glb")
    c.add_argument("--stage1-only", action="store_true", help="only the stage-1 views (the quick preview model)")
    c.set_defaults(func=cmd_client)
