"""Export every Hi3D network to ONNX (checked, parity-tested against torch) and build
TensorRT engines from them.

    python export/build_engines.py --preset tiny --out build/
    python export/build_engines.py --preset full --weights ckpts/ --out build/ --models unet1,unet2

Exit status: 0 done (engines skipped with a message when TensorRT or a GPU is missing,
unless --engines demands them); 1 a parity check failed; 2 bad arguments or inputs;
3 --engines was given but engines cannot be built here.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from hi3d.engine.config import PRESETS, preset
from hi3d.engine.errors import InvalidInput
from hi3d.engine.files import atomic_write_json
from hi3d.export import artifacts
from hi3d.export.artifact_dir import ArtifactDir, OnnxExporter, parse_networks
from hi3d.export.host_memory import RSSHighWater
from hi3d.export.parity import ParityError
from hi3d.export.tensorrt_build import PRECISIONS, ensure_engine


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--weights", type=Path, help="folder of official checkpoints (default: seeded random weights)")
    p.add_argument("--out", type=Path, required=True, help="artifacts folder (files go under OUT/<preset>/)")
    p.add_argument("--models", help="comma-separated networks (default: all)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16", help="TensorRT engine precision")
    p.add_argument("--device", default="cpu", help="where torch runs for export and parity (cpu, cuda)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--onnx-only", action="store_true", help="stop after ONNX export and parity")
    mode.add_argument("--engines", action="store_true", help="fail (exit 3) when engines cannot be built here")
    return p.parse_args(argv)


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MB"


def _table(rows: list[dict]) -> str:
    head = ("model", "ONNX size", "ONNX", "export s", "peak RSS", "parity max|err|", "engine size", "engine", "build s")
    body = [
        (r["model"], _mb(r.get("onnx_bytes")), r.get("onnx_status", "-"),
         "-" if r.get("onnx_seconds") is None else f"{r['onnx_seconds']:.1f}", _mb(r.get("peak_rss_bytes")),
         "-" if r.get("parity_max_abs_err") is None else f"{r['parity_max_abs_err']:.2e}",
         _mb(r.get("engine_bytes")), r.get("engine_status", "-"),
         "-" if r.get("build_seconds") is None else f"{r['build_seconds']:.1f}")
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*b) for b in body])


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InvalidInput(f"--device must be cpu or cuda[:N], got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInput(f"--device {name}: torch sees no CUDA device")
    return device


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = preset(args.preset)
        names = parse_networks(args.models)
        out = ArtifactDir(args.out, cfg)
        exporter = OnnxExporter(cfg, args.weights, out, device=_device(args.device))
    except InvalidInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    rows, failed = [], []
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}")
        row = {"model": name}
        rows.append(row)
        try:
            t0 = time.perf_counter()
            # Peak host memory of this network alone: what a build host must have free.
            with RSSHighWater() as peak:
                a = exporter.ensure(name)
            seconds = time.perf_counter() - t0
            print(f"[{name}] {seconds:.1f} s, peak RSS {peak.describe()}")
        except InvalidInput as e:  # the weights do not load: nothing else will either
            print(f"error: {e}", file=sys.stderr)
            return 2
        except ParityError as e:
            print(f"PARITY FAILED: {e}", file=sys.stderr)
            row.update(onnx_status="parity failed", parity_max_abs_err=e.report.max_abs_err)
            failed.append(name)
            continue
        parity = (artifacts.read_sidecar(a.path) or {}).get("parity", {})
        errs = [r["max_abs_err"] for r in parity.get("results", [])]
        row.update(onnx=str(a.path), onnx_bytes=a.size_bytes, onnx_status=a.status.split(" (")[0],
                   parity_max_abs_err=max(errs) if errs else None, onnx_seconds=seconds,
                   peak_rss_bytes=peak.bytes, peak_rss_is_process_peak=peak.since_start)

    engines_missing = None
    if not args.onnx_only:
        from hi3d.engine.backends.tensorrt_backend import (
            build_engine,
            current_env,
            unavailable_reason,
        )

        engines_missing = unavailable_reason()
        if engines_missing is not None:
            print(f"TensorRT engines skipped: {engines_missing}. The ONNX files above are complete; "
                  "pass --onnx-only to skip engines on purpose.")
        else:
            env = current_env(torch.device("cuda"))
            for name in (n for n in names if n not in failed):
                row = next(r for r in rows if r["model"] == name)
                e = ensure_engine(exporter.specs[name], Path(row["onnx"]), out.engines_dir, args.precision, env, build_engine)
                row.update(engine=str(e.path), engine_bytes=e.size_bytes, engine_status=e.status.split(" (")[0],
                           build_seconds=e.build_seconds)

    print()
    print(_table(rows))
    report = {"preset": cfg.name, "precision": args.precision, "engines_skipped": engines_missing, "models": rows}
    out.base.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.base / "build_report.json", report)
    print(f"\nreport: {out.base / 'build_report.json'}")
    if failed:
        print(f"error: parity failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    if args.engines and engines_missing is not None:
        print(f"error: --engines given but engines cannot be built here: {engines_missing}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
