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

{{/* Checks the schema cannot express: fail the render with the fix. */}}
{{- define "mlflow.validate" -}}
{{- if and (eq .Values.backendStore.type "postgresql") (not .Values.backendStore.postgresql.existingSecret) }}
{{- fail "backendStore.type=postgresql needs backendStore.postgresql.existingSecret: the name of a Secret holding the database URI (never a plain value)" }}
{{- end }}
{{- if and (eq .Values.artifacts.type "s3") (not (hasPrefix "s3://" .Values.artifacts.s3.destination)) }}
{{- fail (printf "artifacts.type=s3 needs artifacts.s3.destination as s3://bucket[/prefix], got %q" .Values.artifacts.s3.destination) }}
{{- end }}
{{- if and .Values.auth.enabled (not .Values.auth.existingSecret) }}
{{- fail "auth.enabled=true needs auth.existingSecret: a Secret with keys username and password for the admin user" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (eq .Values.backendStore.type "sqlite") }}
{{- fail (printf "replicaCount=%d needs backendStore.type=postgresql: a SQLite file serves one server" (int .Values.replicaCount)) }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (include "mlflow.usesRwoVolume" .) }}
{{- fail (printf "replicaCount=%d with artifacts.type=volume needs persistence.accessMode=ReadWriteMany (a %s volume attaches to one node), or artifacts.type=s3" (int .Values.replicaCount) .Values.persistence.accessMode) }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- fail "ingress.enabled=true needs at least one host in ingress.hosts" }}
{{- end }}
{{- if and (or .Values.ingress.enabled (ne .Values.service.type "ClusterIP")) (not .Values.auth.enabled) (not .Values.auth.allowUnauthenticatedExposure) }}
{{- fail (printf "%s exposes the MLflow server outside the cluster with no login (auth.enabled=false): anyone who reaches it can read and delete runs. Set auth.enabled=true, or set auth.allowUnauthenticatedExposure=true if something in front of it authenticates" (ternary "ingress.enabled=true" (printf "service.type=%s" .Values.service.type) .Values.ingress.enabled)) }}
{{- end }}
{{- range $key, $value := .Values.podLabels }}
{{- if or (hasPrefix "app.kubernetes.io/" $key) (hasPrefix "helm.sh/" $key) }}
{{- fail (printf "podLabels may not set %s: the chart sets it, and its selectors and NetworkPolicy rely on it (a different value would detach the pods from their Deployment and Service). Use a label of your own" $key) }}
{{- end }}
{{- end }}
{{- range .Values.server.extraAllowedHosts }}
{{- if eq . "*" }}
{{- fail "server.extraAllowedHosts may not contain \"*\": it turns MLflow's Host-header check off (DNS rebinding protection). List the host names clients use instead, e.g. mlflow.example.com or *.example.com" }}
{{- end }}
{{- end }}
{{- range $index, $arg := .Values.server.extraArgs }}
{{- $flag := regexFind "^-[^=]*" $arg }}
{{- $where := printf "server.extraArgs[%d] (%s)" $index (default "a value" $flag) }}
{{- range $managed := list "--backend-store-uri" "--default-artifact-root" "--serve-artifacts" "--no-serve-artifacts" "--artifacts-only" "--artifacts-destination" "--host" "--port" "--workers" "--allowed-hosts" "--app-name" }}
{{- if or (eq $arg $managed) (hasPrefix (printf "%s=" $managed) $arg) }}
{{- fail (printf "%s: the chart sets %s itself (it always proxies artifacts, binds the Service's port, and derives the allowed hosts and the stores from values); set the matching chart value instead, see charts/mlflow/README.md" $where $managed) }}
{{- end }}
{{- end }}
{{- range $short := list "-h" "-p" "-w" }}
{{- if hasPrefix $short $arg }}
{{- fail (printf "%s: the chart sets --host, --port and --workers itself; use server.port and server.workers" $where) }}
{{- end }}
{{- end }}
{{- range $unsafe := list "--disable-security-middleware" "--gunicorn-opts" "--waitress-opts" }}
{{- if or (eq $arg $unsafe) (hasPrefix (printf "%s=" $unsafe) $arg) }}
{{- fail (printf "%s: %s turns off MLflow's Host-header and CORS protection (only the default uvicorn server has it); the chart keeps it on. Remove it" $where $unsafe) }}
{{- end }}
{{- end }}
{{- range $store := list "--registry-store-uri" "--read-replica-backend-store-uri" "--workspace-store-uri" }}
{{- if or (eq $arg $store) (hasPrefix (printf "%s=" $store) $arg) }}
{{- fail (printf "%s: a database URI on the command line shows its password in ps and in the pod spec; set %s in server.extraEnv with valueFrom.secretKeyRef instead" $where (upper (replace "-" "_" (printf "MLFLOW%s" (trimPrefix "-" $store))))) }}
{{- end }}
{{- end }}
{{- if regexMatch "://[^/@\\s]*:[^/@\\s]*@" $arg }}
{{- fail (printf "%s holds a URL with a password (user:password@): it would show in ps and in the pod spec. Put it in a Secret and pass it through server.extraEnv with valueFrom.secretKeyRef" $where) }}
{{- end }}
{{- end }}
{{- $managedEnv := list "MLFLOW_BACKEND_STORE_URI" "MLFLOW_DEFAULT_ARTIFACT_ROOT" "MLFLOW_SERVE_ARTIFACTS" "MLFLOW_ARTIFACTS_ONLY" "MLFLOW_ARTIFACTS_DESTINATION" "MLFLOW_HOST" "MLFLOW_PORT" "MLFLOW_WORKERS" "MLFLOW_SERVER_ALLOWED_HOSTS" "MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE" "MLFLOW_GUNICORN_OPTS" "MLFLOW_SERVER_ENABLE_JOB_EXECUTION" "MLFLOW_AUTH_CONFIG_PATH" "MLFLOW_AUTH_DATABASE_URI" "MLFLOW_AUTH_ADMIN_USERNAME" "MLFLOW_AUTH_ADMIN_PASSWORD" "MLFLOW_FLASK_SERVER_SECRET_KEY" "MLFLOW_S3_ENDPOINT_URL" "AWS_DEFAULT_REGION" "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" "MLFLOW_DISABLE_TELEMETRY" "DO_NOT_TRACK" "HOME" "PYTHONUNBUFFERED" }}
{{- range $index, $item := .Values.server.extraEnv }}
{{- if has $item.name $managedEnv }}
{{- fail (printf "server.extraEnv[%d] sets %s, which the chart manages (it always proxies artifacts; stores, hosts and credentials come from values and Secrets); set the matching chart value instead, see charts/mlflow/README.md" $index $item.name) }}
{{- end }}
{{- if and (hasKey $item "value") (or (regexMatch "(?i)(password|passwd|secret|token|credential|_key$)" $item.name) (regexMatch "://[^/@\\s]*:[^/@\\s]*@" (toString $item.value))) }}
{{- fail (printf "server.extraEnv[%d] (%s) carries a secret as a plain value: it would be readable in the Deployment. Use valueFrom.secretKeyRef" $index $item.name) }}
{{- end }}
{{- end }}
{{- end }}
