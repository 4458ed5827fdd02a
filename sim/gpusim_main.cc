// gpusim: lays out a simulated driver root and changes a running simulation
// the way a real node changes (every process using the same root sees it).
//
//   gpusim root DIR --profile dgx-h100 [--driver-version V] [--cuda-version N]
//   gpusim --root DIR xid --gpu 0 --xid 79 [--action reset]
//   gpusim --root DIR lose --gpu 0 | recover --gpu 0 | reset --gpu 0
//   gpusim --root DIR set --gpu 0 util=75 temp=81 power=350 mem-used=40GiB
//   gpusim --root DIR set --gpu 0 nvml-latency-ms=5   (every NVML call on GPU 0 sleeps 5 ms)
//   gpusim --root DIR add [--like 3] | remove --gpu 3 | remove --uuid GPU-...
//   gpusim --root DIR mig --gpu 0 --layout 3g.40gb=1,1g.10gb=4 | mig --gpu 0 --disable
//   gpusim --root DIR driver stop [--wait 30s] | driver start [--version V] [--cuda-version N]
//   gpusim --root DIR show
//   gpusim profiles
//
// Bad input is rejected before anything changes; errors go to stderr and the
// exit status is 1 (2 for command-line syntax, from CLI11). Commands that
// change the layout hold the root's layout lock exclusively, so they run one
// at a time and the library never reads a half-made change.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "sim/errno_string.h"
#include "sim/profile.h"
#include "sim/root.h"
#include "sim/state.h"
#include "sim/user_space.h"

