"""The GPU report's dry run: its plan and the smallest version of every step, on CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_prints_the_plan_and_writes_every_result(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", "bench/gpu_report.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "plan: preset=tiny device=cpu" in out
    for step in ("[machine]", "[networks]", "[pipeline]", "[cost_model]", "[plot]", "all steps passed"):
        assert step in out, step

    pipeline = json.loads((tmp_path / "pipeline.json").read_text())
    comps = pipeline["backends"]["torch"]["components"]
    assert pipeline["preset"] == "tiny" and pipeline["iters"] == 1
    # The stages partition the end-to-end time: their sum cannot exceed it.
    stages = ["stage1.conditions", "stage1.sample", "stage1.decode", "stage2.conditions",
              "stage2.blend_refs", "stage2.sample", "stage2.decode"]
    assert sum(comps[s]["median_ms"] for s in stages) <= comps["end_to_end"]["median_ms"]
    assert comps["stage1.unet_step"]["n"] == 1  # one step, one iteration
    assert pipeline["backends"]["torch"]["peak_rss_mib"] > 0

    networks = json.loads((tmp_path / "networks.json").read_text())
    assert set(networks["backends"]["torch"]["components"]) == {
        "stage1.unet_step", "stage2.unet_step", "stage1.decode", "stage2.decode"}

    cost = json.loads((tmp_path / "cost.json").read_text())
    assert [c["name"] for c in cost["costs"]][:2] == ["stage1.unet_step", "stage2.unet_step"]
    assert (tmp_path / "stages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "report.log").stat().st_size > 0
