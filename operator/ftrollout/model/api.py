"""The FreeThreadedRollout resource: pydantic models that are the single source of truth.

`crd.py` turns these models into the CustomResourceDefinition's OpenAPI schema; the operator
validates every object again with them at reconcile time (not every cluster evaluates CEL, and
objects may predate a CRD upgrade). Wire names are camelCase, Python names snake_case.

Cross-field rules are written twice on purpose, once as CEL (`x-kubernetes-validations`, enforced
by the apiserver at admission) and once as a pydantic validator, with the same message text.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from ftrollout.model.durations import DURATION_PATTERN, parse_duration
from ftrollout.model.quantity import QUANTITY_PATTERN, parse_quantity

GROUP = "freethreaded.dev"
VERSION = "v1alpha1"
KIND = "FreeThreadedRollout"
PLURAL = "freethreadedrollouts"
SINGULAR = "freethreadedrollout"
SHORT_NAMES = ["ftr"]
CATEGORIES = ["freethreaded"]

MAX_STEPS = 20
# The rollout's name is a label value on the twin, its pods and the preflight Job.
MAX_NAME_LENGTH = 63
MAX_METRICS = 20
MAX_MODULES = 50

# Messages shared by the CEL rules and the Python validators, so a user sees the same words
# whether the apiserver or the operator caught the mistake.
MSG_STEPS_INCREASING = "step weights must be strictly increasing"
MSG_STEPS_LAST_100 = "the last step must have weight 100"
MSG_METRIC_ONE_CHECK = "exactly one of compare or threshold must be set"
MSG_METRIC_NAMES_UNIQUE = "metric names must be unique"
MSG_COMPARE_EMPTY = "set maxIncreasePercent, maxDecreasePercent or both"
MSG_THRESHOLD_EMPTY = "set min, max or both"
MSG_THRESHOLD_ORDER = "min must not be greater than max"
MSG_TARGET_API_VERSION = (
    "must be apps/v1: only an apps/v1 Deployment can be the target (StatefulSets, Argo "
    "Rollouts and other workloads are not supported)"
)
MSG_TARGET_KIND = (
    "must be Deployment: only an apps/v1 Deployment can be the target (StatefulSets, Argo "
    "Rollouts and other workloads are not supported)"
)
MSG_NAME_TOO_LONG = (
    f"must be no more than {MAX_NAME_LENGTH} characters: the name is a label value on the "
    "twin Deployment and the preflight Job"
)
MSG_REQUEST_OVER_LIMIT = "a request must not be greater than its limit"


def _check_quantity(value: str) -> str:
    parse_quantity(value)
    return value


Quantity = Annotated[
    str,
    AfterValidator(_check_quantity),
    WithJsonSchema({"type": "string", "pattern": QUANTITY_PATTERN, "maxLength": 32}),
]
MSG_TARGET_IMMUTABLE = (
    "spec.targetRef cannot change once the rollout holds a target (status.target): the old "
    "target would be left split with its twin unmanaged; delete this rollout (it restores the "
    "target) and create another for the new Deployment"
)


def _cel(rule: str, message: str) -> JsonDict:
    return {"rule": rule, "message": message}


DURATION_MAX_LENGTH = 32  # a bounded string keeps the apiserver's CEL cost estimate small


def _bounded(low: str, high: str) -> tuple[AfterValidator, WithJsonSchema]:
    """A duration between `low` and `high` inclusive: a validator and the same rule in CEL
    (Go's `duration()` parses what DURATION_PATTERN admits), with one message for both."""
    lo, hi = parse_duration(low), parse_duration(high)
    message = f"must be between {low} and {high}"

    def check(value: str) -> str:
        if not lo <= parse_duration(value) <= hi:
            raise ValueError(message)
        return value

    rule = f"duration(self) >= duration('{low}') && duration(self) <= duration('{high}')"
    schema: JsonDict = {
        "type": "string",
        "pattern": DURATION_PATTERN,
        "maxLength": DURATION_MAX_LENGTH,
        "x-kubernetes-validations": [_cel(rule, message)],
    }
    return AfterValidator(check), WithJsonSchema(schema)


def _check_time(value: str) -> str:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an RFC 3339 time: {value!r}") from None
    return value


# A time in status that the planner computes with: a hand-edited "yesterday" fails the parse
# (StatusUnreadable, a fresh start from both tracks) instead of raising in every reconcile.
Timestamp = Annotated[
    str,
    AfterValidator(_check_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


# The bounds of every duration in the spec (README "Limits"): each keeps a typo (`0s`, `1000h`)
# from becoming a busy loop or a rollout that never moves.
PauseDuration = Annotated[str, *_bounded("0s", "168h")]
AnalysisInterval = Annotated[str, *_bounded("1s", "1h")]
QueryTimeout = Annotated[str, *_bounded("1s", "5m")]
RaceWindow = Annotated[str, *_bounded("1m", "24h")]
GateTimeout = Annotated[str, *_bounded("10s", "1h")]
ProgressDeadline = Annotated[str, *_bounded("10s", "24h")]
BakeDuration = Annotated[str, *_bounded("1m", "168h")]

# A point in time on the wire: RFC 3339 in UTC (`plan.types.rfc3339`, fractions when there are
# any); `format: date-time` lets the apiserver reject anything else and tools read it as a time.
# Not checked when read back: only the times the planner computes with are (`Timestamp`).
Time = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
MAX_FAILURE_LIMIT = 100
MAX_GIL_PODS = 1000
MAX_INCIDENTS = 1000
MAX_WARM_STANDARD = 1000
MSG_WARM_NEEDS_BAKE = (
    "standardReplicas needs a bake: standard replicas are only kept warm during the bake"
)


class Model(BaseModel):
    """Base: camelCase on the wire, unknown fields rejected (the CRD schema prunes them too)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


# ---------------------------------------------------------------------------------- spec


def _only(value: str, message: str) -> tuple[AfterValidator, WithJsonSchema]:
    """A string that may only be `value` (defaulted to it): a validator and the same rule in
    CEL, so the apiserver and the operator refuse anything else with one message."""

    def check(given: str) -> str:
        if given != value:
            raise ValueError(message)
        return given

    schema: JsonDict = {
        "type": "string",
        "maxLength": 253,
        "x-kubernetes-validations": [_cel(f"self == '{value}'", message)],
    }
    return AfterValidator(check), WithJsonSchema(schema)


class TargetRef(Model):
    api_version: Annotated[str, *_only("apps/v1", MSG_TARGET_API_VERSION)] = Field(
        default="apps/v1",
        description="API version of the target: apps/v1 (the only one supported).",
    )
    kind: Annotated[str, *_only("Deployment", MSG_TARGET_KIND)] = Field(
        default="Deployment",
        description="Kind of the target: Deployment (the only one supported).",
    )
    name: str = Field(
        min_length=1,
        max_length=253,
        description="Name of the apps/v1 Deployment in the same namespace: the standard track. "
        "The operator only ever changes its replicas.",
    )


class ProbeSpec(Model):
    enabled: bool = Field(
        default=False,
        description="Inject the ftrollout runtime probe into free-threaded pods (ConfigMap + "
        "PYTHONPATH sitecustomize, no application change). It exports python_gil_enabled and "
        "related metrics for the GIL-fallback guardrail.",
    )
    port: int = Field(
        default=9437,
        ge=1024,
        le=65535,
        description="Port on which the probe serves Prometheus metrics inside the pod, declared "
        "as the container port named ftr-probe. Default 9437 (not 9464, the OpenTelemetry "
        "Prometheus exporter's default).",
    )


class FreeThreadedSpec(Model):
    image: str = Field(
        min_length=1,
        description="Free-threaded image of the service (built on python3.13t/3.14t), e.g. "
        "registry.example/checkout:2.4.0-py3.14t.",
    )
    container: str | None = Field(
        default=None,
        min_length=1,
        description="Container whose image is swapped. Default: the pod template's first "
        "container.",
    )
    probe: ProbeSpec = Field(
        default_factory=ProbeSpec,
        description="Runtime probe injected into free-threaded pods.",
    )


class Pause(Model):
    duration: PauseDuration | None = Field(
        default=None,
        description="How long to hold this step once its replicas are Ready and analysis is "
        'healthy, as a Go duration ("30s", "5m", "1h"; 0s..168h). Omit (`pause: {}`; a null '
        "is dropped, the same) to wait for `kubectl ftr promote`.",
    )

    @property
    def seconds(self) -> float | None:
        return None if self.duration is None else parse_duration(self.duration)


class Step(Model):
    weight: int = Field(
        ge=1,
        le=100,
        description="Share of the target's replicas, in percent (1..100), run on the "
        "free-threaded track during this step: ft = ceil(N * weight / 100).",
    )
    # None (no `pause` field) and `Pause()` (`pause: {}`) mean different things, as in Argo
    # Rollouts: the field is optional rather than defaulted so the two stay apart.
    pause: Pause | None = Field(
        default=None,
        description="Hold after the step is reached. Omitted (or null, which the API server "
        "drops): no hold, the step advances once its replicas are Ready and analysis allows. "
        "{}: wait for `kubectl ftr promote`. {duration: D}: hold for D.",
    )

    @property
    def waits_for_promote(self) -> bool:
        return self.pause is not None and self.pause.duration is None

    @property
    def hold_seconds(self) -> float:
        """The timed hold (0 without a `pause` field); meaningless when `waits_for_promote`."""
        return 0.0 if self.pause is None else (self.pause.seconds or 0.0)


class PrometheusSpec(Model):
    address: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Prometheus base URL, e.g. http://prometheus.monitoring:9090. Default: the "
        "operator's --prometheus-url (Helm value prometheus.url). Any other address must be on "
        "the operator's allow-list (Helm value prometheus.allowedAddresses); no user@, query "
        "or fragment.",
    )
    timeout: QueryTimeout = Field(
        default="10s",
        description="Timeout of one query (1s..5m); a timeout makes the round Inconclusive.",
    )


Judge = Literal["Instant", "MannWhitney"]


class CompareCheck(Model):
    max_increase_percent: float | None = Field(
        default=None,
        ge=0,
        description="Fail when the free-threaded value exceeds the standard value by more than "
        "this percentage (latency, errors, memory).",
    )
    max_decrease_percent: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Fail when the free-threaded value is lower than the standard value by more "
        "than this percentage (throughput).",
    )
    judge: Judge = Field(
        default="Instant",
        description="Instant: one value per track, the percent change against the bounds. "
        "MannWhitney: samples over the step (a range query per track from the step being "
        "reached to now, one sample per analysis interval), the Mann-Whitney U test and the "
        "Hodges-Lehmann shift relative to the standard median; Failed when the shift is "
        "significant at `confidence` and its estimate is beyond a bound.",
    )
    confidence: float = Field(
        default=0.95,
        ge=0.5,
        le=0.999,
        description="MannWhitney: confidence level of the interval and the test (0.5..0.999).",
    )
    min_samples: int = Field(
        default=8,
        ge=3,
        le=1000,
        description="MannWhitney: fewer samples on either track make the round Inconclusive. "
        "Fewer than the test needs to reach `confidence` (4 at 0.95, 6 at 0.99, 8 at 0.999) "
        "keep rounds Inconclusive until the tracks have that many (`kubectl ftr lint` warns). "
        "A track holds at most 240 samples per round, so above 240 the judge needs 240 "
        "(`kubectl ftr lint` warns too).",
    )

    @model_validator(mode="after")
    def _one_bound(self) -> CompareCheck:
        if self.max_increase_percent is None and self.max_decrease_percent is None:
            raise ValueError(MSG_COMPARE_EMPTY)
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.maxIncreasePercent) || has(self.maxDecreasePercent)",
                    MSG_COMPARE_EMPTY,
                )
            ]
        }
    )


class ThresholdCheck(Model):
    min: float | None = Field(
        default=None, description="Fail when the free-threaded value is below this."
    )
    max: float | None = Field(
        default=None, description="Fail when the free-threaded value is above this."
    )

    @model_validator(mode="after")
    def _bounds(self) -> ThresholdCheck:
        if self.min is None and self.max is None:
            raise ValueError(MSG_THRESHOLD_EMPTY)
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(MSG_THRESHOLD_ORDER)
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("has(self.min) || has(self.max)", MSG_THRESHOLD_EMPTY),
                _cel(
                    "!has(self.min) || !has(self.max) || self.min <= self.max", MSG_THRESHOLD_ORDER
                ),
            ]
        }
    )


class Metric(Model):
    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Name of the metric (lowercase, digits, dashes); shown in status and events.",
    )
    query: str = Field(
        min_length=1,
        max_length=4096,
        description="PromQL returning one series. Variables: {{namespace}}, {{rollout}}, "
        "{{track}} (standard | free-threaded | baseline: the compare side is `baseline` when "
        "spec.analysis.baseline is on) and {{pods}} (escaped regex alternation of the track's "
        "pod names).",
    )
    compare: CompareCheck | None = Field(
        default=None,
        description="Relative check: the query runs for both tracks and the free-threaded value "
        "is compared with the standard one. Exclusive with threshold.",
    )
    threshold: ThresholdCheck | None = Field(
        default=None,
        description="Absolute check on the free-threaded track only. Exclusive with compare.",
    )

    @model_validator(mode="after")
    def _one_check(self) -> Metric:
        if (self.compare is None) == (self.threshold is None):
            raise ValueError(MSG_METRIC_ONE_CHECK)
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("has(self.compare) != has(self.threshold)", MSG_METRIC_ONE_CHECK)
            ]
        }
    )


class OnInconclusive(StrEnum):
    PAUSE = "Pause"
    ROLLBACK = "Rollback"


class BaselineSpec(Model):
    enabled: bool = Field(
        default=True,
        description="Run a fresh standard-image Deployment <target>-baseline of the twin's size "
        "at every step (created with the twin's first step, removed at promotion, rollback and "
        "deletion); compare metrics then measure the free-threaded pods against it (same age, "
        "same traffic share) instead of the long-running standard pods. Extra capacity: the "
        "standard track is sized as without it.",
    )


class Analysis(Model):
    baseline: BaselineSpec | None = Field(
        default=None,
        description="Fresh baseline for compare metrics: `baseline: {}` turns it on. The "
        "query variables {{track}} and {{pods}} of the compare side then name `baseline` and "
        "the baseline's pods.",
    )
    prometheus: PrometheusSpec = Field(
        default_factory=PrometheusSpec, description="Where and how to query Prometheus."
    )
    interval: AnalysisInterval = Field(
        default="1m", description="Time between analysis rounds (1s..1h)."
    )
    failure_limit: int = Field(
        default=2,
        ge=0,
        le=MAX_FAILURE_LIMIT,
        description="Failed rounds tolerated per revision (0..100); one more rolls back "
        "(AnalysisFailed).",
    )
    on_inconclusive: OnInconclusive = Field(
        default=OnInconclusive.PAUSE,
        description="What missing data (no series, NaN, Prometheus down) does: Pause holds the "
        "step and resumes when data returns; Rollback rolls back. It never promotes.",
    )
    metrics: list[Metric] = Field(
        default_factory=list,
        max_length=MAX_METRICS,
        description="SLO metrics checked every interval.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.all(m, self.filter(n, n.name == m.name).size() == 1)",
                    MSG_METRIC_NAMES_UNIQUE,
                )
            ]
        },
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Analysis:
        names = [m.name for m in self.metrics]
        if len(names) != len(set(names)):
            raise ValueError(MSG_METRIC_NAMES_UNIQUE)
        return self

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    @property
    def baseline_enabled(self) -> bool:
        return self.baseline is not None and self.baseline.enabled


class GuardAction(StrEnum):
    ROLLBACK = "Rollback"
    PAUSE = "Pause"


class GilFallbackGuard(Model):
    max_pods: int = Field(
        default=0,
        ge=0,
        le=MAX_GIL_PODS,
        description="Free-threaded pods allowed to run with the GIL on (or on a build that is "
        "not free-threaded) before the action is taken (0..1000).",
    )
    action: GuardAction = Field(
        default=GuardAction.ROLLBACK, description="Rollback or Pause when maxPods is exceeded."
    )


class RaceBudgetGuard(Model):
    max_incidents: int = Field(
        default=3,
        ge=0,
        le=MAX_INCIDENTS,
        description="Crashes (exit 139 SIGSEGV / 134 SIGABRT) and probe-reported incidents "
        "of the free-threaded track tolerated within the window (0..1000).",
    )
    window: RaceWindow = Field(default="1h", description="Sliding window of the budget (1m..24h).")
    action: GuardAction = Field(
        default=GuardAction.ROLLBACK, description="Rollback or Pause when the budget is exceeded."
    )

    @property
    def window_seconds(self) -> float:
        return parse_duration(self.window)


class GateAction(StrEnum):
    BLOCK = "Block"
    WARN = "Warn"


ModuleName = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]


class ResourceAmounts(Model):
    cpu: Quantity | None = Field(default=None, description='CPU, e.g. "100m" or "1" (quoted).')
    memory: Quantity | None = Field(default=None, description='Memory, e.g. "256Mi" or "1Gi".')


def _not_over_limit(resource: str) -> str:
    r, li = f"self.requests.{resource}", f"self.limits.{resource}"
    return (
        f"!has(self.requests) || !has(self.limits) || !has({r}) || !has({li}) || "
        f"quantity({r}).compareTo(quantity({li})) <= 0"
    )


class PreflightResources(Model):
    """Requests and limits of the preflight container, as in a pod spec (cpu and memory)."""

    requests: ResourceAmounts | None = Field(default=None, description="Requests.")
    limits: ResourceAmounts | None = Field(default=None, description="Limits.")

    @model_validator(mode="after")
    def _requests_within_limits(self) -> PreflightResources:
        if self.requests is None or self.limits is None:
            return self
        for name in ("cpu", "memory"):
            request, limit = getattr(self.requests, name), getattr(self.limits, name)
            over = request is not None and limit is not None
            if over and parse_quantity(request) > parse_quantity(limit):
                raise ValueError(f"{name}: {MSG_REQUEST_OVER_LIMIT}")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(_not_over_limit("cpu"), f"cpu: {MSG_REQUEST_OVER_LIMIT}"),
                _cel(_not_over_limit("memory"), f"memory: {MSG_REQUEST_OVER_LIMIT}"),
            ]
        }
    )


def _default_preflight_resources() -> PreflightResources:
    # Enough to import a scientific stack; a limit on both so that namespaces whose
    # ResourceQuota or LimitRange demands limits admit the Job.
    return PreflightResources(
        requests=ResourceAmounts(cpu="100m", memory="256Mi"),
        limits=ResourceAmounts(cpu="1", memory="1Gi"),
    )


class DependencyGate(Model):
    modules: list[ModuleName] = Field(
        default_factory=list,
        max_length=MAX_MODULES,
        description="Modules the preflight Job imports in the free-threaded image before "
        "step 0; each must import and keep the GIL disabled.",
    )
    action: GateAction = Field(
        default=GateAction.BLOCK,
        description="Block stops the rollout on a regression; Warn records it and goes on.",
    )
    timeout: GateTimeout = Field(
        default="5m", description="How long the preflight Job may take before it fails (10s..1h)."
    )
    resources: PreflightResources = Field(
        default_factory=_default_preflight_resources,
        description="Requests and limits of the preflight container. Default: requests 100m "
        "CPU and 256Mi memory, limits 1 CPU and 1Gi. When set, it replaces the default "
        "as a whole (an amount left out is not requested or limited).",
    )


class Guardrails(Model):
    gil_fallback: GilFallbackGuard = Field(
        default_factory=GilFallbackGuard,
        description="Mode integrity: free-threaded pods must really run without the GIL.",
    )
    race_budget: RaceBudgetGuard = Field(
        default_factory=RaceBudgetGuard,
        description="Crash budget of the free-threaded track.",
    )
    dependency_gate: DependencyGate | None = Field(
        default=None,
        description="Preflight import check of the free-threaded image (the version contract).",
    )


class PostPromotion(Model):
    bake: BakeDuration | None = Field(
        default=None,
        description="How long after promotion the guardrails keep their action (1m..168h): a GIL "
        "fallback or a race budget breach in this time rolls back (standard back to N first) "
        "when the guardrail's action is Rollback. After the bake (and without one, from "
        "promotion) a breach only alerts: the PostPromotion condition, a Warning Event and "
        "the ftrollout_rollout_gil_enabled_pods metric. While baking the Ready condition is "
        "Unknown (reason Baking) and `kubectl ftr status --wait` keeps waiting. Omit: no bake.",
    )
    standard_replicas: int = Field(
        default=0,
        ge=0,
        le=MAX_WARM_STANDARD,
        description="Standard replicas kept running during the last step and the bake, on top "
        "of the N free-threaded ones (0..1000): a rollback during the bake starts from warm "
        "pods, and analysis still compares both tracks. Released when the bake ends.",
    )

    @model_validator(mode="after")
    def _warm_needs_bake(self) -> PostPromotion:
        if self.standard_replicas and self.bake is None:
            raise ValueError(MSG_WARM_NEEDS_BAKE)
        return self

    @property
    def bake_seconds(self) -> float | None:
        return None if self.bake is None else parse_duration(self.bake)

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.standardReplicas) || self.standardReplicas == 0 || has(self.bake)",
                    MSG_WARM_NEEDS_BAKE,
                )
            ]
        }
    )


# ------------------------------------------------------------------ traffic routing

MAX_ROUTES = 8
MAX_MATCHES = 8
MAX_HEADERS = 16
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$"
MSG_ROUTES_UNIQUE = "HTTPRoute names must be unique"
MSG_HEADERS_UNIQUE = "header names must be unique within a match (case-insensitive)"
MSG_PATH_SLASH = "an Exact or PathPrefix path must start with /"
MSG_STABLE_IS_FT = (
    "must not be the free-threaded Service the operator creates (<targetRef.name>-ft)"
)


class PathMatch(Model):
    """Gateway API HTTPPathMatch."""

    type: Literal["Exact", "PathPrefix", "RegularExpression"] = Field(
        default="PathPrefix", description="Exact, PathPrefix or RegularExpression."
    )
    value: str = Field(default="/", min_length=1, max_length=1024, description="The path.")

    @model_validator(mode="after")
    def _slash(self) -> PathMatch:
        if self.type != "RegularExpression" and not self.value.startswith("/"):
            raise ValueError(MSG_PATH_SLASH)
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.type == 'RegularExpression' || self.value.startsWith('/')",
                    MSG_PATH_SLASH,
                )
            ]
        }
    )


class HeaderMatch(Model):
    """Gateway API HTTPHeaderMatch."""

    type: Literal["Exact", "RegularExpression"] = Field(
        default="Exact", description="Exact or RegularExpression."
    )
    name: str = Field(
        min_length=1, max_length=256, pattern=HEADER_NAME, description="HTTP header name."
    )
    value: str = Field(min_length=1, max_length=4096, description="Value to match.")


HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


class RouteMatch(Model):
    """A subset of Gateway API HTTPRouteMatch: path, method, headers (all must match)."""

    path: PathMatch | None = Field(default=None, description="Path to match.")
    method: HttpMethod | None = Field(default=None, description="HTTP method to match.")
    headers: list[HeaderMatch] = Field(
        default_factory=list,
        max_length=MAX_HEADERS,
        description="Headers that must all match.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.all(h, self.filter(i, i.name.lowerAscii() == h.name.lowerAscii())"
                    ".size() == 1)",
                    MSG_HEADERS_UNIQUE,
                )
            ]
        },
    )

    @model_validator(mode="after")
    def _unique_headers(self) -> RouteMatch:
        names = [h.name.lower() for h in self.headers]
        if len(names) != len(set(names)):
            raise ValueError(MSG_HEADERS_UNIQUE)
        return self


class RouteRef(Model):
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Name of an HTTPRoute (gateway.networking.k8s.io/v1) in this namespace.",
    )


class GatewayAPIRouting(Model):
    http_routes: list[RouteRef] = Field(
        alias="httpRoutes",
        min_length=1,
        max_length=MAX_ROUTES,
        description="HTTPRoutes whose rules send traffic to the stable Service (1..8).",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.all(r, self.filter(s, s.name == r.name).size() == 1)",
                    MSG_ROUTES_UNIQUE,
                )
            ]
        },
    )
    stable_service: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
        description="The user's Service that the routes send to and that selects only the "
        "standard pods. The operator creates <targetRef.name>-ft with the same ports, "
        "selecting only the free-threaded pods.",
    )
    matches: list[RouteMatch] = Field(
        default_factory=list,
        max_length=MAX_MATCHES,
        description="Optional. Empty: every rule that routes to the stable Service is split "
        "(free-threaded weight w, stable 100 - w). Set: the operator adds one rule, first, "
        "with these matches (Gateway API HTTPRouteMatch: path, method, headers) that splits "
        "only the matching requests; every other request stays on the standard pods.",
    )

    @model_validator(mode="after")
    def _unique_routes(self) -> GatewayAPIRouting:
        names = [r.name for r in self.http_routes]
        if len(names) != len(set(names)):
            raise ValueError(MSG_ROUTES_UNIQUE)
        return self


class TrafficRouting(Model):
    gateway_api: GatewayAPIRouting | None = Field(
        default=None,
        alias="gatewayAPI",
        description="Split traffic by HTTPRoute backend weights (Gateway API).",
    )


def _steps_rules() -> dict[str, Any]:
    return {
        "x-kubernetes-validations": [
            _cel(
                "self.map(s, s.weight).isSorted() && "
                "self.all(s, self.filter(t, t.weight == s.weight).size() == 1)",
                MSG_STEPS_INCREASING,
            ),
            _cel("self[size(self) - 1].weight == 100", MSG_STEPS_LAST_100),
        ]
    }


class RolloutSpec(Model):
    target_ref: TargetRef = Field(description="The Deployment to roll (the standard track).")
    free_threaded: FreeThreadedSpec = Field(description="The free-threaded track.")
    steps: list[Step] = Field(
        min_length=1,
        max_length=MAX_STEPS,
        description="Weighted steps, strictly increasing, the last at 100.",
        json_schema_extra=_steps_rules(),
    )
    analysis: Analysis | None = Field(
        default=None, description="Prometheus SLO analysis; without it steps advance on time."
    )
    guardrails: Guardrails = Field(
        default_factory=Guardrails, description="GIL fallback, race budget, dependency gate."
    )
    paused: bool = Field(
        default=False, description="Hold the rollout at its current step (no scaling)."
    )
    replicas: int | None = Field(
        default=None,
        ge=0,
        description="Total replicas of both tracks, split per step. Set it (or let an HPA "
        "scale the rollout through its scale subresource) to autoscale a target: the total "
        "then comes from here, not from the target Deployment, whose replicas the operator "
        "writes. Unset: the target's replicas when the rollout began.",
    )
    progress_deadline: ProgressDeadline = Field(
        default="10m",
        description="How long each step may take, from when it starts scaling, until all its "
        "free-threaded pods are Ready at once (10s..24h). Past it the rollout rolls back "
        "(ProgressDeadline), quoting why the pods are not Ready (CrashLoopBackOff with the last "
        "termination message, ImagePullBackOff...). Pods that flap Ready do not restart the "
        "clock; spec.paused stops it and a resume starts it again.",
    )

    post_promotion: PostPromotion = Field(
        default_factory=PostPromotion,
        description="After promotion: a bake during which guardrails still roll back, and "
        "standard replicas kept warm during it.",
    )
    traffic_routing: TrafficRouting | None = Field(
        default=None,
        description="Route traffic by weight with Gateway API instead of by replica share: "
        "exact weights below 1/N and, with matches, only chosen requests free-threaded.",
    )

    @property
    def progress_deadline_seconds(self) -> float:
        return parse_duration(self.progress_deadline)

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.trafficRouting) || !has(self.trafficRouting.gatewayAPI) || "
                    "self.trafficRouting.gatewayAPI.stableService != self.targetRef.name + '-ft'",
                    f"trafficRouting.gatewayAPI.stableService: {MSG_STABLE_IS_FT}",
                )
            ]
        }
    )

    @model_validator(mode="after")
    def _stable_not_ft(self) -> RolloutSpec:
        routing = self.traffic_routing.gateway_api if self.traffic_routing else None
        if routing is not None and routing.stable_service == f"{self.target_ref.name}-ft":
            raise ValueError(f"trafficRouting.gatewayAPI.stableService: {MSG_STABLE_IS_FT}")
        return self

    @model_validator(mode="after")
    def _steps(self) -> RolloutSpec:
        weights = [s.weight for s in self.steps]
        if any(b <= a for a, b in pairwise(weights)):
            raise ValueError(MSG_STEPS_INCREASING)
        if weights[-1] != 100:
            raise ValueError(MSG_STEPS_LAST_100)
        return self


# -------------------------------------------------------------------------------- status


class Phase(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class RollbackReason(StrEnum):
    GIL_FALLBACK = "GILFallback"
    RACE_BUDGET = "RaceBudget"
    ANALYSIS_FAILED = "AnalysisFailed"
    ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
    DEPENDENCY_GATE = "DependencyGate"
    PROGRESS_DEADLINE = "ProgressDeadline"
    MANUAL = "Manual"


class Condition(Model):
    type: str = Field(description="Condition type, e.g. Available, ModeIntegrity.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason of the last transition.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: Time = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, description="metadata.generation the condition was computed for."
    )


class ReplicaStatus(Model):
    target: int = Field(
        default=0, ge=0, description="N: the target's replicas when the revision began."
    )
    standard: int = Field(default=0, ge=0, description="Desired replicas of the standard track.")
    free_threaded: int = Field(
        default=0, ge=0, description="Desired replicas of the free-threaded twin."
    )
    ready: int = Field(default=0, ge=0, description="Ready replicas over both tracks.")
    standard_ready: int = Field(
        default=0, ge=0, description="Ready replicas of the standard track."
    )
    free_threaded_ready: int = Field(default=0, ge=0, description="Ready free-threaded replicas.")
    summary: str = Field(
        default="-", description="Ready replicas over N, e.g. 10/10, for `kubectl get`."
    )


class GilStatus(Model):
    pods: int = Field(default=0, ge=0, description="Free-threaded pods observed.")
    disabled: int = Field(default=0, ge=0, description="Pods running without the GIL.")
    enabled: int = Field(default=0, ge=0, description="Pods with the GIL on (fallback).")
    unknown: int = Field(default=0, ge=0, description="Pods whose GIL state is not known yet.")
    fallback_modules: list[str] = Field(
        default_factory=list, description="Modules that re-enabled the GIL at import."
    )
    summary: str = Field(default="-", description="Short form for `kubectl get`: off, ON(n), ?.")


class Incident(Model):
    pod: str = Field(description="Free-threaded pod that crashed or reported the incident.")
    exit_code: int | None = Field(
        default=None, description="Container exit code (139 SIGSEGV, 134 SIGABRT)."
    )
    source: Literal["Termination", "Probe"] = Field(
        default="Termination", description="Pod status termination or probe counter."
    )
    time: Time = Field(description="When it happened (RFC 3339).")


class ProbeCounter(Model):
    pod: str = Field(description="Free-threaded pod whose probe reports incidents.")
    count: int = Field(
        ge=0,
        description="Highest python_freethreading_incidents_total seen for the pod: only a "
        "value above it is a new incident (a lower one is a lagging Prometheus replica or a "
        "restarted process).",
    )
    time: Timestamp = Field(description="When the count last rose (RFC 3339).")


class RaceStatus(Model):
    incidents: int = Field(
        default=0, ge=0, description="Free-threaded incidents within the window."
    )
    budget: int = Field(default=0, ge=0, description="guardrails.raceBudget.maxIncidents.")
    window: str = Field(default="", description="guardrails.raceBudget.window.")
    summary: str = Field(default="-", description="incidents/budget for `kubectl get`.")
    recent: list[Incident] = Field(
        default_factory=list,
        description="Incidents inside the window, oldest first (kept so the window survives "
        "an operator restart).",
    )
    since: Timestamp | None = Field(
        default=None,
        description="When step 1 of this attempt started: earlier incidents belong to an "
        "earlier attempt or revision and are not counted.",
    )
    probe_counters: list[ProbeCounter] = Field(
        default_factory=list,
        description="Per free-threaded pod, the probe's incident counter already counted (kept "
        "so an operator restart does not count it again).",
    )


class JudgeStatistics(Model):
    free_threaded_samples: int = Field(description="Samples of the free-threaded track used.")
    standard_samples: int = Field(description="Samples of the standard track used.")
    effect_percent: float | None = Field(
        default=None,
        description="Hodges-Lehmann shift (median of pairwise differences) relative to the "
        "standard median, in percent; unset when too few samples or the standard median is 0.",
    )
    low_percent: float | None = Field(
        default=None, description="Lower end of the shift's confidence interval (%)."
    )
    high_percent: float | None = Field(
        default=None, description="Upper end of the shift's confidence interval (%)."
    )
    p_value: float | None = Field(default=None, description="Two-sided Mann-Whitney p-value.")
    confidence: float = Field(description="Confidence level of the interval.")


class MetricResult(Model):
    name: str = Field(description="Metric name.")
    phase: Literal["Successful", "Failed", "Inconclusive"] = Field(
        description="Result of the latest round."
    )
    free_threaded: float | None = Field(default=None, description="Free-threaded value.")
    standard: float | None = Field(default=None, description="Standard value (compare only).")
    statistics: JudgeStatistics | None = Field(
        default=None,
        description="MannWhitney judge only: the numbers behind the result (then freeThreaded "
        "and standard are the tracks' medians).",
    )
    message: str = Field(default="", description="Why the round has this result.")
    time: Time = Field(description="When the round ran (RFC 3339).")


class StandardValue(Model):
    name: str = Field(description="Metric name (a compare metric).")
    value: float = Field(description="Its last value measured on the standard track.")


class ComparedValue(Model):
    name: str = Field(description="Metric name (a compare metric).")
    free_threaded: float = Field(description="Free-threaded value.")
    standard: float = Field(description="Standard value, measured on running standard pods.")


class Comparison(Model):
    time: Time = Field(description="When the round that measured both tracks ran (RFC 3339).")
    weight: int = Field(description="Free-threaded weight (%) when it was measured.")
    bake: bool = Field(
        default=False,
        description="Measured during the post-promotion bake, against the standard replicas "
        "kept warm.",
    )
    metrics: list[ComparedValue] = Field(
        default_factory=list, description="Both tracks' values of every compare metric."
    )


class AnalysisStatus(Model):
    failed_rounds: int = Field(default=0, ge=0, description="Failed rounds in this revision.")
    inconclusive_rounds: int = Field(default=0, ge=0, description="Inconclusive rounds in a row.")
    last_round: Timestamp | None = Field(default=None, description="Time of the latest round.")
    metrics: list[MetricResult] = Field(
        default_factory=list, description="Latest result of every metric, with values."
    )
    last_standard: list[StandardValue] = Field(
        default_factory=list,
        description="Per compare metric, the last standard value of this revision: at 100 % "
        "there are no standard pods left and the free-threaded value is compared with it.",
    )
    last_comparison: Comparison | None = Field(
        default=None,
        description="The last round of this revision that measured running pods of both "
        "tracks (a step below 100 %, or the bake with standard replicas kept warm): what "
        "`kubectl ftr report` shows once no standard pod is left.",
    )


class ModuleReport(Model):
    name: str = Field(description="Module name.")
    imported: bool = Field(description="Whether the import succeeded.")
    version: str | None = Field(default=None, description="Distribution version.")
    gil_enabled: bool | None = Field(default=None, description="GIL state after the import.")
    error: str | None = Field(default=None, description="Import error, if any.")


class PreflightStatus(Model):
    phase: Literal["Pending", "Running", "Passed", "Failed", "Warned"] = Field(
        description="State of the dependency gate."
    )
    image: str = Field(default="", description="Image that was checked.")
    checked: str | None = Field(
        default=None,
        description="Hash of the image and the module list this verdict is for: another image "
        "or another module list is checked again.",
    )
    attempt: int = Field(
        default=0, ge=0, description="Preflight runs requested by `retry` for the same check."
    )
    image_digest: str | None = Field(
        default=None, description="Image ID (digest) the preflight container ran, when known."
    )
    free_threading_build: bool | None = Field(
        default=None, description="Py_GIL_DISABLED of the image's interpreter."
    )
    python_version: str | None = Field(default=None, description="`python -VV` of the image.")
    modules: list[ModuleReport] = Field(default_factory=list, description="Per-module result.")
    message: str = Field(default="", description="Summary.")
    time: Time | None = Field(default=None, description="When the result was recorded.")


class RollbackStatus(Model):
    reason: RollbackReason = Field(description="Why the rollout rolled back.")
    message: str = Field(default="", description="The numbers that caused it.")
    time: Timestamp = Field(description="When (RFC 3339).")


class ActionRecord(Model):
    value: str = Field(
        description="The freethreaded.dev/action value applied (promote, or promote@<id> as "
        "`kubectl ftr` writes it)."
    )
    written_at: Time | None = Field(
        default=None,
        description="When the annotation was written (its managedFields time), if known: a "
        "plain value written again later is a new request.",
    )
    time: Time = Field(description="When the operator applied it (RFC 3339).")


RECENT_ACTIONS = 5  # requests kept in status.recentActions


class ActionOutcome(Model):
    value: str = Field(
        description="The freethreaded.dev/action request (promote, or promote@<id> as "
        "`kubectl ftr` writes it)."
    )
    written_at: Time | None = Field(
        default=None, description="When the annotation was written (managedFields), if known."
    )
    outcome: Literal["Applied", "Ignored"] = Field(
        description="Applied, or Ignored (not possible now, unknown verb, invalid spec)."
    )
    message: str = Field(default="", description="What the operator did, or why not.")
    time: Time = Field(description="When the operator read it (RFC 3339).")


class RuleRecord(Model):
    rule: str = Field(
        description="Fingerprint of the rule without its backendRefs (which rule it is)."
    )
    added: bool = Field(
        default=False, description="The operator added this rule (spec matches): removed on undo."
    )
    backend_refs: str = Field(
        default="",
        description="The user's backendRefs of a changed rule, as JSON: restored exactly on undo.",
    )


class RouteRecord(Model):
    name: str = Field(description="HTTPRoute name.")
    rules: list[RuleRecord] = Field(
        default_factory=list, description="Rules the operator changed or added, in route order."
    )


class TrafficRoutingStatus(Model):
    weight: int = Field(
        default=0, description="Free-threaded weight last set on the routes (%); 0: restored."
    )
    service: str = Field(default="", description="The free-threaded Service (<target>-ft).")
    routes: list[RouteRecord] = Field(
        default_factory=list,
        description="What the operator changed per HTTPRoute, so that every edit is idempotent "
        "and undone exactly.",
    )


class RolloutStatus(Model):
    observed_generation: int | None = Field(
        default=None, description="metadata.generation last acted on."
    )
    revision: str | None = Field(
        default=None, description="Hash of the target's pod template and spec.freeThreaded."
    )
    target: str | None = Field(
        default=None,
        max_length=253,
        description="The Deployment this rollout holds (its replicas may be split): "
        "spec.targetRef.name may not move away from it.",
    )
    phase: Phase | None = Field(
        default=None, description="Pending, Progressing, Paused, Promoted, RolledBack or Failed."
    )
    step_index: int | None = Field(
        default=None, ge=0, description="Index of the current step in spec.steps, from 0."
    )
    current_step: int = Field(
        default=0,
        ge=0,
        description="The current step counted from 1, as messages and `kubectl ftr` count "
        "(stepIndex + 1); 0 before step 1.",
    )
    weight: int | None = Field(
        default=None, ge=0, le=100, description="Current free-threaded weight (%)."
    )
    step_started_at: Timestamp | None = Field(
        default=None, description="When the current step's replicas became Ready."
    )
    step_progress_since: str | None = Field(
        default=None,
        description="When the current step started scaling, while it is not reached yet: "
        "spec.progressDeadline counts from it.",
    )
    replicas: ReplicaStatus = Field(default_factory=ReplicaStatus, description="Replica counts.")
    selector: str | None = Field(
        default=None,
        description="Label selector of both tracks' pods (the target's spec.selector), for "
        "the scale subresource: an HPA on the rollout averages over all its pods.",
    )
    gil: GilStatus = Field(
        default_factory=GilStatus, description="GIL state of free-threaded pods."
    )
    races: RaceStatus = Field(default_factory=RaceStatus, description="Race budget usage.")
    analysis: AnalysisStatus = Field(
        default_factory=AnalysisStatus, description="Latest analysis results."
    )
    preflight: PreflightStatus | None = Field(
        default=None, description="Dependency gate result (the version contract)."
    )
    rollback: RollbackStatus | None = Field(default=None, description="Set after a rollback.")
    promoted_at: Timestamp | None = Field(
        default=None, description="When this revision was promoted (all replicas free-threaded)."
    )
    bake_until: Time | None = Field(
        default=None,
        description="End of the post-promotion bake (promotedAt + spec.postPromotion.bake): "
        "until then guardrails keep their action; afterwards they alert.",
    )
    traffic_routing: TrafficRoutingStatus | None = Field(
        default=None, description="Gateway API routes changed by the operator."
    )
    last_action: ActionRecord | None = Field(
        default=None,
        description="The action request applied last, kept while its annotation is still "
        "there: the same request seen again (its removal failed, the operator restarted) is "
        "not applied twice.",
    )
    recent_actions: list[ActionOutcome] = Field(
        default_factory=list,
        description=f"The last {RECENT_ACTIONS} action requests read, oldest first, with "
        "their outcome: written by the operator only (status subresource), it is what "
        "`kubectl ftr <action> --wait` decides from, and a request with an id found here is "
        "never applied again.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Available, Progressing, ModeIntegrity, RaceBudget, AnalysisHealthy.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    message: str = Field(default="", description="What the operator is doing and why.")


class FreeThreadedRollout(Model):
    """The whole object as the operator reads it (metadata kept loose)."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = Field(default=f"{GROUP}/{VERSION}", description="API version.")
    kind: str = Field(default=KIND, description="Kind.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Object metadata.")
    spec: RolloutSpec = Field(description="Desired rollout.")
    status: RolloutStatus = Field(default_factory=RolloutStatus, description="Observed state.")


# ------------------------------------------------------------------------------ helpers


class SpecError(ValueError):
    """A spec that the operator cannot act on; `field` is the dotted wire path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _wire_path(loc: tuple[int | str, ...], root: str) -> str:
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}"
    return out


def root_rules() -> list[JsonDict]:
    """CEL rules at the root of the schema, the only place where metadata.name is visible."""
    return [
        _cel(f"self.metadata.name.size() <= {MAX_NAME_LENGTH}", MSG_NAME_TOO_LONG),
        # At the root, where status is visible: a targetRef may still be corrected while the
        # rollout has touched nothing (a typo: target not found), never once it holds one.
        _cel(
            "!has(oldSelf.status) || !has(oldSelf.status.target) || "
            "self.spec.targetRef.name == oldSelf.status.target",
            MSG_TARGET_IMMUTABLE,
        ),
    ]


def check_name(name: str) -> None:
    """The root CEL rule again: an object admitted under an older CRD may break it."""
    if len(name) > MAX_NAME_LENGTH:
        raise SpecError("metadata.name", MSG_NAME_TOO_LONG)


def drop_nulls(raw: Any, path: str = "spec") -> tuple[Any, list[str]]:
    """`raw` without its null-valued fields, and their wire paths (`spec.steps[0].pause`);
    SpecError when it contains itself.

    The CRD has no nullable field, so the API server drops such a null before validation (a
    null item of a list stays, and is refused): the operator only ever sees the field left
    out. Reading a null the same way keeps `kubectl ftr lint` and the operator in step with
    the cluster; lint names what was dropped, since `pause:` left empty reads as no hold."""
    dropped: list[str] = []
    within: set[int] = set()  # the mappings and lists being walked (their ids)

    def walk(value: Any, where: str) -> Any:
        if not isinstance(value, dict | list):
            return value
        if id(value) in within:
            # A YAML anchor used inside itself (`spec: &s ... pause: *s`): never a finite
            # object, so no API server would take it either.
            raise SpecError(where, "contains itself (a YAML anchor used inside its own value)")
        within.add(id(value))
        try:
            if isinstance(value, list):
                return [walk(item, f"{where}[{i}]") for i, item in enumerate(value)]
            out = {}
            for key, item in value.items():
                if item is None:
                    dropped.append(f"{where}.{key}")
                else:
                    out[key] = walk(item, f"{where}.{key}")
            return out
        finally:
            within.discard(id(value))

    return walk(raw, path), dropped


def parse_spec(raw: Any) -> RolloutSpec:
    """Validate a spec dict from the apiserver; raise SpecError naming the first bad field.
    A null field reads as the field left out, as the API server reads it (`drop_nulls`)."""
    raw = drop_nulls(raw)[0]
    try:
        return RolloutSpec.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise SpecError(_wire_path(tuple(err["loc"]), "spec"), msg) from None


def parse_status(raw: Any) -> RolloutStatus:
    """Status written by this operator; anything unreadable starts afresh (see the next)."""
    return parse_status_checked(raw)[0]


def parse_status_checked(raw: Any) -> tuple[RolloutStatus, str | None]:
    """Status and, when it could not be read, why: the planner reports it instead of the
    reset going unnoticed (a newer operator's field, a hand edit)."""
    try:
        return RolloutStatus.model_validate(raw or {}), None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'status'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        return RolloutStatus(), problems


def dump(model: BaseModel) -> dict[str, Any]:
    """Wire form: camelCase, no nulls (the CRD schema has no nullable fields)."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
