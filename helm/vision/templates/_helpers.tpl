{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "vision.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: <release>-<chart> unless the release name already contains it. */}}
{{- define "vision.fullname" -}}
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

{{- define "vision.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "vision.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vision.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vision.labels" -}}
helm.sh/chart: {{ include "vision.chart" . }}
{{ include "vision.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vision
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "vision.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vision.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vision.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* A setting's value as an env var string: numbers without exponent notation (toJson of a
float64 20971520 is "20971520", where toString gives "2.097152e+07"). */}}
{{- define "vision.envValue" -}}
{{- if kindIs "string" . }}{{ . | quote }}{{ else }}{{ toJson . | quote }}{{ end }}
{{- end }}

{{/* Name of the Secret holding VISION_API_KEY, and its key. */}}
{{- define "vision.apiKeySecretName" -}}
{{- .Values.apiKey.existingSecret | default (include "vision.fullname" .) }}
{{- end }}
{{- define "vision.apiKeySecretKey" -}}
{{- if .Values.apiKey.existingSecret }}{{ .Values.apiKey.existingSecretKey }}{{ else }}api-key{{ end }}
{{- end }}

{{/* Name of the Secret holding VISION_GALLERY_URL, and its key. */}}
{{- define "vision.galleryUrlSecretName" -}}
{{- .Values.gallery.postgres.existingSecret | default (include "vision.fullname" .) }}
{{- end }}
{{- define "vision.galleryUrlSecretKey" -}}
{{- if .Values.gallery.postgres.existingSecret }}{{ .Values.gallery.postgres.existingSecretKey }}{{ else }}gallery-url{{ end }}
{{- end }}

{{/* Whether the chart's own Secret has anything to hold. */}}
{{- define "vision.ownSecret" -}}
{{- if or (and .Values.apiKey.enabled (not .Values.apiKey.existingSecret)) (and .Values.gallery.postgres.enabled (not .Values.gallery.postgres.existingSecret)) }}true{{ end }}
{{- end }}

{{- define "vision.pvcName" -}}
{{- .Values.gallery.persistence.existingClaim | default (printf "%s-gallery" (include "vision.fullname" .)) }}
{{- end }}

{{/* Drain time on shutdown: preStop sleep + gRPC grace + the longest request. */}}
{{- define "vision.drainSeconds" -}}
{{- add .Values.lifecycle.preStopSleepSeconds (ceil .Values.config.grpcGraceS | int) .Values.config.requestTimeoutS }}
{{- end }}

{{- define "vision.terminationGracePeriodSeconds" -}}
{{- $drain := include "vision.drainSeconds" . | int }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $drain .Values.lifecycle.drainMarginSeconds }}
{{- else }}
{{- $set := .Values.terminationGracePeriodSeconds | int }}
{{- if le $set $drain }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed the drain time of %d s (lifecycle.preStopSleepSeconds + config.grpcGraceS + config.requestTimeoutS); raise it or leave it null to compute it" $set $drain) }}
{{- end }}
{{- $set }}
{{- end }}
{{- end }}

{{/* Refuse configurations that cannot work. Included by every template that matters. */}}
{{- define "vision.validate" -}}
{{- if not .Values.gallery.postgres.enabled }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail (printf "replicaCount=%d with the SQLite gallery: SQLite lives on one ReadWriteOnce volume and supports one replica only; set gallery.postgres.enabled=true (with gallery.postgres.url or gallery.postgres.existingSecret) to run several replicas" (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicas) 1) }}
{{- fail (printf "autoscaling.maxReplicas=%d with the SQLite gallery: SQLite supports one replica only; set gallery.postgres.enabled=true to autoscale" (int .Values.autoscaling.maxReplicas)) }}
{{- end }}
{{- else if not (or .Values.gallery.postgres.url .Values.gallery.postgres.existingSecret) }}
{{- fail "gallery.postgres.enabled=true needs gallery.postgres.url or gallery.postgres.existingSecret (the PostgreSQL DSN, VISION_GALLERY_URL)" }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if and (kindIs "invalid" .Values.autoscaling.targetCPUUtilizationPercentage) (kindIs "invalid" .Values.autoscaling.targetMemoryUtilizationPercentage) (not .Values.autoscaling.customMetric.name) }}
{{- fail "autoscaling.enabled needs a metric: targetCPUUtilizationPercentage, targetMemoryUtilizationPercentage or customMetric.name" }}
{{- end }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (null the other)" }}
{{- end }}
{{- if eq (int .Values.config.httpPort) (int .Values.config.grpcPort) }}
{{- fail "config.httpPort and config.grpcPort must differ" }}
{{- end }}
{{- end }}
