#include "tools/kubectl-gpu/cluster_view.h"

#include <httplib.h>

#include <algorithm>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace gdp::kubectl_gpu {
namespace {

using nlohmann::json;

long Quantity(const json& v) {
  long n = 0;
  if (v.is_string()) {
    if (absl::SimpleAtoi(v.get<std::string>(), &n)) return n;
    return 0;
  }
  if (v.is_number_integer()) return v.get<long>();
  return 0;
}

std::string Str(const json& obj, const char* key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

const json& Field(const json& obj, const char* key) {
  static const json kNull;
  if (!obj.is_object()) return kNull;
  auto it = obj.find(key);
  return it != obj.end() ? *it : kNull;
}

std::string InternalIp(const json& node) {
  for (const json& a : Field(Field(node, "status"), "addresses")) {
    if (Str(a, "type") == "InternalIP") return Str(a, "address");
  }
  return "";
}

// The count of `resource` a container asks for: requests, else limits.
long ContainerRequest(const json& container, const std::string& resource) {
  const json& res = Field(container, "resources");
  for (const char* kind : {"requests", "limits"}) {
    const json& m = Field(res, kind);
    if (m.is_object() && m.contains(resource)) return Quantity(m[resource]);
  }
  return 0;
}

std::vector<std::string> ContainerGpuResources(const json& container) {
  std::vector<std::string> out;
  const json& res = Field(container, "resources");
  for (const char* kind : {"requests", "limits"}) {
    const json& m = Field(res, kind);
    if (!m.is_object()) continue;
    for (const auto& [name, _] : m.items()) {
      if (IsGpuResource(name) && std::find(out.begin(), out.end(), name) == out.end()) {
        out.push_back(name);
      }
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The plugin pod's hostIP and "metrics" container port, when `pod` is one.
bool DaemonEndpoint(const json& pod, std::string* host, int* port) {
  if (Str(Field(Field(pod, "metadata"), "labels"), "app.kubernetes.io/name") !=
      "gpu-device-plugin") {
    return false;
  }
  for (const json& c : Field(Field(pod, "spec"), "containers")) {
    for (const json& p : Field(c, "ports")) {
      if (Str(p, "name") != "metrics" || !Field(p, "containerPort").is_number_integer()) continue;
      const std::string ip = Str(Field(pod, "status"), "hostIP");
      if (ip.empty()) return false;
      *host = ip;
      *port = Field(p, "containerPort").get<int>();
      return true;
    }
  }
  return false;
}

using HolderKey = std::tuple<std::string, std::string, std::string, std::string>;

// (namespace, pod, container, resource) -> device IDs, from /allocations.
std::map<HolderKey, std::vector<std::string>> DevicesByHolder(const json& allocations) {
  std::map<HolderKey, std::vector<std::string>> out;
  for (const json& r : Field(allocations, "resources")) {
    const std::string resource = Str(r, "name");
    for (const json& d : Field(r, "devices")) {
      for (const json& h : Field(d, "holders")) {
        out[{Str(h, "namespace"), Str(h, "pod"), Str(h, "container"), resource}].push_back(
            Str(d, "id"));
      }
    }
  }
  return out;
}

}  // namespace

bool IsGpuResource(const std::string& name) { return absl::StartsWith(name, "nvidia.com/"); }

absl::StatusOr<nlohmann::json> HttpDaemonClient::Get(const std::string& host, int port,
                                                     const std::string& path) {
  const std::string scheme = access_.tls ? "https" : "http";
  httplib::Client http(absl::StrCat(scheme, "://", host, ":", port));
  http.set_connection_timeout(timeout_seconds_);
  http.set_read_timeout(timeout_seconds_);
  if (access_.tls) {
    if (!access_.ca_file.empty()) http.set_ca_cert_path(access_.ca_file.c_str());
    http.enable_server_certificate_verification(!access_.skip_verify);
  }
  if (!access_.token.empty()) http.set_bearer_token_auth(access_.token);
  auto res = http.Get(path.c_str());
  const std::string url = absl::StrCat(scheme, "://", host, ":", port, path);
  if (!res) {
    return absl::UnavailableError(absl::StrCat("GET ", url, ": ", httplib::to_string(res.error()),
                                               "; is gpu-device-plugin running on the node?"));
  }
  if (res->status == 401 || res->status == 403) {
    // The daemon's own words say why (metrics.auth): no token, a bad one, or no right.
    std::string why(absl::StripAsciiWhitespace(res->body.substr(0, 300)));
    return absl::PermissionDeniedError(
        absl::StrCat("GET ", url, ": HTTP ", res->status, ": ", why,
                     access_.token.empty()
                         ? "; the daemons check callers (metrics.auth): pass --daemon-token-file"
                         : ""));
  }
  if (res->status != 200) {
    return absl::UnavailableError(absl::StrCat("GET ", url, ": HTTP ", res->status));
  }
  json j = json::parse(res->body, nullptr, false);
  if (j.is_discarded()) return absl::DataLossError(absl::StrCat("GET ", url, ": not JSON"));
  return j;
}

absl::StatusOr<std::vector<NodeView>> BuildClusterView(kube::ApiClient& api, DaemonClient& daemon,
                                                       const Options& options) {
  absl::StatusOr<json> nodes =
      api.Get(options.node.empty() ? "/api/v1/nodes"
                                   : "/api/v1/nodes?fieldSelector=" +
                                         kube::EscapeQueryValue("metadata.name=" + options.node));
  if (!nodes.ok()) return nodes.status();
  absl::StatusOr<json> pods =
      api.Get("/api/v1/pods?fieldSelector=" +
              kube::EscapeQueryValue("status.phase!=Succeeded,status.phase!=Failed"));
  if (!pods.ok()) return pods.status();

  std::map<std::string, std::vector<const json*>> pods_by_node;
  for (const json& p : Field(*pods, "items")) {
    const std::string phase = Str(Field(p, "status"), "phase");
    if (phase != "Pending" && phase != "Running") continue;
    const std::string node = Str(Field(p, "spec"), "nodeName");
    if (!node.empty()) pods_by_node[node].push_back(&p);
  }

  std::vector<NodeView> out;
  for (const json& n : Field(*nodes, "items")) {
    NodeView v;
    v.name = Str(Field(n, "metadata"), "name");
    std::string host = InternalIp(n);
    int port = options.daemon_port;
    for (const json* p : pods_by_node[v.name]) {
      if (DaemonEndpoint(*p, &host, &port)) break;
    }
    if (!host.empty()) v.address = absl::StrCat(host, ":", port);
    const json& status = Field(n, "status");
    std::map<std::string, ResourceCounts> counts;
    for (const char* kind : {"capacity", "allocatable"}) {
      const json& m = Field(status, kind);
      if (!m.is_object()) continue;
      for (const auto& [name, q] : m.items()) {
        if (!IsGpuResource(name)) continue;
        ResourceCounts& c = counts[name];
        c.name = name;
        (std::string(kind) == "capacity" ? c.capacity : c.allocatable) = Quantity(q);
      }
    }
    for (const json* p : pods_by_node[v.name]) {
      const json& meta = Field(*p, "metadata");
      for (const json& c : Field(Field(*p, "spec"), "containers")) {
        for (const std::string& r : ContainerGpuResources(c)) {
          const long want = ContainerRequest(c, r);
          if (want <= 0) continue;
          ResourceCounts& rc = counts[r];
          rc.name = r;
          rc.in_use += want;
          v.holdings.push_back(
              Holding{Str(meta, "namespace"), Str(meta, "name"), Str(c, "name"), r, want, {}});
        }
      }
    }
    for (auto& [name, c] : counts) {
      c.unhealthy = std::max(0L, c.capacity - c.allocatable);
      v.resources.push_back(c);
    }

    const json& labels = Field(Field(n, "metadata"), "labels");
    const std::string product = Str(labels, "nvidia.com/gpu.product");
    if (!product.empty()) {
      long count = Quantity(Field(labels, "nvidia.com/gpu.count"));
      if (count == 0)
        count = counts.count("nvidia.com/gpu") ? counts["nvidia.com/gpu"].capacity : 0;
      v.products[product] = count;
    }

    if (host.empty()) {
      v.daemon_error = "the node has no InternalIP";
    } else if (absl::StatusOr<json> alloc = daemon.Get(host, port, "/allocations"); !alloc.ok()) {
      v.daemon_error = std::string(alloc.status().message());
    } else {
      v.daemon_reached = true;
      const auto devices = DevicesByHolder(*alloc);
      for (Holding& h : v.holdings) {
        auto it = devices.find({h.pod_namespace, h.pod, h.container, h.resource});
        if (it != devices.end()) h.devices = it->second;
      }
      if (v.products.empty()) {
        if (absl::StatusOr<json> inv = daemon.Get(host, port, "/inventory"); inv.ok()) {
          for (const json& g : Field(*inv, "gpus")) ++v.products[Str(g, "name")];
        }
      }
    }
    std::sort(v.holdings.begin(), v.holdings.end(), [](const Holding& a, const Holding& b) {
      return std::tie(a.pod_namespace, a.pod, a.container, a.resource) <
             std::tie(b.pod_namespace, b.pod, b.container, b.resource);
    });
    out.push_back(std::move(v));
  }
  std::sort(out.begin(), out.end(),
            [](const NodeView& a, const NodeView& b) { return a.name < b.name; });
  return out;
}

namespace {

// Left-aligned columns, two spaces apart.
std::string Columns(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    width.resize(std::max(width.size(), r.size()));
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string Products(const NodeView& v) {
  if (v.products.empty()) return "-";
  std::vector<std::string> parts;
  for (const auto& [p, n] : v.products) parts.push_back(absl::StrCat(n, "x ", p));
  return absl::StrJoin(parts, ", ");
}

}  // namespace

std::string RenderTable(const std::vector<NodeView>& nodes) {
  std::vector<std::vector<std::string>> rows = {
      {"NODE", "GPUS", "RESOURCE", "CAPACITY", "ALLOCATABLE", "IN USE", "UNHEALTHY"}};
  for (const NodeView& v : nodes) {
    if (v.resources.empty()) {
      rows.push_back({v.name, Products(v), "-", "0", "0", "0", "0"});
    }
    for (const ResourceCounts& c : v.resources) {
      rows.push_back({v.name, Products(v), c.name, absl::StrCat(c.capacity),
                      absl::StrCat(c.allocatable), absl::StrCat(c.in_use),
                      absl::StrCat(c.unhealthy)});
    }
  }
  std::string out = Columns(rows);
  std::vector<std::vector<std::string>> held = {
      {"NODE", "NAMESPACE/POD/CONTAINER", "RESOURCE", "COUNT", "DEVICES"}};
  for (const NodeView& v : nodes) {
    for (const Holding& h : v.holdings) {
      held.push_back(
          {v.name, absl::StrCat(h.pod_namespace, "/", h.pod, "/", h.container), h.resource,
           absl::StrCat(h.count),
           h.devices.empty() ? (v.daemon_reached ? "-" : "?") : absl::StrJoin(h.devices, ",")});
    }
  }
  if (held.size() > 1) out += "\n" + Columns(held);
  std::string notes;
  for (const NodeView& v : nodes) {
    if (!v.daemon_reached && !v.holdings.empty()) {
      absl::StrAppend(&notes, "? ", v.name, ": devices unknown: ", v.daemon_error, "\n");
    }
  }
  if (!notes.empty()) out += "\n" + notes;
  return out;
}

nlohmann::json ToJson(const std::vector<NodeView>& nodes) {
  json out = json::array();
  for (const NodeView& v : nodes) {
    json resources = json::array();
    for (const ResourceCounts& c : v.resources) {
      resources.push_back({{"name", c.name},
                           {"capacity", c.capacity},
                           {"allocatable", c.allocatable},
                           {"inUse", c.in_use},
                           {"unhealthy", c.unhealthy}});
    }
    json holdings = json::array();
    for (const Holding& h : v.holdings) {
      holdings.push_back({{"namespace", h.pod_namespace},
                          {"pod", h.pod},
                          {"container", h.container},
                          {"resource", h.resource},
                          {"count", h.count},
                          {"devices", h.devices}});
    }
    json node = {{"name", v.name},         {"address", v.address},
                 {"products", v.products}, {"resources", resources},
                 {"holdings", holdings},   {"daemonReached", v.daemon_reached}};
    if (!v.daemon_error.empty()) node["daemonError"] = v.daemon_error;
    out.push_back(node);
  }
  return json{{"nodes", out}};
}

}  // namespace gdp::kubectl_gpu
