{{/*
oshi's own part of the pod: the Java SDK ignores options.mqtt.caFile, so with mqttCaCert (and javaTrustStore on)
an init container builds a JVM truststore from it (files/truststore.sh) and JAVA_TOOL_OPTIONS points the JVM at it.
These fill the hooks of the library's pod template (charts/devicefactory-lib/templates/_pod.tpl).
*/}}

{{/*
The JVM truststore the truststore init container builds from mqttCaCert (see files/truststore.sh).
*/}}
{{- define "oshi.trustStore" -}}
/etc/wiotp/truststore/cacerts
{{- end }}

{{- define "devicefactory-lib.initContainers" -}}
{{- if and .Values.mqttCaCert .Values.javaTrustStore -}}
- name: truststore
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  image: {{ include "devicefactory-lib.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
    - /bin/sh
    - -c
    - {{ .Files.Get "files/truststore.sh" | quote }}
  env:
    - name: WIOTP_OPTIONS_MQTT_CAFILE
      value: {{ include "devicefactory-lib.caFile" . | quote }}
    - name: TRUSTSTORE
      value: {{ include "oshi.trustStore" . | quote }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: mqtt-ca
      mountPath: {{ include "devicefactory-lib.caFile" . | dir }}
      readOnly: true
    - name: truststore
      mountPath: {{ include "oshi.trustStore" . | dir }}
{{- end }}
{{- end }}

{{- define "devicefactory-lib.extraEnv" -}}
{{- if and .Values.mqttCaCert .Values.javaTrustStore -}}
- name: JAVA_TOOL_OPTIONS
  value: {{ printf "-Djavax.net.ssl.trustStore=%s -Djavax.net.ssl.trustStorePassword=changeit" (include "oshi.trustStore" .) | quote }}
{{- end }}
{{- end }}

{{- define "devicefactory-lib.extraVolumeMounts" -}}
{{- if and .Values.mqttCaCert .Values.javaTrustStore -}}
- name: truststore
  mountPath: {{ include "oshi.trustStore" . | dir }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "devicefactory-lib.extraVolumes" -}}
{{- if and .Values.mqttCaCert .Values.javaTrustStore -}}
- name: truststore
  emptyDir:
    sizeLimit: 1Mi
{{- end }}
{{- end }}
