"""Hostile input files and sizes: a FIFO, device or socket is refused before it is opened (a FIFO's
``open`` would block forever); an ``.npz``/``.npy`` whose header declares more than this machine's
memory is refused from its header, before any array is loaded (not a ``MemoryError``); the env and
the vector env refuse sizes that could never fit, naming the argument, before allocating.

What could hang runs in a subprocess with a timeout, so a regression fails instead of hanging.
"""

from __future__ import annotations

import io
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from numpy.lib import format as npy

import gtmsm_env  # noqa: F401  (registers the envs)
from gtmsm_cli.inputs import (
    array_file_problem,
    declared_arrays,
    input_file_problem,
    input_folder_problem,
)
from gtmsm_env.geometry import GridGeometry, env_memory_problem
from gtmsm_env.images import FolderImages, NpzImages, make_image_source
from gtmsm_env.rollouts import Rollouts, collect_rollouts

ROOT = Path(__file__).resolve().parents[1]
HUGE_SHAPE = (123456789, 32, 32, 21600)  # 2.7 PB of uint8
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")


def lying_npz(path: Path, shape: tuple[int, ...] = HUGE_SHAPE, name: str = "images",
              others: dict[str, np.ndarray] | None = None) -> Path:
    """An ``.npz`` whose member ``name`` has a header declaring ``shape`` uint8 and no data."""
    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": npy.dtype_to_descr(np.dtype(np.uint8)),
                                        "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}.npy", header.getvalue())
        for key, array in (others or {}).items():
            buffer = io.BytesIO()
            np.save(buffer, array)
            archive.writestr(f"{key}.npy", buffer.getvalue())
    return path


