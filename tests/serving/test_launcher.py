"""The launcher's pieces that need no server: port checks, stub discovery, in-flight counting."""
from __future__ import annotations

import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest

from hi3d.engine.errors import InvalidInput
from hi3d.serving.launcher import check_ports_free, free_ports, in_flight, python_stubs


def test_a_taken_port_is_named():
    ports = free_ports()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.http))
        taken.listen()
        with pytest.raises(InvalidInput, match=f"HTTP port {ports.http} on 127.0.0.1 is already in use"):
            check_ports_free("127.0.0.1", ports)
    check_ports_free("127.0.0.1", ports)  # free again


def test_stubs_are_found_among_a_servers_children(tmp_path):
    """A fake server whose child is named like the stub, with the stub's argv layout (python
    runs the "model.py", which sleeps)."""
    model = tmp_path / "repo" / "unet1" / "1" / "model.py"
    model.parent.mkdir(parents=True)
    model.write_text("import time\ntime.sleep(30)\n")
    stub = str(tmp_path / "triton_python_backend_stub")
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([{stub!r}, {str(model)!r}, 'triton_python_backend_shm_region_x'], executable=sys.executable)\n"
        "print('started', flush=True); time.sleep(30)")], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "started"
        (found,) = python_stubs(parent.pid)
        assert (found.model, found.shm_region) == ("unet1", "triton_python_backend_shm_region_x")
        assert python_stubs(found.pid) == []  # only direct children of the given server
    finally:
        subprocess.run(["pkill", "-P", str(parent.pid)])
        parent.kill()
        parent.wait()


def _stats(**counts):
    def entry(name, success, fail):
        return SimpleNamespace(name=name, inference_stats=SimpleNamespace(
            success=SimpleNamespace(count=success), fail=SimpleNamespace(count=fail),
            compute_infer=SimpleNamespace(count=success + fail)))
    return SimpleNamespace(model_stats=[entry(k, *v) for k, v in counts.items()])


def test_in_flight_is_what_passed_preprocess_and_did_not_finish_at_an_entry_point():
    def client(**counts):
        return SimpleNamespace(get_inference_statistics=lambda headers: _stats(**counts))

    # 7 admitted, 2 refused at the door (failed at both); 3 + 1 finished well, 1 failed later
    left, activity = in_flight(client(preprocess=(7, 2), hi3d=(3, 2), hi3d_stage1=(1, 1), stage1=(40, 0)),
                               ["hi3d", "hi3d_stage1"], {})
    assert left == 2
    _, same = in_flight(client(preprocess=(7, 2), hi3d=(3, 2), hi3d_stage1=(1, 1), stage1=(40, 0)),
                        ["hi3d", "hi3d_stage1"], {})
    _, busier = in_flight(client(preprocess=(7, 2), hi3d=(3, 2), hi3d_stage1=(1, 1), stage1=(41, 0)),
                          ["hi3d", "hi3d_stage1"], {})
    assert same == activity != busier  # a UNet step of a request in flight shows as activity
