#include "src/nvml/change_watcher.h"

#include <pthread.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "src/common/log.h"

namespace gdp::nvml {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

// NVML's answers that mean the driver underneath has gone.
bool DriverGoneCode(nvmlReturn_t r) {
  return r == NVML_ERROR_DRIVER_NOT_LOADED || r == NVML_ERROR_UNINITIALIZED ||
         r == NVML_ERROR_LIB_RM_VERSION_MISMATCH;
}

// "nvidia12" -> 12; other names (nvidiactl, nvidia-uvm, nvidia-caps) -> nullopt.
std::optional<unsigned> GpuNodeMinor(const std::string& name) {
  constexpr std::string_view kPrefix = "nvidia";
  if (name.size() <= kPrefix.size() || name.compare(0, kPrefix.size(), kPrefix) != 0) {
    return std::nullopt;
  }
  unsigned minor = 0;
  for (size_t i = kPrefix.size(); i < name.size(); ++i) {
    if (std::isdigit(static_cast<unsigned char>(name[i])) == 0 || minor > 100000) {
      return std::nullopt;
    }
    minor = minor * 10 + static_cast<unsigned>(name[i] - '0');
  }
  return minor;
}

std::string NodeNames(const std::vector<unsigned>& minors) {
  return absl::StrJoin(minors, ", ",
                       [](std::string* out, unsigned m) { absl::StrAppend(out, "nvidia", m); });
}

}  // namespace

ChangeProbe::ChangeProbe(NvmlApi& api, const FileSystem& fs,
                         std::shared_ptr<const Inventory> inventory, ChangeWatcherOptions options)
    : api_(api), fs_(fs), inventory_(std::move(inventory)), options_(std::move(options)) {}

void ChangeProbe::TakeBaseline() {
  library_.reset();
  if (!options_.library_path.empty()) {
    if (options_.library_identity.has_value()) {
      library_ = options_.library_identity;
    } else if (absl::StatusOr<FileInfo> st = fs_.Stat(options_.library_path); st.ok()) {
      library_ = *st;
    }
  }
  nodes_ = GpuNodes();
}

std::optional<std::set<unsigned>> ChangeProbe::GpuNodes() const {
  if (options_.dev_dir.empty()) return std::nullopt;
  absl::StatusOr<std::vector<std::string>> names = fs_.ListDir(options_.dev_dir);
  if (!names.ok()) return std::nullopt;
  std::set<unsigned> minors;
  for (const std::string& n : *names) {
    if (std::optional<unsigned> m = GpuNodeMinor(n)) minors.insert(*m);
  }
  return minors;
}

std::optional<NodeChange> ChangeProbe::Check() {
  if (auto c = CheckLibrary()) return c;
  if (auto c = CheckDeviceNodes()) return c;
  return CheckNvml();
}

std::optional<NodeChange> ChangeProbe::CheckLibrary() {
  if (!library_.has_value()) return std::nullopt;
  absl::StatusOr<FileInfo> st = fs_.Stat(options_.library_path);
  if (!st.ok()) {
    return NodeChange{NodeChange::Kind::kDriverGone,
                      absl::StrCat("the driver's ", options_.library_path,
                                   " is gone: the driver is being unloaded or upgraded")};
  }
  if (st->inode != library_->inode || st->fs_device != library_->fs_device) {
    return NodeChange{NodeChange::Kind::kDriverGone,
                      absl::StrCat(options_.library_path,
                                   " was replaced by another file: a new driver is installed")};
  }
  return std::nullopt;
}

std::optional<NodeChange> ChangeProbe::CheckDeviceNodes() {
  if (!nodes_.has_value()) return std::nullopt;
  // A /dev that cannot be read now counts as one without GPU nodes.
  const std::set<unsigned> now = GpuNodes().value_or(std::set<unsigned>{});
  if (now == *nodes_) return std::nullopt;
  std::vector<unsigned> added;
  std::vector<unsigned> removed;
  std::set_difference(now.begin(), now.end(), nodes_->begin(), nodes_->end(),
                      std::back_inserter(added));
  std::set_difference(nodes_->begin(), nodes_->end(), now.begin(), now.end(),
                      std::back_inserter(removed));
  std::vector<std::string> parts;
  if (!added.empty()) parts.push_back("appeared: " + NodeNames(added));
  if (!removed.empty()) parts.push_back("disappeared: " + NodeNames(removed));
  NodeChange change{NodeChange::Kind::kDevices,
                    absl::StrCat("GPU device nodes in ", options_.dev_dir, " changed (",
                                 absl::StrJoin(parts, "; "), ")")};
  // A GPU whose node went away is gone: the owner need not wait for the
  // re-discovery to stop handing it out.
  for (unsigned minor : removed) {
    for (const Gpu& g : inventory_->gpus) {
      if (g.minor == minor) change.unbound.push_back(g.uuid);
    }
  }
  return change;
}

