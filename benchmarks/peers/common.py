"""What every part of the peers benchmark shares: where its files are, the namespace, the
images, the client's view of write verbs."""

from __future__ import annotations

from pathlib import Path

import scale

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "results.json"
RESULTS_MD = HERE / "results.md"
NAMESPACE = scale.NAMESPACE
STANDARD_IMAGE = "example/app:3.13"
FT_IMAGE = "example/app:3.14t"
DEADLINE = "1h"  # progress deadline of both controllers' canaries (see ftr_rollout)
# Room for 3 Services per canary at 10,000 canaries (a /16 holds 65,534 addresses).
SERVICE_CIDR = "10.0.0.0/16"
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"}
# The new pod template (the free-threaded image) that starts the canary of a Rollout (Argo) or
# of a Deployment (Flagger): a merge patch.
TO_FT_IMAGE = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": FT_IMAGE}]}}}}
