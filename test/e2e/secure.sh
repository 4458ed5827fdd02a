# Secure serving on the real node (docs/metrics.md, "Secure serving"), sourced by
# test/e2e/run.sh after runtime.sh (it defines pass/fail/check; the cluster is up). The
# chart runs with metrics.tls (a kubernetes.io/tls Secret made here) and metrics.auth,
# metrics.auth.readers binding the reader ClusterRole to one ServiceAccount:
#   M1 /healthz answers without a token; /metrics without a token is 401, with the token
#      of a ServiceAccount that has no binding 403 (naming the user), with the reader's
#      token 200, as are /allocations and /inventory; the API server's own answers, through
#      the daemon's TokenReview and SubjectAccessReview.
#   M2 a real Prometheus on the host scrapes over TLS, verifying the certificate, with
#      the reader's token; its scrapes cost a handful of reviews (the rest are cached).
#   M3 kubectl gpu reads the daemon with --daemon-tls, --daemon-ca-file and
#      --daemon-token-file; without the token it names the flag to pass.
#   M4 the doctor in the plugin pod finds that it may create both reviews (the chart
#      bound system:auth-delegator).
# The release stays in this mode (sampling every second); scenarios after this one would
# start from their own values.
# shellcheck shell=bash

sec_dir=$(mktemp -d /tmp/gdp-secure-XXXXXX)
node_ip=$(kc get node "$NODE" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=gpu-device-plugin" \
  -addext "subjectAltName=IP:127.0.0.1${node_ip:+,IP:$node_ip}" \
  -keyout "$sec_dir/tls.key" -out "$sec_dir/tls.crt" 2>/dev/null
kc -n "$NS" delete secret gpu-device-plugin-metrics-tls >/dev/null 2>&1 || true
kc -n "$NS" create secret tls gpu-device-plugin-metrics-tls --cert "$sec_dir/tls.crt" \
  --key "$sec_dir/tls.key" >/dev/null
kc -n "$TNS" create serviceaccount gdp-scraper >/dev/null
kc -n "$TNS" create serviceaccount gdp-stranger >/dev/null
kc -n "$TNS" create token gdp-scraper --duration 1h >"$sec_dir/reader.token"
kc -n "$TNS" create token gdp-stranger --duration 1h >"$sec_dir/stranger.token"

old=$(plugin_pod)
e2e_values "$NODE" "$GPUROOT" /var/lib/kubelet "" 9101 |
  sed "s|^metrics: {port: 9101, bindAddress: 0.0.0.0}\$|metrics: {port: 9101, bindAddress: 0.0.0.0, sampleInterval: 1s, tls: {enabled: true}, auth: {enabled: true, readers: [{kind: ServiceAccount, name: gdp-scraper, namespace: $TNS}]}}|" >"$values"
grep -q 'auth: {enabled: true' "$values" || fail "M the values file did not take metrics.auth (e2e_values changed?)"
# As docs/metrics.md and the chart's README show it.
helm upgrade --install gpu-device-plugin deployments/helm/gpu-device-plugin --namespace kube-system -f "$values" >/dev/null
kc -n "$NS" delete pods -l app.kubernetes.io/name=gpu-device-plugin --field-selector "spec.nodeName=$NODE" \
  --wait=false >/dev/null 2>&1 || true
if wait_until 90 plugin_replaced "$old"; then
  pass "M1 the plugin runs with metrics.tls and metrics.auth (ready over HTTPS)"
else
  fail "M1 the plugin with metrics.tls and metrics.auth: not ready within 90s: $(kc -n "$NS" logs "$(plugin_pod)" 2>&1 | tail -3 | tr '\n' ' ')"
fi

# status PATH [TOKEN_FILE]: the HTTP status of a GET, verifying the certificate.
sec_status() {
  local auth=()
  [ -z "${2:-}" ] || auth=(-H "Authorization: Bearer $(cat "$2")")
  curl -s -o "$sec_dir/body" -w '%{http_code}' --cacert "$sec_dir/tls.crt" "${auth[@]}" \
    "https://127.0.0.1:9101$1" || true
}
check "M1 /healthz without a token" 200 "$(sec_status /healthz)"
check "M1 /metrics without a token" 401 "$(sec_status /metrics)"
check "M1 /metrics with the token of a ServiceAccount without the right" 403 \
  "$(sec_status /metrics "$sec_dir/stranger.token")"
if grep 'system:serviceaccount:default:gdp-stranger may not get /metrics' "$sec_dir/body" >/dev/null; then
  pass "M1 the 403 names the user and the path"
else
  fail "M1 the 403's body: expected it to name system:serviceaccount:default:gdp-stranger, saw: $(head -c 300 "$sec_dir/body")"
fi
check "M1 /metrics with the reader's token" 200 "$(sec_status /metrics "$sec_dir/reader.token")"
grep '^gdp_plugin_devices' "$sec_dir/body" >/dev/null || fail "M1 /metrics with the reader's token: no gdp_plugin_devices in the body"
check "M1 /allocations with the reader's token" 200 "$(sec_status /allocations "$sec_dir/reader.token")"
check "M1 /inventory with the reader's token" 200 "$(sec_status /inventory "$sec_dir/reader.token")"
check "M1 plain HTTP to the TLS port gets no answer" 000 \
  "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:9101/healthz || true)"

# M2: a real Prometheus, scraping every second for 10 s.
prom_port=19091
cat >"$sec_dir/prometheus.yml" <<PROM
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: gdp
    scheme: https
    tls_config: {ca_file: $sec_dir/tls.crt}
    authorization: {credentials_file: $sec_dir/reader.token}
    static_configs: [{targets: ["127.0.0.1:9101"]}]
PROM
/usr/bin/prometheus --config.file="$sec_dir/prometheus.yml" --storage.tsdb.path="$sec_dir/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$sec_dir/prometheus.log" 2>&1 &
prom_pid=$!
prom_query() { curl -s "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" 2>/dev/null || true; }
prom_up() { prom_query 'up{job="gdp"}' | grep '"value":\[[0-9.]*,"1"\]' >/dev/null; }
prom_has() { prom_query 'count(gdp_plugin_devices{job="gdp"})' | grep '"value":\[[0-9.]*,"[1-9]' >/dev/null; }
prom_scrapes() { prom_query 'count_over_time(up{job="gdp"}[1m])' | grep -o '"value":\[[0-9.]*,"[0-9]*"' | grep -o '"[0-9]*"$' | tr -d '"'; }
prom_scraped_10() { [ "$(prom_scrapes)" -ge 10 ] 2>/dev/null; }
# The daemon's counters, as its sampler last read them (every second here): the
# scrapes cost a handful of TokenReviews, and the rest were answered from the cache.
reviews_cached() {
  sec_status /metrics "$sec_dir/reader.token" >/dev/null
  reviews=$(awk '/^gdp_http_auth_reviews_total\{review="token"\}/ { print $2 }' "$sec_dir/body")
  hits=$(awk '/^gdp_http_auth_cache_hits_total/ { print $2 }' "$sec_dir/body")
  [ -n "$reviews" ] && [ "$reviews" -le 5 ] && [ "${hits:-0}" -ge 10 ]
}
if wait_until 60 prom_up && wait_until 30 prom_has && wait_until 30 prom_scraped_10; then
  scrapes=$(prom_scrapes)
  pass "M2 a real Prometheus scrapes over TLS with a token ($scrapes scrapes, up = 1)"
  if wait_until 15 reviews_cached; then
    pass "M2 the scrapes cost $reviews TokenReviews; $hits requests were answered from the cache"
  else
    fail "M2 expected at most 5 TokenReviews and cache hits after ${scrapes:-?} scrapes, saw reviews '$reviews', hits '$hits'"
  fi
else
  fail "M2 Prometheus over TLS with a token: expected up = 1 and gdp_plugin_devices, saw: $(prom_query 'up{job="gdp"}' | head -c 300); $(tail -3 "$sec_dir/prometheus.log" | tr '\n' ' ')"
fi
kill "$prom_pid" 2>/dev/null || true
wait "$prom_pid" 2>/dev/null || true

# M3: kubectl gpu against the secured daemon.
if [ -x "$KUBECTL_GPU" ]; then
  kg=$("$KUBECTL_GPU" --node "$NODE" -o json --daemon-tls --daemon-ca-file "$sec_dir/tls.crt" \
    --daemon-token-file "$sec_dir/reader.token" 2>&1) || true
  if [ "$(jq -r --arg n "$NODE" '.nodes[] | select(.name == $n) | .daemonError // "none"' <<<"$kg" 2>/dev/null)" = none ]; then
    pass "M3 kubectl gpu reads the daemon with TLS and a token"
  else
    fail "M3 kubectl gpu with TLS and a token: expected the node without a daemon error, saw: $(head -c 400 <<<"$kg")"
  fi
  kg=$("$KUBECTL_GPU" --node "$NODE" -o json --daemon-tls --daemon-ca-file "$sec_dir/tls.crt" 2>&1) || true
  if jq -r '.nodes[].daemonError // ""' <<<"$kg" 2>/dev/null | grep 'HTTP 401.*--daemon-token-file' >/dev/null; then
    pass "M3 kubectl gpu without a token says the daemon wants one and which flag to pass"
  else
    fail "M3 kubectl gpu without a token: expected a 401 naming --daemon-token-file, saw: $(head -c 400 <<<"$kg")"
  fi
fi

# M4: the doctor's row, logged by the plugin at start.
row=$(kc -n "$NS" logs "$(plugin_pod)" 2>/dev/null | grep 'check="metrics access"' | head -1 || true)
if grep 'status=OK' <<<"$row" >/dev/null; then
  pass "M4 the doctor finds the plugin may create TokenReviews and SubjectAccessReviews"
else
  fail "M4 the doctor's metrics access row: expected OK, saw: ${row:-nothing}"
fi

kc -n "$TNS" delete serviceaccount gdp-scraper gdp-stranger >/dev/null 2>&1 || true
rm -rf "$sec_dir"
