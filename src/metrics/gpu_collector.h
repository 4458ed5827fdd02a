// GPU metrics: reading NVML into plain values (ReadGpus) and turning those
// values, with health and pod attribution, into metric families
// (AppendGpuFamilies). The two halves are split so the NVML half runs on the
// sampler's thread only (it may take 5 ms a call on a real driver) and the
// rendering half is a pure function that golden tests pin byte for byte.
//
// Every NVML value is optional: a call that fails for any reason
// (NOT_SUPPORTED on a GeForce or a MIG device, FUNCTION_NOT_FOUND on an old
// driver, GPU_IS_LOST) leaves its metric out for that GPU; nothing here is an
// error. docs/metrics.md lists every family with its type, unit and labels.
//
// Thread-safety: ReadGpus needs a thread-safe NvmlApi (NVML is); the rest is
// pure.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/metrics/exposition.h"
#include "src/metrics/pod_resources.h"
#include "src/nvml/inventory.h"
#include "src/nvml/nvml_api.h"

namespace gdp::metrics {

// The names of NVML's clock event (throttle) reasons, by bit, as exported in
// the `reason` label of gdp_gpu_clock_event_reason_active.
const std::vector<std::pair<unsigned long long, const char*>>& ClockEventReasons();

struct EccCount {
  const char* type;   // "corrected" | "uncorrected"
  const char* scope;  // "volatile" | "aggregate"
  double count;
};

struct MigReading {
  std::string uuid;
  std::string profile;
  unsigned gpu_instance_id = 0;
  unsigned compute_instance_id = 0;
  std::optional<double> fb_used_bytes, fb_free_bytes, fb_total_bytes;
};

// One GPU's values, in base units.
struct GpuReading {
  std::string uuid;
  std::optional<double> utilization_ratio, memory_utilization_ratio;
  std::optional<double> fb_used_bytes, fb_free_bytes, fb_total_bytes;
  std::optional<double> temperature_celsius, memory_temperature_celsius;
  std::optional<double> power_watts, power_limit_watts, energy_joules;
  std::optional<double> sm_clock_hertz, memory_clock_hertz;
  std::optional<double> pcie_tx_bytes_per_second, pcie_rx_bytes_per_second;
  std::vector<EccCount> ecc;
  std::optional<double> remapped_correctable, remapped_uncorrectable, remap_pending, remap_failure;
  std::optional<unsigned long long> clock_event_reasons;
  std::vector<MigReading> migs;
  bool lost = false;  // NVML answered GPU_IS_LOST (or no longer finds it)
};

// Reads every GPU (and MIG device) of `inventory` through `api`.
std::vector<GpuReading> ReadGpus(nvml::NvmlApi& api, const nvml::Inventory& inventory);

// What the health monitor knows of one GPU.
struct GpuHealthInfo {
  bool healthy = true;
  std::string reason;                           // why Unhealthy; empty when Healthy
  std::map<unsigned long long, uint64_t> xids;  // XID events seen, by code
  unsigned long long last_xid = 0;              // 0: none yet
};

struct GpuMetricsInput {
  const nvml::Inventory* inventory = nullptr;
  std::vector<GpuReading> readings;             // any order; matched by UUID
  std::map<std::string, GpuHealthInfo> health;  // by GPU UUID; absent: not monitored
  Attribution attribution;                      // by GPU or MIG UUID
  std::string node;                             // `node` label; left out when empty
  bool dcgm_compatibility = false;              // also emit dcgm-exporter names
};

void AppendGpuFamilies(const GpuMetricsInput& input, std::vector<MetricFamily>* out);

}  // namespace gdp::metrics
