{{/* Names, labels and the values every template shares. */}}

{{- define "chicago-taxi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The object name prefix: the release name, plus the chart name unless the release name contains it. */}}
{{- define "chicago-taxi.fullname" -}}
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

{{- define "chicago-taxi.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/). */}}
{{- define "chicago-taxi.labels" -}}
helm.sh/chart: {{ include "chicago-taxi.chart" . }}
{{ include "chicago-taxi.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chicago-taxi
{{- end }}

{{- define "chicago-taxi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chicago-taxi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels and selector of one component: call with (dict "root" $ "component" "prediction-service"). */}}
{{- define "chicago-taxi.componentLabels" -}}
{{ include "chicago-taxi.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "chicago-taxi.componentSelector" -}}
{{ include "chicago-taxi.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "chicago-taxi.predictionName" -}}
{{- printf "%s-prediction" (include "chicago-taxi.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chicago-taxi.mlflowName" -}}
{{- printf "%s-mlflow" (include "chicago-taxi.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chicago-taxi.configName" -}}
{{- printf "%s-env" (include "chicago-taxi.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chicago-taxi.sharedClaimName" -}}
{{- if .Values.sharedData.existingClaim }}
{{- .Values.sharedData.existingClaim }}
{{- else }}
{{- printf "%s-shared" (include "chicago-taxi.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "chicago-taxi.artifactsClaimName" -}}
{{- if .Values.mlflow.artifacts.existingClaim }}
{{- .Values.mlflow.artifacts.existingClaim }}
{{- else }}
{{- printf "%s-mlflow-artifacts" (include "chicago-taxi.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The project image: repository@digest, or repository:tag (tag defaults to the chart's appVersion). */}}
{{- define "chicago-taxi.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The Secret holding postgres-password and reload-token: the one named by secrets.existingSecret, or
the chart's own, which needs both values (no default: rendering stops and says what is missing).
*/}}
{{- define "chicago-taxi.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- printf "%s-secrets" (include "chicago-taxi.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "chicago-taxi.postgresPassword" -}}
{{- required "secrets.postgresPassword is required (MLflow's PostgreSQL password): pass it with --set-file secrets.postgresPassword=<file>, or create a Secret with the keys postgres-password and reload-token and set secrets.existingSecret" .Values.secrets.postgresPassword }}
{{- end }}

{{- define "chicago-taxi.reloadToken" -}}
{{- required "secrets.reloadToken is required (the bearer token of POST /ops/reload): pass it with --set-file secrets.reloadToken=<file>, or create a Secret with the keys postgres-password and reload-token and set secrets.existingSecret" .Values.secrets.reloadToken }}
{{- end }}

{{/* MLflow's backend store: PostgreSQL without the password (libpq reads PGPASSWORD from the Secret). */}}
{{- define "chicago-taxi.backendStoreUri" -}}
{{- $host := required "postgresql.host is required: the PostgreSQL server holding MLflow's metadata" .Values.postgresql.host }}
{{- $uri := printf "postgresql+psycopg2://%s@%s:%v/%s" .Values.postgresql.user $host .Values.postgresql.port .Values.postgresql.database }}
{{- if .Values.postgresql.sslmode }}
{{- $uri = printf "%s?sslmode=%s" $uri .Values.postgresql.sslmode }}
{{- end }}
{{- $uri }}
{{- end }}

{{/* The tracking URI the prediction service uses: this release's MLflow Service, or mlflowTrackingUri. */}}
{{- define "chicago-taxi.mlflowUri" -}}
{{- if .Values.mlflowTrackingUri }}
{{- .Values.mlflowTrackingUri }}
{{- else if .Values.mlflow.enabled }}
{{- printf "http://%s:%v" (include "chicago-taxi.mlflowName" .) .Values.mlflow.service.port }}
{{- else }}
{{- fail "mlflow.enabled is false: set mlflowTrackingUri to the MLflow tracking server the prediction service should use" }}
{{- end }}
{{- end }}

{{/* --allowed-hosts: the Service's DNS names (with and without the port), then mlflow.extraAllowedHosts. */}}
{{- define "chicago-taxi.mlflowAllowedHosts" -}}
{{- $svc := include "chicago-taxi.mlflowName" . }}
{{- $port := .Values.mlflow.service.port }}
{{- $hosts := list }}
{{- range $name := list $svc (printf "%s.%s" $svc $.Release.Namespace) (printf "%s.%s.svc" $svc $.Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc $.Release.Namespace) }}
{{- $hosts = append $hosts (printf "%s:%v" $name $port) }}
{{- $hosts = append $hosts $name }}
{{- end }}
{{- concat $hosts .Values.mlflow.extraAllowedHosts | uniq | join "," }}
{{- end }}

{{/* The checksum of the ConfigMap: pods restart when their configuration changes. */}}
{{- define "chicago-taxi.configChecksum" -}}
{{- include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end }}
