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
Unset means yes: charts/mlflow's schema does not accept an `enabled` key.
*/}}
{{- define "dagma.mlflowEnabled" -}}
{{- if ne (toString .Values.mlflow.enabled) "false" }}true{{ end -}}
{{- end -}}

{{/*
MLFLOW_TRACKING_URI: tracking.uri if set, else the MLflow subchart's Service. The
host and port are the same values the subchart names its Service with.
*/}}
{{- define "dagma.trackingUri" -}}
{{- if .Values.tracking.uri -}}
{{- .Values.tracking.uri -}}
{{- else if include "dagma.mlflowEnabled" . -}}
{{- printf "http://%s:%d" .Values.mlflow.service.name (.Values.mlflow.service.port | int64) -}}
{{- else -}}
{{- fail "mlflow.enabled is false, so there is no in-cluster MLflow to derive MLFLOW_TRACKING_URI from: set tracking.uri to your MLflow server (e.g. https://mlflow.example.com)." -}}
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

{{/*
The Dagster chart uses ConfigMap/Secret names literally, so the user deployments
repeat the names set under tracking.*. Fail the render when they disagree, rather
than run pods that silently lack the MLflow settings.
*/}}
{{- define "dagma.checkDagsterReferences" -}}
{{- $configMap := .Values.tracking.configMapName -}}
{{- $secret := include "dagma.secretName" . -}}
{{- $deployments := include "dagma.userDeployments" . | fromJsonArray -}}
{{- if not $deployments -}}
{{- fail "dagster.dagster-user-deployments.deployments is empty: dagma needs the user-code deployment running `dagster api grpc -m dagma.definitions` (see charts/dagma/values.yaml)." -}}
{{- end -}}
{{- range $deployment := $deployments -}}
{{- $where := printf "dagster.dagster-user-deployments.deployments[name=%s]" $deployment.name -}}
{{- $configMaps := list -}}
{{- range $ref := $deployment.envConfigMaps | default list }}{{ $configMaps = append $configMaps $ref.name }}{{ end -}}
{{- if not (has $configMap $configMaps) -}}
{{- fail (printf "%s.envConfigMaps is %v but must name the MLflow ConfigMap %q (tracking.configMapName): add `- name: %s`." $where $configMaps $configMap $configMap) -}}
{{- end -}}
{{- $secrets := list -}}
{{- range $ref := $deployment.envSecrets | default list }}{{ $secrets = append $secrets $ref.name }}{{ end -}}
{{- if not (has $secret $secrets) -}}
{{- fail (printf "%s.envSecrets is %v but must name the MLflow credentials Secret %q (tracking.existingSecret, else tracking.secretName): add `- name: %s`." $where $secrets $secret $secret) -}}
{{- end -}}
{{- $tag := ($deployment.image | default dict).tag -}}
{{- if and $tag (not (kindIs "string" $tag)) -}}
{{- fail (printf "%s.image.tag is the number %v: YAML reads an unquoted 1.10 as 1.1. Quote it: tag: \"%v\"." $where $tag $tag) -}}
{{- end -}}
{{- if not $tag -}}
{{- fail (printf "%s.image.tag is empty: the Dagster chart would pull the image tagged with its own version (%s), not dagma's. Set the tag of the image you built, e.g. %q." $where (include "dagma.dagsterChartVersion" $) $.Chart.AppVersion) -}}
{{- end -}}
{{- $include := $deployment.includeConfigInLaunchedRuns | default dict -}}
{{- if eq (toString $include.enabled) "false" -}}
{{- fail (printf "%s.includeConfigInLaunchedRuns.enabled is false: run pods would not get the MLflow ConfigMap and Secret. Set it to true." $where) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Version of the `dagster` dependency in Chart.yaml (the Dagster chart's default image tag). */}}
{{- define "dagma.dagsterChartVersion" -}}
{{- range .Chart.Dependencies }}{{ if eq .Name "dagster" }}{{ .Version }}{{ end }}{{ end -}}
{{- end -}}

{{/*
Checks the schemas cannot express: fail the render with the value's name and the fix.
Secret values are never echoed in the messages.
*/}}
{{- define "dagma.validate" -}}
{{- include "dagma.checkDagsterReferences" . -}}
{{- range $key := list "uri" "uiUrl" "dagsterUiUrl" -}}
{{- $url := index $.Values.tracking $key | default "" -}}
{{- if regexMatch "^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@" $url -}}
{{- fail (printf "tracking.%s carries credentials (user:password@host): it would land in the ConfigMap %s, readable by anyone who can read ConfigMaps. Remove them from the URL and put them in tracking.existingSecret (keys MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN)." $key $.Values.tracking.configMapName) -}}
{{- end -}}
{{- end -}}
{{- $credentials := .Values.tracking.credentials | default dict -}}
{{- if and .Values.tracking.existingSecret (or $credentials.username $credentials.password $credentials.token) -}}
{{- fail (printf "tracking.credentials are set but tracking.existingSecret (%s) replaces the Secret they would go into, so they would be ignored. Put the login in Secret %s, or unset tracking.existingSecret." .Values.tracking.existingSecret .Values.tracking.existingSecret) -}}
{{- end -}}
{{- $mlflow := .Values.mlflow | default dict -}}
{{- if and (include "dagma.mlflowEnabled" .) ($mlflow.networkPolicy | default dict).enabled -}}
{{- $launcher := ((((.Values.dagster.runLauncher | default dict).config | default dict).k8sRunLauncher) | default dict) -}}
{{- if ne (toString (index ($launcher.labels | default dict) "dagma/mlflow-client")) "true" -}}
{{- fail "mlflow.networkPolicy.enabled admits run pods by their label dagma/mlflow-client: \"true\", but dagster.runLauncher.config.k8sRunLauncher.labels does not set it: every run would be cut off from MLflow. Add the label (see charts/dagma/values.yaml)." -}}
{{- end -}}
{{- end -}}
{{- end -}}
