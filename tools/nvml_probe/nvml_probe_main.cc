// nvml-probe: prints, as one JSON document, what the project's NVML path sees
// on this machine: the Inventory DiscoverInventory() builds (every field of
// every GPU, the topology matrix) and a metrics-relevant sample of raw NVML
// answers per GPU, each with its return code's name, plus an event-set check.
//
// It exists to compare a real driver with the simulator (hack/h100-check.sh
// runs it on both and hack/h100_compare.py diffs the documents), so it loads
// NVML exactly as the daemon does: FindNvmlLibrary(--driver-root,
// --nvml-library), then DlNvml. The telemetry calls the NvmlApi seam does not
// carry are dlsym'ed from the same library instance (dlopen RTLD_NOLOAD of the
// path DlNvml opened returns DlNvml's handle, reference-counted); a symbol the
// library lacks is reported as NVML_ERROR_FUNCTION_NOT_FOUND, never a crash.
//
//   nvml-probe [--driver-root /] [--nvml-library PATH] [--output FILE]
//
// Exit status: 0 when the document was written (whatever NVML answered),
// 1 when NVML could not be loaded, initialised or discovered (the error is on
// stderr, and in the document's "error" field when one is written).
// Single-threaded.
#include <dlfcn.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "src/common/filesystem.h"
#include "src/nvml/dl_nvml.h"
#include "src/nvml/inventory.h"
#include "src/nvml/nvml_api.h"

namespace gdp::tools {
namespace {

using json = nlohmann::json;

// The highest NVLink count NVML knows (NVML_NVLINK_MAX_LINKS is 18 on Hopper).
constexpr unsigned kNvLinks = 18;
constexpr unsigned kEventWaitMs = 200;

std::string PathName(nvml::PathKind p) {
  switch (p) {
    case nvml::PathKind::kSelf:
      return "self";
    case nvml::PathKind::kNvLink:
      return "nvlink";
    case nvml::PathKind::kPcieSwitch:
      return "pcie-switch";
    case nvml::PathKind::kPcieMultiSwitch:
      return "pcie-multi-switch";
    case nvml::PathKind::kHostBridge:
      return "host-bridge";
    case nvml::PathKind::kNumaNode:
      return "numa-node";
    case nvml::PathKind::kSystem:
      return "system";
  }
  return "unknown";
}

json InventoryGpu(const nvml::Gpu& g) {
  json mig = json::array();
  for (const nvml::MigDevice& m : g.mig_devices) {
    mig.push_back({{"index", m.index},
                   {"uuid", m.uuid},
                   {"gpu_instance_id", m.gpu_instance_id},
                   {"compute_instance_id", m.compute_instance_id},
                   {"profile", m.profile},
                   {"memory_bytes", m.memory_bytes},
                   {"multiprocessor_count", m.multiprocessor_count},
                   {"gpu_instance_slices", m.gpu_instance_slices},
                   {"compute_instance_slices", m.compute_instance_slices}});
  }
  return {
      {"index", g.index},
      {"minor", g.minor},
      {"uuid", g.uuid},
      {"name", g.name},
      {"brand", g.brand},
      {"architecture", g.architecture},
      {"cuda_compute_capability", absl::StrCat(g.cuda_compute_major, ".", g.cuda_compute_minor)},
      {"memory_bytes", g.memory_bytes},
      {"pci_bus_id", g.pci_bus_id},
      {"pci_device_id", absl::StrCat("0x", absl::Hex(g.pci_device_id, absl::kZeroPad8))},
      {"numa_node", g.numa_node},
      {"mig_enabled", g.mig_enabled},
      {"mig_devices", std::move(mig)}};
}

// The extra entry points, dlsym'ed from the library DlNvml opened.
class Telemetry {
 public:
  explicit Telemetry(const std::string& path)
      : handle_(dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD)) {}
  ~Telemetry() {
    if (handle_ != nullptr) dlclose(handle_);
  }
  Telemetry(const Telemetry&) = delete;
  Telemetry& operator=(const Telemetry&) = delete;

