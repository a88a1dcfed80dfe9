{{/* Chart name, truncated to a valid label value. */}}
{{- define "dagma.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Standard labels on every object this chart renders itself. */}}
{{- define "dagma.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "dagma.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dagma
{{- end -}}

{{/*
Whether the MLflow subchart is installed (Chart.yaml: condition mlflow.enabled).
Unset counts as yes, as Helm's condition does.
*/}}
{{- define "dagma.mlflowEnabled" -}}
{{- if ne (toString .Values.mlflow.enabled) "false" }}true{{ end -}}
{{- end -}}

{{/*
MLFLOW_TRACKING_URI: tracking.uri if set, else the MLflow subchart's Service. The
host and port are the same values the subchart names its Service with. Empty with
neither (dagma.validate refuses that).
*/}}
{{- define "dagma.trackingUri" -}}
{{- if .Values.tracking.uri -}}
{{- .Values.tracking.uri -}}
{{- else if include "dagma.mlflowEnabled" . -}}
{{- printf "http://%s:%d" .Values.mlflow.service.name (.Values.mlflow.service.port | int64) -}}
{{- end -}}
{{- end -}}

{{/* The Secret the pods read credentials from: an existing one, or ours. */}}
{{- define "dagma.secretName" -}}
{{- .Values.tracking.existingSecret | default .Values.tracking.secretName -}}
{{- end -}}

{{/*
Whether the server asks for credentials: the in-cluster MLflow with auth on, or a
server outside this release (whose auth this chart cannot know).
*/}}
{{- define "dagma.credentialsNeeded" -}}
{{- if include "dagma.mlflowEnabled" . -}}
{{- if and .Values.mlflow.auth .Values.mlflow.auth.enabled }}true{{ end -}}
{{- else -}}
true
{{- end -}}
{{- end -}}

{{/* The user-code deployments of the Dagster values (a list, possibly empty). */}}
{{- define "dagma.userDeployments" -}}
{{- $userDeployments := index .Values.dagster "dagster-user-deployments" | default dict -}}
{{- toJson ($userDeployments.deployments | default list) -}}
{{- end -}}

{{/* Version of the `dagster` dependency in Chart.yaml (the Dagster chart's default image tag). */}}
{{- define "dagma.dagsterChartVersion" -}}
{{- range .Chart.Dependencies }}{{ if eq .Name "dagster" }}{{ .Version }}{{ end }}{{ end -}}
{{- end -}}
