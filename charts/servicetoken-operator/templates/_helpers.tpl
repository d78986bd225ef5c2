{{/* The chart name, truncated to fit DNS label limits. */}}
{{- define "servicetoken-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: "<release>-<chart>", or the release name alone when it already
contains the chart name. Every resource name starts with it.
*/}}
{{- define "servicetoken-operator.fullname" -}}
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

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "servicetoken-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "servicetoken-operator.labels" -}}
helm.sh/chart: {{ include "servicetoken-operator.chart" . }}
{{ include "servicetoken-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: servicetoken-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the manager pods. */}}
{{- define "servicetoken-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "servicetoken-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end }}

{{/* The manager's ServiceAccount name. */}}
{{- define "servicetoken-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "servicetoken-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The manager image reference: repository with a digest or a tag. */}}
{{- define "servicetoken-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Namespace of the leader election Lease. */}}
{{- define "servicetoken-operator.leaderElectionNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{/* Name of the metrics Service port: https when secure, else http. */}}
{{- define "servicetoken-operator.metricsPortName" -}}
{{- if .Values.metrics.secure }}https{{ else }}http{{ end }}
{{- end }}

{{/*
The ServiceAccount the chart creates for the ServiceMonitor to scrape the
secure metrics endpoint with; empty when it creates none (no ServiceMonitor,
plain HTTP, or serviceMonitor.authorization.credentials given).
*/}}
{{- define "servicetoken-operator.metricsScraper" -}}
{{- if and .Values.metrics.enabled .Values.metrics.secure .Values.metrics.reader.create .Values.serviceMonitor.enabled (not .Values.serviceMonitor.authorization.credentials) }}
{{- include "servicetoken-operator.fullname" . }}-metrics-scraper
{{- end }}
{{- end }}

{{/* The watched namespaces, sorted and without duplicates or blanks. */}}
{{- define "servicetoken-operator.watchNamespaces" -}}
{{- $out := list }}
{{- range .Values.watchNamespaces }}
{{- if and . (not (has . $out)) }}
{{- $out = append $out . }}
{{- end }}
{{- end }}
{{- sortAlpha $out | join "," }}
{{- end }}

{{/*
Checks of value combinations the schema cannot express; called from the
Deployment so every render runs them.
*/}}
{{- define "servicetoken-operator.validate" -}}
{{- $ns := include "servicetoken-operator.watchNamespaces" . }}
{{- if and (eq .Values.rbac.scope "namespaced") (not $ns) }}
{{- fail "rbac.scope=namespaced needs watchNamespaces: the operator may only act in the namespaces its Roles cover" }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicas > 1 needs leaderElection.enabled: without it every replica would reconcile, racing each other against Cloudflare" }}
{{- end }}
{{- end }}