namespace gdp::sim {
namespace {
namespace fs = std::filesystem;

int Fail(const std::string& msg) {
  std::cerr << "gpusim: " << msg << "\n";
  return 1;
}
int Fail(const absl::Status& st) { return Fail(std::string(st.message())); }

bool ParseUint(const std::string& s, uint64_t* out) {
  if (s.empty() || s[0] == '-') return false;
  char* end = nullptr;
  errno = 0;
  *out = std::strtoull(s.c_str(), &end, 10);
  return errno == 0 && *end == '\0';
}

// "40GiB", "512MiB", "1024" (MiB) -> bytes.
bool ParseBytes(const std::string& s, uint64_t* out) {
  static const std::vector<std::pair<std::string, uint64_t>> kUnits = {
      {"KiB", 1ULL << 10}, {"MiB", 1ULL << 20}, {"GiB", 1ULL << 30},   {"TiB", 1ULL << 40},
      {"KB", 1000ULL},     {"MB", 1000000ULL},  {"GB", 1000000000ULL}, {"B", 1}};
  for (const auto& [unit, mult] : kUnits) {
    if (s.size() > unit.size() && s.compare(s.size() - unit.size(), unit.size(), unit) == 0) {
      uint64_t v = 0;
      if (!ParseUint(s.substr(0, s.size() - unit.size()), &v)) return false;
      *out = v * mult;
      return true;
    }
  }
  uint64_t v = 0;
  if (!ParseUint(s, &v)) return false;
  *out = v << 20;
  return true;
}

// "500ms", "30s", "2m", "1h", "10" (seconds).
bool ParseDuration(const std::string& s, std::chrono::milliseconds* out) {
  static const std::vector<std::pair<std::string, uint64_t>> kUnits = {
      {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
  for (const auto& [unit, mult] : kUnits) {
    if (s.size() > unit.size() && s.compare(s.size() - unit.size(), unit.size(), unit) == 0) {
      uint64_t v = 0;
      std::string num = s.substr(0, s.size() - unit.size());
      if (!ParseUint(num, &v) || num.back() < '0' || num.back() > '9' || v > 86400000) {
        return false;
      }
      *out = std::chrono::milliseconds(v * mult);
      return true;
    }
  }
  uint64_t v = 0;
  if (!ParseUint(s, &v) || v > 86400) return false;
  *out = std::chrono::seconds(v);
  return true;
}

// Holds a lock file under run/gpusim with flock for the life of the object.
class FileLock {
 public:
  FileLock(const std::string& path, int op)
      : fd_(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666)) {
    if (fd_ < 0) return;
    fchmod(fd_, 0666);
    while (flock(fd_, op) != 0 && errno == EINTR) {
    }
  }
  ~FileLock() {
    if (fd_ >= 0) close(fd_);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
};

struct Session {
  std::string root;
  RootConfig config;
  Profile profile;  // the live layout: GPUs in index (PCI bus) order
  std::unique_ptr<SharedState> state;
};

absl::StatusOr<Session> OpenRoot(const std::string& root) {
  if (root.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no driver root: pass --root DIR or set $", kRootEnv));
  }
  Session s;
  s.root = root;
  auto c = ReadConfig(root);
  if (!c.ok()) return c.status();
  s.config = *c;
  auto p = LoadRootProfile(root);
  if (!p.ok()) return p.status();
  s.profile = std::move(*p);
  auto st = SharedState::Open(StatePath(root));
  if (!st.ok()) return st.status();
  s.state = std::move(*st);
  for (const GpuSpec& g : s.profile.gpus) {
    if (g.slot >= s.state->num_slots()) {
      return absl::FailedPreconditionError(
          absl::StrCat("state ", StatePath(root), " does not match the layout of profile ",
                       s.profile.name, "; recreate the root with `gpusim root`"));
    }
  }
  return s;
}

absl::Status CheckGpu(const Session& s, uint64_t gpu) {
  if (gpu >= s.profile.gpus.size()) {
    if (s.profile.gpus.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown GPU ", gpu, ": the root has no GPUs"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unknown GPU ", gpu, ": the root has GPUs 0..", s.profile.gpus.size() - 1));
  }
  return absl::OkStatus();
}

absl::Status CheckDriverLoaded(const Session& s, const std::string& what) {
  if (s.state->DriverLoaded()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(what, ": the driver is not loaded; `gpusim driver start` loads it"));
}

// ---------------------------------------------------------------- recovery actions

struct ActionName {
  const char* name;
  unsigned action;  // nvmlDeviceGpuRecoveryAction_t
};
constexpr ActionName kActions[] = {
    {"none", 0}, {"reset", 1}, {"reboot", 2}, {"drain-p2p", 3}, {"drain-and-reset", 4}};

const char* ActionString(unsigned action) {
  for (const auto& a : kActions) {
    if (a.action == action) return a.name;
  }
  return "?";
}

// The recovery action an XID sets when `xid --action` is not given: NVIDIA's
// XID catalog's immediate action, where that is a GPU reset (RESET_GPU) or a
// reboot (RESTART_BM); every other XID sets none. docs/simulator.md lists the
// table and its source.
unsigned DefaultAction(unsigned xid) {
  static const std::set<unsigned> kReset = {46,  62,  64,  95,  109, 110, 119,
                                            120, 136, 140, 143, 155, 156, 158};
  static const std::set<unsigned> kReboot = {79, 160};
  if (kReset.count(xid)) return 1;
  if (kReboot.count(xid)) return 2;
  return 0;
}

// Sets `slot`'s pending recovery action; a pending action other than none is
// also delivered as an nvmlEventTypeGpuRecoveryAction event.
void SetRecoveryAction(SharedState& state, unsigned slot, unsigned action) {
  state.Update(slot, [action](Telemetry& t) { t.recovery_action = action; });
  if (action != 0) state.Post(slot, EventKind::kRecoveryAction, action);
}

using Setter = std::function<void(Telemetry&)>;

absl::StatusOr<std::vector<Setter>> ParseSettings(const std::vector<std::string>& kvs,
                                                  const GpuSpec& gpu) {
  std::vector<Setter> out;
  if (kvs.empty()) return absl::InvalidArgumentError("set needs at least one KEY=VALUE");
  for (const std::string& kv : kvs) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("'", kv, "' is not KEY=VALUE"));
    }
    std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
    static const std::set<std::string> kKeys = {
        "util",     "mem-util",  "temp",          "power",           "mem-used",
        "sm-clock", "mem-clock", "ecc-corrected", "ecc-uncorrected", "mem-temp",
        "pcie-tx",  "pcie-rx",   "clock-reasons", "nvml-latency-ms"};
    if (!kKeys.count(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown key '", key, "'; known: ", absl::StrJoin(kKeys, ", ")));
    }
    uint64_t v = 0;
    auto bad = [&](const std::string& want) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad value '", value, "' for ", key, ": want ", want));
    };
    if (key == "mem-used") {
      if (!ParseBytes(value, &v)) return bad("a size like 40GiB, 512MiB or 1024 (MiB)");
      // Allocated memory: what the driver reserves is not available to allocate.
      const uint64_t usable_mib = gpu.memory_mib - gpu.reserved_mib;
      if (v > usable_mib << 20) {
        return bad(absl::StrCat("at most the GPU's ", usable_mib, " MiB (", gpu.memory_mib,
                                " MiB less ", gpu.reserved_mib, " MiB reserved)"));
      }
      out.emplace_back([v](Telemetry& t) { t.mem_used_bytes = v; });
      continue;
    }
    if (key == "clock-reasons") {
      // A bit mask of nvmlClocksEventReason* values, decimal or 0x hex.
      char* end = nullptr;
      errno = 0;
      v = std::strtoull(value.c_str(), &end, 0);
      if (value.empty() || value[0] == '-' || errno != 0 || *end != '\0') {
        return bad("a bit mask of nvmlClocksEventReason* values, e.g. 0x4");
      }
      out.emplace_back([v](Telemetry& t) { t.clocks_event_reasons = v; });
      continue;
    }
    if (!ParseUint(value, &v)) return bad("a non-negative integer");
    if (key == "util" || key == "mem-util") {
      if (v > 100) return bad("a percentage 0..100");
      if (key == "util") {
        out.emplace_back([v](Telemetry& t) { t.util_gpu = static_cast<unsigned>(v); });
      } else {
        out.emplace_back([v](Telemetry& t) { t.util_mem = static_cast<unsigned>(v); });
      }
    } else if (key == "temp") {
      if (v > 150) return bad("degrees C, 0..150");
      out.emplace_back([v](Telemetry& t) { t.temp_c = static_cast<unsigned>(v); });
    } else if (key == "power") {
      if (v > uint64_t{2} * gpu.power_limit_w) {
        return bad(absl::StrCat("watts, at most twice the ", gpu.power_limit_w, " W limit"));
      }
      out.emplace_back([v](Telemetry& t) { t.power_mw = static_cast<unsigned>(v * 1000); });
    } else if (key == "mem-temp") {
      if (v > 150) return bad("degrees C, 0..150");
      out.emplace_back([v](Telemetry& t) { t.mem_temp_c = static_cast<unsigned>(v); });
    } else if (key == "pcie-tx" || key == "pcie-rx") {
      if (v > 0xffffffffULL) return bad("KB/s, at most 4294967295");
      if (key == "pcie-tx") {
        out.emplace_back([v](Telemetry& t) { t.pcie_tx_kbps = static_cast<unsigned>(v); });
      } else {
        out.emplace_back([v](Telemetry& t) { t.pcie_rx_kbps = static_cast<unsigned>(v); });
      }
    } else if (key == "nvml-latency-ms") {
      if (v > 10000) return bad("milliseconds, 0..10000");
      out.emplace_back([v](Telemetry& t) { t.latency_ms = static_cast<unsigned>(v); });
    } else if (key == "sm-clock") {
      out.emplace_back([v](Telemetry& t) { t.sm_clock_mhz = v; });
    } else if (key == "mem-clock") {
      out.emplace_back([v](Telemetry& t) { t.mem_clock_mhz = v; });
    } else if (key == "ecc-corrected" || key == "ecc-uncorrected") {
      if (!gpu.ecc) {
        return absl::InvalidArgumentError(absl::StrCat(key, ": ", gpu.name, " has no ECC"));
      }
      if (key == "ecc-corrected") {
        out.emplace_back([v](Telemetry& t) { t.ecc_corrected = v; });
      } else {
        out.emplace_back([v](Telemetry& t) { t.ecc_uncorrected = v; });
      }
    }
  }
  return out;
}