def run_python(code: str, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SDL_VIDEODRIVER": "dummy"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)


def run_entry(module: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SDL_VIDEODRIVER": "dummy"}
    return subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def one_error_line(result: subprocess.CompletedProcess, prog: str, *fragments: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- not regular files


@needs_fifo
def test_input_file_problem_names_every_kind_of_path(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.npz"
    zero.symlink_to("/dev/zero")
    broken = tmp_path / "broken.npz"
    broken.symlink_to(tmp_path / "gone")
    regular = tmp_path / "file.npz"
    regular.write_bytes(b"x")
    server = socket.socket(socket.AF_UNIX)
    sock = tmp_path / "sock"
    try:
        server.bind(str(sock))
        assert "is a socket, not a regular file" in input_file_problem(sock, "image file")
    finally:
        server.close()
    assert input_file_problem(fifo, "image file") == f"image file {fifo} is a FIFO (named pipe), not a regular file"
    assert input_file_problem(zero, "rollouts file") == f"rollouts file {zero} is a character device, not a regular file"
    assert input_file_problem(tmp_path, "image file") == f"image file {tmp_path} is a folder; give a file"
    assert input_file_problem(tmp_path / "missing.npz", "image file") == f"image file not found: {tmp_path / 'missing.npz'}"
    assert "broken link" in input_file_problem(broken)
    assert "a folder on its path is a file" in input_file_problem(regular / "inside.npz")
    assert input_file_problem(regular) is None
    assert input_folder_problem(fifo, "image folder") == f"image folder {fifo} is a FIFO (named pipe), not a folder"
    assert input_folder_problem(regular, "image folder") == f"image folder {regular} is a file, not a folder"
    assert input_folder_problem(tmp_path) is None


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    locked = tmp_path / "locked.npz"
    locked.write_bytes(b"x")
    locked.chmod(0)
    assert input_file_problem(locked, "image file") == f"image file {locked} is not readable: permission denied"


@needs_fifo
def test_library_loaders_refuse_a_fifo_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "a.png")
    (folder / "b.png").symlink_to("/dev/zero")
    from PIL import Image

    Image.fromarray(np.full((40, 40, 3), 9, np.uint8)).save(folder / "c.png")
    code = f"""
import warnings
from pathlib import Path
from gtmsm_env.images import FolderImages, NpzImages, make_image_source
from gtmsm_env.rollouts import Rollouts
fifo = Path({str(fifo)!r})
for load in (lambda: NpzImages(fifo), lambda: make_image_source(str(fifo)), lambda: Rollouts.load(fifo),
             lambda: make_image_source(str(fifo.with_suffix('')))):
    try:
        load()
    except ValueError as error:
        assert "is a FIFO (named pipe), not a regular file" in str(error), error
    else:
        raise AssertionError("a FIFO was loaded")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    source = FolderImages({str(folder)!r}, 32)
assert len(source) == 1, len(source)
text = str(caught[0].message)
assert "a.png: is a FIFO (named pipe), not a regular file" in text, text
assert "b.png: is a character device, not a regular file" in text, text
print("ok")
"""
    os.mkfifo(fifo.with_suffix(""))
    start = time.monotonic()
    result = run_python(code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    assert time.monotonic() - start < 20


def test_links_to_devices_are_refused_by_every_loader(tmp_path: Path) -> None:
    for device in ("/dev/zero", "/dev/urandom"):
        link = tmp_path / f"{Path(device).name}.npz"
        link.symlink_to(device)
        for load in (NpzImages, lambda path: make_image_source(str(path)), Rollouts.load):
            with pytest.raises(ValueError, match="is a character device, not a regular file"):
                load(link)
    folder = tmp_path / "only_devices"
    folder.mkdir()
    (folder / "zero.png").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="zero.png is a character device"):
        FolderImages(folder)


@needs_fifo
def test_a_fifo_as_dataset_or_image_source_is_one_error_line(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    result = run_entry("gtmsm_model.launch", "train", "--preset", "debug", "--dataset", str(fifo),
                       "--out-dir", str(tmp_path / "run"))
    one_error_line(result, "gtmsm train", "--dataset", "FIFO", str(fifo))
    result = run_entry("gtmsm_env.rollouts_cli", "--image-source", str(fifo), "--out", str(tmp_path / "x.npz"))
    one_error_line(result, "gtmsm-rollouts", "--image-source", "FIFO", str(fifo))
    assert not (tmp_path / "x.npz").exists()


# --------------------------------------------------------------------------- lying headers


def test_a_header_declaring_petabytes_is_refused_from_the_header(tmp_path: Path) -> None:
    bad = lying_npz(tmp_path / "bad.npz")
    assert bad.stat().st_size < 400
    start = time.monotonic()
    for load in (lambda: NpzImages(bad), lambda: make_image_source(str(bad), 32)):
        with pytest.raises(ValueError) as error:
            load()
        assert f"image file {bad} declares an array of 2.7 PB (images {HUGE_SHAPE} uint8)" in str(error.value)
        assert "this machine has" in str(error.value)
    assert time.monotonic() - start < 1


def test_a_lying_npy_and_lying_rollouts_are_refused(tmp_path: Path) -> None:
    header = io.BytesIO()
    npy.write_array_header_2_0(header, {"descr": "|u1", "fortran_order": False, "shape": HUGE_SHAPE})
    (tmp_path / "bad.npy").write_bytes(header.getvalue())
    with pytest.raises(ValueError, match=r"bad.npy declares an array of 2.7 PB"):
        NpzImages(tmp_path / "bad.npy")
    good = collect_rollouts(2, 4, seed=0)
    good.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as data:
        others = {key: data[key] for key in data.files if key != "observations"}
    lying = lying_npz(tmp_path / "lying.npz", (10**9, 4, 8, 8, 3), "observations", others)
    with pytest.raises(ValueError, match=r"rollouts file .*lying.npz declares arrays of 768.0 GB "
                                         r"\(observations \(1000000000, 4, 8, 8, 3\) uint8\)"):
        Rollouts.load(lying)


def test_a_header_that_fits_but_lies_about_its_data_is_truncated(tmp_path: Path) -> None:
    short = lying_npz(tmp_path / "short.npz", (1000, 32, 32, 3))
    with pytest.raises(ValueError, match=r"could not read image file .*short.npz \(corrupt\?\): truncated "
                                         r"\(images \(1000, 32, 32, 3\) uint8 declares 3072000 bytes but the "
                                         r"file holds 0\)"):
        NpzImages(short)


def test_object_members_of_an_npz_are_refused_from_the_header(tmp_path: Path, monkeypatch) -> None:
    np.savez(tmp_path / "objects.npz", images=np.array([{"x": 1}], dtype=object))
    import pickle

    def never(*args, **kwargs):
        raise AssertionError("unpickled")

    monkeypatch.setattr(pickle, "load", never)
    monkeypatch.setattr(pickle, "loads", never)
    with pytest.raises(ValueError, match=r"array 'images' holds objects of dtype object, .*pickled "
                                         r"objects \(never loaded\)"):
        NpzImages(tmp_path / "objects.npz")


def test_declared_arrays_reads_headers_only(tmp_path: Path) -> None:
    images = np.zeros((5, 8, 8, 3), np.uint8)
    np.savez_compressed(tmp_path / "ok.npz", images=images, labels=np.arange(5))
    arrays = {array.name: array for array in declared_arrays(tmp_path / "ok.npz")}
    assert arrays["images"].shape == (5, 8, 8, 3) and arrays["images"].nbytes == images.nbytes
    assert arrays["labels"].nbytes == 5 * np.dtype(int).itemsize
    assert array_file_problem(tmp_path / "ok.npz") is None
    problem = array_file_problem(tmp_path / "ok.npz", "image file", keys=("images",), available=100)
    assert problem == (f"image file {tmp_path / 'ok.npz'} declares an array of 960 bytes "
                       "(images (5, 8, 8, 3) uint8); this machine has 100 bytes of memory")


def test_the_entry_points_give_one_line_for_a_lying_header(tmp_path: Path, capsys, monkeypatch) -> None:
    from gtmsm_env.rollouts_cli import main as rollouts_main
    from gtmsm_model import train as train_module
    from gtmsm_model.cli import main as cli_main

    def reached(*args, **kwargs):
        pytest.fail("training started")

    monkeypatch.setattr(train_module, "train", reached)
    from gtmsm_model.play_model import main as play_main

    bad = lying_npz(tmp_path / "bad.npz")
    for command, flag in (("train", "--image-source"), ("train", "--dataset"), ("run", "--eval-image-source")):
        status = cli_main([command, "--preset", "debug", flag, str(bad), "--out-dir", str(tmp_path / flag)])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith(f"gtmsm {command}: error: {flag}") and "2.7 PB" in lines[0], lines[0]
    with pytest.raises(SystemExit) as stop:
        play_main(["--image-source", str(bad), "--script", "d"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("gtmsm-play: error: --image-source") and "2.7 PB" in err, err
    with pytest.raises(SystemExit) as stop:
        rollouts_main(["--image-source", str(bad), "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("gtmsm-rollouts: error: --image-source") and "2.7 PB" in err, err


# --------------------------------------------------------------------------- env sizes


def test_the_env_refuses_an_image_size_that_cannot_fit() -> None:
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"image_size=100000, crop_size=8, step_size=3 make 33331x33331 "
                                         r"window positions: the env needs about .* GB"):
        gym.make("ImageNav-v0", image_size=100000)
    assert time.monotonic() - start < 1


def test_the_vector_env_refuses_num_envs_that_cannot_fit() -> None:
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"num_envs=10000000 needs about .* for its images and crop tables"):
        gym.make_vec("ImageNav-v0", num_envs=10**7, vectorization_mode="vector_entry_point")
    with pytest.raises(ValueError, match=r"image_size=60000, .* each env needs about"):
        gym.make_vec("ImageNav-v0", num_envs=2, image_size=60000, vectorization_mode="vector_entry_point")
    assert time.monotonic() - start < 1


def test_env_memory_problem_counts_what_the_envs_hold() -> None:
    geometry = GridGeometry.validated(32, 8, 3)
    assert env_memory_problem(geometry) is None and env_memory_problem(geometry, 64) is None
    # A 9x9 grid of 8x8 crops: 15552 bytes of table, a 3072-byte image, 6 bytes of flags per
    # position and ~1 kB of bookkeeping per vector env.
    problem = env_memory_problem(geometry, 100, available=1e6)
    assert problem.startswith("num_envs=100 needs about 2.0 MB") and "this machine has 1.0 MB" in problem
    assert env_memory_problem(geometry, 10, available=1e6) is None
    assert env_memory_problem(geometry, None, available=1e4).startswith("image_size=32, crop_size=8")


def test_a_fifo_policy_file_is_refused_without_opening_it(tmp_path):
    from gtmsm_env.policies import load_sb3_policy

    fifo = tmp_path / "policy.zip"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="FIFO"):
        load_sb3_policy(fifo)  # opening it would block forever
