"""Edge export from the packaged artifact: ONNX for the tree and linear models, TFLite for Keras.

The exported model takes the preprocessed inputs; the Preprocessor (pure numpy, JSON) travels
with it, so an edge runtime needs onnxruntime or the TFLite interpreter and numpy, nothing
else. Each export is checked against the pyfunc on a sample (parity) and timed.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlplatform.packaging.parity import compare
from mlplatform.training.families import FAMILIES, Family
from mlplatform.training.preprocessing import Preprocessor

PARITY_TOLERANCE = 1e-5  # float32 runtimes against the float64 pyfunc


class EdgeParityError(RuntimeError):
    """The exported model does not reproduce the artifact's predictions."""


@dataclass(frozen=True)
class EdgeReport:
    family: str
    format: str
    path: str
    size_mb: float
    max_abs_diff: float  # against the pyfunc on the sample
    single_p50_ms: float
    single_p99_ms: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


class EdgeModel:
    """Runs an exported model with its preprocessor, as an edge device would."""

    def __init__(self, folder: Path) -> None:
        meta = json.loads((folder / "edge.json").read_text())
        self.family, self.format = meta["family"], meta["format"]
        self.pre = Preprocessor.from_json((folder / "preprocessor.json").read_text())
        self.inputs_of = FAMILIES[self.family](self.pre)  # builds inputs; holds no model
        if self.format == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1  # one row at a time on a small device
            self.session = ort.InferenceSession(
                str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"]
            )
        else:
            import tensorflow as tf

            self.interp = tf.lite.Interpreter(model_path=str(folder / "model.tflite"))
            self.interp.allocate_tensors()

    def features(self, df: pd.DataFrame):
        """The family's own model inputs, as float32 where the runtimes expect it."""
        inputs = self.inputs_of.model_inputs(df)
        return inputs if isinstance(inputs, dict) else inputs.astype("float32")

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        x = self.features(df)
        if self.format == "onnx":
            outputs = self.session.run(None, {self.session.get_inputs()[0].name: x})
            probs = outputs[1]  # [labels, probabilities]
            if isinstance(probs, list):  # ZipMap output: one dict per row
                return np.array([p[1] for p in probs], dtype="float64")
            return np.asarray(probs)[:, 1].astype("float64")
        return np.concatenate([self._tflite_row(x, i) for i in range(len(df))])

    def _tflite_row(self, feeds: dict, i: int) -> np.ndarray:
        for detail in self.interp.get_input_details():
            name = next(k for k in feeds if k in detail["name"])
            value = feeds[name][i : i + 1].astype(detail["dtype"])
            self.interp.set_tensor(detail["index"], value)
        self.interp.invoke()
        out = self.interp.get_output_details()[0]
        return self.interp.get_tensor(out["index"]).reshape(-1).astype("float64")


def _export_family(fam: Family, folder: Path) -> str:
    n = None
    if fam.name == "logistic":
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        n = fam.model.coef_.shape[1]
        onx = convert_sklearn(
            fam.model,
            initial_types=[("input", FloatTensorType([None, n]))],
            options={id(fam.model): {"zipmap": False}},
            target_opset=15,
        )
        (folder / "model.onnx").write_bytes(onx.SerializeToString())
        return "onnx"
    if fam.name == "xgboost":
        from onnxmltools import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        n = len(fam.pre.numeric) + len(fam.pre.categorical)
        onx = convert_xgboost(
            fam.model, initial_types=[("input", FloatTensorType([None, n]))], target_opset=15
        )
        (folder / "model.onnx").write_bytes(onx.SerializeToString())
        return "onnx"
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(fam.model)
    (folder / "model.tflite").write_bytes(converter.convert())
    return "tflite"


def export_edge(
    model_dir: Path,
    out_dir: Path,
    pyfunc,
    sample: pd.DataFrame,
    tolerance: float = PARITY_TOLERANCE,
) -> EdgeReport:
    """Export the model in `model_dir` (the artifact's model_dir), check parity, time it.

    Raises EdgeParityError (and leaves no export behind) when predictions differ by more
    than `tolerance`."""
    meta = json.loads((model_dir / "meta.json").read_text())
    pre = Preprocessor.from_json((model_dir / "preprocessor.json").read_text())
    fam = FAMILIES[meta["family"]].load(model_dir, pre)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    fmt = _export_family(fam, out_dir)
    shutil.copy(model_dir / "preprocessor.json", out_dir / "preprocessor.json")
    (out_dir / "edge.json").write_text(
        json.dumps({"family": fam.name, "format": fmt, "threshold": meta["threshold"]})
    )
    edge = EdgeModel(out_dir)
    ref = pyfunc.predict(sample)["probability"].to_numpy()
    got = edge.predict_proba(sample)
    # NaN on one side only counts as a difference: np.max(|a - b|) would be NaN and pass.
    match = compare(ref, got, tolerance)
    if not match.passed:
        shutil.rmtree(out_dir)
        raise EdgeParityError(
            f"{fam.name} {fmt} export differs from the pyfunc by {match.max_abs_diff:.3g} "
            f"(> {tolerance}) on sample row {match.worst_row}"
        )
    times = []
    for i in range(min(200, len(sample))):
        t0 = time.perf_counter()
        edge.predict_proba(sample.iloc[[i]])
        times.append((time.perf_counter() - t0) * 1000)
    size = sum(p.stat().st_size for p in out_dir.iterdir()) / 1e6
    return EdgeReport(
        fam.name,
        fmt,
        str(out_dir),
        round(size, 3),
        match.max_abs_diff,
        round(float(np.percentile(times, 50)), 3),
        round(float(np.percentile(times, 99)), 3),
    )
