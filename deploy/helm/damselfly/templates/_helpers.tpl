{{- define "damselfly.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "damselfly.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "damselfly.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "damselfly.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "damselfly.supernodeService" -}}
{{ include "damselfly.fullname" . }}-supernode
{{- end -}}

{{/* The supernodes' stable addresses, in order: pod-N.service:port. */}}
{{- define "damselfly.supernodes" -}}
{{- $svc := include "damselfly.supernodeService" . -}}
{{- $list := list -}}
{{- range $i := until (int .Values.supernode.replicas) -}}
{{- $list = append $list (printf "%s-%d.%s.%s.svc:%d" $svc $i $svc $.Release.Namespace (int $.Values.supernode.port)) -}}
{{- end -}}
{{- toYaml $list -}}
{{- end -}}

{{- define "damselfly.tokenSecret" -}}
{{ .Values.tokens.existingSecret | default (printf "%s-tokens" (include "damselfly.fullname" .)) }}
{{- end -}}

{{/* Configuration keys every daemon shares: tokens, TLS, logs. */}}
{{- define "damselfly.commonConfig" -}}
log-format: {{ .Values.logFormat }}
log-level: {{ .Values.logLevel }}
{{- if .Values.tokens.enabled }}
cluster-token-file: /etc/damselfly/tokens/cluster-token
{{- end }}
{{- if .Values.tls.enabled }}
tls:
  cert: /etc/damselfly/tls/tls.crt
  key: /etc/damselfly/tls/tls.key
  ca: /etc/damselfly/tls/ca.crt
{{- end }}
{{- end -}}

{{/* Volumes of the token and TLS Secrets (mode 0400). */}}
{{- define "damselfly.secretVolumes" -}}
{{- if .Values.tokens.enabled }}
- name: tokens
  secret:
    secretName: {{ include "damselfly.tokenSecret" . }}
    defaultMode: 0400
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ required "tls.existingSecret is required with tls.enabled" .Values.tls.existingSecret }}
    defaultMode: 0400
{{- end }}
{{- end -}}

{{- define "damselfly.secretMounts" -}}
{{- if .Values.tokens.enabled }}
- name: tokens
  mountPath: /etc/damselfly/tokens
  readOnly: true
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/damselfly/tls
  readOnly: true
{{- end }}
{{- end -}}
