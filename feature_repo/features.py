"""Feast definitions for the `feast` CLI run in this folder, built from the use-case spec.

The platform itself configures Feast in code (`mlplatform.features.store`); this module lets a
user run `cd feature_repo && feast plan` or `feast apply` against the same definitions.
Pick the use case with MLPLATFORM_USECASE (default taxi).
"""

import os
from pathlib import Path

from mlplatform.features.definitions import build_definitions
from mlplatform.spec import load_usecase

_spec = load_usecase(os.environ.get("MLPLATFORM_USECASE", "taxi"))
_home = Path(os.environ.get("MLPLATFORM_HOME", Path(__file__).resolve().parents[1] / ".mlplatform"))
# Feast collects Entity/FeatureView/FeatureService objects from module attributes.
globals().update(build_definitions(_spec, _home / _spec.name / "feast" / "data"))
