{{/*
The pod template of both workloads: the Deployment of a one-device release and the StatefulSet of a fleet release.
The image's client gets the same WIOTP_* variables in both modes (the SDKs read them from the environment); in fleet mode the
device ID and token are not in the spec: files/fleet-start.sh reads them from the mounted Secret at start-up.
`dig`, not .Values.identity.orgId: an empty `identity:` in a config then fails with `required`'s message.
A chart adds its own parts by defining the templates devicefactory-lib.initContainers, .extraEnv,
.extraVolumeMounts and .extraVolumes (list items at column 0; empty here): a chart's own definition of a
template wins over its library's.
*/}}
{{- define "devicefactory-lib.podTemplate" -}}
{{- $fleet := include "devicefactory-lib.fleet" . -}}
{{- $values := .Values.AsMap -}}
{{- $fullname := include "devicefactory-lib.fullname" . -}}
metadata:
  annotations:
    {{- /* A changed token (or CA) changes the pod template, so the pod restarts with it. */}}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "devicefactory-lib.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- /* The client never talks to the Kubernetes API, and hundreds of pods need no per-Service env vars. */}}
  automountServiceAccountToken: false
  enableServiceLinks: false
  {{- with .Values.hostAliases }}
  {{- /* A broker whose name does not resolve in the cluster: the name is pinned, TLS still verifies against it. */}}
  hostAliases:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with include "devicefactory-lib.initContainers" . }}
  initContainers:
    {{- . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .Chart.Name }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      image: {{ include "devicefactory-lib.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      {{- if $fleet }}
      {{- /* sh -c <script> fleet-start <the image's own command...>: the script ends with exec "$@". */}}
      command:
        - /bin/sh
        - -c
        - {{ .Files.Get "files/fleet-start.sh" | quote }}
        - fleet-start
      args:
        {{- toYaml .Values.fleet.clientCommand | nindent 8 }}
      {{- end }}
      env:
        - name: WIOTP_IDENTITY_ORGID
          value: {{ required "identity.orgId is required" (dig "identity" "orgId" "" $values) | quote }}
        - name: WIOTP_IDENTITY_TYPEID
          value: {{ required "identity.typeId is required" (dig "identity" "typeId" "" $values) | quote }}
        {{- if not $fleet }}
        - name: WIOTP_IDENTITY_DEVICEID
          value: {{ required "identity.deviceId is required" (dig "identity" "deviceId" "" $values) | quote }}
        - name: WIOTP_AUTH_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ $fullname }}
              key: token
        {{- end }}
        {{- with dig "options" "domain" "" $values }}
        - name: WIOTP_OPTIONS_DOMAIN
          value: {{ . | quote }}
        {{- end }}
        {{- with dig "options" "mqtt" "port" "" $values }}
        - name: WIOTP_OPTIONS_MQTT_PORT
          value: {{ . | toString | quote }}
        {{- end }}
        {{- /* options.mqtt.caFile is a path on the deploying machine: the container gets its own mounted copy. */}}
        {{- if .Values.mqttCaCert }}
        - name: WIOTP_OPTIONS_MQTT_CAFILE
          value: {{ include "devicefactory-lib.caFile" . | quote }}
        {{- end }}
        {{- with include "devicefactory-lib.extraEnv" . }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- if $fleet }}
        - name: FLEET_SECRET_DIR
          value: {{ .Values.fleet.secretDir | quote }}
        - name: FLEET_POD_INDEX
          valueFrom:
            fieldRef:
              {{- /* Set by Kubernetes 1.28+; empty before, and the script falls back to the pod name. */}}
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if .Values.mqttCaCert }}
        - name: mqtt-ca
          mountPath: {{ include "devicefactory-lib.caFile" . | dir }}
          readOnly: true
        {{- end }}
        {{- with include "devicefactory-lib.extraVolumeMounts" . }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- if $fleet }}
        - name: devices
          mountPath: {{ .Values.fleet.secretDir }}
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        {{- toYaml .Values.tmpDir | nindent 8 }}
    {{- if .Values.mqttCaCert }}
    - name: mqtt-ca
      secret:
        secretName: {{ $fullname }}
        items:
          - key: mqtt-ca.pem
            path: {{ include "devicefactory-lib.caFile" . | base }}
    {{- end }}
    {{- with include "devicefactory-lib.extraVolumes" . }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- if $fleet }}
    - name: devices
      secret:
        secretName: {{ $fullname }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* The hooks of the pod template: nothing, unless the chart defines its own. */}}
{{- define "devicefactory-lib.initContainers" -}}
{{- end }}
{{- define "devicefactory-lib.extraEnv" -}}
{{- end }}
{{- define "devicefactory-lib.extraVolumeMounts" -}}
{{- end }}
{{- define "devicefactory-lib.extraVolumes" -}}
{{- end }}
