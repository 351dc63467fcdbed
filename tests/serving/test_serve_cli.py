"""`hi3d serve build-repo` and `hi3d client` from the command line: what they write and
how they fail (no server needed: the client is pointed at a closed port)."""
from PIL import Image

from hi3d.cli import main
from hi3d.serving.launcher import free_ports


def test_build_repo_writes_the_requested_configuration(tmp_path, capsys):
    out = tmp_path / "repo"
    assert main(["serve", "build-repo", "--preset", "tiny", "--out", str(out), "--instances", "stage1=3,unet1=2",
                 "--max-batch", "4", "--python-path", "/opt/x"]) == 0
    assert "15 models" in capsys.readouterr().out
    assert "count: 3 kind: KIND_CPU" in (out / "stage1" / "config.pbtxt").read_text()
    unet = (out / "unet1" / "config.pbtxt").read_text()
    assert "count: 2 kind: KIND_CPU" in unet and "max_batch_size: 4" in unet
    assert "sys.path[:0] = ['/opt/x']" in (out / "preprocess" / "1" / "model.py").read_text()


def test_build_repo_keeps_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["serve", "build-repo", "--out", str(tmp_path), "--python-path", "/opt/x"]) == 2
    assert "not a repository" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_start_needs_a_repository(tmp_path, capsys):
    assert main(["serve", "start", "--repo", str(tmp_path)]) == 2
    assert "not a model repository" in capsys.readouterr().err


def test_client_reports_an_unreachable_server_and_writes_nothing(tmp_path, capsys):
    img = tmp_path / "in.png"
    Image.new("RGB", (32, 32), (255, 0, 0)).save(img)
    port = free_ports().grpc
    code = main(["client", str(img), "--url", f"127.0.0.1:{port}", "--out", str(tmp_path / "out"), "--timeout", "5"])
    assert code == 1  # not the caller's input: the server is not there
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "UNAVAILABLE" in err
    assert not (tmp_path / "out").exists()
