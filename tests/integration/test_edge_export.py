"""Edge exports (ONNX, TFLite) reproduce the packaged model's predictions."""

from __future__ import annotations

import pandas as pd
import pytest

from mlplatform.packaging.edge import EdgeModel, EdgeParityError, export_edge
from mlplatform.packaging.pyfunc import save_model_dir, signature_frame
from mlplatform.training.dataset import split
from mlplatform.training.families import FAMILIES
from mlplatform.training.preprocessing import Preprocessor

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data(trained_taxi):
    spec = trained_taxi.spec
    splits = split(pd.read_parquet(trained_taxi.training_set), spec)
    return spec, splits, Preprocessor.fit(splits.train, spec)


class _Pyfunc:
    """The pyfunc's predict, without a tracking server: the same family object."""

    def __init__(self, fam):
        self.fam = fam

    def predict(self, df):
        return pd.DataFrame({"probability": self.fam.predict_proba(df)})


@pytest.mark.parametrize("family", ["logistic", "xgboost", "keras"])
def test_export_matches_pyfunc(data, family, tmp_path):
    spec, s, pre = data
    params = {"epochs": 3} if family == "keras" else None
    fam = FAMILIES[family](pre, params=params)
    y = s.train[spec.label].astype(int).to_numpy()
    fam.fit(s.train, y, s.valid, s.valid[spec.label].astype(int).to_numpy())
    model_dir = save_model_dir(fam, 0.5, tmp_path / "model_dir")
    sample = signature_frame(s.test, pre.numeric, pre.categorical).head(300)
    report = export_edge(model_dir, tmp_path / "edge", _Pyfunc(fam), sample)
    assert report.max_abs_diff <= 1e-5
    assert report.format == ("tflite" if family == "keras" else "onnx")
    assert EdgeModel(tmp_path / "edge").predict_proba(sample.head(3)).shape == (3,)


def test_parity_failure_is_refused(data, tmp_path):
    spec, s, pre = data
    fam = FAMILIES["logistic"](pre)
    fam.fit(s.train, s.train[spec.label].astype(int).to_numpy(), s.valid, None)
    model_dir = save_model_dir(fam, 0.5, tmp_path / "model_dir")

    class Shifted(_Pyfunc):
        def predict(self, df):
            return pd.DataFrame({"probability": self.fam.predict_proba(df) + 0.01})

    with pytest.raises(EdgeParityError, match="differs from the pyfunc"):
        export_edge(
            model_dir,
            tmp_path / "edge",
            Shifted(fam),
            signature_frame(s.test, pre.numeric, pre.categorical),
        )
    assert not (tmp_path / "edge").exists()