std::optional<NodeChange> ChangeProbe::CheckNvml() {
  unsigned count = 0;
  const nvmlReturn_t r = api_.DeviceGetCount(&count);
  if (DriverGoneCode(r)) {
    return NodeChange{NodeChange::Kind::kDriverGone,
                      absl::StrCat("nvmlDeviceGetCount answers ", ReturnCodeName(r))};
  }
  if (r == NVML_SUCCESS && count != inventory_->gpus.size()) {
    return NodeChange{NodeChange::Kind::kDevices,
                      absl::StrCat("NVML counts ", count, " GPUs where ", inventory_->gpus.size(),
                                   " were discovered")};
  }
  for (const Gpu& g : inventory_->gpus) {
    if (!g.mig_capable) continue;
    nvmlDevice_t h = nullptr;
    // A GPU NVML cannot reach is the health monitor's business; its removal
    // shows in the device nodes.
    if (api_.DeviceGetHandleByUUID(g.uuid.c_str(), &h) != NVML_SUCCESS) continue;
    unsigned current = 0;
    unsigned pending = 0;
    if (api_.DeviceGetMigMode(h, &current, &pending) != NVML_SUCCESS) continue;
    const bool enabled = current == NVML_DEVICE_MIG_ENABLE;
    if (enabled != g.mig_enabled) {
      return NodeChange{
          NodeChange::Kind::kDevices,
          absl::StrCat("MIG mode of GPU ", g.uuid, " is now ", enabled ? "enabled" : "disabled"),
          /*new_session=*/false};
    }
    if (!enabled) continue;
    unsigned max = 0;
    if (api_.DeviceGetMaxMigDeviceCount(h, &max) != NVML_SUCCESS) continue;
    std::set<std::string> now;
    for (unsigned i = 0; i < max; ++i) {
      nvmlDevice_t mig = nullptr;
      if (api_.DeviceGetMigDeviceHandleByIndex(h, i, &mig) != NVML_SUCCESS) continue;
      std::array<char, NVML_DEVICE_UUID_V2_BUFFER_SIZE> uuid{};
      if (api_.DeviceGetUUID(mig, uuid.data(), uuid.size()) != NVML_SUCCESS) continue;
      now.insert(uuid.data());
    }
    std::set<std::string> known;
    for (const MigDevice& m : g.mig_devices) known.insert(m.uuid);
    if (now != known) {
      return NodeChange{NodeChange::Kind::kDevices,
                        absl::StrCat("MIG layout of GPU ", g.uuid, " changed (", known.size(),
                                     " MIG devices known, ", now.size(), " now)"),
                        /*new_session=*/false};
    }
  }
  return std::nullopt;
}

void ChangeProbe::SetInventory(std::shared_ptr<const Inventory> inventory) {
  inventory_ = std::move(inventory);
}

ChangeWatcher::ChangeWatcher(NvmlApi& api, const FileSystem& fs,
                             std::shared_ptr<const Inventory> inventory,
                             ChangeWatcherOptions options, Callback on_change)
    : api_(api),
      probe_(api, fs, std::move(inventory), options),
      options_(std::move(options)),
      on_change_(std::move(on_change)) {}

ChangeWatcher::~ChangeWatcher() { Stop(); }

absl::Status ChangeWatcher::Start() {
  if (thread_.joinable()) return absl::FailedPreconditionError("change watcher already started");
  probe_.TakeBaseline();
  thread_ = std::jthread([this](const std::stop_token& stop) { Run(stop); });
  return absl::OkStatus();
}

void ChangeWatcher::RequestStop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  cv_.notify_all();
}

void ChangeWatcher::Stop() {
  if (!thread_.joinable()) return;
  RequestStop();
  thread_.join();
}

void ChangeWatcher::SetInventory(std::shared_ptr<const Inventory> inventory) {
  std::lock_guard lock(probe_mu_);
  probe_.SetInventory(std::move(inventory));
}

uint64_t ChangeWatcher::checks() const { return checks_.load(); }

bool ChangeWatcher::SetUpEvents() {
  nvmlSystemEventSetCreateRequest_t create{};
  create.version = nvmlSystemEventSetCreateRequest_v1;
  if (nvmlReturn_t r = api_.SystemEventSetCreate(&create); r != NVML_SUCCESS) {
    if (r != NVML_ERROR_FUNCTION_NOT_FOUND && r != NVML_ERROR_NOT_SUPPORTED) {
      log::Warn("no driver bind/unbind events; relying on the periodic check",
                {{"error", ReturnCodeName(r)}});
    }
    return false;
  }
  nvmlSystemRegisterEventRequest_t reg{};
  reg.version = nvmlSystemRegisterEventRequest_v1;
  reg.eventTypes = nvmlSystemEventTypeGpuDriverBind | nvmlSystemEventTypeGpuDriverUnbind;
  reg.set = create.set;
  if (nvmlReturn_t r = api_.SystemRegisterEvents(&reg); r != NVML_SUCCESS) {
    log::Warn("cannot register for driver bind/unbind events; relying on the periodic check",
              {{"error", ReturnCodeName(r)}});
    nvmlSystemEventSetFreeRequest_t free_req{};
    free_req.version = nvmlSystemEventSetFreeRequest_v1;
    free_req.set = create.set;
    api_.SystemEventSetFree(&free_req);
    return false;
  }
  set_ = create.set;
  return true;
}

