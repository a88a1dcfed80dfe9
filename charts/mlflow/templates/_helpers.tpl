{{/* Names ------------------------------------------------------------------------------- */}}

{{- define "mlflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object-name prefix: <release>-mlflow, or the release name alone when it contains the chart name. */}}
{{- define "mlflow.fullname" -}}
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

{{/* Labels: call with (dict "root" $ "component" "server"). */}}
{{- define "mlflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mlflow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mlflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: dagma
{{- end }}

{{/* Labels of a pod template: the object's labels plus podLabels. */}}
{{- define "mlflow.podLabels" -}}
{{ include "mlflow.labels" . }}
{{- with .root.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "mlflow.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "mlflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "mlflow.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{/* Storage ------------------------------------------------------------------------------ */}}

{{/* Where the chart's volume is mounted; the SQLite file and the artifacts live under it. */}}
{{- define "mlflow.dataDir" -}}/var/lib/mlflow{{- end }}

{{- define "mlflow.usesVolume" -}}
{{- if or (eq .Values.backendStore.type "sqlite") (eq .Values.artifacts.type "volume") }}true{{ end }}
{{- end }}

{{/* A ReadWriteOnce volume attaches to one node: one replica, Recreate, migration Job beside it. */}}
{{- define "mlflow.usesRwoVolume" -}}
{{- if and (include "mlflow.usesVolume" .) (ne .Values.persistence.accessMode "ReadWriteMany") }}true{{ end }}
{{- end }}

{{- define "mlflow.claimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-data" (include "mlflow.fullname" .)) }}
{{- end }}

{{- define "mlflow.artifactsDestination" -}}
{{- if eq .Values.artifacts.type "s3" }}
{{- .Values.artifacts.s3.destination }}
{{- else }}
{{- include "mlflow.dataDir" . }}/artifacts
{{- end }}
{{- end }}

{{/* MLFLOW_BACKEND_STORE_URI: a file on the volume, or the URI from the existing Secret. */}}
{{- define "mlflow.backendStoreEnv" -}}
- name: MLFLOW_BACKEND_STORE_URI
{{- if eq .Values.backendStore.type "postgresql" }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.backendStore.postgresql.existingSecret }}
      key: {{ .Values.backendStore.postgresql.uriKey }}
{{- else }}
  value: sqlite:///{{ include "mlflow.dataDir" . }}/mlflow.db
{{- end }}
{{- end }}

{{/* The basic-auth user database: beside mlflow.db, or in the same PostgreSQL database
     (its tables and its alembic_version_auth table do not clash with the tracking ones). */}}
{{- define "mlflow.authDatabaseEnv" -}}
- name: MLFLOW_AUTH_DATABASE_URI
{{- if eq .Values.backendStore.type "postgresql" }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.backendStore.postgresql.existingSecret }}
      key: {{ .Values.backendStore.postgresql.uriKey }}
{{- else }}
  value: sqlite:///{{ include "mlflow.dataDir" . }}/basic_auth.db
{{- end }}
{{- end }}

{{/* Environment every container of the chart gets: no telemetry, a writable HOME. */}}
{{- define "mlflow.commonEnv" -}}
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
- name: DO_NOT_TRACK
  value: "true"
- name: HOME
  value: /tmp
- name: PYTHONUNBUFFERED
  value: "1"
{{- end }}

{{/* Allowed Host headers -------------------------------------------------------------------
     Setting --allowed-hosts replaces MLflow's defaults (localhost and private IPs), so the
     list names every way a client reaches the server: the Service's short name, name.namespace,
     name.namespace.svc and the FQDN (each bare and with any port), localhost and 127.0.0.1
     for kubectl port-forward, the ingress hosts, and server.extraAllowedHosts. /health is
     exempt from the check, so kubelet probes to the pod IP pass. */}}
{{- define "mlflow.allowedHosts" -}}
{{- $svc := .Values.service.name }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) "localhost" "127.0.0.1" }}
{{- if .Values.ingress.enabled }}
{{- $names = concat $names .Values.ingress.hosts }}
{{- end }}
{{- $hosts := list }}
{{- range $names }}
{{- $hosts = append $hosts . }}
{{- $hosts = append $hosts (printf "%s:*" .) }}
{{- end }}
{{- $hosts = concat $hosts .Values.server.extraAllowedHosts }}
{{- $hosts | uniq | join "," }}
{{- end }}

{{/* The label that admits a pod outside the release (Dagster's run pods) through the NetworkPolicy. */}}
{{- define "mlflow.clientLabel" -}}dagma/mlflow-client{{- end }}

{{/* Security: the restricted Pod Security Standard, for every pod ------------------------ */}}
{{- define "mlflow.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser | int64 }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup | int64 }}
fsGroup: {{ .Values.podSecurityContext.fsGroup | int64 }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "mlflow.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser | int64 }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup | int64 }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Schema upgrade hook --------------------------------------------------------------- */}}

{{/* Annotations of the hook's ConfigMap and RBAC: created before its Job (lower weight),
     deleted once the hook succeeded; after a failure they stay for inspection and the next
     attempt replaces them. */}}
{{- define "mlflow.schemaUpgradeHookSetup" -}}
helm.sh/hook: pre-upgrade
helm.sh/hook-weight: "-5"
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}
