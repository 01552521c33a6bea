"""Build credit's Feast training set in a scratch home, as the integration tests do.

.venv/bin/python docs/fairness/study/build_training_set.py [HOME]   (default /tmp/credit-study)
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo, for tests.conftest
from mlplatform.jobs.data import features_job
from mlplatform.spec import load_spec
from mlplatform.validation.quarantine import Gate
from mlplatform.validation.schema import build_schema
from mlplatform.workspace import REPO_ROOT, Workspace
from tests.conftest import source_of

t = time.perf_counter()
home = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/credit-study")
spec = load_spec(REPO_ROOT / "usecases" / "credit.yaml")
ws = Workspace.for_usecase(home, "credit")
assert Gate(spec, build_schema(spec), ws).process(source_of(spec)).accepted
features_job("credit", home, home / "training_set.parquet")
print("built in", time.perf_counter() - t)
