{{/*
Names. StatefulSet names stay within 52 characters (the controller-revision-hash label adds
11), so the full name is cut to 40 before "-archive-<shard>" is added.
*/}}
{{- define "retrace.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "retrace.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "retrace.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "retrace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway") */}}
{{- define "retrace.selectorLabels" -}}
app.kubernetes.io/name: {{ include "retrace.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "retrace.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "retrace.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "retrace.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "retrace.authSecretName" -}}
{{- default (printf "%s-auth" (include "retrace.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "retrace.archive.headless" -}}
{{- printf "%s-archive-headless" (include "retrace.fullname" .) -}}
{{- end -}}

{{/* Every archive pod's URL, a list per shard: the archive's `shard_urls`. */}}
{{- define "retrace.archive.shardUrls" -}}
{{- $fullname := include "retrace.fullname" . -}}
{{- $headless := include "retrace.archive.headless" . -}}
{{- $shards := list -}}
{{- range $shard := until (int .Values.archive.shards) -}}
{{- $urls := list -}}
{{- range $replica := until (int $.Values.archive.replicas) -}}
{{- $urls = append $urls (printf "http://%s-archive-%d-%d.%s.%s.svc.%s:%d" $fullname $shard $replica $headless $.Release.Namespace $.Values.clusterDomain (int $.Values.archive.port)) -}}
{{- end -}}
{{- $shards = append $shards $urls -}}
{{- end -}}
{{- toJson $shards -}}
{{- end -}}

{{/*
A value as TOML. Numbers from values files arrive as float64: whole ones are written as
integers, which the services' integer settings need (and their float settings accept).
*/}}
{{- define "retrace.toml.value" -}}
{{- $v := . -}}
{{- if kindIs "float64" $v -}}
{{- if eq $v (floor $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end -}}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "bool" $v) -}}
{{- $v -}}
{{- else if kindIs "string" $v -}}
{{- toJson $v -}}
{{- else if kindIs "slice" $v -}}
[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "retrace.toml.value" $e }}{{ end }}]
{{- else if kindIs "map" $v -}}
{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }},{{ end }} {{ include "retrace.toml.key" $k }} = {{ include "retrace.toml.value" (index $v $k) }}{{ end }} }
{{- else -}}
{{- fail (printf "cannot write %v (%s) as TOML" $v (kindOf $v)) -}}
{{- end -}}
{{- end -}}

