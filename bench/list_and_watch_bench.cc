// ListAndWatch at scale: 8 GPUs x 48 time-slicing replicas (384 devices) and
// 64 GPUs x 7 MIG devices (448 devices), each built as a resources::Resource
// from a ResourceSpec (the shape the sharing builders produce, so this does
// not depend on the config side), served by a real DevicePluginServer on a unix
// socket and read by a ListAndWatch client in this process.
//
// For each case it prints rows of the bench table: Resource::Create time and
// the memory the resource and its server take (RSS deltas, approximate), the
// first list's size and arrival, and the time from a health change
// (DevicePluginServer::SetHealth, which rebuilds the list) to the new list at
// the client, median and p99 over repeated flips. "All served" means the
// client got every device ID and an Allocate of the last device succeeded.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "src/plugin/device_plugin_server.h"
#include "src/resources/resources.h"
#include "src/resources/testing/inventories.h"
#include "src/resources/topology.h"
#include "tests/kubelet_stub/kubelet_stub.h"

namespace gdp::bench {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

long RssKiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

void Row(const std::string& what, const std::string& result, const std::string& target,
         const std::string& verdict) {
  std::printf("| %s | %s | %s | %s |\n", what.c_str(), result.c_str(), target.c_str(),
              verdict.c_str());
  std::fflush(stdout);
}

std::vector<plugin::DeviceSpec> ControlNodes() {
  std::vector<plugin::DeviceSpec> out;
  for (const char* n : resources::kControlDeviceNames) {
    out.push_back({std::string("/dev/") + n, std::string("/dev/") + n, "rw"});
  }
  return out;
}

plugin::DeviceSpec Node(const std::string& path) { return {path, path, "rw"}; }

// 8 DGX H100 GPUs, each advertised as `replicas` devices "<UUID>::<n>".
resources::ResourceSpec Replicas(unsigned replicas) {
  const nvml::Inventory inv = resources::testing::DgxH100();
  resources::ResourceSpec spec;
  spec.name = "nvidia.com/gpu";
  spec.gpu_scores = resources::GpuScoresFromInventory(inv);
  spec.control_nodes = ControlNodes();
  for (uint32_t g = 0; g < inv.gpus.size(); ++g) {
    const nvml::Gpu& gpu = inv.gpus[g];
    spec.gpus.push_back({gpu.uuid, gpu.index});
    for (unsigned r = 0; r < replicas; ++r) {
      resources::DeviceEntry e;
      e.id = absl::StrFormat("%s::%u", gpu.uuid, r);
      e.numa_node = gpu.numa_node;
      e.gpus = {g};
      e.visible_id = gpu.uuid;
      e.cdi_name = "nvidia.com/gpu=" + gpu.uuid;
      e.device_nodes = {Node(absl::StrFormat("/dev/nvidia%u", gpu.minor))};
      spec.devices.push_back(std::move(e));
    }
  }
  return spec;
}

// 64 GPUs in NVLink islands, each split into `per_gpu` MIG devices.
resources::ResourceSpec Mig(unsigned per_gpu) {
  const nvml::Inventory inv = resources::testing::Islands64();
  resources::ResourceSpec spec;
  spec.name = "nvidia.com/mig-1g.10gb";
  spec.gpu_scores = resources::GpuScoresFromInventory(inv);
  spec.control_nodes = ControlNodes();
  for (uint32_t g = 0; g < inv.gpus.size(); ++g) {
    const nvml::Gpu& gpu = inv.gpus[g];
    spec.gpus.push_back({gpu.uuid, gpu.index});
    for (unsigned m = 0; m < per_gpu; ++m) {
      resources::DeviceEntry e;
      e.id = absl::StrFormat("MIG-%08x-%04x-4000-8000-%012x", 0x2000 + g, m, g * 16 + m);
      e.numa_node = gpu.numa_node;
      e.gpus = {g};
      e.visible_id = e.id;
      e.cdi_name = "nvidia.com/gpu=" + e.id;
      e.device_nodes = {Node(absl::StrFormat("/dev/nvidia%u", gpu.minor)),
                        Node(absl::StrFormat("/dev/nvidia-caps/nvidia-cap%u", 10 + g * 9 + m * 2)),
                        Node(absl::StrFormat("/dev/nvidia-caps/nvidia-cap%u", 11 + g * 9 + m * 2))};
      spec.devices.push_back(std::move(e));
    }
  }
  return spec;
}

// Runs one case; false when something was not served.
bool Case(const std::string& label, resources::ResourceSpec spec, const std::string& dir, int flips,
          bool print = true) {
  const size_t n = spec.devices.size();
  const long rss0 = RssKiB();
  const auto c0 = Clock::now();
  auto created = resources::Resource::Create(std::move(spec));
  const auto c1 = Clock::now();
  if (!created.ok()) {
    std::fprintf(stderr, "%s: %s\n", label.c_str(), created.status().ToString().c_str());
    return false;
  }
  std::shared_ptr<const resources::Resource> resource = *created;
  const long rss1 = RssKiB();

  plugin::DevicePluginServer server(resource, {.plugin_dir = dir});
  if (absl::Status s = server.Start(); !s.ok()) {
    std::fprintf(stderr, "%s: %s\n", label.c_str(), s.ToString().c_str());
    return false;
  }
  kubelet_stub::PluginClient client(server.socket_path());
  if (!client.WaitConnected(kubelet_stub::In(seconds(5)))) {
    std::fprintf(stderr, "%s: cannot connect to %s\n", label.c_str(), server.socket_path().c_str());
    return false;
  }
  const auto w0 = Clock::now();
  auto stream = client.Watch();
  if (!stream->WaitForCount(1, kubelet_stub::In(seconds(10)))) {
    std::fprintf(stderr, "%s: no ListAndWatch list\n", label.c_str());
    return false;
  }
  const auto w1 = Clock::now();
  const long rss2 = RssKiB();

  const v1beta1::ListAndWatchResponse first = stream->Updates().front();
  bool served = static_cast<size_t>(first.devices_size()) == n;
  for (size_t i = 0; served && i < n; ++i) {
    served = first.devices(static_cast<int>(i)).id() == resource->Devices()[i].id;
  }
  v1beta1::AllocateResponse alloc;
  served =
      served &&
      client
          .Allocate(
              kubelet_stub::PluginClient::AllocateRequestFor({{first.devices().rbegin()->id()}}),
              &alloc)
          .ok() &&
      alloc.container_responses_size() == 1;

  std::vector<double> set_us, arrive_us;
  for (int i = 0; i < flips; ++i) {
    const std::string& id = resource->Devices()[(static_cast<size_t>(i / 2) * 37) % n].id;
    const size_t before = stream->UpdateCount();
    const auto t0 = Clock::now();
    server.SetHealth({{id, i % 2 == 1}});  // unhealthy, then healthy again
    const auto t1 = Clock::now();
    if (!stream->WaitForCount(before + 1, kubelet_stub::In(seconds(5)))) {
      std::fprintf(stderr, "%s: no update after health change %d\n", label.c_str(), i);
      return false;
    }
    const auto t2 = Clock::now();
    set_us.push_back(Us(t1 - t0));
    arrive_us.push_back(Us(t2 - t0));
  }
  if (flips % 2 == 1) server.SetHealth({{resource->Devices()[0].id, true}});
  const size_t bytes = first.ByteSizeLong();
  stream->Cancel();
  stream.reset();
  server.Stop();
  if (!print) return served;

  Row(label + ": devices served",
      absl::StrFormat("%zu devices, every ID in the first list, Allocate of the last one %s", n,
                      served ? "ok" : "FAILED"),
      "all served", served ? "met" : "MISSED");
  Row(label + ": Resource::Create, memory",
      absl::StrFormat("%.2f ms; RSS +%ld KiB for the resource, +%ld KiB with server and stream",
                      Us(c1 - c0) / 1000, rss1 - rss0, rss2 - rss0),
      "-", "-");
  Row(label + ": ListAndWatch message",
      absl::StrFormat("%zu bytes; first list %.2f ms after the stream opened", bytes,
                      Us(w1 - w0) / 1000),
      "-", "-");
  Row(label + ": health change -> list at client (build + send)",
      absl::StrFormat("p50 %.0f µs, p99 %.0f µs over %d changes; SetHealth (rebuild) p50 %.0f µs",
                      Quantile(arrive_us, 0.5), Quantile(arrive_us, 0.99), flips,
                      Quantile(set_us, 0.5)),
      "-", "-");
  return served;
}

}  // namespace
}  // namespace gdp::bench

int main(int argc, char** argv) {
  int flips = argc > 1 ? std::atoi(argv[1]) : 200;
  char tmpl[] = "/tmp/gdp-lw-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return 1;
  const std::string dir = tmpl;
  // Warm gRPC up once so the first case's memory numbers are its own.
  bool ok = gdp::bench::Case("warm-up", gdp::bench::Replicas(1), dir, 2, false);
  if (!ok) return 1;
  ok = gdp::bench::Case("8 GPUs x 48 replicas", gdp::bench::Replicas(48), dir, flips) && ok;
  ok = gdp::bench::Case("64 GPUs x 7 MIG", gdp::bench::Mig(7), dir, flips) && ok;
  std::filesystem::remove_all(dir);
  return ok ? 0 : 1;
}