std::string MigList(const GpuSpec& g) {
  if (!g.mig_enabled) return "-";
  std::string mig;
  for (const auto& m : g.mig_devices) absl::StrAppend(&mig, mig.empty() ? "" : ",", m.profile);
  return mig.empty() ? "enabled" : mig;
}

void Show(const Session& s) {
  const Profile& p = s.profile;
  std::printf("root %s\nprofile %s (%s)\n", s.root.c_str(), p.name.c_str(), p.source.c_str());
  std::printf("driver %s %s  CUDA %d.%d  NVML %s  (layout generation %llu)\n",
              s.state->DriverLoaded() ? "loaded" : "UNLOADED", p.driver_version.c_str(),
              p.cuda_driver_version / 1000, (p.cuda_driver_version % 1000) / 10,
              p.NvmlVersion().c_str(),
              static_cast<unsigned long long>(s.state->LayoutGeneration()));
  // Scripts read column 1 (index), 2 (UUID) and the last (MIG profiles): keep them there.
  std::printf("%-3s %-40s %-28s %-6s %4s %4s %6s %12s %5s %5s %-12s %-15s %6s %s\n", "GPU", "UUID",
              "NAME", "STATE", "UTIL", "TEMP", "POWER", "MEM-USED", "XIDS", "MINOR", "BUS-ID",
              "ACTION", "RESETS", "MIG");
  for (unsigned i = 0; i < p.gpus.size(); ++i) {
    const GpuSpec& g = p.gpus[i];
    Telemetry t = s.state->Read(g.slot);
    std::printf("%-3u %-40s %-28s %-6s %3u%% %3uC %5uW %8lluMiB %5llu %5u %-12s %-15s %6llu %s\n",
                i, g.uuid.c_str(), g.name.c_str(), t.lost ? "LOST" : "ok", t.util_gpu, t.temp_c,
                t.power_mw / 1000, static_cast<unsigned long long>(t.mem_used_bytes >> 20),
                static_cast<unsigned long long>(t.xid_count), g.minor, BusIdString(g).c_str(),
                ActionString(t.recovery_action), static_cast<unsigned long long>(t.reset_count),
                MigList(g).c_str());
    for (const auto& m : g.mig_devices) {
      std::printf("    mig gi=%u ci=%u %-8s %s\n", m.gpu_instance_id, m.compute_instance_id,
                  m.profile.c_str(), m.uuid.c_str());
    }
  }
}

// ---------------------------------------------------------------- add, remove

// The lowest device minor no GPU of the layout has.
absl::StatusOr<unsigned> FreeMinor(const Profile& p) {
  std::set<unsigned> used;
  for (const GpuSpec& g : p.gpus) used.insert(g.minor);
  for (unsigned m = 0; m <= kMaxGpuMinor; ++m) {
    if (!used.count(m)) return m;
  }
  return absl::ResourceExhaustedError("no free device minor");
}

// A PCI bus no GPU or NVSwitch of the layout is on: the first after `like`'s.
absl::StatusOr<unsigned> FreeBus(const Profile& p, const GpuSpec& like) {
  std::set<unsigned> used;
  for (const GpuSpec& g : p.gpus) {
    if (g.domain == like.domain) used.insert(g.bus);
  }
  for (const auto& sw : like.nvswitch_bus_ids) {
    unsigned d = 0, b = 0, dev = 0;
    if (std::sscanf(sw.c_str(), "%x:%x:%x", &d, &b, &dev) == 3 && d == like.domain) {
      used.insert(b);
    }
  }
  for (unsigned k = 1; k < 256; ++k) {
    unsigned bus = (like.bus + k) % 256;
    if (bus != 0 && !used.count(bus)) return bus;
  }
  return absl::ResourceExhaustedError("no free PCI bus in the GPU's domain");
}

void InsertInBusOrder(Profile* p, GpuSpec g) {
  auto pos = std::find_if(p->gpus.begin(), p->gpus.end(), [&](const GpuSpec& o) {
    return std::tie(o.domain, o.bus, o.device) > std::tie(g.domain, g.bus, g.device);
  });
  p->gpus.insert(pos, std::move(g));
}

// Posts an event for each GPU of `p` (driver bind or unbind).
void PostForEveryGpu(SharedState& state, const Profile& p, EventKind kind) {
  for (const GpuSpec& g : p.gpus) state.Post(g.slot, kind, PciGpuId(g));
}

