"""Timing, memory and reporting helpers shared by every script under bench/.

A benchmark here is: warm up, synchronize, time N iterations, report median / p90 / min
(the median is what to quote; min shows the best the machine can do; p90 shows the noise),
write JSON atomically and print a table. Machines are often shared: absolute figures are
noisy, ratios measured within one run (interleaved) are what to trust.
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from hi3d.engine.errors import InvalidInput

NOISE_NOTE = (
    "Measured on a machine that may be shared with other jobs: absolute times are noisy; "
    "ratios measured in one run (interleaved iterations) are what to trust."
)

# The components bench/latency.py reports, in pipeline order: the shared vocabulary of
# the JSON files, the tables and the plots.
COMPONENTS = (
    "stage1.conditions", "stage1.unet_step", "stage1.sample", "stage1.decode", "stage1.total",
    "stage2.conditions", "stage2.depth", "stage2.blend_refs", "stage2.unet_step", "stage2.sample",
    "stage2.decode", "stage2.total", "recon.3dgs", "recon.neus", "recon.total", "end_to_end",
)
# What a stacked bar of one end-to-end run is made of (no overlaps, no per-step figures).
STACK = (
    "stage1.conditions", "stage1.sample", "stage1.decode", "stage2.conditions", "stage2.blend_refs",
    "stage2.sample", "stage2.decode", "recon.3dgs", "recon.neus",
)


def synchronize(device: torch.device | str) -> None:
    """Wait for queued device work so that a wall-clock reading covers it."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summarize(samples_s: Sequence[float]) -> dict[str, float]:
    """Seconds -> {median, p90, min, mean} in milliseconds, plus the sample count."""
    if not samples_s:
        raise ValueError("summarize needs at least one sample")
    ms = sorted(1e3 * s for s in samples_s)
    p90 = ms[math.ceil(0.9 * len(ms)) - 1]  # nearest rank: an observed sample, not an interpolation
    return {
        "median_ms": statistics.median(ms),
        "p90_ms": p90,
        "min_ms": ms[0],
        "mean_ms": statistics.fmean(ms),
        "n": len(ms),
    }


def time_call(fn: Callable[[], Any], device: torch.device | str, warmup: int, iters: int) -> list[float]:
    """Seconds per call of `fn` after `warmup` untimed calls, synchronizing around each."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"need iters >= 1 and warmup >= 0, got iters={iters}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        samples.append(time.perf_counter() - t0)
    return samples


def mean_ms(fn: Callable[[], Any], device: torch.device | str, warmup: int, iters: int) -> float:
    """Mean milliseconds per call over a back-to-back run: for kernels, where a sync per call
    would dominate. CUDA events on GPU, wall clock on CPU."""
    for _ in range(warmup):
        fn()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) * 1e3 / iters


class Recorder:
    """Named samples in seconds, collected by `span` (a timed block) or `add`."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.samples: dict[str, list[float]] = defaultdict(list)

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.samples[name].append(time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self.samples[name].append(seconds)

    def summary(self) -> dict[str, dict[str, float]]:
        return {name: summarize(s) for name, s in self.samples.items()}


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class PeakRSS:
    """Peak resident memory over a block, sampled by a thread every `period_s`.

    `ru_maxrss` is the peak over the whole process life, which cannot separate two
    backends measured in one process; sampling can (it may miss spikes shorter than
    the period, so it is a slight under-estimate).
    """

    def __init__(self, period_s: float = 0.01):
        self.period_s = period_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, current_rss_bytes())
            self._stop.wait(self.period_s)

    def __enter__(self) -> "PeakRSS":
        self.peak_bytes = current_rss_bytes()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_bytes = max(self.peak_bytes, current_rss_bytes())


def reset_cuda_peak(device: torch.device | str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_bytes(device: torch.device | str) -> int | None:
    """torch.cuda.max_memory_allocated since the last reset; None off CUDA."""
    device = torch.device(device)
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def machine_info(device: torch.device | str) -> dict[str, Any]:
    """What produced a figure: CPU, cores, GPU, library versions, UTC date."""
    device = torch.device(device)
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "note": NOISE_NOTE,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such JSON file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, numbers right-aligned, floats with 3 significant decimals."""

    def cell(v: Any) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(r[i], (int, float)) or r[i] is None for r in rows) for i in range(len(headers))]
    fmt = lambda vals: "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(vals, widths, numeric))  # noqa: E731
    lines = [fmt(list(headers)), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells]
    return "\n".join(lines)


def mib(nbytes: int | None) -> float | None:
    return None if nbytes is None else nbytes / 2**20


def cli_main(make_parser: Callable[[], Any], run: Callable[[Any], int], argv: list[str] | None) -> int:
    """A benchmark's entry point: parse `argv`, `run` the arguments; bad input (InvalidInput)
    prints its message and exits 2."""
    args = make_parser().parse_args(argv)
    try:
        return run(args)
    except InvalidInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
