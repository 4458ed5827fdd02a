{{- define "gdp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gdp.fullname" -}}
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

{{- define "gdp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gdp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gdp.labels" -}}
{{ include "gdp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "gdp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gdp.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /*
NVIDIA's chart values, read with NVIDIA's meaning next to ours. `config` is
ours when it is a string (the config file) and NVIDIA's when it is a map
(name: an existing ConfigMap of named configs; map: named configs to create;
default; fallbackStrategies).
*/ -}}
{{- define "gdp.nvidiaConfig" -}}
{{- if kindIs "map" .Values.config -}}{{- toYaml .Values.config -}}{{- else -}}{}{{- end -}}
{{- end -}}

{{- define "gdp.configText" -}}
{{- if kindIs "string" .Values.config -}}{{- .Values.config -}}{{- else -}}version: v1{{- end -}}
{{- end -}}

{{- /* Named configs are on: ours (nodeConfigs.enabled) or NVIDIA's (config.name / config.map). */ -}}
{{- define "gdp.namedConfigs.enabled" -}}
{{- $n := include "gdp.nvidiaConfig" . | fromYaml -}}
{{- if or .Values.nodeConfigs.enabled $n.name $n.map -}}true{{- end -}}
{{- end -}}

{{- /* The ConfigMap holding them: NVIDIA's config.name (not created here), else ours. */ -}}
{{- define "gdp.namedConfigs.configMap" -}}
{{- $n := include "gdp.nvidiaConfig" . | fromYaml -}}
{{- $n.name | default (printf "%s-configs" (include "gdp.fullname" .)) -}}
{{- end -}}

{{- define "gdp.namedConfigs.map" -}}
{{- $n := include "gdp.nvidiaConfig" . | fromYaml -}}
{{- toYaml (merge (dict) ($n.map | default dict) .Values.nodeConfigs.map) -}}
{{- end -}}

{{- define "gdp.namedConfigs.default" -}}
{{- $n := include "gdp.nvidiaConfig" . | fromYaml -}}
{{- $n.default | default .Values.nodeConfigs.default -}}
{{- end -}}

{{- define "gdp.namedConfigs.fallbackStrategies" -}}
{{- $n := include "gdp.nvidiaConfig" . | fromYaml -}}
{{- join "," ($n.fallbackStrategies | default .Values.nodeConfigs.fallbackStrategies) -}}
{{- end -}}

{{- /* The driver root: NVIDIA's nvidiaDriverRoot wins over ours. */ -}}
{{- define "gdp.driverRoot" -}}
{{- .Values.nvidiaDriverRoot | default .Values.driverRoot -}}
{{- end -}}

{{- /* Values of NVIDIA's chart with no meaning here fail the install, saying what to use. */ -}}
{{- define "gdp.checkNvidiaValues" -}}
{{- $n := include "gdp.nvidiaConfig" . | fromYaml -}}
{{- if and $n.name $n.map -}}
{{- fail "config.name and config.map are both set: name an existing ConfigMap of named configs, or give the configs in config.map, not both" -}}
{{- end -}}
{{- range $k, $_ := $n -}}
{{- if not (has $k (list "name" "map" "default" "fallbackStrategies")) -}}
{{- fail (printf "config.%s is not a setting of NVIDIA's chart nor of this one: config is either this plugin's config file (a string) or NVIDIA's {name, map, default, fallbackStrategies}" $k) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.metrics.auth.enabled (not .Values.metrics.tls.enabled) -}}
{{- fail "metrics.auth.enabled=true needs metrics.tls.enabled=true: a bearer token must not cross the network in clear text" -}}
{{- end -}}
{{- if and .Values.metrics.auth.enabled .Values.metrics.podMonitor.enabled (not .Values.metrics.auth.scrapeTokenSecret.name) -}}
{{- fail "metrics.auth.enabled with metrics.podMonitor.enabled needs metrics.auth.scrapeTokenSecret {name, key}: a PodMonitor cannot send its Prometheus' own token (a ServiceMonitor can)" -}}
{{- end -}}
{{- if and (kindIs "map" .Values.gfd) .Values.gfd.enabled (not .Values.nodeLabels.enabled) -}}
{{- fail "gfd.enabled=true but nodeLabels.enabled=false: GPU feature discovery's labels come from the plugin itself here (nodeLabels); drop one of the two" -}}
{{- end -}}
{{- end -}}

{{- /* Whether the plugin talks to the API server (its service account and token). */ -}}
{{- define "gdp.apiAccess" -}}
{{- if or (eq (include "gdp.nodeLabels.enabled" .) "true") (include "gdp.namedConfigs.enabled" .) .Values.metrics.auth.enabled -}}true{{- end -}}
{{- end -}}

{{- /* Node labels (GFD's set): ours, and off where NVIDIA's gfd.enabled says false. */ -}}
{{- define "gdp.nodeLabels.enabled" -}}
{{- if and .Values.nodeLabels.enabled (or (not (kindIs "map" .Values.gfd)) (not (hasKey .Values.gfd "enabled")) .Values.gfd.enabled) -}}true{{- else -}}false{{- end -}}
{{- end -}}

{{- /* The plugin's image: by digest when image.digest is set (what was verified is what runs),
       else by tag (the chart's appVersion when image.tag is empty). */ -}}
{{- define "gdp.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- /* The distribution's host paths (values.yaml, distribution). */ -}}
{{- define "gdp.kubeletRoot" -}}
{{- $d := .Values.distribution | default "kubeadm" -}}
{{- if not (has $d (list "kubeadm" "k3s" "rke2" "microk8s")) -}}
{{- fail (printf "distribution=%q is not one of kubeadm, k3s, rke2, microk8s (or empty)" .Values.distribution) -}}
{{- end -}}
{{- if eq $d "microk8s" -}}/var/snap/microk8s/common/var/lib/kubelet{{- else -}}/var/lib/kubelet{{- end -}}
{{- end -}}
{{- /* The kubelet's device manager listens at /var/lib/kubelet/device-plugins whatever its
       root dir (kubernetes/kubernetes#120626); its pod-resources socket follows the root dir. */ -}}
{{- define "gdp.devicePluginPath" -}}
{{- $_ := include "gdp.kubeletRoot" . -}}
{{- .Values.devicePluginPath | default "/var/lib/kubelet/device-plugins" -}}
{{- end -}}
{{- define "gdp.podResourcesPath" -}}
{{- .Values.metrics.podResources.path | default (printf "%s/pod-resources" (include "gdp.kubeletRoot" .)) -}}
{{- end -}}
{{- define "gdp.containerdConfig" -}}
{{- $known := dict "kubeadm" "/etc/containerd/config.toml" "k3s" "/var/lib/rancher/k3s/agent/etc/containerd/config.toml" "rke2" "/var/lib/rancher/rke2/agent/etc/containerd/config.toml" "microk8s" "/var/snap/microk8s/current/args/containerd.toml" -}}
{{- $_ := include "gdp.kubeletRoot" . -}}
{{- .Values.containerdConfig | default (get $known .Values.distribution) -}}
{{- end -}}
