{{/* Names, labels and the pieces several templates share. */}}

{{- define "cr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cr.fullname" -}}
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

{{- define "cr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cr.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cr.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: canary-responder
{{- end -}}

{{- define "cr.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cr.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cr.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "cr.leaseName" -}}
{{- default (include "cr.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/*
The workload kind: "Deployment" or "StatefulSet". `workload: auto` picks a StatefulSet for replicaCount > 1 with
persistence (each replica its own PVC from volumeClaimTemplates: SQLite cannot be shared between pods), else a
Deployment. Combinations that would share one database volume between pods are refused here.
*/}}
{{- define "cr.workload" -}}
{{- $kind := default "auto" .Values.workload -}}
{{- $ha := gt (int .Values.replicaCount) 1 -}}
{{- $persisted := .Values.persistence.enabled -}}
{{- if eq $kind "auto" -}}
{{- $kind = ternary "statefulset" "deployment" (and $ha $persisted) -}}
{{- end -}}
{{- if and (eq $kind "deployment") $ha $persisted -}}
{{- fail "workload=deployment with replicaCount > 1 and persistence.enabled=true would share one audit database between pods: SQLite in WAL mode cannot be shared (WAL needs one host, and a ReadWriteOnce volume attaches to one node). Use workload=auto or statefulset (one PVC per replica), or persistence.enabled=false." -}}
{{- end -}}
{{- if and (eq $kind "statefulset") $persisted .Values.persistence.existingClaim -}}
{{- fail "persistence.existingClaim names one volume, but the StatefulSet gives every replica its own PVC (volumeClaimTemplates): leave existingClaim empty, or run replicaCount=1 with workload=deployment (or auto)." -}}
{{- end -}}
{{- ternary "StatefulSet" "Deployment" (eq $kind "statefulset") -}}
{{- end -}}

{{/* The Deployment's audit database claim (the StatefulSet's are data-<fullname>-<ordinal>). */}}
{{- define "cr.dataClaim" -}}
{{- default (printf "%s-data" (include "cr.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{/* The StatefulSet's governing headless Service: a stable DNS name per pod, <pod>.<this>.<namespace>.svc. */}}
{{- define "cr.headlessName" -}}
{{- printf "%s-headless" (include "cr.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{/* Where things are mounted in the container. */}}
{{- define "cr.configDir" -}}/etc/canary-responder{{- end -}}
{{- define "cr.secretDir" -}}/etc/canary-responder/secrets{{- end -}}

{{/* Secret names: the existing Secret, else the one the chart creates. */}}
{{- define "cr.webhookSecret" -}}
{{- default (printf "%s-webhook" (include "cr.fullname" .)) .Values.auth.webhook.existingSecret -}}
{{- end -}}
{{- define "cr.adminSecret" -}}
{{- default (printf "%s-admin" (include "cr.fullname" .)) .Values.auth.admin.existingSecret -}}
{{- end -}}
{{- define "cr.auditSecret" -}}
{{- default (printf "%s-audit-hmac" (include "cr.fullname" .)) .Values.auth.auditHmac.existingSecret -}}
{{- end -}}

{{/*
A secret value for a Secret the chart creates: the value from values, else the one already stored in the
cluster (so upgrades keep it), else a new random one. Call with (dict "ctx" $ "secret" NAME "key" KEY "value" V).
*/}}
{{- define "cr.secretValue" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret -}}
{{- if and $existing (hasKey (default dict $existing.data) .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 48 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The responder's configuration: the user's `config` plus the keys the chart owns. */}}
{{- define "cr.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $secretDir := include "cr.secretDir" . -}}
{{- $listen := merge (dict "host" "0.0.0.0" "port" (int .Values.service.port)) (default dict $cfg.listen) -}}
{{- $_ := set $listen "host" "0.0.0.0" -}}
{{- $_ := set $listen "port" (int .Values.service.port) -}}
{{- $_ := set $cfg "listen" $listen -}}
{{- $kube := merge (dict) (default dict $cfg.kubernetes) -}}
{{- $_ := set $kube "mode" "in_cluster" -}}
{{- $_ := set $cfg "kubernetes" $kube -}}
{{- $tokens := list (dict "file" (printf "%s/webhook/token" $secretDir)) -}}
{{- if .Values.auth.webhook.rotationTokenKey -}}
{{- $tokens = append $tokens (dict "file" (printf "%s/webhook/token-next" $secretDir)) -}}
{{- end -}}
{{- $webhook := dict "bearer_tokens" $tokens -}}
{{- if .Values.auth.webhook.basic.enabled -}}
{{- $_ := set $webhook "basic" (dict "username" .Values.auth.webhook.basic.username "password" (dict "file" (printf "%s/webhook/basic-password" $secretDir))) -}}
{{- end -}}
{{- $_ := set $cfg "auth" (dict "webhook" $webhook "admin_token" (dict "file" (printf "%s/admin/token" $secretDir))) -}}
{{- $storage := dict "path" (printf "%s/responder.db" (trimSuffix "/" .Values.persistence.mountPath)) -}}
{{- if .Values.auth.auditHmac.enabled -}}
{{- $_ := set $storage "audit_hmac_key" (dict "file" (printf "%s/audit/hmac-key" $secretDir)) -}}
{{- end -}}
{{- $_ := set $cfg "storage" $storage -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- $_ := set $cfg "leader_election" (dict "enabled" true "lease_name" (include "cr.leaseName" .) "namespace" .Release.Namespace) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
