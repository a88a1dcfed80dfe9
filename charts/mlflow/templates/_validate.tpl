{{/* Checks values.schema.json cannot express, bitnami-style: every broken value of a render
     is collected, then reported in one failure, each message naming the value and the fix.
     No message echoes a value that may hold a password. */}}

{{/* Fails the render listing every broken value. charts/dagma redefines
     mlflow.validatesItself (a parent chart's definition wins) and reports these messages with
     its own, so an umbrella render also fails once with all of them. */}}
{{- define "mlflow.validate" -}}
{{- if eq (include "mlflow.validatesItself" .) "true" }}
{{- $messages := include "mlflow.validationMessages" (dict "Values" .Values "prefix" "") | fromJsonArray }}
{{- if $messages }}
{{- fail (printf "\ncharts/mlflow: %d %s to fix:\n- %s" (len $messages) (ternary "value" "values" (eq (len $messages) 1)) (join "\n- " $messages)) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mlflow.validatesItself" -}}true{{- end }}

{{/* The messages, as a JSON list. Call with (dict "Values" <this chart's values> "prefix" p):
     p is where the values sit ("" here, "mlflow." under charts/dagma), so each message names
     the value as the user writes it. One message per broken value: an extraArgs or extraEnv
     entry reports the first rule it breaks. */}}
{{- define "mlflow.validationMessages" -}}
{{- $p := .prefix }}
{{- $v := .Values }}
{{- $messages := list }}
{{- if and (eq $v.backendStore.type "postgresql") (not $v.backendStore.postgresql.existingSecret) }}
{{- $messages = append $messages (printf "%[1]sbackendStore.type=postgresql needs %[1]sbackendStore.postgresql.existingSecret: the name of a Secret holding the database URI (never a plain value)" $p) }}
{{- end }}
{{- if and (eq $v.artifacts.type "s3") (not (hasPrefix "s3://" $v.artifacts.s3.destination)) }}
{{- $messages = append $messages (printf "%[1]sartifacts.type=s3 needs %[1]sartifacts.s3.destination as s3://bucket[/prefix], got %[2]q" $p $v.artifacts.s3.destination) }}
{{- end }}
{{- if and $v.auth.enabled (not $v.auth.existingSecret) }}
{{- $messages = append $messages (printf "%[1]sauth.enabled=true needs %[1]sauth.existingSecret: a Secret with keys username and password for the admin user" $p) }}
{{- end }}
{{- $replicas := int $v.replicaCount }}
{{- if and (gt $replicas 1) (eq $v.backendStore.type "sqlite") }}
{{- $messages = append $messages (printf "%[1]sreplicaCount=%[2]d needs %[1]sbackendStore.type=postgresql: a SQLite file serves one server" $p $replicas) }}
{{- end }}
{{- if and (gt $replicas 1) (include "mlflow.usesRwoVolume" .) }}
{{- $messages = append $messages (printf "%[1]sreplicaCount=%[2]d with a volume needs %[1]spersistence.accessMode=ReadWriteMany (a %[3]s volume attaches to one node), or %[1]sbackendStore.type=postgresql with %[1]sartifacts.type=s3" $p $replicas $v.persistence.accessMode) }}
{{- end }}
{{- if and $v.ingress.enabled (not $v.ingress.hosts) }}
{{- $messages = append $messages (printf "%[1]singress.enabled=true needs at least one host in %[1]singress.hosts" $p) }}
{{- end }}
{{- if and (or $v.ingress.enabled (ne $v.service.type "ClusterIP")) (not $v.auth.enabled) (not $v.auth.allowUnauthenticatedExposure) }}
{{- $exposure := ternary (printf "%singress.enabled=true" $p) (printf "%sservice.type=%s" $p $v.service.type) $v.ingress.enabled }}
{{- $messages = append $messages (printf "%[2]s exposes the MLflow server outside the cluster with no login (%[1]sauth.enabled=false): anyone who reaches it can read and delete runs. Set %[1]sauth.enabled=true, or set %[1]sauth.allowUnauthenticatedExposure=true if something in front of it authenticates" $p $exposure) }}
{{- end }}
{{- range $key, $_ := $v.podLabels }}
{{- if or (hasPrefix "app.kubernetes.io/" $key) (hasPrefix "helm.sh/" $key) }}
{{- $messages = append $messages (printf "%[1]spodLabels may not set %[2]s: the chart sets it, and its selectors and NetworkPolicy rely on it (a different value would detach the pods from their Deployment and Service). Use a label of your own" $p $key) }}
{{- end }}
{{- end }}
{{- if has "*" $v.server.extraAllowedHosts }}
{{- $messages = append $messages (printf "%sserver.extraAllowedHosts may not contain \"*\": it turns MLflow's Host-header check off (DNS rebinding protection). List the host names clients use instead, e.g. mlflow.example.com or *.example.com" $p) }}
{{- end }}
{{- range $index, $arg := $v.server.extraArgs }}
{{- $flag := regexFind "^-[^=]*" $arg }}
{{- $where := printf "%sserver.extraArgs[%d] (%s)" $p $index (default "a value" $flag) }}
{{- $problem := "" }}
{{- range $managed := list "--backend-store-uri" "--default-artifact-root" "--serve-artifacts" "--no-serve-artifacts" "--artifacts-only" "--artifacts-destination" "--host" "--port" "--workers" "--allowed-hosts" "--app-name" }}
{{- if and (not $problem) (or (eq $arg $managed) (hasPrefix (printf "%s=" $managed) $arg)) }}
{{- $problem = printf "%s: the chart sets %s itself (it always proxies artifacts, binds the Service's port, and derives the allowed hosts and the stores from values); set the matching chart value instead, see charts/mlflow/README.md" $where $managed }}
{{- end }}
{{- end }}
{{- range $short := list "-h" "-p" "-w" }}
{{- if and (not $problem) (hasPrefix $short $arg) }}
{{- $problem = printf "%[1]s: the chart sets --host, --port and --workers itself; use %[2]sserver.port and %[2]sserver.workers" $where $p }}
{{- end }}
{{- end }}
{{- range $unsafe := list "--disable-security-middleware" "--gunicorn-opts" "--waitress-opts" }}
{{- if and (not $problem) (or (eq $arg $unsafe) (hasPrefix (printf "%s=" $unsafe) $arg)) }}
{{- $problem = printf "%s: %s turns off MLflow's Host-header and CORS protection (only the default uvicorn server has it); the chart keeps it on. Remove it" $where $unsafe }}
{{- end }}
{{- end }}
{{- range $store := list "--registry-store-uri" "--read-replica-backend-store-uri" "--workspace-store-uri" }}
{{- if and (not $problem) (or (eq $arg $store) (hasPrefix (printf "%s=" $store) $arg)) }}
{{- $problem = printf "%s: a database URI on the command line shows its password in ps and in the pod spec; set %s in %sserver.extraEnv with valueFrom.secretKeyRef instead" $where (upper (replace "-" "_" (printf "MLFLOW%s" (trimPrefix "-" $store)))) $p }}
{{- end }}
{{- end }}
{{- if and (not $problem) (regexMatch "://[^/@\\s]*:[^/@\\s]*@" $arg) }}
{{- $problem = printf "%s holds a URL with a password (user:password@): it would show in ps and in the pod spec. Put it in a Secret and pass it through %sserver.extraEnv with valueFrom.secretKeyRef" $where $p }}
{{- end }}
{{- with $problem }}
{{- $messages = append $messages . }}
{{- end }}
{{- end }}
{{- $managedEnv := list "MLFLOW_BACKEND_STORE_URI" "MLFLOW_DEFAULT_ARTIFACT_ROOT" "MLFLOW_SERVE_ARTIFACTS" "MLFLOW_ARTIFACTS_ONLY" "MLFLOW_ARTIFACTS_DESTINATION" "MLFLOW_HOST" "MLFLOW_PORT" "MLFLOW_WORKERS" "MLFLOW_SERVER_ALLOWED_HOSTS" "MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE" "MLFLOW_GUNICORN_OPTS" "MLFLOW_SERVER_ENABLE_JOB_EXECUTION" "MLFLOW_AUTH_CONFIG_PATH" "MLFLOW_AUTH_DATABASE_URI" "MLFLOW_AUTH_ADMIN_USERNAME" "MLFLOW_AUTH_ADMIN_PASSWORD" "MLFLOW_FLASK_SERVER_SECRET_KEY" "MLFLOW_S3_ENDPOINT_URL" "AWS_DEFAULT_REGION" "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" "MLFLOW_DISABLE_TELEMETRY" "DO_NOT_TRACK" "HOME" "PYTHONUNBUFFERED" }}
{{- range $index, $item := $v.server.extraEnv }}
{{- if has $item.name $managedEnv }}
{{- $messages = append $messages (printf "%sserver.extraEnv[%d] sets %s, which the chart manages (it always proxies artifacts; stores, hosts and credentials come from values and Secrets); set the matching chart value instead, see charts/mlflow/README.md" $p $index $item.name) }}
{{- else if and (hasKey $item "value") (or (regexMatch "(?i)(password|passwd|secret|token|credential|_key$)" $item.name) (regexMatch "://[^/@\\s]*:[^/@\\s]*@" (toString $item.value))) }}
{{- $messages = append $messages (printf "%sserver.extraEnv[%d] (%s) carries a secret as a plain value: it would be readable in the Deployment. Use valueFrom.secretKeyRef" $p $index $item.name) }}
{{- end }}
{{- end }}
{{- toJson $messages }}
{{- end }}
