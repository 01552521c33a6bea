"""Thin Kubeflow Pipelines components: parse inputs, call the mlplatform library, write outputs.

Each function body imports what it needs, because KFP ships the function's source alone to the
container (or subprocess) that runs it.
"""

import os

# The image every component runs in on a cluster (images/component.Dockerfile); locally the
# kfp.local SubprocessRunner ignores it and uses the current interpreter.
COMPONENT_IMAGE = os.environ.get("MLPLATFORM_COMPONENT_IMAGE", "mlplatform/component:0.1.0")
