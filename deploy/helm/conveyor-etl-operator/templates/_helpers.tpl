{{/* The chart name, or nameOverride. */}}
{{- define "conveyor-etl-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name alone when it contains the chart name. */}}
{{- define "conveyor-etl-operator.fullname" -}}
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

{{- define "conveyor-etl-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conveyor-etl-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "conveyor-etl-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "conveyor-etl-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: conveyor-etl
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* metadata.annotations from commonAnnotations, if any. */}}
{{- define "conveyor-etl-operator.annotations" -}}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "conveyor-etl-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "conveyor-etl-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* True when a Prometheus Operator object may be rendered: the API is served, or forced. */}}
{{- define "conveyor-etl-operator.monitoringAPI" -}}
{{- if or .Values.forceMonitoringCRDs (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true{{- end }}
{{- end }}

{{/*
The operator's rules on namespaced objects: in its ClusterRole when it
watches every namespace, in a Role of each namespace of watchNamespaces.
*/}}
{{- define "conveyor-etl-operator.namespacedRules" }}
  # Its own resources, their status and finalizers.
  - apiGroups: ["conveyor.etl"]
    resources: ["etlrouterclusters", "etlpipelines", "etlsources", "etltransforms", "etlsinks"]
    verbs: ["get", "list", "watch", "patch", "update"]
  - apiGroups: ["conveyor.etl"]
    resources:
      - etlrouterclusters/status
      - etlpipelines/status
      - etlsources/status
      - etltransforms/status
      - etlsinks/status
    verbs: ["get", "patch", "update"]
  # What a router cluster owns.
  - apiGroups: ["apps"]
    resources: ["statefulsets"]
    verbs: ["get", "list", "watch", "create", "patch", "update"]
  - apiGroups: [""]
    resources: ["services", "configmaps"]
    verbs: ["get", "list", "watch", "create", "patch", "update"]
  - apiGroups: ["policy"]
    resources: ["poddisruptionbudgets"]
    verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
  # Pods: watched for health; replaced one at a time to roll an update.
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list", "watch", "delete"]
  - apiGroups: [""]
    resources: ["pods/eviction"]
    verbs: ["create"]
  # Data volumes, deleted only with storage.retentionPolicy: Delete.
  - apiGroups: [""]
    resources: ["persistentvolumeclaims"]
    verbs: ["list", "delete"]
  # Events that tell each resource's story in `kubectl describe`.
  - apiGroups: ["events.k8s.io"]
    resources: ["events"]
    verbs: ["create", "patch"]
{{- end }}

{{/* The one cluster-wide rule: the start-up check that the CRDs are installed. */}}
{{- define "conveyor-etl-operator.crdRules" }}
  # Start-up check that the CRDs are installed.
  - apiGroups: ["apiextensions.k8s.io"]
    resources: ["customresourcedefinitions"]
    verbs: ["get", "list"]
{{- end }}
