"""Prove an artifact is self-contained: rebuild its environment from its own pinned
requirements, predict there, and compare with the predictions made here."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from mlplatform.packaging.parity import Parity, compare

_SCORE = textwrap.dedent(
    """
    import sys
    import mlflow.pyfunc
    import pandas as pd
    model = mlflow.pyfunc.load_model(sys.argv[1])
    model.predict(pd.read_parquet(sys.argv[2])).to_parquet(sys.argv[3])
    """
)


@dataclass(frozen=True)
class VerifyResult(Parity):
    python: str = ""  # the rebuilt environment's interpreter that made the fresh predictions


def _uv() -> list[str]:
    local = Path(sys.executable).parent / "uv"
    if local.exists():
        return [str(local)]
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def build_env(requirements: Path, env_dir: Path) -> Path:
    """A fresh virtual environment holding exactly the artifact's requirements."""
    py = env_dir / "bin" / "python"
    if not py.exists():
        subprocess.run([*_uv(), "venv", "--quiet", "--python", "3.11", str(env_dir)], check=True)
    subprocess.run(
        [*_uv(), "pip", "install", "--quiet", "--python", str(py), "-r", str(requirements)],
        check=True,
    )
    return py


def verify(
    model_uri: str, sample: pd.DataFrame, workdir: Path, tolerance: float = 0.0
) -> VerifyResult:
    """Predictions from a fresh env built from the artifact vs. from this environment."""
    import mlflow

    workdir.mkdir(parents=True, exist_ok=True)
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(workdir / "model")))
    requirements = local / "requirements.txt"
    if not requirements.exists():
        raise FileNotFoundError(f"{model_uri}: the artifact has no requirements.txt")
    py = build_env(requirements, workdir / "env")
    inp, out = workdir / "sample.parquet", workdir / "fresh.parquet"
    sample.to_parquet(inp, index=False)
    script = workdir / "score.py"
    script.write_text(_SCORE)
    subprocess.run([str(py), str(script), str(local), str(inp), str(out)], check=True)
    here = mlflow.pyfunc.load_model(str(local)).predict(pd.read_parquet(inp))
    fresh = pd.read_parquet(out)
    match = compare(here["probability"].to_numpy(), fresh["probability"].to_numpy(), tolerance)
    return VerifyResult(**asdict(match), python=str(py))
