"""Peak resident memory of this process over one stretch of work (one network's export).

Linux keeps a high-water mark per process (VmHWM in /proc/self/status) that writing "5"
to /proc/self/clear_refs resets, so one process can measure network after network. Where
that is refused (no /proc, an old kernel), the figure is the process's peak since it
started (getrusage), which still bounds the network's.
"""
from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _vm_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


class RSSHighWater:
    """`with RSSHighWater() as m: ...` then `m.bytes`, the peak inside the block, and
    `m.since_start`, True when only the process's peak since it started could be read.

    Exact (the kernel's own counter, unlike bench.common.PeakRSS, which samples), but one
    per process at a time: entering resets the counter for everyone."""

    def __enter__(self) -> RSSHighWater:
        try:
            _CLEAR_REFS.write_text("5")
            self.since_start = _vm_kib("VmHWM") is None
        except OSError:
            self.since_start = True
        self.bytes = 0
        return self

    def __exit__(self, *exc) -> None:
        hwm = None if self.since_start else _vm_kib("VmHWM")
        self.bytes = _maxrss_bytes() if hwm is None else hwm * 1024

    def describe(self) -> str:
        return f"{self.bytes / 2**30:.2f} GiB" + (" (process peak)" if self.since_start else "")
