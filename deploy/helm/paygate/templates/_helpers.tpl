{{/*
Shared pieces. Component names are fixed (see values.yaml): the protocol
addresses pods by name, so they may not carry a release prefix.
*/}}

{{- define "paygate.trustDomain" -}}paygate.local{{- end -}}

{{/* Labels for every object of a component: include with (dict "root" $ "component" "gateway"). */}}
{{- define "paygate.labels" -}}
app.kubernetes.io/name: paygate
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: paygate
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "paygate.selectorLabels" -}}
app.kubernetes.io/name: paygate
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "paygate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret holding tls.crt, tls.key and ca.crt for a component. */}}
{{- define "paygate.tlsSecret" -}}
{{- if .root.Values.certManager.enabled -}}
{{- printf "%s-tls" .component -}}
{{- else -}}
{{- get .root.Values.tls.existingSecrets .component | default (printf "%s-tls" .component) -}}
{{- end -}}
{{- end -}}

{{- define "paygate.seedSecret" -}}
{{- .Values.seed.existingSecret | default "paygate-seed" -}}
{{- end -}}

{{/* Headless-service DNS name of pod <name>-<ordinal>, resolvable through the pod's search path. */}}
{{- define "paygate.podHost" -}}
{{- printf "%s-%d.%s-headless.%s.svc" .name (int .ordinal) .name .root.Release.Namespace -}}
{{- end -}}

{{/* The gateway Service's URL: what banks (GetDecision) and checkout dial; any ready replica answers. */}}
{{- define "paygate.gatewayUrl" -}}
{{- printf "https://gateway.%s.svc:%d" .Release.Namespace (int .Values.gateway.port) -}}
{{- end -}}

