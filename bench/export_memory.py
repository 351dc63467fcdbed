"""What building the ONNX files costs the host: per network, export seconds (build, trace,
passes, checks, parity), peak resident memory and the parity error. Each network runs in a
fresh process, so each peak is that network's alone and nothing of the previous one is left.

    python -m hi3d.bench.export_memory --preset full --models unet1,unet2,vae_decoder --out results/export_memory.json

Files go to a scratch folder under --scratch (deleted afterwards): every run measures an
export, never a cached file. A full UNet writes ~6 GB there.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

from hi3d.bench.common import current_rss_bytes, format_table, machine_info
from hi3d.engine.config import PRESETS, preset
from hi3d.engine.errors import InvalidInput
from hi3d.engine.files import atomic_write_json
from hi3d.export.artifact_dir import ArtifactDir, OnnxExporter, parse_networks
from hi3d.export.host_memory import RSSHighWater
from hi3d.export.parity import ParityError


def _export_one(preset_name: str, name: str, root: str, conn) -> None:
    """In a fresh process: export `name`, send back its figures."""
    cfg = preset(preset_name)
    exporter = OnnxExporter(cfg, None, ArtifactDir(Path(root), cfg))
    row = {"model": name, "rss_before_bytes": current_rss_bytes()}  # the interpreter and libraries
    t0 = time.perf_counter()
    with RSSHighWater() as peak:
        try:
            a = exporter.ensure(name)
            row.update(onnx_bytes=a.size_bytes, parity_max_abs_err=a.parity.max_abs_err, parity_ok=True)
        except ParityError as e:
            row.update(parity_max_abs_err=e.report.max_abs_err, parity_ok=False, error=str(e))
    row.update(seconds=time.perf_counter() - t0, peak_rss_bytes=peak.bytes, peak_rss_is_process_peak=peak.since_start)
    if "onnx_bytes" in row:
        # The ONNX weights are the fp32 weights: the budget is stated against them.
        row["peak_over_weights"] = row["peak_rss_bytes"] / row["onnx_bytes"]
    conn.send(row)


def measure(preset_name: str, names: tuple[str, ...], scratch: Path) -> list[dict]:
    ctx = mp.get_context("spawn")  # no inherited heap: the peak is the network's own
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory(dir=scratch, prefix="export_memory.") as root:
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_export_one, args=(preset_name, name, root, send))
            proc.start()
            send.close()
            try:
                row = receive.recv()
            except EOFError:  # killed (out of memory?) or crashed before sending
                row = {"model": name, "error": "export process died"}
            proc.join()
            row["exit_code"] = proc.exitcode
        print(f"[{name}] {row.get('seconds', 0):.1f} s, peak RSS {row.get('peak_rss_bytes', 0) / 2**30:.2f} GiB, "
              f"parity max |err| {row.get('parity_max_abs_err')}", flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--models", help="comma-separated networks (default: all)")
    p.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()), help="where exports are written")
    p.add_argument("--out", type=Path, default=Path("results/export_memory.json"), help="JSON results file")
    args = p.parse_args(argv)
    try:
        names = parse_networks(args.models)
    except InvalidInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.scratch.is_dir():
        print(f"error: --scratch {args.scratch} is not a directory", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    rows = measure(args.preset, names, args.scratch)
    print()
    print(format_table(
        ("model", "export s", "peak RSS GiB", "ONNX GiB", "peak / weights", "parity max|err|"),
        [(r["model"], r.get("seconds"), r.get("peak_rss_bytes", 0) / 2**30,
          r["onnx_bytes"] / 2**30 if "onnx_bytes" in r else None, r.get("peak_over_weights"),
          f"{r['parity_max_abs_err']:.2e}" if r.get("parity_max_abs_err") is not None else None)
         for r in rows]))
    report = {"preset": args.preset, "machine": machine_info("cpu"), "load_average": {"before": load_before,
              "after": os.getloadavg()}, "models": rows}
    atomic_write_json(args.out, report)
    print(f"\nresults: {args.out}")
    return 0 if all(r.get("parity_ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
