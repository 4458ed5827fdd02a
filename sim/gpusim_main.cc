// gpusim: lays out a simulated driver root and injects faults and telemetry
// into a running simulation (every process using the same root sees them).
//
//   gpusim root DIR --profile dgx-h100 [--driver-version V] [--cuda-version N]
//   gpusim --root DIR xid --gpu 0 --xid 79
//   gpusim --root DIR lose --gpu 0 | recover --gpu 0
//   gpusim --root DIR set --gpu 0 util=75 temp=81 power=350 mem-used=40GiB
//   gpusim --root DIR set --gpu 0 nvml-latency-ms=5   (every NVML call on GPU 0 sleeps 5 ms)
//   gpusim --root DIR show
//   gpusim profiles
//
// Bad input is rejected before anything changes; errors go to stderr and the
// exit status is 1 (2 for command-line syntax, from CLI11).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sim/profile.h"
#include "sim/root.h"
#include "sim/state.h"

namespace gdp::sim {
namespace {

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

struct Session {
  Profile profile;
  std::unique_ptr<SharedState> state;
};

absl::StatusOr<Session> OpenRoot(const std::string& root) {
  if (root.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no driver root: pass --root DIR or set $", kRootEnv));
  }
  Session s;
  auto p = LoadRootProfile(root);
  if (!p.ok()) return p.status();
  s.profile = std::move(*p);
  auto st = SharedState::Open(StatePath(root));
  if (!st.ok()) return st.status();
  s.state = std::move(*st);
  if (s.state->num_gpus() != s.profile.gpus.size()) {
    return absl::FailedPreconditionError(absl::StrCat("state ", StatePath(root),
                                                      " does not match profile ", s.profile.name,
                                                      "; recreate the root with `gpusim root`"));
  }
  return s;
}

absl::Status CheckGpu(const Session& s, unsigned gpu) {
  if (gpu >= s.profile.gpus.size()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown GPU ", gpu, ": profile ",
                                                   s.profile.name, " has GPUs 0..",
                                                   s.profile.gpus.size() - 1));
  }
  return absl::OkStatus();
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

void Show(const Session& s, const std::string& root) {
  std::printf("root %s\nprofile %s (%s)\ndriver %s  CUDA %d.%d  NVML %s\n", root.c_str(),
              s.profile.name.c_str(), s.profile.source.c_str(), s.profile.driver_version.c_str(),
              s.profile.cuda_driver_version / 1000, (s.profile.cuda_driver_version % 1000) / 10,
              s.profile.NvmlVersion().c_str());
  std::printf("%-3s %-40s %-28s %-6s %4s %4s %6s %12s %5s %s\n", "GPU", "UUID", "NAME", "STATE",
              "UTIL", "TEMP", "POWER", "MEM-USED", "XIDS", "MIG");
  for (unsigned i = 0; i < s.profile.gpus.size(); ++i) {
    const GpuSpec& g = s.profile.gpus[i];
    Telemetry t = s.state->Read(i);
    std::string mig = "-";
    if (g.mig_enabled) {
      mig.clear();
      for (const auto& m : g.mig_devices) absl::StrAppend(&mig, mig.empty() ? "" : ",", m.profile);
    }
    std::printf("%-3u %-40s %-28s %-6s %3u%% %3uC %5uW %8lluMiB %5llu %s\n", i, g.uuid.c_str(),
                g.name.c_str(), t.lost ? "LOST" : "ok", t.util_gpu, t.temp_c, t.power_mw / 1000,
                static_cast<unsigned long long>(t.mem_used_bytes >> 20),
                static_cast<unsigned long long>(t.xid_count), mig.c_str());
  }
}

int Main(int argc, char** argv) {
  CLI::App app{"gpusim: lay out a simulated NVIDIA driver root and inject faults into it"};
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
  cmd_root->add_option("--library", layout.library, "the libnvidia-ml.so.1 to install")
      ->capture_default_str();
  auto* mps_option = cmd_root
                         ->add_option("--mps-control", layout.mps_control,
                                      "the nvidia-cuda-mps-control stand-in to install in usr/bin "
                                      "(default: the one built beside gpusim, when present)")
                         ->capture_default_str();
  cmd_root->add_flag("--no-mknod", layout.allow_regular_files,
                     "without root, create empty files instead of character devices");

  unsigned gpu = 0, xid = 0;
  auto* cmd_xid = app.add_subcommand("xid", "inject an XID event");
  cmd_xid->add_option("--gpu", gpu, "GPU index")->required();
  cmd_xid->add_option("--xid", xid, "XID number, e.g. 79")->required();
  auto* cmd_lose = app.add_subcommand("lose", "make a GPU fall off the bus (XID 79, then lost)");
  cmd_lose->add_option("--gpu", gpu, "GPU index")->required();
  auto* cmd_recover = app.add_subcommand("recover", "bring a lost GPU back");
  cmd_recover->add_option("--gpu", gpu, "GPU index")->required();
  std::vector<std::string> settings;
  auto* cmd_set = app.add_subcommand("set",
                                     "set telemetry: util= mem-util= temp= power= (W) "
                                     "mem-used= sm-clock= mem-clock= ecc-corrected= "
                                     "ecc-uncorrected= mem-temp= pcie-tx= pcie-rx= (KB/s) "
                                     "clock-reasons= (mask) nvml-latency-ms=");
  cmd_set->add_option("--gpu", gpu, "GPU index")->required();
  cmd_set->add_option("settings", settings, "KEY=VALUE ...")->required();
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
    auto r = LayoutRoot(layout_dir, layout);
    if (!r.ok()) return Fail(r.status());
    std::printf("laid out %s for profile %s: %zu device nodes%s\n", layout_dir.c_str(),
                layout.config.profile.c_str(), r->nodes,
                r->char_devices ? "" : " (regular files: not root, --no-mknod)");
    return 0;
  }
  auto s = OpenRoot(root);
  if (!s.ok()) return Fail(s.status());
  if (cmd_show->parsed()) {
    Show(*s, root);
    return 0;
  }
  if (auto st = CheckGpu(*s, gpu); !st.ok()) return Fail(st);
  if (cmd_xid->parsed()) {
    s->state->InjectXid(gpu, xid);
  } else if (cmd_lose->parsed()) {
    s->state->Update(gpu, [](Telemetry& t) { t.lost = true; });
    s->state->InjectXid(gpu, 79);
  } else if (cmd_recover->parsed()) {
    s->state->Update(gpu, [](Telemetry& t) { t.lost = false; });
  } else if (cmd_set->parsed()) {
    auto setters = ParseSettings(settings, s->profile.gpus[gpu]);
    if (!setters.ok()) return Fail(setters.status());
    s->state->Update(gpu, [&](Telemetry& t) {
      for (const auto& f : *setters) f(t);
    });
  }
  return 0;
}

}  // namespace
}  // namespace gdp::sim

int main(int argc, char** argv) { return gdp::sim::Main(argc, argv); }
