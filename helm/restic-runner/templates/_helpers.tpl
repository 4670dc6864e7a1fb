{{/* Paths fixed by the image and the chart (the config must use them). */}}
{{- define "restic-runner.configDir" -}}/etc/restic-runner{{- end }}
{{- define "restic-runner.configPath" -}}/etc/restic-runner/restic-runner.toml{{- end }}
{{- define "restic-runner.stateDir" -}}/var/lib/restic-runner{{- end }}
{{- define "restic-runner.secretsDir" -}}/run/secrets/restic-runner{{- end }}
{{- define "restic-runner.clientSecretsDir" -}}/run/secrets/restic-runner-client{{- end }}
{{- define "restic-runner.containerPort" -}}8080{{- end }}

{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "restic-runner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, plus the chart name unless the release name already
contains it; 63 characters at most.
*/}}
{{- define "restic-runner.fullname" -}}
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

{{- define "restic-runner.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "restic-runner.labels" -}}
helm.sh/chart: {{ include "restic-runner.chart" . }}
{{ include "restic-runner.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: restic-runner
{{- end }}

{{/* name + instance; every selector adds app.kubernetes.io/component. */}}
{{- define "restic-runner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "restic-runner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The server pod's selector: never matches the CronJob or test pods. */}}
{{- define "restic-runner.serverSelectorLabels" -}}
{{ include "restic-runner.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "restic-runner.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "restic-runner.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "restic-runner.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The Secret mounted at /run/secrets/restic-runner: existingSecret or the chart's. */}}
{{- define "restic-runner.secretName" -}}
{{- .Values.existingSecret | default (include "restic-runner.fullname" .) }}
{{- end }}

{{/* The Secret the CronJobs' trigger client reads its whsec_ secret from. */}}
{{- define "restic-runner.triggerSecretName" -}}
{{- .Values.triggerClient.secretName | default (include "restic-runner.secretName" .) }}
{{- end }}

{{/* The service's URL inside the release's namespace. */}}
{{- define "restic-runner.url" -}}
{{- printf "http://%s:%d" (include "restic-runner.fullname" .) (int .Values.service.port) }}
{{- end }}

{{/* The pod's hostname: restic-runner's `hostname` (metric labels, run records). */}}
{{- define "restic-runner.hostname" -}}
{{- .Values.hostname | default (include "restic-runner.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The restrictive security contexts, the same for every pod of the chart (server, CronJobs, test).
*/}}
{{- define "restic-runner.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
{{- with .Values.supplementalGroups }}
supplementalGroups:
  {{- toYaml . | nindent 2 }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "restic-runner.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* A probe: the given path on the http port, plus the timing values. */}}
{{- define "restic-runner.probe" -}}
httpGet:
  path: {{ .path }}
  port: http
{{- range $key, $value := .timing }}
{{ $key }}: {{ int64 $value }}
{{- end }}
{{- end }}

{{/*
The chart Secret's content as JSON: `secrets`, where an empty entry whose name ends in `.whsec`
becomes a generated Standard Webhooks secret (whsec_ + base64 of 32 random bytes). A value
already in the cluster is kept (lookup; it returns nothing without a cluster). The result is
computed once per render and cached in .Values, so the Secret and the Deployment's
checksum/secret annotation see the same generated value.
*/}}
{{- define "restic-runner.secretData" -}}
{{- if not (hasKey .Values "_generatedSecretData") }}
{{- $current := (lookup "v1" "Secret" .Release.Namespace (include "restic-runner.fullname" .)).data | default dict }}
{{- $data := dict }}
{{- range $key, $value := .Values.secrets }}
{{- if and (not $value) (hasSuffix ".whsec" $key) }}
{{- if index $current $key }}
{{- $value = index $current $key | b64dec }}
{{- else }}
{{- $value = printf "whsec_%s" (randBytes 32) }}
{{- end }}
{{- end }}
{{- $_ := set $data $key $value }}
{{- end }}
{{- $_ := set .Values "_generatedSecretData" $data }}
{{- end }}
{{- index .Values "_generatedSecretData" | toJson }}
{{- end }}

{{/*
Text indented by .indent spaces, line by line, leaving blank lines empty (no trailing spaces).
Every line, the first too, starts with a newline.
*/}}
{{- define "restic-runner.indentLines" -}}
{{- $indent := int .indent }}
{{- range splitList "\n" (trimSuffix "\n" .text) }}
{{ if trim . }}{{ . | indent $indent }}{{ end }}
{{- end }}
{{- end }}
