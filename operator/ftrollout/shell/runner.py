"""`ftrollout run`: start the operator (kopf) with ftrollout's settings."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
from typing import Any

import kopf

from ftrollout.shell import prometheus_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[n for n in (env("FTR_NAMESPACES") or "").split(",") if n],
        help="watch this namespace (repeatable; globs allowed). Default: all namespaces",
    )
    p.add_argument(
        "--log-format",
        choices=["plain", "full", "json"],
        default=env("FTR_LOG_FORMAT", "json"),
        help="log line format (default json: one structured object per line)",
    )
    p.add_argument("--verbose", action="store_true", help="debug logging")
    p.add_argument(
        "--health-port",
        type=int,
        default=int(env("FTR_HEALTH_PORT", "8080")),
        help="serve /healthz on this port (0 disables)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(env("FTR_METRICS_PORT", "9102")),
        help="serve the operator's Prometheus metrics on this port (0 disables)",
    )
    p.add_argument(
        "--prometheus-url",
        default=env("FTR_PROMETHEUS_URL"),
        help="default Prometheus for rollouts that do not set spec.analysis.prometheus.address",
    )
    prometheus_config.add_arguments(p)
    p.add_argument("--qps", type=float, default=float(env("FTR_QPS", "50")), help="API QPS limit")
    p.add_argument("--burst", type=int, default=int(env("FTR_BURST", "100")), help="API burst")
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=float(env("FTR_CONNECT_TIMEOUT", "10")),
        metavar="SECONDS",
        help="connect timeout of every Kubernetes API call (default 10)",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=float(env("FTR_REQUEST_TIMEOUT", "30")),
        metavar="SECONDS",
        help="read timeout of every Kubernetes API call, and kopf's limit on a whole request "
        "(default 30); a call past it fails and is retried instead of hanging",
    )
    p.add_argument(
        "--status-refresh",
        type=float,
        default=float(env("FTR_STATUS_REFRESH", "300")),
        metavar="SECONDS",
        help="write analysis values that changed nothing else at most this often (default 300; "
        "0: every round). Result, step and phase changes are always written at once",
    )
    p.add_argument(
        "--priority",
        type=int,
        default=int(env("FTR_PRIORITY", "0")),
        help="peering priority (default with --peering: random, so replicas never tie)",
    )
    p.add_argument(
        "--peering",
        default=env("FTR_PEERING"),
        help="kopf peering name for active/standby replicas (default: standalone)",
    )


def configure(settings: kopf.OperatorSettings, args: argparse.Namespace) -> None:
    # Our own Events say what happened; kopf's per-log-line events would be noise and writes.
    settings.posting.enabled = False
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="freethreaded.dev"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="freethreaded.dev", key="last-handled-configuration"
    )
    settings.persistence.finalizer = "freethreaded.dev/finalizer"
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = args.request_timeout
    settings.networking.connect_timeout = args.connect_timeout
    # Watch streams: a dead stream is caught by kopf's inactivity timeout; the connection
    # itself gets the same connect timeout as every other call.
    settings.watching.connect_timeout = args.connect_timeout
    # Async handlers only; a small pool for what kopf runs in threads.
    settings.execution.max_workers = 4
    if args.peering:
        settings.peering.name = args.peering
        settings.peering.mandatory = True
        # kopf pauses every peer of equal priority: each replica draws its own, so exactly
        # one (the highest) is active and the others stand by.
        settings.peering.priority = args.priority or random.randint(1, 32767)
    else:
        settings.peering.standalone = True
    if args.namespace:
        # Restricted mode: no cluster-wide namespace/CRD scanning (a namespaced Role has no
        # such rights, and kopf would retry the listing for about a minute first).
        settings.scanning.disabled = True


def run(args: argparse.Namespace) -> int:
    from ftrollout.shell import handlers, memory, metrics
    from ftrollout.shell.gillog import LogScanner
    from ftrollout.shell.kube import Kube
    from ftrollout.shell.scheduler import Prometheus, Scheduler

    tasks: list[asyncio.Task[None]] = []
    try:
        prom_config = prometheus_config.from_args(args)
    except prometheus_config.ConfigError as exc:
        # Bad configuration is the admin's to fix: say which flag and stop, before any watch.
        logging.getLogger("ftrollout").error("configuration: %s", exc)
        return 2
    if prom_config.insecure_skip_verify:
        import urllib3

        # Said once here rather than by urllib3 at every query.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        logging.getLogger("ftrollout").warning(
            "Prometheus TLS certificates are NOT verified (--prometheus-insecure-skip-verify)"
        )
    for url in prom_config.auth:
        if url.startswith("http://"):
            logging.getLogger("ftrollout").warning("credentials for %s are sent without TLS", url)
    for url in prom_config.unscoped_credentials():
        logging.getLogger("ftrollout").warning(
            "credentials for %s are used for rollouts of every namespace that names it: reserve "
            "it with --prometheus-address-namespaces (chart: allowedAddresses[].namespaces)",
            url,
        )

    if args.metrics_port:
        # Bound before anything starts: a port in use is the admin's to fix, said once with the
        # flag's name (inside kopf's startup handler it was retried, each try starting one more
        # scheduler).
        try:
            metrics.listen(args.metrics_port)
        except OSError as exc:
            logging.getLogger("ftrollout").error(
                "configuration: --metrics-port %s: %s", args.metrics_port, exc.strerror or exc
            )
            return 2

    kopf.configure(
        verbose=args.verbose,
        log_format={
            "plain": kopf.LogFormat.PLAIN,
            "full": kopf.LogFormat.FULL,
            "json": kopf.LogFormat.JSON,
        }[args.log_format],
    )
    if not args.verbose:
        # kopf logs every successful event handler at INFO: noise at scale. Our own lines
        # (logger "ftrollout") say what happened and why.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    handlers.STATE.kube = Kube(
        qps=args.qps,
        burst=args.burst,
        connect_timeout=args.connect_timeout,
        read_timeout=args.request_timeout,
    )
    handlers.STATE.prometheus = prom_config
    handlers.STATE.default_prometheus = prom_config.own
    handlers.STATE.status_refresh = max(0.0, args.status_refresh)

    @kopf.on.startup()
    async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, args)
        if handlers.STATE.scheduler is not None:
            return  # a retried startup: one scheduler, one set of hooks
        scheduler = Scheduler(
            handlers.STATE,
            prom=Prometheus(config=prom_config),
            logs=LogScanner(handlers.STATE),
        )
        scheduler.default_url = prom_config.own
        handlers.STATE.scheduler = scheduler
        tasks.append(asyncio.create_task(scheduler.run()))
        tasks.append(asyncio.create_task(memory.trim_forever()))
        if args.metrics_port:
            metrics.register(handlers.STATE)

    extra: dict[str, Any] = {}
    if args.health_port:
        extra["liveness_endpoint"] = f"http://0.0.0.0:{args.health_port}/healthz"
    namespaces = list(args.namespace)
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=not args.peering,
            peering_name=args.peering,
            priority=args.priority or None,
            **extra,
        )
    )
    return 0


def cli_main(args: argparse.Namespace) -> int:
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    return run(args)
