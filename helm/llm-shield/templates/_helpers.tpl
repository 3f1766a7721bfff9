{{/* Names ------------------------------------------------------------------------------------------------- */}}
{{- define "llm-shield.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llm-shield.fullname" -}}
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

{{- define "llm-shield.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llm-shield.labels" -}}
helm.sh/chart: {{ include "llm-shield.chart" . }}
app.kubernetes.io/name: {{ include "llm-shield.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "llm-shield.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-shield.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "llm-shield.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llm-shield.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The queue a variant is served on: keep in sync with shield/contract.py QUEUES (tests/test_helm.py checks). */}}
{{- define "llm-shield.queue" -}}
{{- $queues := dict "int8" "shield.cpu.int8" "fp32" "shield.cpu.fp32" "fp16" "shield.gpu.fp16" -}}
{{- if not (hasKey $queues .) -}}
{{- fail (printf "unknown variant %q: use int8, fp32 or fp16" .) -}}
{{- end -}}
{{- index $queues . -}}
{{- end -}}

{{- define "llm-shield.image" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}

{{/* Redis ------------------------------------------------------------------------------------------------ */}}
{{- define "llm-shield.redisName" -}}
{{- printf "%s-redis" (include "llm-shield.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llm-shield.redisSecretName" -}}
{{- if .Values.redis.auth.existingSecret -}}
{{- .Values.redis.auth.existingSecret -}}
{{- else -}}
{{- include "llm-shield.redisName" . -}}
{{- end -}}
{{- end -}}

{{- define "llm-shield.flowerName" -}}
{{- printf "%s-flower" (include "llm-shield.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llm-shield.flowerSecretName" -}}
{{- if .Values.flower.auth.existingSecret -}}
{{- .Values.flower.auth.existingSecret -}}
{{- else -}}
{{- include "llm-shield.flowerName" . -}}
{{- end -}}
{{- end -}}

{{/*
Environment that gives a container the broker: REDIS_PASSWORD (when known) from a Secret, SHIELD_REDIS_URL
built from it by Kubernetes' $(VAR) expansion (bundled Redis) or read whole from a Secret (external Redis),
and SHIELD_REDIS_ADDRESS (host:port, for KEDA). No password is ever written into a manifest.
*/}}
{{- define "llm-shield.redisEnv" -}}
{{- if .Values.redis.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "llm-shield.redisSecretName" . }}
      key: {{ .Values.redis.auth.existingSecretPasswordKey }}
- name: SHIELD_REDIS_ADDRESS
  value: {{ printf "%s:6379" (include "llm-shield.redisName" .) | quote }}
- name: SHIELD_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:6379/0" (include "llm-shield.redisName" .) | quote }}
{{- else }}
{{- if not .Values.externalRedis.existingSecret }}
{{- fail "redis.enabled=false needs externalRedis.existingSecret: a Secret whose key externalRedis.urlKey holds the broker URL" }}
{{- end }}
{{- if .Values.externalRedis.passwordKey }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalRedis.existingSecret }}
      key: {{ .Values.externalRedis.passwordKey }}
{{- end }}
{{- if .Values.externalRedis.address }}
- name: SHIELD_REDIS_ADDRESS
  value: {{ .Values.externalRedis.address | quote }}
{{- end }}
- name: SHIELD_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalRedis.existingSecret }}
      key: {{ .Values.externalRedis.urlKey }}
{{- end }}
{{- end -}}

{{/* Celery limits shared by producer-side (Flower) and worker containers. */}}
{{- define "llm-shield.celeryEnv" -}}
- name: SHIELD_TASK_TIME_LIMIT
  value: {{ .Values.worker.taskTimeLimit | quote }}
- name: SHIELD_TASK_SOFT_TIME_LIMIT
  value: {{ .Values.worker.taskSoftTimeLimit | quote }}
- name: SHIELD_VISIBILITY_TIMEOUT
  value: {{ .Values.worker.visibilityTimeout | quote }}
{{- end -}}

{{- define "llm-shield.catalog" -}}
{{- default "/opt/llm-shield/catalog.json" .Values.models.catalog -}}
{{- end -}}

{{/*
Checks that no schema can express. Called from every template that depends on them, so `helm template` and
`helm install` stop with a clear message.
*/}}
{{- define "llm-shield.validate" -}}
{{- $w := .Values.worker -}}
{{- if le (int $w.terminationGracePeriodSeconds) (int $w.taskTimeLimit) -}}
{{- fail (printf "worker.terminationGracePeriodSeconds (%d) must be greater than worker.taskTimeLimit (%d): Kubernetes would SIGKILL a worker before its running batch can finish its warm shutdown" (int $w.terminationGracePeriodSeconds) (int $w.taskTimeLimit)) -}}
{{- end -}}
{{- if ge (int $w.taskSoftTimeLimit) (int $w.taskTimeLimit) -}}
{{- fail (printf "worker.taskSoftTimeLimit (%d) must be less than worker.taskTimeLimit (%d)" (int $w.taskSoftTimeLimit) (int $w.taskTimeLimit)) -}}
{{- end -}}
{{- if le (int $w.visibilityTimeout) (int $w.taskTimeLimit) -}}
{{- fail (printf "worker.visibilityTimeout (%d) must be greater than worker.taskTimeLimit (%d), or Redis redelivers batches that are still running" (int $w.visibilityTimeout) (int $w.taskTimeLimit)) -}}
{{- end -}}
{{- $names := dict -}}
{{- range .Values.pools -}}
{{- if hasKey $names .name -}}
{{- fail (printf "pools: the name %q is used twice" .name) -}}
{{- end -}}
{{- $_ := set $names .name true -}}
{{- if hasKey . "terminationGracePeriodSeconds" -}}
{{- if le (int .terminationGracePeriodSeconds) (int $w.taskTimeLimit) -}}
{{- fail (printf "pools[%s].terminationGracePeriodSeconds (%d) must be greater than worker.taskTimeLimit (%d): Kubernetes would SIGKILL a worker before its running batch can finish its warm shutdown" .name (int .terminationGracePeriodSeconds) (int $w.taskTimeLimit)) -}}
{{- end -}}
{{- end -}}
{{- if and (eq .variant "fp16") (lt (int (default 0 .gpu)) 1) -}}
{{- fail (printf "pools[%s]: variant fp16 runs on a GPU: set gpu: 1 (or more)" .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Exec probe: the heartbeat file was modified less than maxAgeSeconds ago (shell built-ins, date, stat). */}}
{{- define "llm-shield.heartbeatFresh" -}}
{{- $f := .Values.worker.heartbeat.file -}}
exec:
  command:
    - /bin/sh
    - -c
    - {{ printf "test -f %s && test $(( $(date +%%s) - $(stat -c %%Y %s) )) -lt %d" $f $f (int .Values.worker.heartbeat.maxAgeSeconds) | quote }}
{{- end -}}

{{/*
A pool's pdb and autoscaling settings with the chart's defaults for keys the pool leaves out (Helm replaces the
pools list whole, so per-pool defaults live here). Explicit false and 0 are kept. Use with fromYaml.
*/}}
{{- define "llm-shield.poolPdb" -}}
{{- $out := dict "enabled" true "maxUnavailable" 1 -}}
{{- range $k, $v := (default dict .pdb) -}}
{{- if not (kindIs "invalid" $v) -}}{{- $_ := set $out $k $v -}}{{- end -}}
{{- end -}}
{{- if hasKey (default dict .pdb) "minAvailable" -}}{{- $_ := unset $out "maxUnavailable" -}}{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{- define "llm-shield.poolAutoscaling" -}}
{{- $out := dict "enabled" false "type" "keda" "minReplicas" 1 "maxReplicas" 10 "activationListLength" 0 "pollingInterval" 15 "cooldownPeriod" 300 "scaleDownStabilizationSeconds" 300 "targetCPUUtilizationPercentage" 80 -}}
{{- range $k, $v := (default dict .autoscaling) -}}
{{- if not (kindIs "invalid" $v) -}}{{- $_ := set $out $k $v -}}{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
