{{/*
The chart name, or nameOverride.
*/}}
{{- define "oshi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every resource: <release>-<chart name>, at most 63 characters (a DNS label).
Unlike the `helm create` scaffold this always appends the chart name, even when the release name contains it:
release iotoshi-190523-1000 gives iotoshi-190523-1000-oshi, as the original sample named its pods <release>-<chart>.
*/}}
{{- define "oshi.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "oshi.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "oshi.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "oshi.labels" -}}
helm.sh/chart: {{ include "oshi.chart" . }}
{{ include "oshi.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the device's pod; they never change across upgrades.
*/}}
{{- define "oshi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oshi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The device token. `required` fails the install when the values file has no auth.token; helm lint renders in
lint mode, where `required` only logs, so linting the chart's defaults (which hold no device) stays clean.
*/}}
{{- define "oshi.token" -}}
{{- required "auth.token is required: pass a device config with --values" (dig "auth" "token" "" .Values.AsMap) }}
{{- end }}

{{/*
The container image: repository@digest when image.digest is set (a digest names one exact image, so it wins over
the tag), else repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "oshi.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Non-empty in fleet mode: the values are a fleet values file (a `devices` list, written by deviceDeployer.py --fleet),
and the release runs a StatefulSet with one pod per device instead of the one-device Deployment.
*/}}
{{- define "oshi.fleet" -}}
{{- if .Values.devices }}true{{ end }}
{{- end }}

{{/*
The fleet's StatefulSet name: the full name cut to 52 characters. The controller labels each pod with
controller-revision-hash <name>-<10 characters>, a label value of at most 63; and the pod names <name>-<ordinal>
then stay DNS labels, so a pod's hostname is its whole name and ends with its ordinal.
*/}}
{{- define "oshi.fleetName" -}}
{{- include "oshi.fullname" . | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/*
Where the pod finds the CA certificate of a platform with a private CA (mqttCaCert), mounted read-only.
*/}}
{{- define "oshi.caFile" -}}
/etc/wiotp/ca/mqtt-ca.pem
{{- end }}

{{/*
The JVM truststore the truststore init container builds from mqttCaCert (see files/truststore.sh).
*/}}
{{- define "oshi.trustStore" -}}
/etc/wiotp/truststore/cacerts
{{- end }}
