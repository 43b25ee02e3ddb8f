{{/* Chart name, truncated to what Kubernetes names allow. */}}
{{- define "jellyfin-pgfs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, with the chart name unless it contains it. */}}
{{- define "jellyfin-pgfs.fullname" -}}
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

{{- define "jellyfin-pgfs.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jellyfin-pgfs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jellyfin-pgfs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jellyfin-pgfs.labels" -}}
helm.sh/chart: {{ include "jellyfin-pgfs.chart" . }}
{{ include "jellyfin-pgfs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Name of the CloudNativePG Cluster (at most 50 characters: the operator derives longer names from it). */}}
{{- define "jellyfin-pgfs.cnpgCluster" -}}
{{- default (printf "%s-pg" (include "jellyfin-pgfs.fullname" . | trunc 47 | trimSuffix "-")) .Values.cloudnativepg.clusterName }}
{{- end }}

{{/* A libpq keyword/value pair, the value single-quoted and escaped (libpq "Connection Strings"). */}}
{{- define "jellyfin-pgfs.kv" -}}
{{- printf "%s='%s'" (index . 0) (toString (index . 1) | replace "\\" "\\\\" | replace "'" "\\'") }}
{{- end }}

{{/*
The DSN without a password: host, port, database, user. The password comes
separately from a Secret (PGPASSWORD), sslmode from PGSSLMODE.
*/}}
{{- define "jellyfin-pgfs.dsn" -}}
{{- $pg := .Values.postgresql -}}
{{- $host := $pg.host -}}
{{- $port := $pg.port -}}
{{- if .Values.cloudnativepg.enabled -}}
{{- $host = printf "%s-rw" (include "jellyfin-pgfs.cnpgCluster" .) -}}
{{- $port = 5432 -}}
{{- end -}}
{{- list
  (include "jellyfin-pgfs.kv" (list "host" $host))
  (include "jellyfin-pgfs.kv" (list "port" $port))
  (include "jellyfin-pgfs.kv" (list "dbname" $pg.database))
  (include "jellyfin-pgfs.kv" (list "user" $pg.user))
  | join " " }}
{{- end }}

{{/*
The Secret holding the credentials: CloudNativePG's <cluster>-app; with
postgresql.host, postgresql.existingSecret (its passwordKey); otherwise
postgresql.existingSecret or <fullname>-postgresql (its dsnKey: a whole DSN).
*/}}
{{- define "jellyfin-pgfs.credentialsSecret" -}}
{{- if .Values.cloudnativepg.enabled -}}
{{- printf "%s-app" (include "jellyfin-pgfs.cnpgCluster" .) -}}
{{- else if .Values.postgresql.host -}}
{{- required "postgresql.existingSecret is required with postgresql.host: pgfs never takes a password from values" .Values.postgresql.existingSecret -}}
{{- else -}}
{{- .Values.postgresql.existingSecret | default (printf "%s-postgresql" (include "jellyfin-pgfs.fullname" .)) -}}
{{- end -}}
{{- end }}

{{/* The CA Secret for verify-ca/verify-full, or nothing. */}}
{{- define "jellyfin-pgfs.caSecret" -}}
{{- $ca := .Values.postgresql.sslRootCert -}}
{{- if $ca.secretName -}}
{{- $ca.secretName -}}
{{- else if and .Values.cloudnativepg.enabled (has .Values.postgresql.sslmode (list "verify-ca" "verify-full")) -}}
{{- printf "%s-ca" (include "jellyfin-pgfs.cnpgCluster" .) -}}
{{- end -}}
{{- end }}

{{/* Whether the DSN is a file from a Secret (neither CloudNativePG nor postgresql.host). */}}
{{- define "jellyfin-pgfs.usesDsnFile" -}}
{{- if not (or .Values.cloudnativepg.enabled .Values.postgresql.host) }}true{{ end -}}
{{- end }}

{{/*
Environment of both pgfs containers: how to reach PostgreSQL. Never a
password in a literal value: PGPASSWORD is a secretKeyRef, a full DSN is a
file from a Secret volume (PGFS_DSN_FILE).
Argument: (dict "root" $ "app" "application name").
*/}}
{{- define "jellyfin-pgfs.pgEnv" -}}
{{- $root := .root -}}
{{- if include "jellyfin-pgfs.usesDsnFile" $root }}
- name: PGFS_DSN_FILE
  value: /etc/pgfs/dsn/dsn
{{- else }}
- name: PGFS_DSN
  value: {{ include "jellyfin-pgfs.dsn" $root | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "jellyfin-pgfs.credentialsSecret" $root }}
      key: {{ ternary "password" $root.Values.postgresql.passwordKey $root.Values.cloudnativepg.enabled }}
{{- end }}
- name: PGSSLMODE
  value: {{ $root.Values.postgresql.sslmode | quote }}
{{- $ca := include "jellyfin-pgfs.caSecret" $root }}
{{- if $ca }}
- name: PGSSLROOTCERT
  value: /etc/pgfs/ca/ca.crt
{{- end }}
- name: PGAPPNAME
  value: {{ .app | quote }}
- name: PGCONNECT_TIMEOUT
  value: "10"
{{- end }}

{{/* Volume mounts of both pgfs containers for the credentials. */}}
{{- define "jellyfin-pgfs.pgVolumeMounts" -}}
{{- if include "jellyfin-pgfs.usesDsnFile" . }}
- name: pgfs-dsn
  mountPath: /etc/pgfs/dsn
  readOnly: true
{{- end }}
{{- if include "jellyfin-pgfs.caSecret" . }}
- name: pgfs-ca
  mountPath: /etc/pgfs/ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "jellyfin-pgfs.pgVolumes" -}}
{{- if include "jellyfin-pgfs.usesDsnFile" . }}
- name: pgfs-dsn
  secret:
    secretName: {{ include "jellyfin-pgfs.credentialsSecret" . }}
    defaultMode: 256  # 0400
    items:
      - key: {{ .Values.postgresql.dsnKey }}
        path: dsn
{{- end }}
{{- $ca := include "jellyfin-pgfs.caSecret" . }}
{{- if $ca }}
- name: pgfs-ca
  secret:
    secretName: {{ $ca }}
    defaultMode: 292  # 0444
    items:
      - key: {{ .Values.postgresql.sslRootCert.key }}
        path: ca.crt
{{- end }}
{{- end }}

{{- define "jellyfin-pgfs.pgfsImage" -}}
{{- printf "%s:%s" .Values.pgfs.image.repository .Values.pgfs.image.tag }}
{{- end }}
