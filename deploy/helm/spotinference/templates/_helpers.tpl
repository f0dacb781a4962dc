{{/* Names, labels and the pieces every component's pod shares. */}}

{{- define "spot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spot.fullname" -}}
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

{{/* A component's resource name: (dict "root" $ "component" "gateway") */}}
{{- define "spot.componentName" -}}
{{- printf "%s-%s" (include "spot.fullname" .root | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "spot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spot.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "spot.labels" -}}
{{ include "spot.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: spotinference
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "spot.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "spot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "spot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "spot.tiersConfigMap" -}}
{{- .Values.tiers.existingConfigMap | default (printf "%s-tiers" (include "spot.fullname" .)) -}}
{{- end -}}

{{/* Where the tiers file is mounted, and TIERS_FILE. */}}
{{- define "spot.tiersPath" -}}/etc/spotinference/tiers.yaml{{- end -}}

{{/*
The environment of a component: (dict "root" $ "secrets" (list "DATABASE_URL" ...) "env" (dict ...)).
Plain settings first (config, then the component's own), then the secrets this component reads, each from the
existing Secret under the key that secrets.keys names (optional ones may be missing from the Secret).
*/}}
{{- define "spot.env" -}}
{{- $root := .root -}}
- name: TIERS_FILE
  value: {{ include "spot.tiersPath" $root | quote }}
{{- range $name, $value := $root.Values.config }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- range $name, $value := .env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- if $root.Values.wakeDriver.kubernetes.enabled }}
# the API server's CA, for the kubernetes wake driver (token_file: /var/run/secrets/kubernetes.io/serviceaccount/token)
- name: NODE_EXTRA_CA_CERTS
  value: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
{{- end }}
{{- range $name := .secrets }}
{{- $key := index $root.Values.secrets.keys $name }}
{{- if $key }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.existingSecret: name the Secret that holds DATABASE_URL, REDIS_URL and the other credentials" $root.Values.secrets.existingSecret }}
      key: {{ $key }}
      optional: {{ not (has $name (list "DATABASE_URL" "REDIS_URL")) }}
{{- end }}
{{- end }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The pod-level fields every component shares: (dict "root" $ "component" "gateway" "values" .Values.gateway) */}}
{{- define "spot.podCommon" -}}
{{- $root := .root -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $selector := fromYaml (include "spot.selectorLabels" .) }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range . }}
  {{- $c := deepCopy . }}
  {{- if not $c.labelSelector }}{{ $_ := set $c "labelSelector" (dict "matchLabels" $selector) }}{{ end }}
  - {{ toYaml $c | nindent 4 | trim }}
  {{- end }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* Pod annotations: the tiers file's checksum (the apps read it at boot: a change rolls the pods) and the component's own. */}}
{{- define "spot.podAnnotations" -}}
{{- if not .root.Values.tiers.existingConfigMap }}
checksum/tiers: {{ toYaml .root.Values.tiers.file | sha256sum }}
{{- end }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "spot.containerSecurityContext" -}}
{{- toYaml .Values.securityContext -}}
{{- end -}}

{{/* An Ingress to a component's Service: (dict "root" $ "component" "console" "values" .Values.console) */}}
{{- define "spot.ingress" -}}
{{- $v := .values -}}
{{- if $v.ingress.enabled }}
{{- if empty $v.ingress.hosts }}
{{- fail (printf "%s.ingress.hosts: name at least one host" .component) }}
{{- end }}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "spot.componentName" . }}
  labels:
    {{- include "spot.labels" . | nindent 4 }}
  {{- with $v.ingress.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $v.ingress.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- with $v.ingress.tls }}
  tls:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  rules:
    {{- range $v.ingress.hosts }}
    - host: {{ . | quote }}
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: {{ include "spot.componentName" $ }}
                port:
                  name: http
    {{- end }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget of a component: (dict "root" $ "component" "gateway" "values" .Values.gateway) */}}
{{- define "spot.pdb" -}}
{{- $p := .values.podDisruptionBudget -}}
{{- if $p.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "spot.componentName" . }}
  labels:
    {{- include "spot.labels" . | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" $p.minAvailable) }}
  minAvailable: {{ $p.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $p.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "spot.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* A component's Service: (dict "root" $ "component" "console" "values" .Values.console) */}}
{{- define "spot.service" -}}
{{- $v := .values -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "spot.componentName" . }}
  labels:
    {{- include "spot.labels" . | nindent 4 }}
  {{- with $v.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $v.service.type }}
  selector:
    {{- include "spot.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ $v.service.port }}
      targetPort: http
      protocol: TCP
{{- end -}}
