{{/*
The Deployment of a one-device release (not in fleet mode).
*/}}
{{- define "devicefactory-lib.deployment" -}}
{{- if not (include "devicefactory-lib.fleet" .) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "devicefactory-lib.fullname" . }}
  labels:
    {{- include "devicefactory-lib.labels" . | nindent 4 }}
spec:
  {{- /* One device, one connection: a second replica with the same deviceId would knock the first one off. */}}
  replicas: 1
  {{- /* Stop the old pod before starting the new one, for the same reason. */}}
  strategy:
    type: Recreate
  selector:
    matchLabels:
      {{- include "devicefactory-lib.selectorLabels" . | nindent 6 }}
  template:
    {{- include "devicefactory-lib.podTemplate" . | nindent 4 }}
{{- end }}
{{- end }}

{{/*
The StatefulSet of a fleet release: one pod per device.
*/}}
{{- define "devicefactory-lib.statefulset" -}}
{{- if include "devicefactory-lib.fleet" . -}}
{{- $name := include "devicefactory-lib.fleetName" . -}}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $name }}
  labels:
    {{- include "devicefactory-lib.labels" . | nindent 4 }}
spec:
  {{- /* One pod per device: the pod with ordinal i runs devices[i] (files/fleet-start.sh). */}}
  replicas: {{ len .Values.devices }}
  {{- /* Start (and stop) every device at once, not one after the other as OrderedReady would. */}}
  podManagementPolicy: Parallel
  {{- /* Older API versions require a governing Service's name; none is created, as devices need no DNS names. */}}
  serviceName: {{ $name }}
  selector:
    matchLabels:
      {{- include "devicefactory-lib.selectorLabels" . | nindent 6 }}
  template:
    {{- include "devicefactory-lib.podTemplate" . | nindent 4 }}
{{- end }}
{{- end }}

{{/*
The release's Secret.
*/}}
{{- define "devicefactory-lib.secret" -}}
{{- /* The device token (in fleet mode, every device's ID and token, as the files <ordinal>.deviceId and
<ordinal>.token), and the MQTT server's CA certificate when given; base64-encoded so that any character survives
YAML untouched. */ -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "devicefactory-lib.fullname" . }}
  labels:
    {{- include "devicefactory-lib.labels" . | nindent 4 }}
type: Opaque
data:
  {{- if include "devicefactory-lib.fleet" . }}
  {{- $seen := dict }}
  {{- range $ordinal, $device := .Values.devices }}
  {{- $deviceId := required (printf "devices[%d].deviceId is required" $ordinal) $device.deviceId }}
  {{- if hasKey $seen $deviceId }}
  {{- fail (printf "devices[%d]: device %s is listed twice; two pods with one device ID would knock each other off" $ordinal $deviceId) }}
  {{- end }}
  {{- $_ := set $seen $deviceId true }}
  {{ printf "%d.deviceId" $ordinal | quote }}: {{ $deviceId | b64enc | quote }}
  {{ printf "%d.token" $ordinal | quote }}: {{ required (printf "devices[%d].token is required" $ordinal) $device.token | b64enc | quote }}
  {{- end }}
  {{- else }}
  token: {{ include "devicefactory-lib.token" . | b64enc | quote }}
  {{- end }}
  {{- with .Values.mqttCaCert }}
  mqtt-ca.pem: {{ . | b64enc | quote }}
  {{- end }}
{{- end }}

{{/*
What `helm install` prints (NOTES.txt).
*/}}
{{- define "devicefactory-lib.notes" -}}
{{- $values := .Values.AsMap }}
{{- $fullname := include "devicefactory-lib.fullname" . -}}
{{- if include "devicefactory-lib.fleet" . -}}
{{- $name := include "devicefactory-lib.fleetName" . -}}
Deployed a fleet of {{ len .Values.devices }} Watson IoT Platform devices, one pod each:
  organization: {{ dig "identity" "orgId" "" $values }}
  device type:  {{ dig "identity" "typeId" "" $values }}
  device IDs:   {{ (first .Values.devices).deviceId }} .. {{ (last .Values.devices).deviceId }} (pod {{ $name }}-<i> runs the i-th, from 0)
{{- else -}}
Deployed one Watson IoT Platform device:
  organization: {{ dig "identity" "orgId" "" $values }}
  device type:  {{ dig "identity" "typeId" "" $values }}
  device ID:    {{ dig "identity" "deviceId" "" $values }}
{{- end }}
{{- with dig "options" "domain" "" $values }}
  domain:       {{ . }}
{{- end }}
{{- with dig "options" "mqtt" "port" "" $values }}
  MQTT port:    {{ . }}
{{- end }}
{{- if .Values.mqttCaCert }}
  MQTT CA:      from mqttCaCert, mounted at {{ include "devicefactory-lib.caFile" . }}
{{- end }}
  image:        {{ include "devicefactory-lib.image" . }}
{{- if include "devicefactory-lib.fleet" . }}
  runs as:      StatefulSet {{ include "devicefactory-lib.fleetName" . }} in namespace {{ .Release.Namespace }}, tokens in Secret {{ $fullname }}

Watch them start:
  kubectl --namespace {{ .Release.Namespace }} get pods -l "app.kubernetes.io/instance={{ .Release.Name }}"
Follow one device's log (the first line names its device; connection status and errors follow):
  kubectl --namespace {{ .Release.Namespace }} logs -f {{ include "devicefactory-lib.fleetName" . }}-0
Recall them all:
  helm uninstall {{ .Release.Name }} --namespace {{ .Release.Namespace }}
{{- else }}
  runs as:      Deployment {{ $fullname }} in namespace {{ .Release.Namespace }}, token in Secret {{ $fullname }}

Watch it start:
  kubectl --namespace {{ .Release.Namespace }} get pods -l "app.kubernetes.io/instance={{ .Release.Name }}"
Follow its log (connection status and errors):
  kubectl --namespace {{ .Release.Namespace }} logs -f deployment/{{ $fullname }}
Recall it:
  helm uninstall {{ .Release.Name }} --namespace {{ .Release.Namespace }}
{{- end }}
{{- end }}
