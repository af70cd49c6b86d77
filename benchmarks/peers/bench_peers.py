#!/usr/bin/env python3
"""ftrollout side by side with Argo Rollouts (and Flagger): N canaries of 2 replicas held
paused at 50 %.

For each count N (default 100 and 1000) and each controller (Argo Rollouts v1.10.2, then
ftrollout; Flagger v1.36.1 with `--controllers ...,flagger`), one run:

1. a fresh local control plane, configured exactly as `benchmarks/scale.py` configures it
   (etcd, kube-apiserver, controller-manager and scheduler at 300 QPS, kwok nodes of 1000
   pods), the same exporter and a real Prometheus scraping it every 5 s. Each controller gets
   its own cluster, so neither finds the other's objects (both watch the whole cluster);
2. only that controller, as a process of its own, with the same client limits
   (`--qps 200 --burst 400`), no leader election;
3. N canaries of 2 replicas brought to "paused at 50 %" with no analysis (idle mode; the
   analysing mode adds one PromQL query per rollout every 30 s, see README.md):
   * Argo Rollouts: a Rollout (2 replicas, canary steps `setWeight: 50`, `pause: {}`) created,
     Healthy, then its pod template changed to the free-threaded image: the canary
     ReplicaSet gets 1 pod, the rollout pauses (phase Paused, a CanaryPauseStep condition);
   * ftrollout: a Deployment (2 replicas) and a FreeThreadedRollout (steps 50 % / 100 %, each
     waiting for a promote; no analysis): the twin gets 1 pod, the rollout pauses (phase
     Paused, stepIndex 0);
   * Flagger (`-mesh-provider=kubernetes`, `-metrics-server` the run's Prometheus): a
     Deployment (2 replicas) Ready, a Canary (provider kubernetes, analysis every 30 s,
     2 blue/green iterations, a confirm-promotion webhook served by this process that always
     answers 403) Initialized (primary Ready, target at 0), then the Deployment's template
     changed: Flagger scales it back to 2 beside the primary's 2 and, after its iterations,
     holds it at the gate (phase WaitingPromotion), the nearest it has to "paused at 50 %"
     (its kubernetes provider does blue/green only, no weights);
4. after a warm-up, the same sampler over a steady window for both: RSS (/proc VmRSS) and
   CPU (/proc utime+stime) of the controller process every 5 s, and API writes counted by the
   kube-apiserver (`apiserver_request_total` for POST/PUT/PATCH/DELETE/APPLY, leases and
   nodes left out: those are the control plane's and kwok's heartbeats) plus each
   controller's own count of its requests (`controller_clientset_k8s_request_total` for Argo,
   `ftrollout_api_writes_total` for ftrollout; Flagger exports none), and GETs of single
   objects (Flagger reads through the API at every tick);
5. optionally (`--profile S`) py-spy records the ftrollout process for S seconds of the
   window (`--gil`: Python CPU only);
6. after the window (`--latency-samples K`, 0 skips it), the same method for both, one
   rollout at a time, each figure on rollouts of its own: promote request -> canary's
   spec.replicas raised, abort (Argo) / rollback (ftrollout) request -> canary scaled to 0,
   and for ftrollout a crashed twin pod -> target back to full (Argo does not act on a
   crashed pod, see ARGO_NO_CRASH_ROW); times on receipt of the workload's watch event.
   Not for Flagger (FLAGGER_NO_LATENCY: it acts on its 30 s tick).

Results: `benchmarks/peers/results.json` (every run; a later run of the same controller and N
replaces the earlier one) and `results.md` (table with ratios ftrollout / Argo).

    make bench-peers                                        # 100 and 1000, both controllers
    python benchmarks/peers/bench_peers.py --counts 100 --controllers ftrollout --duration 120
    python benchmarks/peers/bench_peers.py --report-only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# benchmarks/: the package `peers` (this folder), the scale benchmark's cluster and the shared
# sampler.
sys.path.insert(0, str(HERE.parent))

from scale import log  # noqa: E402

from peers.common import RESULTS_JSON  # noqa: E402
from peers.report import load_results, store_run, write_report  # noqa: E402
from peers.run import run_one  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--counts", default="100,1000", help="canary counts (comma-separated)")
    p.add_argument(
        "--controllers",
        default="argo-rollouts,ftrollout",
        help="which controllers, in order (argo-rollouts, ftrollout, flagger); Flagger v1.36.1 "
        "(kubernetes provider) is not in the default list",
    )
    p.add_argument(
        "--modes",
        default="idle,analysing",
        help="idle (paused, no analysis) and/or analysing (a PromQL query per rollout every 30 s)",
    )
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument(
        "--duration",
        type=float,
        default=300,
        help="steady window (seconds); at least ftrollout's idle resync (300 s), so every "
        "rollout's periodic look falls in it once",
    )
    p.add_argument("--warmup", type=float, default=30, help="wait before the window (seconds)")
    p.add_argument(
        "--latency-samples",
        type=int,
        default=20,
        help="after the window: rollouts per latency figure (promote, abort/rollback request, "
        "crash), one at a time; 0 skips the latency phase",
    )
    p.add_argument(
        "--latency-every", type=float, default=2.0, help="seconds between latency samples"
    )
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--pods-per-node", type=int, default=1000)
    p.add_argument("--qps", type=float, default=200, help="client QPS of both controllers")
    p.add_argument("--burst", type=int, default=400, help="client burst of both controllers")
    p.add_argument("--profile", type=float, default=0, help="py-spy ftrollout for S seconds")
    p.add_argument(
        "--profile-rate",
        type=int,
        default=100,
        help="py-spy samples per second (an idle operator holds the GIL rarely: 1000 gives a "
        "profile worth reading in a few minutes)",
    )
    p.add_argument(
        "--py-spy",
        default=str(Path(sys.executable).parent / "py-spy"),
        help="py-spy executable (for --profile)",
    )
    p.add_argument("--tag", default="", help="label stored with the runs (e.g. before-fix)")
    p.add_argument(
        "--compare-pythonpath",
        default="",
        help="after ftrollout's window, run the operator from this PYTHONPATH (another build, "
        "e.g. an export of the code before a fix) on the same cluster and sample it again",
    )
    p.add_argument("--compare-tag", default="before-fix", help="tag of the --compare run")
    p.add_argument("--keep", action="store_true", help="keep the work directories")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    if args.report_only:
        write_report(load_results())
        return 0

    from ftrollout_dev.localcluster import Binaries
    from ftrollout_dev.peers import ARGO_ROLLOUTS, FLAGGER, build_peer

    missing = Binaries.locate().missing_for_cluster()
    if missing:
        print(f"not built: {missing}; run `make tools`", file=sys.stderr)
        return 2
    controllers = [c for c in args.controllers.split(",") if c]
    for c in controllers:
        if c not in ("argo-rollouts", "ftrollout", "flagger"):
            print(f"unknown controller {c!r} (argo-rollouts, ftrollout, flagger)", file=sys.stderr)
            return 2
    for name, peer in (("argo-rollouts", ARGO_ROLLOUTS), ("flagger", FLAGGER)):
        if name in controllers and not peer.is_built():
            log(f"{name} is not built yet: building it ({peer.build_estimate} on an idle machine)")
            build_peer(peer, log=lambda m: log(m.strip()))
    modes = [m for m in args.modes.split(",") if m]
    for mode in modes:
        if mode not in ("idle", "analysing"):
            print(f"unknown mode {mode!r} (idle, analysing)", file=sys.stderr)
            return 2
    for mode in modes:
        for n in [int(x) for x in args.counts.split(",") if x]:
            for ctl in controllers:
                res = run_one(n, ctl, mode, args)
                res["tag"] = args.tag
                store_run(res, args.tag)
                log(f"saved {ctl} N={n} to {RESULTS_JSON}")
    write_report(load_results())
    return 0


if __name__ == "__main__":
    sys.exit(main())
