{{/* Names, labels and the decisions every template shares. */}}

{{- define "oneiric.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "oneiric.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "oneiric.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oneiric.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "oneiric.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "oneiric.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: oneiric-operator
{{- end -}}

{{- define "oneiric.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "oneiric.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" when the operator watches every namespace (ClusterRole), "" when it watches listed ones. */}}
{{- define "oneiric.clusterWide" -}}
{{- if not .Values.watch.namespaces -}}true{{- end -}}
{{- end -}}

{{/* "true" when replicas elect a leader through a Lease: asked for, or implied by more than one replica. */}}
{{- define "oneiric.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) (gt (int .Values.leaderElection.shards) 1) -}}true{{- end -}}
{{- end -}}

{{- define "oneiric.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "oneiric.webhookServiceName" -}}
{{- printf "%s-webhook" (include "oneiric.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "oneiric.webhookSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "oneiric.fullname" .)) .Values.webhook.certSecretName -}}
{{- end -}}


{{/* The namespaced rules: exactly the calls the operator makes in a watched namespace. */}}
{{- define "oneiric.namespacedRules" -}}
# Resolve: read every kind the operator reconciles.
- apiGroups: [oneiric.dev]
  resources: [candidates, components, stackpolicies, remotemanifests]
  verbs: [get, list, watch]
# Record: status of what it reconciles.
- apiGroups: [oneiric.dev]
  resources: [candidates/status, components/status, stackpolicies/status, remotemanifests/status]
  verbs: [patch]
# Materialize: Candidates owned by verified RemoteManifests.
- apiGroups: [oneiric.dev]
  resources: [candidates]
  verbs: [create, patch, delete]
# Bind: the slot's ConfigMap.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
# InPlace swaps: annotate the selected pods (and, watched by label, those created later); the
# PodsReady and Acknowledged gates read them.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, patch]
# Restart swaps: bump the pod template of the target workloads.
- apiGroups: [apps]
  resources: [deployments, statefulsets]
  verbs: [list, patch]
# Secrets named by Candidates' configFrom (values handed to the binding) and the registry credentials
# of oci:// RemoteManifests (spec.secretRef), read by name only, never listed. Trusted keys are not
# read here: only from the release namespace (see rbac.yaml).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# HTTPGet gates: refuse an ExternalName Service (it can point anywhere), read by name only.
- apiGroups: [""]
  resources: [services]
  verbs: [get]
# Explain: Events for every decision and swap; a repeat counts on its Event (patch), as the kubelet's.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