{{/* bank-a=https://bank-a-0.bank-a-headless.<ns>.svc:50051,... for the gateway. */}}
{{- define "paygate.bankUrls" -}}
{{- $root := . -}}
{{- $urls := list -}}
{{- range .Values.banks -}}
{{- $host := include "paygate.podHost" (dict "root" $root "name" .name "ordinal" 0) -}}
{{- $urls = append $urls (printf "%s=https://%s:%d" .name $host (int $root.Values.bank.port)) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}

{{- define "paygate.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://redis.%s.svc:6379" .Release.Namespace -}}
{{- else -}}
{{- .Values.redis.externalUrl -}}
{{- end -}}
{{- end -}}

{{/* DNS names a component's certificate carries for its Service (and headless pods). */}}
{{- define "paygate.serviceDnsNames" -}}
{{- $ns := .root.Release.Namespace -}}
{{- $cd := .root.Values.clusterDomain -}}
- {{ .service }}
- {{ .service }}.{{ $ns }}
- {{ .service }}.{{ $ns }}.svc
- {{ .service }}.{{ $ns }}.svc.{{ $cd }}
{{- end -}}

{{- define "paygate.headlessDnsNames" -}}
{{- $ns := .root.Release.Namespace -}}
{{- $cd := .root.Values.clusterDomain -}}
{{- $name := .name -}}
{{- range $i := until (int .replicas) }}
- {{ $name }}-{{ $i }}.{{ $name }}-headless.{{ $ns }}.svc
- {{ $name }}-{{ $i }}.{{ $name }}-headless.{{ $ns }}.svc.{{ $cd }}
{{- end }}
{{- /* Wildcards keep `kubectl scale` working without a new certificate. */}}
- "*.{{ .name }}-headless.{{ $ns }}.svc"
- "*.{{ .name }}-headless.{{ $ns }}.svc.{{ $cd }}"
- {{ .name }}-headless.{{ $ns }}.svc
- {{ .name }}-headless.{{ $ns }}.svc.{{ $cd }}
{{- end -}}

{{/* Takes runAsUser, runAsGroup and fsGroup (podSecurity, or a third-party image's own user). */}}
{{- define "paygate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsGroup }}
fsGroup: {{ .fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "paygate.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Env every paygate service gets: logging, ops port, TLS files, tracing. */}}
{{- define "paygate.commonEnv" -}}
- name: LOG_LEVEL
  value: {{ .root.Values.logLevel | quote }}
- name: METRICS_PORT
  value: {{ .root.Values.metrics.port | int64 | quote }}
- name: TLS_CA_FILE
  value: /etc/paygate/tls/ca.crt
- name: TLS_CERT_FILE
  value: /etc/paygate/tls/tls.crt
- name: TLS_KEY_FILE
  value: /etc/paygate/tls/tls.key
- name: OTEL_SERVICE_NAME
  value: {{ .component | quote }}
{{- if .root.Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .root.Values.otel.endpoint | quote }}
{{- end }}
{{- end -}}

{{/* Probes on the plain-HTTP ops port. Readiness waits for recovery. */}}
{{- define "paygate.probes" -}}
startupProbe:
  httpGet: { path: /healthz, port: metrics }
  periodSeconds: 2
  failureThreshold: 90
livenessProbe:
  httpGet: { path: /healthz, port: metrics }
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet: { path: /readyz, port: metrics }
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}

{{/* Volumes every paygate pod mounts: its certificate, the seed, a small /tmp. */}}
{{- define "paygate.volumes" -}}
- name: tls
  secret:
    secretName: {{ include "paygate.tlsSecret" (dict "root" .root "component" .component) }}
    defaultMode: 0440
{{- if .seed }}
- name: seed
  secret:
    secretName: {{ include "paygate.seedSecret" .root }}
    defaultMode: 0440
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 16Mi
{{- end -}}

{{/* Whole-directory mounts (never subPath): kubelet swaps the files in place on rotation. */}}
{{- define "paygate.volumeMounts" -}}
- name: tls
  mountPath: /etc/paygate/tls
  readOnly: true
{{- if .seed }}
- name: seed
  mountPath: /etc/paygate/seed
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Pod-spec fields shared by every paygate pod; "security" overrides podSecurity's user and groups. */}}
{{- define "paygate.podCommon" -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- include "paygate.podSecurityContext" (.security | default .root.Values.podSecurity) | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .cfg.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .cfg.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .cfg.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A volumeClaimTemplate named data. */}}
{{- define "paygate.dataClaim" -}}
- metadata:
    name: data
    labels:
      {{- include "paygate.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
  spec:
    accessModes: [ReadWriteOnce]
    {{- with .persistence.storageClassName }}
    storageClassName: {{ . | quote }}
    {{- end }}
    resources:
      requests:
        storage: {{ .persistence.size | quote }}
{{- end -}}

{{/* "true" when the gateway's store is PostgreSQL (any of url, host, bundled), else "". */}}
{{- define "paygate.postgresql.enabled" -}}
{{- $pg := .Values.postgresql -}}
{{- if or $pg.url $pg.host $pg.bundled.enabled -}}true{{- end -}}
{{- end -}}

{{/* The Secret holding the database password ("" = none): the bundled one, or postgresql.existingSecret. */}}
{{- define "paygate.postgresql.passwordSecret" -}}
{{- if .Values.postgresql.bundled.enabled -}}postgresql{{- else -}}{{- .Values.postgresql.existingSecret -}}{{- end -}}
{{- end -}}

{{- define "paygate.postgresql.passwordKey" -}}
{{- if .Values.postgresql.bundled.enabled -}}password{{- else -}}{{- .Values.postgresql.existingSecretPasswordKey -}}{{- end -}}
{{- end -}}

{{/*
The base64 value of key .key in Secret .name as the cluster has it, else a new
one from .generate: secrets that must never change once used (a password
initdb wrote, the card-number key) survive upgrades. `helm template` cannot
look up and always prints a new value.
*/}}
{{- define "paygate.keptSecretValue" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name | default (dict) -}}
{{- get (dig "data" (dict) $existing) .key | default (.generate | b64enc) -}}
{{- end -}}

{{/* The Secret with the card-number key every replica shares (only on PostgreSQL; one SQLite replica makes its own in /data). */}}
{{- define "paygate.cardSecret" -}}
{{- .Values.gateway.cardSecret.existingSecret | default "gateway-card-secret" -}}
{{- end -}}

{{/* Where the gateway finds the password and the server's CA (whole-directory Secret mounts). */}}
{{- define "paygate.postgresql.passwordDir" -}}/etc/paygate/postgresql{{- end -}}
{{- define "paygate.postgresql.caDir" -}}/etc/paygate/postgresql-ca{{- end -}}

{{/*
DATABASE_URL, never with a password (that is DATABASE_PASSWORD_FILE):
postgresql.url as given, or composed from host/port/database/username
(the bundled server's Service when bundled.enabled) plus sslmode/sslrootcert.
*/}}
{{- define "paygate.databaseUrl" -}}
{{- $pg := .Values.postgresql -}}
{{- if $pg.url -}}
{{- $pg.url -}}
{{- else -}}
{{- $host := $pg.host -}}
{{- if $pg.bundled.enabled -}}{{- $host = printf "postgresql.%s.svc" .Release.Namespace -}}{{- end -}}
{{- $query := list -}}
{{- with $pg.sslMode -}}{{- $query = append $query (printf "sslmode=%s" .) -}}{{- end -}}
{{- if $pg.caSecret -}}{{- $query = append $query (printf "sslrootcert=%s/%s" (include "paygate.postgresql.caDir" .) $pg.caSecretKey) -}}{{- end -}}
{{- printf "postgres://%s@%s:%d/%s" (urlquery $pg.username) $host (int $pg.port) (urlquery $pg.database) -}}
{{- with $query -}}?{{ join "&" . }}{{- end -}}
{{- end -}}
{{- end -}}

{{/* Render-time checks the schema cannot express. */}}
{{- define "paygate.validate" -}}
{{- $pg := .Values.postgresql -}}
{{- $g := .Values.gateway -}}
{{- if gt (len (compact (list $pg.url $pg.host (ternary "bundled" "" $pg.bundled.enabled)))) 1 -}}
{{- fail "postgresql: set only one of url, host and bundled.enabled" -}}
{{- end -}}
{{- if or (regexMatch "^[a-z]+://[^/@?#]*:[^/@?#]*@" $pg.url) (regexMatch "[?&]password=" $pg.url) -}}
{{- fail "postgresql.url must not carry a password (it would sit in the pod spec): put the password in a Secret and name it in postgresql.existingSecret; it is mounted as a file" -}}
{{- end -}}
{{- if and $pg.caSecret (eq $pg.driver "postgres") -}}
{{- fail "postgresql.caSecret needs postgresql.driver pg: postgres.js ignores sslrootcert in the URL, so the CA would not be checked" -}}
{{- end -}}
{{- range $k := list "existingSecret" "caSecret" -}}
{{- if and (get $pg $k) (not (or $pg.url $pg.host)) -}}
{{- fail (printf "postgresql.%s needs postgresql.url or postgresql.host (the bundled server makes its own Secret and needs no CA)" $k) -}}
{{- end -}}
{{- end -}}
{{- if and (gt (int $g.replicas) 1) (not (include "paygate.postgresql.enabled" .)) -}}
{{- fail "gateway.replicas > 1 needs a shared PostgreSQL store (each replica would otherwise keep its own SQLite log): set postgresql.url, postgresql.host or postgresql.bundled.enabled; see docs/OPERATIONS.md, PostgreSQL" -}}
{{- end -}}
{{- if and (gt (int $g.replicas) 1) (not .Values.redis.enabled) (not .Values.redis.externalUrl) -}}
{{- fail "gateway.replicas > 1 needs shared idempotency keys: set redis.enabled or redis.externalUrl" -}}
{{- end -}}
{{- if gt (mul 2 (int $g.heartbeatIntervalMs)) (int $g.leaseMs) -}}
{{- fail "gateway.heartbeatIntervalMs must be at most half of gateway.leaseMs" -}}
{{- end -}}
{{- /* superuser_reserved_connections (3) stay free for an operator's psql. */ -}}
{{- if and $pg.bundled.enabled (gt (mul (int $g.replicas) (int $pg.poolMax)) (sub (int $pg.bundled.maxConnections) 3)) -}}
{{- fail (printf "gateway.replicas x postgresql.poolMax = %d connections, more than postgresql.bundled.maxConnections (%d) minus 3 reserved" (mul (int $g.replicas) (int $pg.poolMax)) (int $pg.bundled.maxConnections)) -}}
{{- end -}}
{{- if and .Values.redis.enabled .Values.redis.externalUrl -}}
{{- fail "set either redis.enabled or redis.externalUrl, not both" -}}
{{- end -}}
{{- $names := list -}}
{{- range .Values.banks -}}
{{- if has .name $names -}}{{- fail (printf "banks: %s is listed twice" .name) -}}{{- end -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- if not .Values.seed.existingSecret -}}
{{- $seed := fromYaml .Values.seed.content -}}
{{- if hasKey $seed "Error" -}}{{- fail (printf "seed.content is not YAML: %s" $seed.Error) -}}{{- end -}}
{{- $seedBanks := $seed.banks | default list -}}
{{- range $names -}}
{{- if not (has . $seedBanks) -}}{{- fail (printf "banks: %s is not in seed.content banks %v" . $seedBanks) -}}{{- end -}}
{{- end -}}
{{- range $seedBanks -}}
{{- if not (has . $names) -}}{{- fail (printf "seed.content names bank %s but banks has no such entry" .) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