int Add(Session& s, bool like_given, uint64_t like) {
  if (s.profile.gpus.empty()) {
    return Fail("add: the root has no GPU to copy; lay it out again with `gpusim root`");
  }
  if (!like_given) like = s.profile.gpus.size() - 1;
  if (like >= s.profile.gpus.size()) {
    return Fail(absl::StrCat("add: unknown GPU ", like, " for --like: the root has GPUs 0..",
                             s.profile.gpus.size() - 1));
  }
  if (s.state->num_slots() >= kMaxGpus) {
    return Fail(absl::StrCat("add: this root has had ", kMaxGpus,
                             " GPUs, the most one root can have over its life; lay it out afresh "
                             "with `gpusim root`"));
  }
  GpuSpec g = s.profile.gpus[like];
  auto minor = FreeMinor(s.profile);
  if (!minor.ok()) return Fail(absl::StrCat("add: ", minor.status().message()));
  auto bus = FreeBus(s.profile, g);
  if (!bus.ok()) return Fail(absl::StrCat("add: ", bus.status().message()));
  g.uuid = RandomUuid("GPU");
  g.serial = RandomSerial();
  g.minor = *minor;
  g.bus = *bus;
  g.mig_enabled = false;  // a GPU comes with MIG mode off
  g.mig_devices.clear();
  auto slot = s.state->AllocateSlot(g);
  if (!slot.ok()) return Fail(absl::StrCat("add: ", slot.status().message()));
  g.slot = *slot;
  const GpuSpec added = g;
  InsertInBusOrder(&s.profile, std::move(g));
  if (auto st = WriteLayout(s.root, s.profile); !st.ok()) return Fail(st);
  const bool loaded = s.state->DriverLoaded();
  if (loaded) {
    if (auto st = SyncDeviceNodes(s.root, s.profile, s.config.char_devices); !st.ok()) {
      return Fail(st);
    }
  }
  s.state->BumpLayoutGeneration();  // before the event: a woken waiter must see the GPU
  if (loaded) s.state->Post(added.slot, EventKind::kDriverBind, PciGpuId(added));
  size_t index = 0;
  while (s.profile.gpus[index].uuid != added.uuid) ++index;
  std::printf("added %s minor %u bus %s index %zu%s\n", added.uuid.c_str(), added.minor,
              BusIdString(added).c_str(), index,
              loaded ? "" : " (the driver is not loaded: no device node until `driver start`)");
  return 0;
}

int Remove(Session& s, bool gpu_given, uint64_t gpu, const std::string& uuid) {
  if (gpu_given == !uuid.empty()) return Fail("remove: pass exactly one of --gpu N and --uuid U");
  size_t index = gpu;
  if (!uuid.empty()) {
    auto it = std::find_if(s.profile.gpus.begin(), s.profile.gpus.end(),
                           [&](const GpuSpec& g) { return g.uuid == uuid; });
    if (it == s.profile.gpus.end()) {
      return Fail(absl::StrCat("remove: unknown GPU UUID '", uuid,
                               "': `gpusim show` lists the root's GPUs"));
    }
    index = static_cast<size_t>(it - s.profile.gpus.begin());
  } else if (auto st = CheckGpu(s, gpu); !st.ok()) {
    return Fail(absl::StrCat("remove: ", st.message()));
  }
  const GpuSpec gone = s.profile.gpus[index];
  s.profile.gpus.erase(s.profile.gpus.begin() + static_cast<std::ptrdiff_t>(index));
  s.state->Update(gone.slot, [](Telemetry& t) { t.removed = true; });
  if (auto st = WriteLayout(s.root, s.profile); !st.ok()) return Fail(st);
  const bool loaded = s.state->DriverLoaded();
  if (loaded) {
    if (auto st = SyncDeviceNodes(s.root, s.profile, s.config.char_devices); !st.ok()) {
      return Fail(st);
    }
  }
  s.state->BumpLayoutGeneration();
  if (loaded) s.state->Post(gone.slot, EventKind::kDriverUnbind, PciGpuId(gone));
  std::printf("removed %s minor %u bus %s\n", gone.uuid.c_str(), gone.minor,
              BusIdString(gone).c_str());
  return 0;
}

// ---------------------------------------------------------------- mig

// "3g.40gb=1,1g.10gb=4" -> the MIG devices, GPU instance ids 1.. in that order.
absl::StatusOr<std::vector<MigDeviceSpec>> ParseMigLayout(const std::string& spec,
                                                          const GpuSpec& g) {
  std::vector<std::string> names;
  for (const auto& [name, p] : g.mig_profiles) names.push_back(name);
  const std::string accepted = absl::StrCat("PROFILE=COUNT[,PROFILE=COUNT...] with PROFILE one of ",
                                            absl::StrJoin(names, ", "), " (", g.name, ")");
  std::vector<MigDeviceSpec> out;
  if (spec.empty()) return absl::InvalidArgumentError("empty --layout: want " + accepted);
  for (const std::string& item : std::vector<std::string>(absl::StrSplit(spec, ','))) {
    auto eq = item.find('=');
    uint64_t count = 0;
    if (eq == std::string::npos || !ParseUint(item.substr(eq + 1), &count) || count == 0 ||
        count > 7) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad --layout item '", item, "': want ", accepted, ", COUNT 1..7"));
    }
    std::string name = item.substr(0, eq);
    auto p = g.mig_profiles.find(name);
    if (p == g.mig_profiles.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown MIG profile '", name, "' in --layout: want ", accepted));
    }
    for (uint64_t i = 0; i < count; ++i) {
      MigDeviceSpec d;
      d.profile = name;
      d.gpu_instance_id = static_cast<unsigned>(out.size() + 1);
      d.compute_instance_id = 0;
      d.slices = p->second.slices;
      d.multiprocessors = p->second.multiprocessors;
      d.memory_mib = p->second.memory_mib;
      d.uuid = RandomUuid("MIG");
      out.push_back(std::move(d));
    }
  }
  if (auto st = CheckMigBudget(g, out); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--layout ", spec, " ", st.message()));
  }
  return out;
}

