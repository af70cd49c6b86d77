{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "ftrollout.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, prefixed to the chart name unless it contains it already. */}}
{{- define "ftrollout.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ftrollout.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ftrollout.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ftrollout.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ftrollout.labels" -}}
helm.sh/chart: {{ include "ftrollout.chart" . }}
{{ include "ftrollout.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: ftrollout
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ftrollout.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ftrollout.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ftrollout.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "ftrollout.metricsServiceName" -}}
{{- printf "%s-metrics" (include "ftrollout.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Least-privilege rules for one scope (all namespaces, or one watched namespace). Only what the
operator calls; each rule names its user. Cluster-scoped extras live in rbac.yaml.
*/}}
{{- define "ftrollout.namespacedRules" -}}
# FreeThreadedRollouts: watched (list, watch). patch: kopf adds/removes the finalizer
# freethreaded.dev/finalizer and its freethreaded.dev/* progress annotations; the operator
# consumes the freethreaded.dev/action annotation and sets spec.paused.
- apiGroups: ["freethreaded.dev"]
  resources: ["freethreadedrollouts"]
  verbs: ["list", "watch", "patch"]
# Status: phase, step, replicas, GIL, races, analysis, preflight, conditions.
- apiGroups: ["freethreaded.dev"]
  resources: ["freethreadedrollouts/status"]
  verbs: ["patch"]
# The twin and the preflight Job are owned by their rollout with blockOwnerDeletion (foreground
# deletion of the rollout waits for them). Setting blockOwnerDeletion needs update on the owner's
# finalizers where the OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift and
# many hardened clusters). No object is ever updated through this subresource.
- apiGroups: ["freethreaded.dev"]
  resources: ["freethreadedrollouts/finalizers"]
  verbs: ["update"]
# Deployments: the target (standard track) and the twin <target>-ft are watched (readiness,
# template changes) and read on a cache miss; the twin is created, re-templated and deleted.
# delete cannot be limited by name (twin names follow their targets): the operator deletes only
# twins it owns.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Scaling both tracks: the only change ever made to the target Deployment.
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["patch"]
# Pods of both tracks: readiness, crash exit codes 139/134 (race budget), preflight results.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# GIL-fallback RuntimeWarning in free-threaded pods' logs and the preflight pod's log.
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# Events on FreeThreadedRollouts (RolloutStarted, StepReached, RolledBack, ...).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Dependency gate: the preflight Job that imports the gated modules in the free-threaded image.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "create", "delete"]
# Runtime probe: the ftrollout-probe ConfigMap mounted into free-threaded pods and the preflight
# Job, one per namespace. Read and refreshed (replaced) by name only: no other ConfigMap can be
# read or changed.
- apiGroups: [""]
  resources: ["configmaps"]
  resourceNames: ["ftrollout-probe"]
  verbs: ["get", "update"]
# create cannot be limited by name (RBAC sees no name on a create); it makes a new ConfigMap and
# cannot overwrite an existing one.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create"]
# Traffic routing (spec.trafficRouting.gatewayAPI): the stable Service is read (ports,
# selector); the free-threaded Service <target>-ft is created, kept in line and deleted. RBAC
# cannot limit these to owned Services (names follow targets): the operator patches and deletes
# only a Service whose controller is its rollout.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch", "delete"]
# The HTTPRoutes a rollout names: read, and their rules' backendRefs patched (with the
# resourceVersion read: an edit between the read and the write makes the write fail, and the
# next reconcile starts from it). Watched, so a route re-applied by someone else (GitOps) is
# split again at once; without the Gateway API CRDs the watch only waits for them.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
