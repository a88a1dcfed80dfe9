{{/* Checks the schemas cannot express, bitnami-style: every broken value of a render is
     collected, then reported in one failure, each message naming the value and the fix.
     Secret values are never echoed in the messages. */}}

{{/* charts/mlflow's checks run here, with dagma's, so a render with bad values in both
     charts fails once listing all of them: this definition replaces charts/mlflow's (a
     parent chart's named template wins), which would otherwise fail first on its own. */}}
{{- define "mlflow.validatesItself" -}}false{{- end -}}

{{- define "dagma.validate" -}}
{{- $messages := include "dagma.validationMessages" . | fromJsonArray -}}
{{- if include "dagma.mlflowEnabled" . -}}
{{- $messages = concat $messages (include "mlflow.validationMessages" (dict "Values" .Values.mlflow "prefix" "mlflow.") | fromJsonArray) -}}
{{- end -}}
{{- if $messages -}}
{{- fail (printf "\ncharts/dagma: %d %s to fix:\n- %s" (len $messages) (ternary "value" "values" (eq (len $messages) 1)) (join "\n- " $messages)) -}}
{{- end -}}
{{- end -}}

{{/* dagma's own messages, as a JSON list. */}}
{{- define "dagma.validationMessages" -}}
{{- $messages := list -}}
{{- if not (or .Values.tracking.uri (include "dagma.mlflowEnabled" .)) -}}
{{- $messages = append $messages "mlflow.enabled=false leaves no in-cluster MLflow to derive MLFLOW_TRACKING_URI from: set tracking.uri to your MLflow server (e.g. https://mlflow.example.com)" -}}
{{- end -}}
{{- range $key := list "uri" "uiUrl" "dagsterUiUrl" -}}
{{- $url := index $.Values.tracking $key | default "" -}}
{{- if regexMatch "^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@" $url -}}
{{- $messages = append $messages (printf "tracking.%s carries credentials (user:password@host): it would land in the ConfigMap %s, readable by anyone who can read ConfigMaps. Remove them from the URL and put them in tracking.existingSecret (keys MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN)" $key $.Values.tracking.configMapName) -}}
{{- end -}}
{{- end -}}
{{- $credentials := .Values.tracking.credentials | default dict -}}
{{- $login := or (and $credentials.username $credentials.password) $credentials.token -}}
{{- if and .Values.tracking.existingSecret (or $credentials.username $credentials.password $credentials.token) -}}
{{- $messages = append $messages (printf "tracking.credentials are set but tracking.existingSecret (%s) replaces the Secret they would go into, so they would be ignored. Put the login in Secret %s, or unset tracking.existingSecret" .Values.tracking.existingSecret .Values.tracking.existingSecret) -}}
{{- end -}}
{{- if and (not .Values.tracking.existingSecret) (include "dagma.mlflowEnabled" .) (include "dagma.credentialsNeeded" .) (not $login) -}}
{{- $messages = append $messages "mlflow.auth.enabled is true but the MLflow clients have no credentials: set tracking.existingSecret to a Secret with MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), or set tracking.credentials.username and .password" -}}
{{- end -}}
{{- $mlflow := .Values.mlflow | default dict -}}
{{- if and (include "dagma.mlflowEnabled" .) ($mlflow.networkPolicy | default dict).enabled -}}
{{- $launcher := ((((.Values.dagster.runLauncher | default dict).config | default dict).k8sRunLauncher) | default dict) -}}
{{- if ne (toString (index ($launcher.labels | default dict) "dagma/mlflow-client")) "true" -}}
{{- $messages = append $messages "mlflow.networkPolicy.enabled admits run pods by their label dagma/mlflow-client: \"true\", but dagster.runLauncher.config.k8sRunLauncher.labels does not set it: every run would be cut off from MLflow. Add the label (see charts/dagma/values.yaml)" -}}
{{- end -}}
{{- end -}}
{{- $messages = concat $messages (include "dagma.dagsterReferenceMessages" . | fromJsonArray) -}}
{{- toJson $messages -}}
{{- end -}}

{{/*
The Dagster chart uses ConfigMap/Secret names literally, so the user deployments
repeat the names set under tracking.*. Refuse a render where they disagree, rather
than run pods that silently lack the MLflow settings. A JSON list of messages.
*/}}
{{- define "dagma.dagsterReferenceMessages" -}}
{{- $messages := list -}}
{{- $configMap := .Values.tracking.configMapName -}}
{{- $secret := include "dagma.secretName" . -}}
{{- $deployments := include "dagma.userDeployments" . | fromJsonArray -}}
{{- if not $deployments -}}
{{- $messages = append $messages "dagster.dagster-user-deployments.deployments is empty: dagma needs the user-code deployment running `dagster api grpc -m dagma.definitions` (see charts/dagma/values.yaml)" -}}
{{- end -}}
{{- range $deployment := $deployments -}}
{{- $where := printf "dagster.dagster-user-deployments.deployments[name=%s]" $deployment.name -}}
{{- $configMaps := list -}}
{{- range $ref := $deployment.envConfigMaps | default list }}{{ $configMaps = append $configMaps $ref.name }}{{ end -}}
{{- if not (has $configMap $configMaps) -}}
{{- $messages = append $messages (printf "%s.envConfigMaps is %v but must name the MLflow ConfigMap %q (tracking.configMapName): add `- name: %s`" $where $configMaps $configMap $configMap) -}}
{{- end -}}
{{- $secrets := list -}}
{{- range $ref := $deployment.envSecrets | default list }}{{ $secrets = append $secrets $ref.name }}{{ end -}}
{{- if not (has $secret $secrets) -}}
{{- $messages = append $messages (printf "%s.envSecrets is %v but must name the MLflow credentials Secret %q (tracking.existingSecret, else tracking.secretName): add `- name: %s`" $where $secrets $secret $secret) -}}
{{- end -}}
{{- $tag := ($deployment.image | default dict).tag -}}
{{- if and $tag (not (kindIs "string" $tag)) -}}
{{- $messages = append $messages (printf "%s.image.tag is the number %v: YAML reads an unquoted 1.10 as 1.1. Quote it: tag: \"%v\"" $where $tag $tag) -}}
{{- else if not $tag -}}
{{- $messages = append $messages (printf "%s.image.tag is empty: the Dagster chart would pull the image tagged with its own version (%s), not dagma's. Set the tag of the image you built, e.g. %q" $where (include "dagma.dagsterChartVersion" $) $.Chart.AppVersion) -}}
{{- end -}}
{{- $include := $deployment.includeConfigInLaunchedRuns | default dict -}}
{{- if eq (toString $include.enabled) "false" -}}
{{- $messages = append $messages (printf "%s.includeConfigInLaunchedRuns.enabled is false: run pods would not get the MLflow ConfigMap and Secret. Set it to true" $where) -}}
{{- end -}}
{{- end -}}
{{- toJson $messages -}}
{{- end -}}