int Mig(Session& s, uint64_t gpu, const std::string& layout, bool layout_given, bool disable) {
  if (layout_given == disable) return Fail("mig: pass exactly one of --layout and --disable");
  if (auto st = CheckGpu(s, gpu); !st.ok()) return Fail(absl::StrCat("mig: ", st.message()));
  GpuSpec& g = s.profile.gpus[gpu];
  if (!g.mig_capable) {
    return Fail(absl::StrCat("mig: GPU ", gpu, " (", g.name, ") is not MIG-capable"));
  }
  std::vector<MigDeviceSpec> devices;
  if (!disable) {
    auto d = ParseMigLayout(layout, g);
    if (!d.ok()) return Fail(absl::StrCat("mig: ", d.status().message()));
    devices = std::move(*d);
  }
  if (auto st = CheckDriverLoaded(s, "mig"); !st.ok()) return Fail(st);
  g.mig_enabled = !disable;
  g.mig_devices = devices;
  const unsigned slot = g.slot;
  if (auto st = WriteLayout(s.root, s.profile); !st.ok()) return Fail(st);
  if (auto st = SyncDeviceNodes(s.root, s.profile, s.config.char_devices); !st.ok()) {
    return Fail(st);
  }
  s.state->BumpLayoutGeneration();  // before the event: a woken waiter must see the new layout
  s.state->Post(slot, EventKind::kMigConfigChange, 0);
  if (disable) std::printf("GPU %llu: MIG disabled\n", static_cast<unsigned long long>(gpu));
  for (const auto& m : devices) {
    std::printf("GPU %llu: gi=%u ci=%u %s %s\n", static_cast<unsigned long long>(gpu),
                m.gpu_instance_id, m.compute_instance_id, m.profile.c_str(), m.uuid.c_str());
  }
  return 0;
}

// ---------------------------------------------------------------- driver

// The pids holding the lock at `path` (best effort): /proc/locks, else the
// processes with the file open.
std::vector<long> LockHolders(const std::string& path) {
  std::set<long> pids;
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return {};
  std::ifstream locks("/proc/locks");
  std::string line;
  while (std::getline(locks, line)) {
    std::istringstream in(line);
    std::vector<std::string> f;
    for (std::string w; in >> w;) f.push_back(w);
    if (f.size() < 6 || f[1] == "->") continue;  // "->": waiting, not holding
    // id: FLOCK ADVISORY READ|WRITE pid maj:min:inode start end
    std::vector<std::string> dev = absl::StrSplit(f[5], ':');
    long pid = 0;
    unsigned long long ino = 0;
    if (dev.size() == 3 && absl::SimpleAtoi(f[4], &pid) && absl::SimpleAtoi(dev[2], &ino) &&
        ino == st.st_ino && pid > 0) {
      pids.insert(pid);
    }
  }
  if (pids.empty()) {
    std::error_code ec;
    const std::string want = fs::weakly_canonical(path, ec).string();
    for (const auto& proc : fs::directory_iterator("/proc", ec)) {
      long pid = 0;
      if (!absl::SimpleAtoi(proc.path().filename().string(), &pid) || pid == getpid()) continue;
      std::error_code ec2;
      for (const auto& fd : fs::directory_iterator(proc.path() / "fd", ec2)) {
        std::error_code ec3;
        if (fs::read_symlink(fd.path(), ec3).string() == want) pids.insert(pid);
      }
    }
  }
  pids.erase(getpid());
  return {pids.begin(), pids.end()};
}

// Runs without the layout lock while it waits for the driver lock (a process
// starting NVML takes the driver lock, then the layout lock: holding the
// layout lock here would keep that process, and so the driver, busy), and
// takes the layout lock only for the change itself. The same order as the
// library's, so the two never wait on each other.
int DriverStop(const std::string& root, const std::string& wait_text) {
  std::chrono::milliseconds wait{0};
  if (!wait_text.empty() && !ParseDuration(wait_text, &wait)) {
    return Fail(absl::StrCat("driver stop: bad --wait '", wait_text,
                             "': want a duration like 500ms, 30s, 2m or 1h (a number: seconds)"));
  }
  {
    FileLock read(LayoutLockPath(root), LOCK_SH);
    auto s = OpenRoot(root);
    if (!s.ok()) return Fail(s.status());
    if (!s->state->DriverLoaded()) return Fail("driver stop: the driver is not loaded");
  }
  // First the driver's user space leaves the root, as a containerised
  // driver's shutdown takes its files away before it unloads the module.
  // The library's versioned file and its soname link go together, so the
  // link still resolves where they wait.
  const std::string lib = LibraryPath(root), aside = AsideLibraryPath(root);
  std::error_code ec;
  std::vector<std::pair<std::string, std::string>> files;  // in the root, aside
  if (fs::is_symlink(lib, ec)) {
    const fs::path target = fs::read_symlink(lib, ec);
    const fs::path dir = fs::path(lib).parent_path();
    if (!ec && target.is_relative()) {
      files.emplace_back((dir / target).string(),
                         (fs::path(aside).parent_path() / target).string());
    }
  }
  if (fs::exists(fs::symlink_status(lib, ec))) files.emplace_back(lib, aside);
  const bool moved = !files.empty();
  for (size_t i = 0; i < files.size(); ++i) {
    if (std::rename(files[i].first.c_str(), files[i].second.c_str()) != 0) {
      const int e = errno;
      for (size_t j = i; j-- > 0;) std::rename(files[j].second.c_str(), files[j].first.c_str());
      return Fail(
          absl::StrCat("driver stop: cannot move ", files[i].first, " aside: ", ErrnoString(e)));
    }
  }
  auto put_back = [&] {
    for (auto it = files.rbegin(); it != files.rend(); ++it) {
      std::rename(it->second.c_str(), it->first.c_str());
    }
  };
  // Then "rmmod": exclusive on the driver lock, which every NVML session (and
  // a running MPS control daemon) holds shared.
  const std::string lock_path = DriverLockPath(root);
  int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) {
    int e = errno;
    put_back();
    return Fail(absl::StrCat("driver stop: cannot open ", lock_path, ": ", ErrnoString(e)));
  }
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) break;
    if (errno != EWOULDBLOCK && errno != EINTR) {
      int e = errno;
      close(fd);
      put_back();
      return Fail(absl::StrCat("driver stop: flock ", lock_path, ": ", ErrnoString(e)));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      close(fd);
      put_back();
      std::vector<long> pids = LockHolders(lock_path);
      return Fail(pids.empty() ? std::string("driver stop: EBUSY: the driver is in use")
                               : absl::StrCat("driver stop: EBUSY: the driver is in use by pid ",
                                              absl::StrJoin(pids, ", ")));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FileLock write(LayoutLockPath(root), LOCK_EX);
  auto s = OpenRoot(root);
  if (!s.ok() || !s->state->DriverLoaded()) {  // another stop finished first
    close(fd);
    put_back();
    return Fail(s.ok() ? absl::FailedPreconditionError("driver stop: the driver is not loaded")
                       : s.status());
  }
  RemoveDeviceNodes(root);
  s->state->SetDriverLoaded(false);
  s->state->BumpLayoutGeneration();
  PostForEveryGpu(*s->state, s->profile, EventKind::kDriverUnbind);
  close(fd);
  std::printf("driver stopped: device nodes removed%s\n",
              moved ? ", libnvidia-ml.so.1 moved to run/gpusim/" : "");
  return 0;
}

