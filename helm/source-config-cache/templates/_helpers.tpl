{{/*
Names, labels and the shared pod pieces of both workloads, defined once so the
watcher and the service Deployments cannot drift apart.
*/}}

{{- define "scc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scc.fullname" -}}
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

{{/* Workload names; <fullname> is at most 63, so leave room for the suffix. */}}
{{- define "scc.watcher.fullname" -}}
{{- printf "%s-watcher" (include "scc.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{- define "scc.service.fullname" -}}
{{- printf "%s-service" (include "scc.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{- define "scc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "scc.labels" -}}
helm.sh/chart: {{ include "scc.chart" . }}
{{ include "scc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: source-config-cache
{{- end }}

{{/* Selector labels of one component: call with (dict "root" $ "component" "watcher"). */}}
{{- define "scc.componentSelectorLabels" -}}
{{ include "scc.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "scc.componentLabels" -}}
{{ include "scc.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "scc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "scc.configMapName" -}}
{{- printf "%s-config" (include "scc.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{- define "scc.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- printf "%s-secrets" (include "scc.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{- define "scc.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Pod annotations that roll every pod when its settings change: the ConfigMap's and
(when the chart renders it) the Secret's content hash.
*/}}
{{- define "scc.configChecksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secrets: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/* Environment of both roles: settings from the ConfigMap and Secret, identity from the pod. */}}
{{- define "scc.envFrom" -}}
- configMapRef:
    name: {{ include "scc.configMapName" . }}
- secretRef:
    name: {{ include "scc.secretName" . }}
{{- end }}

{{- define "scc.env" -}}
# Unique per pod, so leases, heartbeats and `--check` name this very pod.
- name: SCC_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Soft anti-affinity spreading one component over nodes, unless `affinity` is set. */}}
{{- define "scc.affinity" -}}
{{- if .values.affinity }}
{{- toYaml .values.affinity }}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "scc.componentSelectorLabels" (dict "root" .root "component" .component) | nindent 12 }}
{{- end }}
{{- end }}
