import os
import subprocess
import sys

import pytest

from server.backends import models
from server.backends.models import BundledModel, join_split_model, resolve_model
from server.core.errors import ModelNotFound
from tests.support import ROOT


def make_parts(tmp_path, sizes=(1000, 777)):
    dirs = []
    for index, size in enumerate(sizes, start=1):
        directory = tmp_path / f"pkg{index}"
        directory.mkdir()
        (directory / f"model.bin.part{index}").write_bytes(bytes([index]) * size)
        dirs.append(directory)
    (dirs[-1] / "config.json").write_text("{}")
    (dirs[-1] / "tokenizer.json").write_text("{}")
    return dirs


def test_split_weights_are_joined_once_in_order_with_the_other_files(tmp_path):
    dirs = make_parts(tmp_path)
    target = join_split_model("base", dirs, tmp_path / "cache")
    data = (target / "model.bin").read_bytes()
    assert data == b"\x01" * 1000 + b"\x02" * 777
    assert (target / "config.json").exists() and (target / "tokenizer.json").exists()
    mtime = os.stat(target / "model.bin").st_mtime_ns
    assert join_split_model("base", dirs, tmp_path / "cache") == target
    assert os.stat(target / "model.bin").st_mtime_ns == mtime  # not joined again
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no leftovers


def test_a_truncated_join_is_replaced(tmp_path):
    dirs = make_parts(tmp_path)
    target = join_split_model("base", dirs, tmp_path / "cache")
    (target / "model.bin").write_bytes(b"short")
    join_split_model("base", dirs, tmp_path / "cache")
    assert (target / "model.bin").stat().st_size == 1777


def test_missing_bundled_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(
        models.BUNDLED_MODELS, "ghost", BundledModel("ghost", ("no_such_pkg_x",), "models", True)
    )
    with pytest.raises(ModelNotFound, match=r"pip install 'streamscribe\[models\]'"):
        resolve_model("ghost")


def test_a_directory_without_a_model_is_refused(tmp_path):
    with pytest.raises(ModelNotFound, match="holds no CTranslate2 model"):
        resolve_model(str(tmp_path))


def streamscribe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamscribe", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_serve_exits_with_a_message_for_a_missing_model(tmp_path):
    result = streamscribe("serve", "--model", str(tmp_path), "--port", "0")
    assert result.returncode == 2
    assert "holds no CTranslate2 model" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_bad_settings_cleanly():
    result = streamscribe("serve", "--workers", "0")
    assert result.returncode == 2 and "workers" in result.stderr
    assert "Traceback" not in result.stderr


def test_stream_cli_reports_unreadable_files_and_unreachable_servers(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....not audio at all")
    result = streamscribe("stream", str(junk))
    assert result.returncode == 2 and "junk.wav" in result.stderr
    assert "Traceback" not in result.stderr
    silence = tmp_path / "silence.wav"
    import wave

    with wave.open(str(silence), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\x00\x00" * 1600)
    result = streamscribe("stream", str(silence), "--url", "ws://127.0.0.1:9/v1/stream")
    assert result.returncode == 1 and "cannot reach" in result.stderr
    assert "Traceback" not in result.stderr