{{- define "retrace.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end -}}
{{- end -}}

{{/*
A TOML table: (dict "name" "queues.certificates" "table" $map). Plain keys first, then each
map value as a sub-table of its own.
*/}}
{{- define "retrace.toml.table" -}}
{{- $name := .name -}}
{{- $table := .table }}
[{{ $name }}]
{{- range $k := keys $table | sortAlpha }}
{{- $v := index $table $k }}
{{- if not (kindIs "map" $v) }}
{{ include "retrace.toml.key" $k }} = {{ include "retrace.toml.value" $v }}
{{- end }}
{{- end }}
{{- range $k := keys $table | sortAlpha }}
{{- $v := index $table $k }}
{{- if kindIs "map" $v }}
{{ include "retrace.toml.table" (dict "name" (printf "%s.%s" $name (include "retrace.toml.key" $k)) "table" $v) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* librdkafka properties every service uses, from kafka.sasl, kafka.tls, kafka.properties. */}}
{{- define "retrace.kafkaProperties" -}}
{{- $p := dict -}}
{{- $k := .Values.kafka -}}
{{- if and $k.sasl.enabled $k.tls.enabled -}}
{{- $_ := set $p "security.protocol" "SASL_SSL" -}}
{{- else if $k.sasl.enabled -}}
{{- $_ := set $p "security.protocol" "SASL_PLAINTEXT" -}}
{{- else if $k.tls.enabled -}}
{{- $_ := set $p "security.protocol" "SSL" -}}
{{- end -}}
{{- if $k.sasl.enabled -}}
{{- $_ := set $p "sasl.mechanism" $k.sasl.mechanism -}}
{{- end -}}
{{- if $k.tls.enabled -}}
{{- $_ := set $p "ssl.ca.location" (printf "/etc/retrace/kafka-tls/%s" $k.tls.caKey) -}}
{{- if and $k.tls.certKey $k.tls.keyKey -}}
{{- $_ := set $p "ssl.certificate.location" (printf "/etc/retrace/kafka-tls/%s" $k.tls.certKey) -}}
{{- $_ := set $p "ssl.key.location" (printf "/etc/retrace/kafka-tls/%s" $k.tls.keyKey) -}}
{{- end -}}
{{- end -}}
{{- toJson (merge (deepCopy $k.properties) $p) -}}
{{- end -}}

{{/* The sections every service's file shares: [kafka], [topics], [log], [auth]. */}}
{{- define "retrace.toml.common" -}}
[kafka]
startup_deadline_ms = {{ include "retrace.toml.value" .Values.kafka.startupDeadlineMs }}
{{- $properties := include "retrace.kafkaProperties" . | fromJson }}
{{- if $properties }}

[kafka.properties]
{{- range $name := keys $properties | sortAlpha }}
{{ toJson $name }} = {{ index $properties $name | toString | toJson }}
{{- end }}
{{- end }}

[topics]
create = {{ .Values.topics.create }}
partitions = {{ include "retrace.toml.value" .Values.topics.partitions }}
replication = {{ include "retrace.toml.value" .Values.topics.replication }}
{{- $extra := .Values.topics.extra }}
{{- if .Values.tests.enabled }}{{ $extra = append $extra .Values.tests.topic | uniq }}{{ end }}
extra = {{ include "retrace.toml.value" $extra }}
{{- if .Values.topics.retentionMs }}
retention_ms = {{ include "retrace.toml.value" .Values.topics.retentionMs }}
{{- end }}

[log]
filter = {{ include "retrace.toml.value" .Values.log.filter }}
format = {{ include "retrace.toml.value" .Values.log.format }}

[auth]
metrics_public = {{ .Values.auth.metricsPublic }}
tokens_topic = {{ include "retrace.toml.value" .Values.auth.tokensTopic }}
signing_key_file = "/etc/retrace/secrets/{{ .Values.auth.signingKeysKey }}"
{{- with .Values.auth.oidc }}
{{ include "retrace.toml.table" (dict "name" "auth.oidc" "table" .) }}
{{- end }}
{{- end -}}

{{/*
Environment every service's container shares: (dict "root" $ "component" "archive" "port" 7070).
The image sets RETRACE_HTTP=0.0.0.0:7070; each container sets its own.
*/}}
{{- define "retrace.env.common" -}}
- name: RETRACE_CONFIG
  value: /etc/retrace/config/{{ .component }}.toml
- name: RETRACE_HTTP
  value: "0.0.0.0:{{ int .port }}"
- name: RETRACE_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrap is required: the existing Kafka cluster's bootstrap servers (host:port,...)" .root.Values.kafka.bootstrap | quote }}
- name: RETRACE_AUTH_BOOTSTRAP_ADMIN_SHA256
  valueFrom:
    secretKeyRef:
      name: {{ include "retrace.authSecretName" .root }}
      key: {{ .root.Values.auth.adminTokenSha256Key }}
{{- if .root.Values.kafka.sasl.enabled }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.existingSecret is required with kafka.sasl.enabled" .root.Values.kafka.sasl.existingSecret }}
      key: {{ .root.Values.kafka.sasl.usernameKey }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.kafka.sasl.existingSecret }}
      key: {{ .root.Values.kafka.sasl.passwordKey }}
# Kubernetes expands $(NAME) from the entries above; the password must not contain a comma
# (the variable is a comma-separated list).
- name: RETRACE_KAFKA_PROPERTIES
  value: "sasl.username=$(KAFKA_SASL_USERNAME),sasl.password=$(KAFKA_SASL_PASSWORD)"
{{- end }}
{{- range $name, $value := .extra }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* Volumes every service's pod shares: (dict "root" $ "component" "archive") */}}
{{- define "retrace.volumes.common" -}}
- name: config
  configMap:
    name: {{ include "retrace.fullname" .root }}-{{ .component }}
- name: secrets
  secret:
    secretName: {{ include "retrace.authSecretName" .root }}
    items:
      - key: {{ .root.Values.auth.signingKeysKey }}
        path: {{ .root.Values.auth.signingKeysKey }}
- name: tmp
  emptyDir: {}
{{- if .root.Values.kafka.tls.enabled }}
- name: kafka-tls
  secret:
    secretName: {{ required "kafka.tls.existingSecret is required with kafka.tls.enabled" .root.Values.kafka.tls.existingSecret }}
{{- end }}
{{- end -}}

{{- define "retrace.volumeMounts.common" -}}
- name: config
  mountPath: /etc/retrace/config
  readOnly: true
- name: secrets
  mountPath: /etc/retrace/secrets
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: /etc/retrace/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/*
A service container's probes on its named port: (dict "port" "http").
Readiness is /healthz (503 while starting, catching up or draining). Liveness only needs the
port to answer: an archive catching up for hours must not be restarted.
*/}}
{{- define "retrace.probes" -}}
readinessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 5
  failureThreshold: 3
livenessProbe:
  tcpSocket:
    port: http
  initialDelaySeconds: 10
  periodSeconds: 10
  failureThreshold: 6
{{- end -}}

{{- define "retrace.podSpec.common" -}}
serviceAccountName: {{ include "retrace.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/*
A stateless service: Deployment, Service, optional HPA and PDB.
(dict "root" $ "component" "gateway" "values" .Values.gateway)
*/}}
{{- define "retrace.stateless" -}}
{{- $root := .root -}}
{{- $c := .component -}}
{{- $v := .values -}}
{{- $name := printf "%s-%s" (include "retrace.fullname" $root) $c -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "retrace.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $c }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "retrace.selectorLabels" (dict "root" $root "component" $c) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "retrace.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ $c }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/" $c "/configmap.yaml") $root | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "retrace.podSpec.common" $root | nindent 6 }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      containers:
        - name: {{ $c }}
          image: {{ include "retrace.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["retrace-{{ $c }}"]
          env:
            {{- include "retrace.env.common" (dict "root" $root "component" $c "port" $v.port "extra" $v.extraEnv) | nindent 12 }}
          ports:
            - name: http
              containerPort: {{ $v.port }}
              protocol: TCP
          {{- include "retrace.probes" $root | nindent 10 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "retrace.volumeMounts.common" $root | nindent 12 }}
      volumes:
        {{- include "retrace.volumes.common" (dict "root" $root "component" $c) | nindent 8 }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "retrace.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $c }}
spec:
  type: ClusterIP
  selector:
    {{- include "retrace.selectorLabels" (dict "root" $root "component" $c) | nindent 4 }}
  ports:
    - name: http
      port: {{ $v.port }}
      targetPort: http
      protocol: TCP
{{- if $v.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "retrace.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $c }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- if and $v.podDisruptionBudget $v.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "retrace.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $c }}
spec:
  maxUnavailable: {{ $v.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "retrace.selectorLabels" (dict "root" $root "component" $c) | nindent 6 }}
{{- end }}
{{- end -}}