int DriverStart(Session& s, const std::string& version, int cuda) {
  if (!version.empty()) {
    if (auto st = ValidateDriverVersion(version); !st.ok()) {
      return Fail(absl::StrCat("driver start: ", st.message()));
    }
  }
  if (cuda != 0) {
    if (auto st = ValidateCudaVersion(cuda); !st.ok()) {
      return Fail(absl::StrCat("driver start: ", st.message()));
    }
  }
  if (s.state->DriverLoaded()) {
    return Fail("driver start: the driver is already loaded; `gpusim driver stop` first");
  }
  const std::string lib = LibraryPath(s.root), aside = AsideLibraryPath(s.root);
  std::error_code ec;
  if (!fs::exists(aside, ec) && !fs::exists(lib, ec)) {
    return Fail(absl::StrCat("driver start: the library is neither at ", lib, " nor at ", aside,
                             "; lay out the root again with `gpusim root`"));
  }
  if (fs::exists(fs::symlink_status(aside, ec))) {
    // The versioned file first, then the link to it (driver stop moved both).
    const fs::path dir = fs::path(lib).parent_path();
    if (fs::is_symlink(aside, ec)) {
      const fs::path target = fs::read_symlink(aside, ec);
      const fs::path file = fs::path(aside).parent_path() / target;
      if (!ec && target.is_relative() && fs::exists(file, ec) &&
          std::rename(file.c_str(), (dir / target).c_str()) != 0) {
        return Fail(absl::StrCat("driver start: cannot put back ", (dir / target).string(), ": ",
                                 ErrnoString(errno)));
      }
    }
    if (std::rename(aside.c_str(), lib.c_str()) != 0) {
      return Fail(absl::StrCat("driver start: cannot put back ", lib, ": ", ErrnoString(errno)));
    }
  }
  if (!version.empty() || cuda != 0) {
    if (!version.empty()) s.config.driver_version = version;
    if (cuda != 0) s.config.cuda_driver_version = cuda;
    if (auto st = WriteConfig(s.root, s.config); !st.ok()) return Fail(st);
    auto p = LoadRootProfile(s.root);
    if (!p.ok()) return Fail(p.status());
    s.profile = std::move(*p);
  }
  // The user space of the driver now loaded (another version's is replaced).
  if (auto st = LayDriverUserSpace(s.root, s.profile.driver_version, {}, ""); !st.ok()) {
    return Fail(st);
  }
  if (auto st = SyncDeviceNodes(s.root, s.profile, s.config.char_devices); !st.ok()) {
    return Fail(st);
  }
  s.state->SetDriverLoaded(true);
  s.state->BumpLayoutGeneration();
  PostForEveryGpu(*s.state, s.profile, EventKind::kDriverBind);
  std::printf("driver %s loaded: %zu GPUs\n", s.profile.driver_version.c_str(),
              s.profile.gpus.size());
  return 0;
}

