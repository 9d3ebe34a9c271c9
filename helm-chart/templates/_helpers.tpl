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

{{/* "true" with storage.backend=postgres (shared store: several replicas, leader election), else "". */}}
{{- define "cr.postgres" -}}
{{- if eq (default "sqlite" .Values.storage.backend) "postgres" -}}true{{- end -}}
{{- end -}}

{{/*
Values the schema cannot judge alone, refused at render with what to do instead. Included once, by
deployment.yaml (always rendered).
*/}}
{{- define "cr.checkValues" -}}
{{- $replicas := int .Values.replicaCount -}}
{{- if eq (toString .Values.workload) "statefulset" -}}
{{- fail "workload=statefulset was removed: a SQLite database per replica split the audit history and lost the alerts a replica had accepted when another took over. For several replicas set storage.backend=postgres (one shared database; a Deployment with rolling updates); else remove `workload` and keep replicaCount=1. Migration: docs/helm.md, \"From the SQLite StatefulSet\"." -}}
{{- end -}}
{{- if and (not (include "cr.postgres" .)) (gt $replicas 1) -}}
{{- fail (printf "replicaCount=%d needs storage.backend=postgres: with sqlite every replica would keep its own database, which splits the audit history and loses the alerts one replica accepted when another takes over. Set storage.backend=postgres and storage.postgres.existingSecret (a Secret with the connection string), or replicaCount=1 (docs/helm.md, PostgreSQL mode)." $replicas) -}}
{{- end -}}
{{- if include "cr.postgres" . -}}
{{- $_ := required "storage.backend=postgres needs storage.postgres.existingSecret: the Secret (in the release namespace) whose key storage.postgres.dsnKey holds the connection string" .Values.storage.postgres.existingSecret -}}
{{- end -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and $pdb.enabled (gt $replicas 1) (not (kindIs "string" $pdb.minAvailable)) (ge (int $pdb.minAvailable) $replicas) -}}
{{- fail (printf "podDisruptionBudget.minAvailable=%d with replicaCount=%d: no pod could ever be evicted, so node drains would block for ever. Use at most %d." (int $pdb.minAvailable) $replicas (sub $replicas 1)) -}}
{{- end -}}
{{- end -}}

{{/* The SQLite database's claim (storage.backend=sqlite). */}}
{{- define "cr.dataClaim" -}}
{{- default (printf "%s-data" (include "cr.fullname" .)) .Values.persistence.existingClaim -}}
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
{{- define "cr.gateSecret" -}}
{{- default (printf "%s-flagger-gate" (include "cr.fullname" .)) .Values.auth.flaggerGate.existingSecret -}}
{{- end -}}
{{- define "cr.pagesSecret" -}}
{{- default (printf "%s-page-signing" (include "cr.fullname" .)) .Values.auth.pageSigning.existingSecret -}}
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
{{- $auth := dict "webhook" $webhook "admin_token" (dict "file" (printf "%s/admin/token" $secretDir)) -}}
{{- if .Values.auth.flaggerGate.enabled -}}
{{- $_ := set $auth "gate_token" (dict "file" (printf "%s/flagger-gate/token" $secretDir)) -}}
{{- end -}}
{{- $_ := set $cfg "auth" $auth -}}
{{- $storage := dict -}}
{{- if include "cr.postgres" . -}}
{{- $pg := .Values.storage.postgres -}}
{{- $dsn := dict "file" (printf "%s/postgres/dsn" $secretDir) -}}
{{- $_ := set $storage "backend" "postgres" -}}
{{- $_ := set $storage "postgres" (dict "dsn" $dsn "connect_timeout" $pg.connectTimeout "statement_timeout" $pg.statementTimeout "poll_interval" $pg.pollInterval) -}}
{{- else -}}
{{- $_ := set $storage "path" (printf "%s/responder.db" (trimSuffix "/" .Values.persistence.mountPath)) -}}
{{- end -}}
{{- if .Values.auth.auditHmac.enabled -}}
{{- $_ := set $storage "audit_hmac_key" (dict "file" (printf "%s/audit/hmac-key" $secretDir)) -}}
{{- end -}}
{{- $_ := set $cfg "storage" $storage -}}
{{- if .Values.auth.pageSigning.enabled -}}
{{- if not (dig "notifications" "public_url" "" $cfg) -}}
{{- fail "auth.pageSigning.enabled needs config.notifications.public_url: the page links in messages must be absolute" -}}
{{- end -}}
{{- $pages := merge (dict) (default dict $cfg.incident_pages) -}}
{{- $_ := set $pages "signing_key" (dict "file" (printf "%s/pages/signing-key" $secretDir)) -}}
{{- $_ := set $cfg "incident_pages" $pages -}}
{{- end -}}
{{- /* Leader election whenever the store is shared, even with one replica: a rolling update (maxSurge 1) runs
       the old and the new pod together, and both would decide the same events. advertise_url is left to the
       responder's default, http://$POD_IP:<listen.port> (POD_IP from the downward API). */ -}}
{{- if include "cr.postgres" . -}}
{{- $_ := set $cfg "leader_election" (dict "enabled" true "lease_name" (include "cr.leaseName" .) "namespace" .Release.Namespace) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