void ChangeWatcher::TearDownEvents() {
  if (set_ == nullptr) return;
  nvmlSystemEventSetFreeRequest_t free_req{};
  free_req.version = nvmlSystemEventSetFreeRequest_v1;
  free_req.set = set_;
  api_.SystemEventSetFree(&free_req);
  set_ = nullptr;
}

std::string ChangeWatcher::GpuByDriverId(unsigned gpu_id) {
  std::lock_guard lock(probe_mu_);
  for (const Gpu& g : probe_.inventory()->gpus) {
    unsigned domain = 0, bus = 0, device = 0, function = 0;
    if (std::sscanf(g.pci_bus_id.c_str(), "%x:%x:%x.%x", &domain, &bus, &device, &function) != 4) {
      continue;
    }
    if ((((domain & 0xffffu) << 16) | (bus << 8) | device) == gpu_id) return g.uuid;
  }
  return "";
}

bool ChangeWatcher::WaitEvents(milliseconds timeout, bool* reported) {
  std::array<nvmlSystemEventData_v1_t, 16> data{};
  nvmlSystemEventSetWaitRequest_t wait{};
  wait.version = nvmlSystemEventSetWaitRequest_v1;
  wait.timeoutms = static_cast<unsigned>(std::max<int64_t>(timeout.count(), 1));
  wait.set = set_;
  wait.data = data.data();
  wait.dataSize = data.size();
  const nvmlReturn_t r = api_.SystemEventSetWait(&wait);
  if (r == NVML_ERROR_TIMEOUT || (r == NVML_SUCCESS && wait.numEvent == 0)) return true;
  if (r != NVML_SUCCESS) {
    if (DriverGoneCode(r)) {
      on_change_(NodeChange{NodeChange::Kind::kDriverGone,
                            absl::StrCat("nvmlSystemEventSetWait answers ", ReturnCodeName(r))});
      *reported = true;
    } else {
      log::Warn("driver bind/unbind events failed; relying on the periodic check",
                {{"error", ReturnCodeName(r)}});
    }
    return false;
  }
  const unsigned n = std::min<unsigned>(wait.numEvent, data.size());
  NodeChange change;
  std::vector<std::string> what;
  for (unsigned i = 0; i < n; ++i) {
    const bool bind = (data[i].eventType & nvmlSystemEventTypeGpuDriverBind) != 0;
    what.push_back(
        absl::StrFormat("driver %s GPU 0x%08x", bind ? "bound" : "unbound", data[i].gpuId));
    if (!bind) {
      if (std::string uuid = GpuByDriverId(data[i].gpuId); !uuid.empty()) {
        change.unbound.push_back(std::move(uuid));
      }
    }
  }
  change.reason = absl::StrJoin(what, "; ");
  on_change_(change);
  *reported = true;
  return true;
}

void ChangeWatcher::SleepFor(const std::stop_token& stop, milliseconds d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, stop, d, [] { return false; });
}

void ChangeWatcher::Run(const std::stop_token& stop) {
  ::pthread_setname_np(::pthread_self(), "gdp-changes");
  bool events = SetUpEvents();
  const bool periodic = options_.interval > milliseconds(0);
  auto next_check = SteadyClock::now() + options_.interval;
  while (!stop.stop_requested()) {
    milliseconds slice = options_.wait_timeout;
    if (periodic) {
      const auto left = std::chrono::duration_cast<milliseconds>(next_check - SteadyClock::now());
      slice = std::clamp(left, milliseconds(0), slice);
    }
    bool reported = false;
    if (events) {
      if (!WaitEvents(slice, &reported)) {
        TearDownEvents();
        events = false;
      }
    } else if (periodic) {
      SleepFor(stop, slice);
    } else {
      SleepFor(stop, std::chrono::hours(24));
    }
    if (stop.stop_requested()) break;
    if (periodic && SteadyClock::now() >= next_check) {
      checks_.fetch_add(1);
      std::optional<NodeChange> c;
      {
        std::lock_guard lock(probe_mu_);
        c = probe_.Check();
      }
      if (c) {
        on_change_(*c);
        reported = c->new_session || c->kind == NodeChange::Kind::kDriverGone;
      }
      next_check = SteadyClock::now() + options_.interval;
    }
    if (reported) {
      // The owner stops this watcher to act on it; no NVML wait in its way.
      SleepFor(stop, std::max(options_.interval, milliseconds(5000)));
    }
  }
  TearDownEvents();
}

}  // namespace gdp::nvml
