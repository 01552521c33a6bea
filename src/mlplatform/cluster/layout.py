"""Names the pipelines, the manifests and the deploy step must agree on (tests check them
against manifests/): the shared home volume, where pods mount it, the in-cluster services."""

# The claim every pipeline pod mounts (manifests/base/storage/home-pvc.yaml), in KFP's
# namespace; a claim of the same name in NAMESPACE serves MLflow and KServe (pvc:// URIs).
HOME_PVC = "mlplatform-home"
DATA_MOUNT = "/data"  # the pipelines' default home is /data/mlplatform
PIPELINES_NAMESPACE = "kubeflow"  # KFP standalone runs every pipeline pod here
NAMESPACE = "mlplatform"  # tracking, feature store, serving, metrics
# The MLflow server of manifests/base/mlflow (PostgreSQL backend); artifacts stay on the volume.
CLUSTER_TRACKING_URI = f"http://mlflow.{NAMESPACE}.svc.cluster.local:5000"
