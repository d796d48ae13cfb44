"""Where a benchmark run's JSON goes, and what every RESULTS.md entry states about the run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def save_json(kind: str, body: dict[str, Any], label: str = "") -> tuple[Path, str, str]:
    """Write ``body`` (with the machine and commit) to benchmarks/results/<kind>/; return its
    path, the commit and the machine."""
    head, where = commit(), machine()
    directory = ROOT / "benchmarks" / "results" / kind
    directory.mkdir(parents=True, exist_ok=True)
    suffix = f"-{label}" if label else ""
    path = directory / f"{date.today().isoformat()}-{head}{suffix}.json"
    path.write_text(
        json.dumps({"machine": where, "commit": head, **body}, indent=2, ensure_ascii=False)
    )
    return path, head, where


def append_results(lines: list[str]) -> None:
    with (ROOT / "benchmarks" / "RESULTS.md").open("a") as out:
        out.write("\n".join(lines) + "\n")
