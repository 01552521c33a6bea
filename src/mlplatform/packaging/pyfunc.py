"""An MLflow pyfunc that carries the platform's preprocessing and one candidate model.

The artifact ships the `mlplatform` source (code_paths), so the Preprocessor that served in
training is the one that serves in production, and the pinned requirements rebuild the exact
runtime anywhere.
"""

from __future__ import annotations

import json
import shutil
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from mlplatform.data.labels import decode
from mlplatform.packaging import scoring_check
from mlplatform.training.families import FAMILIES, Family
from mlplatform.training.preprocessing import Preprocessor

MODEL_DIR = "model_dir"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # src/mlplatform
# What every artifact needs to load, whatever the family; pinned to what is installed now.
# pyarrow-hotfix: the shipped code (data.reading) imports it wherever user Parquet is read.
BASE_REQUIREMENTS = (
    "mlflow", "pandas", "numpy", "pyarrow", "pyarrow-hotfix", "pydantic", "pyyaml", "cloudpickle"
)


class PlatformModel(mlflow.pyfunc.PythonModel):
    """Rows in (the signature's columns), probability and 0/1 prediction out; with a label
    in its own vocabulary also `class`, the prediction in the label's words."""

    def load_context(self, context) -> None:
        folder = Path(context.artifacts[MODEL_DIR])
        meta = json.loads((folder / "meta.json").read_text())
        pre = Preprocessor.from_json((folder / "preprocessor.json").read_text())
        self.family = FAMILIES[meta["family"]].load(folder, pre)
        self.threshold = float(meta["threshold"])
        self.classes = tuple(meta["classes"]) if meta.get("classes") else None
        self.inputs = pre.inputs
        self.scoring_check = scoring_check.read(folder)  # None when packaged before checks

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        p, c = self.scores(model_input)
        out = pd.DataFrame({"probability": p, "prediction": c})
        if self.classes:
            out["class"] = decode(self.classes, c)
        return out

    def scores(self, model_input: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(probability, 0/1 prediction) arrays: what `predict` returns, without the frame
        (the model server's single-row path calls this directly)."""
        missing = [c for c in self.inputs if c not in model_input]  # a frame's `in`: columns
        if missing:
            raise ValueError(f"input lacks columns {missing}")
        p = np.clip(self.family.predict_proba(model_input), 0.0, 1.0)
        return p, (p >= self.threshold).astype("int64")


def pinned_requirements(family: Family) -> list[str]:
    """Exact versions of what the artifact imports, read from the running environment."""
    names = list(BASE_REQUIREMENTS) + family.pip_requirements()
    return [f"{n}=={version(n)}" for n in dict.fromkeys(names)]


def save_model_dir(
    family: Family, threshold: float, folder: Path, classes: tuple[str, str] | None = None
) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    family.save(folder)
    (folder / "preprocessor.json").write_text(family.pre.to_json())
    meta = {
        "family": family.name,
        "params": family.params,
        "seed": family.seed,
        "threshold": threshold,
        **({"classes": list(classes)} if classes else {}),  # (negative, positive) names
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return folder


def signature_frame(df: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """The request contract: numeric inputs as double (nullable), categorical as string."""
    out = pd.DataFrame(index=range(len(df)))
    for c in numeric:
        out[c] = pd.to_numeric(df[c].reset_index(drop=True), errors="coerce").astype("float64")
    for c in categorical:
        col = df[c].reset_index(drop=True)
        out[c] = col.astype("object").where(col.notna(), None)
    return out


def log_pyfunc(
    family: Family,
    threshold: float,
    example: pd.DataFrame,
    workdir: Path,
    classes: tuple[str, str] | None = None,
):
    """Log the packaged model to the active MLflow run; returns the ModelInfo. `classes`
    (negative, positive) names the label's classes when they are not 0/1."""
    from mlflow.models import infer_signature

    folder = save_model_dir(family, threshold, workdir / "model_dir", classes)
    inputs = signature_frame(example, family.pre.numeric, family.pre.categorical)
    outputs = PlatformModel()
    outputs.family, outputs.threshold, outputs.inputs = family, threshold, family.pre.inputs
    outputs.classes = classes
    predicted = outputs.predict(None, inputs)
    signature = infer_signature(inputs, predicted)
    check = scoring_check.reference(inputs, predicted["probability"].to_numpy(), family.name)
    scoring_check.write(folder, check)
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=PlatformModel(),
        artifacts={MODEL_DIR: str(folder)},
        code_paths=[str(PACKAGE_ROOT)],
        signature=signature,
        input_example=inputs.head(5),
        pip_requirements=pinned_requirements(family),
    )
