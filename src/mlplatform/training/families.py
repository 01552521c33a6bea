"""The three candidate families behind one small interface.

Each family turns DataFrames into inputs with the shared Preprocessor, so packaging, latency
measurement and evaluation treat them alike. Seeds are fixed for repeatable runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from mlplatform.training.preprocessing import Preprocessor


class Family:
    name: ClassVar[str]
    model_file: ClassVar[str]

    def __init__(self, pre: Preprocessor, seed: int = 42, params: dict | None = None) -> None:
        self.pre = pre
        self.seed = seed
        self.params = {**self.default_params(), **(params or {})}
        self.model = None

    @classmethod
    def default_params(cls) -> dict:
        return {}

    def fit(
        self,
        train: pd.DataFrame,
        y: np.ndarray,
        valid: pd.DataFrame,
        y_valid: np.ndarray,
        sample_weight: np.ndarray | None = None,
    ):
        """Fit on `train` (early stopping on `valid` where the family has it); rows weigh
        `sample_weight` (e.g. the fairness reweighing), else 1."""
        raise NotImplementedError

    def model_inputs(self, df: pd.DataFrame):
        """What the fitted model consumes (a matrix, or named arrays for Keras); the edge
        export feeds its runtimes with the same."""
        raise NotImplementedError

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """Probability of the positive class, one float per row."""
        raise NotImplementedError

    def save(self, folder: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path, pre: Preprocessor) -> Family:
        raise NotImplementedError

    def pip_requirements(self) -> list[str]:
        """Packages (beyond the platform's base) its saved model needs to load."""
        return []


class LogisticFamily(Family):
    name = "logistic"
    model_file = "logistic.joblib"

    @classmethod
    def default_params(cls) -> dict:
        return {"C": 1.0, "max_iter": 2000}

    def fit(self, train, y, valid, y_valid, sample_weight=None):
        from sklearn.linear_model import LogisticRegression

        self.model = LogisticRegression(
            C=self.params["C"], max_iter=self.params["max_iter"], random_state=self.seed
        )
        self.model.fit(self.model_inputs(train), y, sample_weight=sample_weight)
        return self

    def model_inputs(self, df):
        return self.pre.one_hot(df)

    def predict_proba(self, df):
        x = self.model_inputs(df)
        if len(self.model.classes_) == 2 and np.isfinite(x).all():
            # sklearn's binary predict_proba is expit(x @ coef.T + intercept) after input
            # checks that cost several times the arithmetic on a single row (~15% of a served
            # request). The same operations in the same order give the same floats (tested);
            # anything unusual takes sklearn's own path and its errors.
            from scipy.special import expit

            return expit((x @ self.model.coef_.T + self.model.intercept_).reshape(-1))
        return self.model.predict_proba(x)[:, 1]

    def save(self, folder):
        import joblib

        joblib.dump(self.model, folder / self.model_file)

    @classmethod
    def load(cls, folder, pre):
        import joblib

        fam = cls(pre)
        fam.model = joblib.load(folder / cls.model_file)
        return fam

    def pip_requirements(self):
        return ["scikit-learn", "joblib"]


class XGBoostFamily(Family):
    name = "xgboost"
    model_file = "xgboost.ubj"

    @classmethod
    def default_params(cls) -> dict:
        return {
            "n_estimators": 400,
            "max_depth": 5,
            "learning_rate": 0.05,
            "subsample": 0.9,
            "colsample_bytree": 0.9,
            "early_stopping_rounds": 30,
        }

    def model_inputs(self, df: pd.DataFrame) -> np.ndarray:
        # Category codes as ordinal numbers: trees split them into groups well enough here,
        # and the model stays a plain float matrix for ONNX export.
        return np.hstack([self.pre.numeric_raw(df), self.pre.codes(df).astype("float64")])

    def fit(self, train, y, valid, y_valid, sample_weight=None):
        from xgboost import XGBClassifier

        self.model = XGBClassifier(
            **self.params,
            tree_method="hist",
            n_jobs=2,
            random_state=self.seed,
            eval_metric="auc",
        )
        self.model.fit(
            self.model_inputs(train),
            y,
            sample_weight=sample_weight,
            eval_set=[(self.model_inputs(valid), y_valid)],
            verbose=False,
        )
        best = getattr(self.model, "best_iteration", None)
        if best is not None:
            # Keep only the trees early stopping chose: a booster keeps all of them, and
            # every consumer (pyfunc, ONNX export) must see the same model.
            self.model._Booster = self.model.get_booster()[: best + 1]
        self._serve_single_threaded()
        return self

    def _serve_single_threaded(self) -> None:
        # One thread per prediction: with a second busy core, OpenMP threads for a single row
        # cost 10x in p99 latency and nothing in throughput at serving batch sizes.
        self.booster = self.model.get_booster()
        self.booster.set_param({"nthread": 1})

    def predict_proba(self, df):
        return np.asarray(self.booster.inplace_predict(self.model_inputs(df)), dtype="float64")

    def save(self, folder):
        self.model.save_model(folder / self.model_file)

    @classmethod
    def load(cls, folder, pre):
        from xgboost import XGBClassifier

        fam = cls(pre)
        fam.model = XGBClassifier()
        fam.model.load_model(folder / cls.model_file)
        fam._serve_single_threaded()
        return fam

    def pip_requirements(self):
        return ["xgboost"]


class KerasFamily(Family):
    """Normalization of numerics, an embedding per categorical, two dense layers."""

    name = "keras"
    model_file = "keras_model"

    @classmethod
    def default_params(cls) -> dict:
        return {
            "epochs": 40,
            "batch_size": 256,
            "hidden": [64, 32],
            "dropout": 0.2,
            "learning_rate": 0.002,
            "patience": 5,
        }

    def model_inputs(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        x = self.pre.numeric_raw(df)
        med = np.array([self.pre.medians[c] for c in self.pre.numeric])
        feeds = {"numeric": np.where(np.isnan(x), med, x).astype("float32")}
        codes = self.pre.codes(df)
        for j in range(len(self.pre.categorical)):
            feeds[f"cat_{j}"] = codes[:, j : j + 1]
        return feeds

    def _build(self, numeric_sample: np.ndarray):
        import tf_keras as keras

        num_in = keras.Input(shape=(len(self.pre.numeric),), name="numeric")
        norm = keras.layers.Normalization(name="normalize")
        norm.adapt(numeric_sample)
        parts, inputs = [norm(num_in)], [num_in]
        for j, size in enumerate(self.pre.vocab_sizes()):
            cat_in = keras.Input(shape=(1,), dtype="int64", name=f"cat_{j}")
            emb = keras.layers.Embedding(size, min(8, max(2, size // 2)), name=f"embed_{j}")
            parts.append(keras.layers.Flatten()(emb(cat_in)))
            inputs.append(cat_in)
        h = keras.layers.Concatenate()(parts) if len(parts) > 1 else parts[0]
        for width in self.params["hidden"]:
            h = keras.layers.Dense(width, activation="relu")(h)
            h = keras.layers.Dropout(self.params["dropout"])(h)
        out = keras.layers.Dense(1, activation="sigmoid", name="probability")(h)
        model = keras.Model(inputs, out)
        model.compile(
            optimizer=keras.optimizers.Adam(self.params["learning_rate"]),
            loss="binary_crossentropy",
            metrics=[keras.metrics.AUC(name="auc")],
        )
        return model

    def fit(self, train, y, valid, y_valid, sample_weight=None):
        import tf_keras as keras

        keras.utils.set_random_seed(self.seed)
        feeds = self.model_inputs(train)
        self.model = self._build(feeds["numeric"])
        stop = keras.callbacks.EarlyStopping(
            monitor="val_auc",
            mode="max",
            patience=self.params["patience"],
            restore_best_weights=True,
        )
        self.model.fit(
            feeds,
            y.astype("float32"),
            sample_weight=None if sample_weight is None else sample_weight.astype("float32"),
            validation_data=(self.model_inputs(valid), y_valid.astype("float32")),
            epochs=self.params["epochs"],
            batch_size=self.params["batch_size"],
            callbacks=[stop],
            verbose=0,
        )
        return self

    def predict_proba(self, df):
        feeds = self.model_inputs(df)
        if len(df) <= 1024:  # a direct call avoids predict()'s per-call setup (~30 ms)
            return self.model(feeds, training=False).numpy().reshape(-1).astype("float64")
        return self.model.predict(feeds, batch_size=4096, verbose=0).reshape(-1).astype("float64")

    def save(self, folder):
        self.model.save(folder / self.model_file, save_format="tf")

    @classmethod
    def load(cls, folder, pre):
        import tf_keras as keras

        fam = cls(pre)
        fam.model = keras.models.load_model(folder / cls.model_file, compile=False)
        return fam

    def pip_requirements(self):
        return ["tensorflow", "tf-keras"]


FAMILIES: dict[str, type[Family]] = {
    f.name: f for f in (LogisticFamily, XGBoostFamily, KerasFamily)
}


def family_meta(fam: Family) -> str:
    return json.dumps({"family": fam.name, "params": fam.params, "seed": fam.seed})