  // Calls `name` (cast to Fn) with args, recording {"rc": NAME} into out[name];
  // `fill` adds the values when the call succeeded.
  template <typename Fn, typename Fill, typename... Args>
  void Call(json& out, const std::string& key, const char* name, Fill fill, Args... args) {
    void* sym = handle_ == nullptr ? nullptr : dlsym(handle_, name);
    json entry;
    if (sym == nullptr) {
      entry["rc"] = nvml::ReturnCodeName(NVML_ERROR_FUNCTION_NOT_FOUND);
    } else {
      nvmlReturn_t r = reinterpret_cast<Fn*>(sym)(args...);
      entry["rc"] = nvml::ReturnCodeName(r);
      if (r == NVML_SUCCESS) fill(entry);
    }
    out[key] = std::move(entry);
  }

 private:
  void* const handle_;
};

json RawAnswers(nvml::NvmlApi& api, Telemetry& t, nvmlDevice_t dev) {
  json out = json::object();
  {
    nvmlUtilization_t u{};
    t.Call<nvmlReturn_t(nvmlDevice_t, nvmlUtilization_t*)>(
        out, "utilization", "nvmlDeviceGetUtilizationRates",
        [&](json& e) { e["gpu_percent"] = u.gpu, e["memory_percent"] = u.memory; }, dev, &u);
  }
  {
    unsigned v = 0;
    t.Call<nvmlReturn_t(nvmlDevice_t, nvmlTemperatureSensors_t, unsigned*)>(
        out, "temperature_gpu", "nvmlDeviceGetTemperature", [&](json& e) { e["celsius"] = v; }, dev,
        NVML_TEMPERATURE_GPU, &v);
  }
  {
    unsigned v = 0;
    t.Call<nvmlReturn_t(nvmlDevice_t, unsigned*)>(
        out, "power_usage", "nvmlDeviceGetPowerUsage", [&](json& e) { e["milliwatts"] = v; }, dev,
        &v);
  }
  {
    unsigned v = 0;
    t.Call<nvmlReturn_t(nvmlDevice_t, unsigned*)>(
        out, "enforced_power_limit", "nvmlDeviceGetEnforcedPowerLimit",
        [&](json& e) { e["milliwatts"] = v; }, dev, &v);
  }
  {
    unsigned long long v = 0;
    t.Call<nvmlReturn_t(nvmlDevice_t, unsigned long long*)>(
        out, "total_energy", "nvmlDeviceGetTotalEnergyConsumption",
        [&](json& e) { e["millijoules"] = v; }, dev, &v);
  }
  const std::pair<const char*, nvmlClockType_t> clocks[] = {{"sm", NVML_CLOCK_SM},
                                                            {"mem", NVML_CLOCK_MEM}};
  for (const auto& [label, type] : clocks) {
    unsigned v = 0;
    t.Call<nvmlReturn_t(nvmlDevice_t, nvmlClockType_t, unsigned*)>(
        out, absl::StrCat("clock_", label), "nvmlDeviceGetClockInfo",
        [&](json& e) { e["mhz"] = v; }, dev, type, &v);
    unsigned m = 0;
    t.Call<nvmlReturn_t(nvmlDevice_t, nvmlClockType_t, unsigned*)>(
        out, absl::StrCat("max_clock_", label), "nvmlDeviceGetMaxClockInfo",
        [&](json& e) { e["mhz"] = m; }, dev, type, &m);
  }
  {
    nvmlEnableState_t cur{}, pend{};
    t.Call<nvmlReturn_t(nvmlDevice_t, nvmlEnableState_t*, nvmlEnableState_t*)>(
        out, "ecc_mode", "nvmlDeviceGetEccMode",
        [&](json& e) {
          e["current"] = static_cast<int>(cur);
          e["pending"] = static_cast<int>(pend);
        },
        dev, &cur, &pend);
  }
  {
    nvmlMemory_v2_t m{};
    m.version = nvmlMemory_v2;
    t.Call<nvmlReturn_t(nvmlDevice_t, nvmlMemory_v2_t*)>(
        out, "memory_v2", "nvmlDeviceGetMemoryInfo_v2",
        [&](json& e) {
          e["total"] = m.total;
          e["reserved"] = m.reserved;
          e["free"] = m.free;
          e["used"] = m.used;
        },
        dev, &m);
  }
  {
    nvmlBAR1Memory_t b{};
    t.Call<nvmlReturn_t(nvmlDevice_t, nvmlBAR1Memory_t*)>(
        out, "bar1", "nvmlDeviceGetBAR1MemoryInfo",
        [&](json& e) {
          e["total"] = b.bar1Total;
          e["free"] = b.bar1Free;
          e["used"] = b.bar1Used;
        },
        dev, &b);
  }
  // The rest go through the seam, as the daemon calls them.
  {
    unsigned long long types = 0;
    nvmlReturn_t r = api.DeviceGetSupportedEventTypes(dev, &types);
    json e = {{"rc", nvml::ReturnCodeName(r)}};
    if (r == NVML_SUCCESS) e["types"] = absl::StrCat("0x", absl::Hex(types));
    out["supported_event_types"] = std::move(e);
  }
  {
    json links = json::array();
    for (unsigned l = 0; l < kNvLinks; ++l) {
      nvmlEnableState_t s{};
      nvmlReturn_t r = api.DeviceGetNvLinkState(dev, l, &s);
      links.push_back(r == NVML_SUCCESS
                          ? std::string(s == NVML_FEATURE_ENABLED ? "active" : "inactive")
                          : std::string(nvml::ReturnCodeName(r)));
    }
    out["nvlink_state"] = std::move(links);
  }
  {
    unsigned cur = 0, pend = 0;
    nvmlReturn_t r = api.DeviceGetMigMode(dev, &cur, &pend);
    json e = {{"rc", nvml::ReturnCodeName(r)}};
    if (r == NVML_SUCCESS) e["current"] = cur, e["pending"] = pend;
    out["mig_mode"] = std::move(e);
  }
  {
    unsigned n = 0;
    nvmlReturn_t r = api.DeviceGetMaxMigDeviceCount(dev, &n);
    json e = {{"rc", nvml::ReturnCodeName(r)}};
    if (r == NVML_SUCCESS) e["count"] = n;
    out["max_mig_device_count"] = std::move(e);
  }
  {
    unsigned node = 0;
    nvmlReturn_t r = api.DeviceGetNumaNodeId(dev, &node);
    json e = {{"rc", nvml::ReturnCodeName(r)}};
    if (r == NVML_SUCCESS) e["node"] = node;
    out["numa_node_id"] = std::move(e);
  }
  return out;
}

// Create an event set, register XID events on `dev`, wait, free.
json EventCheck(nvml::NvmlApi& api, nvmlDevice_t dev) {
  json out = {{"wait_timeout_ms", kEventWaitMs}};
  nvmlEventSet_t set{};
  nvmlReturn_t r = api.EventSetCreate(&set);
  out["create"] = nvml::ReturnCodeName(r);
  if (r != NVML_SUCCESS) return out;
  r = api.DeviceRegisterEvents(dev, nvmlEventTypeXidCriticalError, set);
  out["register_xid"] = nvml::ReturnCodeName(r);
  if (r == NVML_SUCCESS) {
    nvmlEventData_t data{};
    auto start = std::chrono::steady_clock::now();
    r = api.EventSetWait(set, &data, kEventWaitMs);
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    out["wait"] = nvml::ReturnCodeName(r);
    out["waited_ms"] = waited.count();
    if (r == NVML_SUCCESS) out["event_data"] = data.eventData;
  }
  out["free"] = nvml::ReturnCodeName(api.EventSetFree(set));
  return out;
}

absl::Status Probe(const std::string& driver_root, const std::string& nvml_library, json& doc) {
  absl::StatusOr<std::string> path =
      nvml::FindNvmlLibrary(PosixFileSystem::Get(), driver_root, nvml_library);
  if (!path.ok()) return path.status();
  doc["library"] = *path;
  absl::StatusOr<std::unique_ptr<nvml::DlNvml>> lib = nvml::DlNvml::Open(*path);
  if (!lib.ok()) return lib.status();
  nvml::NvmlApi& api = **lib;
  if (absl::Status s = nvml::NvmlStatus(api, api.Init(), "nvmlInit"); !s.ok()) return s;

  absl::StatusOr<std::shared_ptr<const nvml::Inventory>> inv =
      nvml::DiscoverInventory(api, nvml::DiscoveryOptions{});
  if (!inv.ok()) {
    api.Shutdown();
    return inv.status();
  }
  const nvml::Inventory& in = **inv;
  doc["driver_version"] = in.driver_version;
  doc["nvml_version"] = in.nvml_version;
  doc["cuda_driver_version"] = in.cuda_driver_version;
  doc["cuda_driver_version_string"] = in.CudaDriverVersionString();
  absl::Status versions = nvml::CheckMinimumVersions(in);
  doc["minimum_versions"] = versions.ok() ? std::string("ok") : std::string(versions.message());
  doc["gpu_count"] = in.gpus.size();

  Telemetry telemetry(*path);
  json gpus = json::array();
  for (const nvml::Gpu& g : in.gpus) {
    json entry = {{"inventory", InventoryGpu(g)}};
    nvmlDevice_t dev{};
    nvmlReturn_t r = api.DeviceGetHandleByIndex(g.index, &dev);
    if (r == NVML_SUCCESS) {
      entry["nvml"] = RawAnswers(api, telemetry, dev);
    } else {
      entry["nvml"] = {{"handle_rc", nvml::ReturnCodeName(r)}};
    }
    gpus.push_back(std::move(entry));
  }
  doc["gpus"] = std::move(gpus);

  json links = json::array();
  for (const auto& row : in.links) {
    json jr = json::array();
    for (const nvml::Link& l : row)
      jr.push_back({{"path", PathName(l.path)}, {"nvlinks", l.nvlinks}});
    links.push_back(std::move(jr));
  }
  doc["links"] = std::move(links);

  if (!in.gpus.empty()) {
    nvmlDevice_t dev{};
    nvmlReturn_t r = api.DeviceGetHandleByIndex(in.gpus.front().index, &dev);
    doc["events"] =
        r == NVML_SUCCESS ? EventCheck(api, dev) : json{{"handle_rc", nvml::ReturnCodeName(r)}};
  }
  doc["missing_symbols"] = (*lib)->MissingSymbols();
  if (absl::Status s = nvml::NvmlStatus(api, api.Shutdown(), "nvmlShutdown"); !s.ok()) {
    doc["shutdown"] = std::string(s.message());
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  CLI::App app{"Prints what NVML reports on this machine, as JSON, through the daemon's NVML path"};
  std::string driver_root = "/";
  std::string nvml_library;
  std::string output = "-";
  app.add_option("--driver-root", driver_root, "where the driver is installed")
      ->capture_default_str();
  app.add_option("--nvml-library", nvml_library, "libnvidia-ml.so.1 to load (overrides the root)");
  app.add_option("--output,-o", output, "file to write the JSON to ('-': stdout)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  json doc = {{"driver_root", driver_root}};
  absl::Status st = Probe(driver_root, nvml_library, doc);
  if (!st.ok()) {
    doc["error"] = std::string(st.message());
    std::cerr << "nvml-probe: " << st.message() << "\n";
  }
  const std::string text = doc.dump(2) + "\n";
  if (output == "-") {
    std::cout << text;
  } else {
    std::ofstream f(output);
    f << text;
    if (!f.flush()) {
      std::cerr << "nvml-probe: cannot write " << output << "\n";
      return 1;
    }
  }
  return st.ok() ? 0 : 1;
}

}  // namespace
}  // namespace gdp::tools

int main(int argc, char** argv) { return gdp::tools::Main(argc, argv); }
