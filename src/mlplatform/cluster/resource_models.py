"""Check KServe custom resources against the KServe Python SDK's resource models.

There is no API server here to apply CRD schemas, and the CRDs are not shipped by any package
we install, so the typed models of the `kserve` SDK (generated from the same OpenAPI
definitions as the CRDs) are the schema: every key must be a field of its model, every value
of the field's type, and the models' own required-field checks must pass. Kubernetes types
inside (containers, metadata) come from the `kubernetes` client's models the same way.

Runs in the serving environment (the one with `kserve`):

    kubectl kustomize manifests/overlays/kind | \\
        .venv-serving/bin/python -m mlplatform.cluster.resource_models

reads YAML or JSON documents on stdin, checks the KServe ones, prints one JSON line per
object (`{"kind", "name", "errors"}`) and exits 1 if any has errors.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

# (apiVersion, kind) -> model class name in kserve.models
KSERVE_KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
    ("serving.kserve.io/v1alpha1", "InferenceGraph"): "V1alpha1InferenceGraph",
}
# Both spellings of the generators: kserve's `list[X]`/`dict(str, X)`, the newer kubernetes
# client's `List[X]`/`Dict[str, X]`.
_LIST = re.compile(r"^[lL]ist\[(.+)\]$")
_DICT = re.compile(r"^(?:dict\(|Dict\[)([^,]+), (.+)[)\]]$")


def _model_class(name: str):
    import kserve.models
    from kubernetes.client import models as k8s

    cls = getattr(kserve.models, name, None) or getattr(k8s, name, None)
    if cls is None:
        raise LookupError(f"no model class {name}")
    return cls


def _check(value: Any, type_name: str, path: str, errors: list[str]) -> Any:
    """Return `value` converted to `type_name` (models become instances); record mismatches."""
    if value is None:
        return None
    if m := _LIST.match(type_name):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return None
        return [_check(v, m.group(1), f"{path}[{i}]", errors) for i, v in enumerate(value)]
    if m := _DICT.match(type_name):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return None
        return {k: _check(v, m.group(2), f"{path}.{k}", errors) for k, v in value.items()}
    scalars = {
        "str": (str,),
        "int": (int,),
        "float": (int, float),
        "bool": (bool,),
        "datetime": (str,),
        "date": (str,),
    }
    if type_name in scalars:
        ok = isinstance(value, scalars[type_name]) and not (
            type_name in ("int", "float") and isinstance(value, bool)
        )
        if not ok:
            errors.append(f"{path}: expected {type_name}, got {type(value).__name__} {value!r}")
        return value
    if type_name == "object":
        return value
    return _check_model(value, type_name, path, errors)


def _check_model(value: Any, type_name: str, path: str, errors: list[str]) -> Any:
    cls = _model_class(type_name)
    if not isinstance(value, dict):
        errors.append(f"{path}: expected an object ({type_name}), got {type(value).__name__}")
        return None
    by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    kwargs = {}
    for key, item in value.items():
        attr = by_json.get(key)
        if attr is None:
            errors.append(f"{path}.{key}: unknown field of {type_name}")
            continue
        kwargs[attr] = _check(item, cls.openapi_types[attr], f"{path}.{key}", errors)
    try:  # the generated constructors enforce required fields and enums
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        errors.append(f"{path}: {exc}")
        return None


def check_object(obj: dict) -> list[str]:
    """Problems of one KServe object (empty when it matches its model)."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in KSERVE_KINDS:
        return [f"no KServe resource model for apiVersion={key[0]} kind={key[1]}"]
    errors: list[str] = []
    _check_model(obj, KSERVE_KINDS[key], obj["kind"], errors)
    return errors


def main() -> int:
    import yaml

    failed = False
    for obj in yaml.safe_load_all(sys.stdin.read()):
        if not obj or (obj.get("apiVersion"), obj.get("kind")) not in KSERVE_KINDS:
            continue
        errors = check_object(obj)
        failed = failed or bool(errors)
        name = obj.get("metadata", {}).get("name", "")
        print(json.dumps({"kind": obj["kind"], "name": name, "errors": errors}))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