int Main(int argc, char** argv) {
  CLI::App app{
      "gpusim: lay out a simulated NVIDIA driver root and change it as a real node changes"};
  app.require_subcommand(1);
  std::string root;
  // Startup, before any thread exists.
  if (const char* env = std::getenv(kRootEnv)) root = env;  // NOLINT(concurrency-mt-unsafe)
  app.add_option("--root", root, std::string("driver root (default $") + kRootEnv + ")");

  LayoutOptions layout;
  layout.library = GPUSIM_DEFAULT_LIBRARY;
  layout.mps_control = GPUSIM_DEFAULT_MPS_CONTROL;
  std::string layout_dir;
  auto* cmd_root = app.add_subcommand("root", "lay out a driver root for a profile");
  cmd_root->add_option("dir", layout_dir, "directory to lay out")->required();
  cmd_root->add_option("--profile", layout.config.profile, "built-in profile name or YAML path")
      ->required();
  cmd_root->add_option("--driver-version", layout.config.driver_version,
                       "override the profile's driver version (e.g. 450.80.02)");
  cmd_root->add_option("--cuda-version", layout.config.cuda_driver_version,
                       "override the CUDA driver version (1000*major+10*minor, e.g. 12040)");
  auto* library_option =
      cmd_root->add_option("--library", layout.library, "the libnvidia-ml.so.1 to install")
          ->capture_default_str();
  auto* mps_option = cmd_root
                         ->add_option("--mps-control", layout.mps_control,
                                      "the nvidia-cuda-mps-control stand-in to install in usr/bin "
                                      "(default: the one built beside gpusim, when present)")
                         ->capture_default_str();
  std::string nvidia_smi = GPUSIM_DEFAULT_NVIDIA_SMI;
  auto* smi_option = cmd_root
                         ->add_option("--nvidia-smi", nvidia_smi,
                                      "the nvidia-smi stand-in to install in usr/bin (default: "
                                      "the one built beside gpusim, when present)")
                         ->capture_default_str();
  std::string libcuda = GPUSIM_DEFAULT_CUDA;
  auto* cuda_option = cmd_root
                          ->add_option("--libcuda", libcuda,
                                       "the simulated libcuda.so.1 to install (default: the one "
                                       "built beside gpusim, when present)")
                          ->capture_default_str();
  std::string persistenced = GPUSIM_DEFAULT_PERSISTENCED;
  auto* persistenced_option =
      cmd_root
          ->add_option("--persistenced", persistenced,
                       "the nvidia-persistenced stand-in to install in usr/bin (default: the "
                       "one built beside gpusim, when present)")
          ->capture_default_str();
  cmd_root->add_flag("--no-mknod", layout.allow_regular_files,
                     "without root, create empty files instead of character devices");
  cmd_root
      ->add_option("--extras", layout.extras,
                   "device nodes of other drivers: gdrcopy (/dev/gdrdrv), gds "
                   "(/dev/nvidia-fs*), mofed (/dev/infiniband/*), imex (IMEX channel 0)")
      ->delimiter(',');
  std::string driver_branch;
  cmd_root->add_option("--driver-branch", driver_branch,
                       "stand for a driver branch (" + DriverBranchNames() +
                           "): its release's driver and CUDA versions unless given, its "
                           "NVML's functions (the branch's library unless --library) and "
                           "event types");
  bool no_change_events = false;
  cmd_root->add_flag("--no-change-events", no_change_events,
                     "an older driver: no driver bind/unbind system events and no MIG "
                     "configuration-change event");

  uint64_t gpu = 0;
  unsigned xid = 0;
  std::string action;
  auto* cmd_xid = app.add_subcommand("xid", "inject an XID event");
  cmd_xid->add_option("--gpu", gpu, "GPU index")->required();
  cmd_xid->add_option("--xid", xid, "XID number, e.g. 79")->required();
  cmd_xid->add_option("--action", action,
                      "recovery action it sets: none, reset, reboot, drain-p2p, drain-and-reset "
                      "(default: from NVIDIA's XID catalog)");
  auto* cmd_lose = app.add_subcommand("lose", "make a GPU fall off the bus (XID 79, then lost)");
  cmd_lose->add_option("--gpu", gpu, "GPU index")->required();
  auto* cmd_recover = app.add_subcommand("recover", "bring a lost GPU back");
  cmd_recover->add_option("--gpu", gpu, "GPU index")->required();
  auto* cmd_reset = app.add_subcommand(
      "reset", "reset a GPU: clears lost and the pending recovery action, counts the reset");
  cmd_reset->add_option("--gpu", gpu, "GPU index")->required();
  std::vector<std::string> settings;
  auto* cmd_set = app.add_subcommand("set",
                                     "set telemetry: util= mem-util= temp= power= (W) "
                                     "mem-used= sm-clock= mem-clock= ecc-corrected= "
                                     "ecc-uncorrected= mem-temp= pcie-tx= pcie-rx= (KB/s) "
                                     "clock-reasons= (mask) nvml-latency-ms=");
  cmd_set->add_option("--gpu", gpu, "GPU index")->required();
  cmd_set->add_option("settings", settings, "KEY=VALUE ...")->required();

  uint64_t like = 0;
  auto* cmd_add = app.add_subcommand("add", "hot-add a GPU like another (default: the last)");
  auto* like_option = cmd_add->add_option("--like", like, "GPU index to copy the model of");
  std::string uuid;
  auto* cmd_remove = app.add_subcommand("remove", "hot-remove a GPU");
  auto* remove_gpu = cmd_remove->add_option("--gpu", gpu, "GPU index");
  cmd_remove->add_option("--uuid", uuid, "GPU UUID");
  std::string mig_layout;
  bool mig_disable = false;
  auto* cmd_mig = app.add_subcommand("mig", "re-lay a GPU's MIG devices, or turn MIG off");
  cmd_mig->add_option("--gpu", gpu, "GPU index")->required();
  auto* mig_layout_option =
      cmd_mig->add_option("--layout", mig_layout, "PROFILE=COUNT[,PROFILE=COUNT...]");
  cmd_mig->add_flag("--disable", mig_disable, "turn MIG mode off");
  auto* cmd_driver = app.add_subcommand("driver", "stop or start the simulated driver");
  cmd_driver->require_subcommand(1);
  std::string wait;
  auto* cmd_stop = cmd_driver->add_subcommand(
      "stop", "take the driver away (fails with EBUSY while a process has it open)");
  cmd_stop->add_option("--wait", wait, "retry for this long (e.g. 30s; default: one attempt)");
  std::string start_version;
  int start_cuda = 0;
  auto* cmd_start = cmd_driver->add_subcommand("start", "bring the driver back");
  cmd_start->add_option("--version", start_version, "new driver version (e.g. 560.35.03)");
  cmd_start->add_option("--cuda-version", start_cuda,
                        "new CUDA driver version (1000*major+10*minor, e.g. 12060)");
  auto* cmd_show = app.add_subcommand("show", "print the simulated GPUs and their state");
  auto* cmd_profiles = app.add_subcommand("profiles", "list the built-in profiles");

  CLI11_PARSE(app, argc, argv);

  if (cmd_profiles->parsed()) {
    for (const auto& name : BuiltinProfileNames()) {
      auto p = BuiltinProfile(name);
      std::printf("%-10s %s\n", name.c_str(), p.ok() ? p->description.c_str() : "(invalid)");
    }
    return 0;
  }
  if (cmd_root->parsed()) {
    std::error_code ec;
    if (mps_option->count() == 0 && !std::filesystem::is_regular_file(layout.mps_control, ec)) {
      layout.mps_control.clear();  // the default is optional; an explicit path is not
    }
    layout.config.change_events = !no_change_events;
    if (!driver_branch.empty()) {
      const DriverBranch* branch = FindDriverBranch(driver_branch);
      if (branch == nullptr) {
        return Fail(absl::InvalidArgumentError(absl::StrCat(
            "--driver-branch '", driver_branch, "' is not one of ", DriverBranchNames())));
      }
      layout.config.driver_branch = branch->name;
      if (layout.config.driver_version.empty())
        layout.config.driver_version = branch->driver_version;
      if (layout.config.cuda_driver_version == 0) {
        layout.config.cuda_driver_version = branch->cuda_driver_version;
      }
      if (library_option->count() == 0) {
        layout.library =
            absl::StrCat(GPUSIM_BRANCH_LIBRARY_DIR, "/", branch->name, "/", "libnvidia-ml.so.1");
        if (!std::filesystem::is_regular_file(layout.library, ec)) {
          return Fail(absl::NotFoundError(
              absl::StrCat(layout.library, " not found: build target nvidia-ml-", branch->name,
                           " (hack/build.sh release gpusim builds every branch's library)")));
        }
      }
    }
    auto r = LayoutRoot(layout_dir, layout);
    if (!r.ok()) return Fail(r.status());
    // The defaults are optional (built beside gpusim, or not); an explicit path is not.
    std::vector<std::string> binaries;
    for (const auto& [path, option] :
         {std::pair{&nvidia_smi, smi_option}, std::pair{&persistenced, persistenced_option}}) {
      if (option->count() > 0 || std::filesystem::is_regular_file(*path, ec)) {
        binaries.push_back(*path);
      }
    }
    if (cuda_option->count() == 0 && !std::filesystem::is_regular_file(libcuda, ec)) {
      libcuda.clear();
    }
    if (auto st = LayDriverUserSpace(layout_dir, r->driver_version, binaries, libcuda); !st.ok()) {
      return Fail(st);
    }
    std::printf("laid out %s for profile %s: %zu device nodes%s\n", layout_dir.c_str(),
                layout.config.profile.c_str(), r->nodes,
                r->char_devices ? "" : " (regular files: not root, --no-mknod)");
    return 0;
  }
  if (root.empty()) return Fail(OpenRoot(root).status());
  std::error_code ec;
  if (!fs::exists(ConfigPath(root), ec)) return Fail(OpenRoot(root).status());
  if (cmd_stop->parsed()) return DriverStop(root, wait);  // takes its locks itself
  // Layout changes run one at a time, and never under a reader.
  const bool changes_layout =
      cmd_add->parsed() || cmd_remove->parsed() || cmd_mig->parsed() || cmd_start->parsed();
  FileLock layout_lock(LayoutLockPath(root), changes_layout ? LOCK_EX : LOCK_SH);
  auto s = OpenRoot(root);
  if (!s.ok()) return Fail(s.status());
  if (cmd_show->parsed()) {
    Show(*s);
    return 0;
  }
  if (cmd_add->parsed()) return Add(*s, like_option->count() > 0, like);
  if (cmd_remove->parsed()) return Remove(*s, remove_gpu->count() > 0, gpu, uuid);
  if (cmd_mig->parsed()) {
    return Mig(*s, gpu, mig_layout, mig_layout_option->count() > 0, mig_disable);
  }
  if (cmd_start->parsed()) return DriverStart(*s, start_version, start_cuda);

  if (auto st = CheckGpu(*s, gpu); !st.ok()) return Fail(st);
  const GpuSpec& g = s->profile.gpus[gpu];
  SharedState& state = *s->state;
  if (cmd_xid->parsed()) {
    int chosen = -1;
    if (!action.empty()) {
      for (const auto& a : kActions) {
        if (action == a.name) chosen = static_cast<int>(a.action);
      }
      if (chosen < 0) {
        return Fail(absl::StrCat("bad --action '", action,
                                 "': want none, reset, reboot, drain-p2p or drain-and-reset"));
      }
    }
    if (auto st = CheckDriverLoaded(*s, "xid"); !st.ok()) return Fail(st);
    state.InjectXid(g.slot, xid);
    // Without --action only an XID with a documented action changes the pending one.
    if (chosen >= 0) {
      SetRecoveryAction(state, g.slot, static_cast<unsigned>(chosen));
    } else if (unsigned a = DefaultAction(xid); a != 0) {
      SetRecoveryAction(state, g.slot, a);
    }
  } else if (cmd_lose->parsed()) {
    if (auto st = CheckDriverLoaded(*s, "lose"); !st.ok()) return Fail(st);
    state.Update(g.slot, [](Telemetry& t) { t.lost = true; });
    state.InjectXid(g.slot, 79);
    SetRecoveryAction(state, g.slot, 1);  // GPU reset: `gpusim reset` brings it back
  } else if (cmd_recover->parsed()) {
    state.Update(g.slot, [](Telemetry& t) { t.lost = false; });
  } else if (cmd_reset->parsed()) {
    if (auto st = CheckDriverLoaded(*s, "reset"); !st.ok()) return Fail(st);
    uint64_t resets = 0;
    state.Update(g.slot, [&](Telemetry& t) {
      t.lost = false;
      t.recovery_action = 0;
      resets = ++t.reset_count;
    });
    std::printf("reset GPU %llu (%s): %llu resets\n", static_cast<unsigned long long>(gpu),
                g.uuid.c_str(), static_cast<unsigned long long>(resets));
  } else if (cmd_set->parsed()) {
    auto setters = ParseSettings(settings, g);
    if (!setters.ok()) return Fail(setters.status());
    state.Update(g.slot, [&](Telemetry& t) {
      for (const auto& f : *setters) f(t);
    });
  }
  return 0;
}

}  // namespace
}  // namespace gdp::sim

int main(int argc, char** argv) { return gdp::sim::Main(argc, argv); }
