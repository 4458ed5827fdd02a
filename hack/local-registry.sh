#!/usr/bin/env bash
# An OCI registry on this machine for the release tests: the CNCF distribution server
# (hack/release-tools.sh builds it from its Go module) on 127.0.0.1 over TLS, with a CA
# and server certificate made for it, storing on disk under its state dir.
#
# Usage: hack/local-registry.sh up|down|env
#   up     makes the CA and certificate (once per state dir), starts the registry, waits
#          until it answers /v2/, and lets containerd trust it: its hosts.toml (with the CA)
#          in $GDP_REGISTRY_DIR/hosts.d/<host:port>/, where the local cluster's containerd
#          reads registries' hosts (hack/local-cluster.sh). Prints the env lines, like `env`.
#   down   stops the registry and removes its state dir, hosts.toml included.
#   env    prints the exports for eval: GDP_REGISTRY (host:port), GDP_REGISTRY_CA (the CA
#          file, for helm --ca-file, SSL_CERT_FILE of cosign) and GDP_REGISTRY_CERT_DIR (a
#          directory holding ca.crt, for skopeo --dest-cert-dir).
#
# Settings (environment):
#   GDP_REGISTRY_DIR   state dir: certificates, config, storage, log, pid (default /var/tmp/gdp-registry)
#   GDP_REGISTRY_PORT  its port on 127.0.0.1 (default 5443)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(repo_root)"

dir=${GDP_REGISTRY_DIR:-/var/tmp/gdp-registry}
port=${GDP_REGISTRY_PORT:-5443}
[[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "GDP_REGISTRY_PORT=$port: a TCP port (1-65535) is accepted"
host=127.0.0.1:$port
hosts_dir=$dir/hosts.d/$host

print_env() {
  printf 'export GDP_REGISTRY=%s\nexport GDP_REGISTRY_CA=%s\nexport GDP_REGISTRY_CERT_DIR=%s\n' \
    "$host" "$dir/pki/ca.crt" "$dir/pki/certs"
}

running() { [ -f "$dir/registry.pid" ] && kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; }

make_pki() {
  local p=$dir/pki
  [ -f "$p/tls.crt" ] && return
  mkdir -p "$p/certs"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -keyout "$p/ca.key" -out "$p/ca.crt" -subj "/CN=gdp local registry CA" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$p/tls.key" -out "$p/tls.csr" -subj "/CN=127.0.0.1" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$p/ext"
  openssl x509 -req -in "$p/tls.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 7 \
    -out "$p/tls.crt" -extfile "$p/ext" 2>/dev/null
  cp "$p/ca.crt" "$p/certs/ca.crt"
}

up() {
  local bin
  bin=$(hack/release-tools.sh | tail -n 1)
  if running; then
    log "the registry already runs (pid $(cat "$dir/registry.pid")) on $host"
  else
    make_pki
    mkdir -p "$dir/data"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $dir/data}
  delete: {enabled: true}
http:
  addr: $host
  secret: $(openssl rand -hex 16)
  tls: {certificate: $dir/pki/tls.crt, key: $dir/pki/tls.key}
EOF
    "$bin/registry" serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 &
    echo $! >"$dir/registry.pid"
    local deadline=$((SECONDS + 30))
    until curl -fsS --cacert "$dir/pki/ca.crt" "https://$host/v2/" >/dev/null 2>&1; do
      running || die "the registry exited: $(tail -n 5 "$dir/registry.log")"
      ((SECONDS < deadline)) || die "the registry did not answer https://$host/v2/ within 30s: $(tail -n 5 "$dir/registry.log")"
      sleep 0.2
    done
    log "registry on https://$host (storage $dir/data)"
  fi
  # containerd reads hosts.toml at each pull: no restart needed.
  mkdir -p "$hosts_dir"
  cp "$dir/pki/ca.crt" "$hosts_dir/ca.crt"
  cat >"$hosts_dir/hosts.toml" <<EOF
server = "https://$host"

[host."https://$host"]
  capabilities = ["pull", "resolve"]
  ca = "$hosts_dir/ca.crt"
EOF
  print_env
}

down() {
  if running; then
    local pid
    pid=$(cat "$dir/registry.pid")
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
up) up ;;
down) down ;;
env) print_env ;;
*) die "usage: hack/local-registry.sh up|down|env" ;;
esac
