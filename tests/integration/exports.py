"""Datasets the repository does not ship, written to CSV the way an export would be (tables
scikit-learn carries in its wheel), and the command line as a user of such a project runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def project_cli(repo_root: Path, project: Path, *args: str, **env: str):
    """`mlplatform ARGS` for the project folder `project` (MLPLATFORM_PROJECT), as a process."""
    return subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", *args],
        capture_output=True, text=True, cwd=repo_root, timeout=1200,
        env={**os.environ, "MLPLATFORM_PROJECT": str(project), **env},
    )


def breast_cancer_csv(path: Path) -> pd.DataFrame:
    """569 rows, headers with spaces ("mean radius"), a string key and labels in words."""
    from sklearn.datasets import load_breast_cancer

    df = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(7)
    df.insert(0, "Patient ID", [f"P-{i:04d}" for i in rng.permutation(len(df))])
    df.insert(1, "clinic site", rng.choice(["North-1", "South 2", "east.3"], len(df)))
    df["diagnosis"] = df.pop("target").map({0: "malignant", 1: "benign"})
    df.to_csv(path, index=False)
    return df


def wine_csv(path: Path, labels: str) -> pd.DataFrame:
    """178 rows, headers with a %, a hyphen, a slash and a dot after a leading digit
    ("1st.proline"); `labels` "01" for 0/1, else the cultivars' names."""
    from sklearn.datasets import load_wine

    df = load_wine(as_frame=True).frame.rename(
        columns={
            "alcohol": "Alcohol %",
            "malic_acid": "malic-acid",
            "od280/od315_of_diluted_wines": "od280/od315 of diluted wines",
            "proline": "1st.proline",
        }
    )
    target = df.pop("target")
    df["cultivar"] = (target == 0).astype(int) if labels == "01" else target.map(
        {0: "barolo", 1: "grignolino", 2: "barbera"}
    )
    df.to_csv(path, index=False)
    return df
