{{/*
The helpers both device charts share. Each is called with the application chart's own context, so .Chart is
psutil's or oshi's: the names, labels and image follow the chart that includes them.
*/}}

{{/*
The chart name, or nameOverride.
*/}}
{{- define "devicefactory-lib.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every resource: <release>-<chart name>, at most 63 characters (a DNS label).
Unlike the `helm create` scaffold this always appends the chart name, even when the release name contains it:
release iotpsutil-190523-1000 of chart psutil gives iotpsutil-190523-1000-psutil, the name the original sample's
pods had (they were named <release>-<chart>).
*/}}
{{- define "devicefactory-lib.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "devicefactory-lib.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "devicefactory-lib.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "devicefactory-lib.labels" -}}
helm.sh/chart: {{ include "devicefactory-lib.chart" . }}
{{ include "devicefactory-lib.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the device's pod; they never change across upgrades.
*/}}
{{- define "devicefactory-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "devicefactory-lib.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The device token. `required` fails the install when the values file has no auth.token; helm lint renders in
lint mode, where `required` only logs, so linting the chart's defaults (which hold no device) stays clean.
*/}}
{{- define "devicefactory-lib.token" -}}
{{- required "auth.token is required: pass a device config with --values" (dig "auth" "token" "" .Values.AsMap) }}
{{- end }}

{{/*
The container image: repository@digest when image.digest is set (a digest names one exact image, so it wins over
the tag), else repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "devicefactory-lib.image" -}}
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
{{- define "devicefactory-lib.fleet" -}}
{{- if .Values.devices }}true{{ end }}
{{- end }}

{{/*
The fleet's StatefulSet name: the full name cut to 52 characters. The controller labels each pod with
controller-revision-hash <name>-<10 characters>, a label value of at most 63; and the pod names <name>-<ordinal>
then stay DNS labels, so a pod's hostname is its whole name and ends with its ordinal.
*/}}
{{- define "devicefactory-lib.fleetName" -}}
{{- include "devicefactory-lib.fullname" . | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/*
Where the pod finds the CA certificate of a platform with a private CA (mqttCaCert), mounted read-only.
*/}}
{{- define "devicefactory-lib.caFile" -}}
/etc/wiotp/ca/mqtt-ca.pem
{{- end }}
