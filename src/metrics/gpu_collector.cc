#include "src/metrics/gpu_collector.h"

#include <cstdio>
#include <functional>

#include "absl/strings/str_cat.h"

namespace gdp::metrics {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

std::optional<double> Opt(nvmlReturn_t r, double v) {
  return r == NVML_SUCCESS ? std::optional<double>(v) : std::nullopt;
}

// A field value as a double; nullopt when NVML did not answer it.
std::optional<double> FieldAsDouble(const nvmlFieldValue_t& f) {
  if (f.nvmlReturn != NVML_SUCCESS) return std::nullopt;
  switch (f.valueType) {
    case NVML_VALUE_TYPE_DOUBLE:
      return f.value.dVal;
    case NVML_VALUE_TYPE_UNSIGNED_INT:
      return f.value.uiVal;
    case NVML_VALUE_TYPE_UNSIGNED_LONG:
      return static_cast<double>(f.value.ulVal);
    case NVML_VALUE_TYPE_UNSIGNED_LONG_LONG:
      return static_cast<double>(f.value.ullVal);
    case NVML_VALUE_TYPE_SIGNED_LONG_LONG:
      return static_cast<double>(f.value.sllVal);
    case NVML_VALUE_TYPE_SIGNED_INT:
      return f.value.siVal;
    default:
      return std::nullopt;
  }
}

void ReadMemory(nvml::NvmlApi& api, nvmlDevice_t h, std::optional<double>* used,
                std::optional<double>* free, std::optional<double>* total) {
  nvmlMemory_t mem{};
  if (api.DeviceGetMemoryInfo(h, &mem) != NVML_SUCCESS) return;
  *used = static_cast<double>(mem.used);
  *free = static_cast<double>(mem.free);
  *total = static_cast<double>(mem.total);
}

GpuReading ReadGpu(nvml::NvmlApi& api, const nvml::Gpu& gpu) {
  GpuReading r;
  r.uuid = gpu.uuid;
  nvmlDevice_t h = nullptr;
  const nvmlReturn_t found = api.DeviceGetHandleByUUID(gpu.uuid.c_str(), &h);
  if (found != NVML_SUCCESS) {
    r.lost = found == NVML_ERROR_GPU_IS_LOST || found == NVML_ERROR_NOT_FOUND;
    return r;
  }
  nvmlUtilization_t util{};
  if (api.DeviceGetUtilizationRates(h, &util) == NVML_SUCCESS) {
    r.utilization_ratio = util.gpu / 100.0;
    r.memory_utilization_ratio = util.memory / 100.0;
  }
  ReadMemory(api, h, &r.fb_used_bytes, &r.fb_free_bytes, &r.fb_total_bytes);
  unsigned v = 0;
  nvmlReturn_t rc = api.DeviceGetTemperature(h, NVML_TEMPERATURE_GPU, &v);
  if (rc == NVML_ERROR_GPU_IS_LOST) {
    r.lost = true;
    return r;
  }
  r.temperature_celsius = Opt(rc, v);
  nvmlFieldValue_t field{};
  field.fieldId = NVML_FI_DEV_MEMORY_TEMP;
  if (api.DeviceGetFieldValues(h, 1, &field) == NVML_SUCCESS) {
    r.memory_temperature_celsius = FieldAsDouble(field);
  }
  rc = api.DeviceGetPowerUsage(h, &v);
  r.power_watts = Opt(rc, v / 1000.0);
  rc = api.DeviceGetEnforcedPowerLimit(h, &v);
  r.power_limit_watts = Opt(rc, v / 1000.0);
  unsigned long long energy = 0;
  rc = api.DeviceGetTotalEnergyConsumption(h, &energy);
  r.energy_joules = Opt(rc, static_cast<double>(energy) / 1000.0);
  rc = api.DeviceGetClockInfo(h, NVML_CLOCK_SM, &v);
  r.sm_clock_hertz = Opt(rc, v * 1e6);
  rc = api.DeviceGetClockInfo(h, NVML_CLOCK_MEM, &v);
  r.memory_clock_hertz = Opt(rc, v * 1e6);
  // NVML reports PCIe throughput in KB/s (1 KB = 1024 bytes) over a 20 ms window.
  rc = api.DeviceGetPcieThroughput(h, NVML_PCIE_UTIL_TX_BYTES, &v);
  r.pcie_tx_bytes_per_second = Opt(rc, v * 1024.0);
  rc = api.DeviceGetPcieThroughput(h, NVML_PCIE_UTIL_RX_BYTES, &v);
  r.pcie_rx_bytes_per_second = Opt(rc, v * 1024.0);
  for (auto [type, type_name] : {std::pair{NVML_MEMORY_ERROR_TYPE_CORRECTED, "corrected"},
                                 std::pair{NVML_MEMORY_ERROR_TYPE_UNCORRECTED, "uncorrected"}}) {
    for (auto [scope, scope_name] :
         {std::pair{NVML_VOLATILE_ECC, "volatile"}, std::pair{NVML_AGGREGATE_ECC, "aggregate"}}) {
      unsigned long long n = 0;
      if (api.DeviceGetTotalEccErrors(h, type, scope, &n) == NVML_SUCCESS) {
        r.ecc.push_back({type_name, scope_name, static_cast<double>(n)});
      }
    }
  }
  unsigned corr = 0, unc = 0, pending = 0, failure = 0;
  if (api.DeviceGetRemappedRows(h, &corr, &unc, &pending, &failure) == NVML_SUCCESS) {
    r.remapped_correctable = corr;
    r.remapped_uncorrectable = unc;
    r.remap_pending = pending != 0 ? 1 : 0;
    r.remap_failure = failure != 0 ? 1 : 0;
  }
  unsigned long long reasons = 0;
  if (api.DeviceGetCurrentClocksEventReasons(h, &reasons) == NVML_SUCCESS) {
    r.clock_event_reasons = reasons;
  }
  for (const nvml::MigDevice& m : gpu.mig_devices) {
    MigReading mr;
    mr.uuid = m.uuid;
    mr.profile = m.profile;
    mr.gpu_instance_id = m.gpu_instance_id;
    mr.compute_instance_id = m.compute_instance_id;
    nvmlDevice_t mh = nullptr;
    if (api.DeviceGetMigDeviceHandleByIndex(h, m.index, &mh) == NVML_SUCCESS) {
      ReadMemory(api, mh, &mr.fb_used_bytes, &mr.fb_free_bytes, &mr.fb_total_bytes);
    }
    r.migs.push_back(std::move(mr));
  }
  return r;
}

// Builds the families of one kind and adds samples to them by name.
class Families {
 public:
  void Gauge(const std::string& name, const std::string& help) {
    Declare(name, help, MetricType::kGauge);
  }
  void Counter(const std::string& name, const std::string& help) {
    Declare(name, help, MetricType::kCounter);
  }
  void Add(const std::string& name, const Labels& labels, double value) {
    families_[index_.at(name)].Add(labels, value);
  }
  void AppendTo(std::vector<MetricFamily>* out) {
    for (auto& f : families_) out->push_back(std::move(f));
  }

 private:
  void Declare(const std::string& name, const std::string& help, MetricType type) {
    index_[name] = families_.size();
    MetricFamily f;
    f.name = name;
    f.help = help;
    f.type = type;
    families_.push_back(std::move(f));
  }
  std::map<std::string, size_t> index_;
  std::vector<MetricFamily> families_;
};

void DeclareGpuFamilies(Families& f) {
  f.Gauge("gdp_gpu_info",
          "Always 1; labels name the GPU's product, driver and CUDA driver versions.");
  f.Gauge("gdp_gpu_utilization_ratio",
          "Fraction of the last sample period during which a kernel ran on the GPU (0-1).");
  f.Gauge("gdp_gpu_memory_utilization_ratio",
          "Fraction of the last sample period during which device memory was read or written "
          "(0-1).");
  f.Gauge("gdp_gpu_framebuffer_used_bytes", "Framebuffer memory allocated, in bytes.");
  f.Gauge("gdp_gpu_framebuffer_free_bytes", "Framebuffer memory free, in bytes.");
  f.Gauge("gdp_gpu_framebuffer_total_bytes", "Framebuffer memory installed, in bytes.");
  f.Gauge("gdp_gpu_temperature_celsius", "GPU die temperature, in degrees Celsius.");
  f.Gauge("gdp_gpu_memory_temperature_celsius", "Memory (HBM) temperature, in degrees Celsius.");
  f.Gauge("gdp_gpu_power_usage_watts", "Power drawn by the board, in watts.");
  f.Gauge("gdp_gpu_power_limit_watts", "Enforced power limit, in watts.");
  f.Counter("gdp_gpu_energy_joules_total",
            "Energy consumed since the driver was loaded, in joules.");
  f.Gauge("gdp_gpu_sm_clock_hertz", "Current SM clock, in hertz.");
  f.Gauge("gdp_gpu_memory_clock_hertz", "Current memory clock, in hertz.");
  f.Gauge("gdp_gpu_pcie_transmit_bytes_per_second",
          "PCIe transmit throughput over NVML's last 20 ms window, in bytes per second.");
  f.Gauge("gdp_gpu_pcie_receive_bytes_per_second",
          "PCIe receive throughput over NVML's last 20 ms window, in bytes per second.");
  f.Counter("gdp_gpu_ecc_errors_total",
            "ECC memory errors by type (corrected|uncorrected) and scope (volatile: since the "
            "driver loaded; aggregate: lifetime).");
  f.Gauge("gdp_gpu_remapped_rows", "Memory rows remapped, by cause (correctable|uncorrectable).");
  f.Gauge("gdp_gpu_row_remap_pending",
          "1 when a row remap is pending (the GPU needs a reset), else 0.");
  f.Gauge("gdp_gpu_row_remap_failure", "1 when a row remap has failed, else 0.");
  f.Gauge("gdp_gpu_clock_event_reason_active",
          "1 when the clock event (throttle) reason is active, else 0.");
  f.Gauge("gdp_gpu_healthy", "1 when the GPU is healthy (advertised as Healthy), else 0.");
  f.Gauge("gdp_gpu_unhealthy_reason_info",
          "Always 1 while the GPU is unhealthy; the reason label says why.");
  f.Counter("gdp_gpu_xid_errors_total", "XID error events seen on the GPU, by XID.");
  f.Gauge("gdp_gpu_lost", "1 when NVML reports the GPU lost (fallen off the bus), else 0.");
  f.Gauge("gdp_gpu_mig_framebuffer_used_bytes", "MIG device framebuffer allocated, in bytes.");
  f.Gauge("gdp_gpu_mig_framebuffer_free_bytes", "MIG device framebuffer free, in bytes.");
  f.Gauge("gdp_gpu_mig_framebuffer_total_bytes", "MIG device framebuffer size, in bytes.");
}

void DeclareDcgmFamilies(Families& f) {
  f.Gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).");
  f.Gauge("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).");
  f.Gauge("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).");
  f.Gauge("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).");
  f.Gauge("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).");
  f.Gauge("DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C).");
  f.Gauge("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).");
  f.Counter("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ).");
  f.Gauge("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).");
  f.Gauge("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).");
  f.Gauge("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.");
}

// Label sets of one device: once without pod labels when nobody holds it,
// else once per container holding it.
std::vector<Labels> WithPods(const Labels& base, const Attribution& attribution,
                             const std::string& uuid) {
  auto it = attribution.find(uuid);
  if (it == attribution.end() || it->second.empty()) return {base};
  std::vector<Labels> out;
  for (const PodRef& p : it->second) {
    Labels l = base;
    l.emplace_back("namespace", p.pod_namespace);
    l.emplace_back("pod", p.pod);
    l.emplace_back("container", p.container);
    out.push_back(std::move(l));
  }
  return out;
}

std::string CudaVersion(int v) { return absl::StrCat(v / 1000, ".", (v % 1000) / 10); }

}  // namespace

const std::vector<std::pair<unsigned long long, const char*>>& ClockEventReasons() {
  static const auto* const kReasons = new std::vector<std::pair<unsigned long long, const char*>>{
      {nvmlClocksEventReasonGpuIdle, "gpu_idle"},
      {nvmlClocksEventReasonApplicationsClocksSetting, "applications_clocks_setting"},
      {nvmlClocksEventReasonSwPowerCap, "sw_power_cap"},
      {nvmlClocksThrottleReasonHwSlowdown, "hw_slowdown"},
      {nvmlClocksEventReasonSyncBoost, "sync_boost"},
      {nvmlClocksEventReasonSwThermalSlowdown, "sw_thermal_slowdown"},
      {nvmlClocksThrottleReasonHwThermalSlowdown, "hw_thermal_slowdown"},
      {nvmlClocksThrottleReasonHwPowerBrakeSlowdown, "hw_power_brake_slowdown"},
      {nvmlClocksEventReasonDisplayClockSetting, "display_clock_setting"},
  };
  return *kReasons;
}

std::vector<GpuReading> ReadGpus(nvml::NvmlApi& api, const nvml::Inventory& inventory) {
  std::vector<GpuReading> out;
  out.reserve(inventory.gpus.size());
  for (const nvml::Gpu& g : inventory.gpus) out.push_back(ReadGpu(api, g));
  return out;
}

void AppendGpuFamilies(const GpuMetricsInput& in, std::vector<MetricFamily>* out) {
  if (in.inventory == nullptr) return;
  Families f;
  DeclareGpuFamilies(f);
  if (in.dcgm_compatibility) DeclareDcgmFamilies(f);
  std::map<std::string, const GpuReading*> readings;
  for (const GpuReading& r : in.readings) readings[r.uuid] = &r;
  const nvml::Inventory& inv = *in.inventory;

  for (const nvml::Gpu& g : inv.gpus) {
    Labels base = {{"gpu", std::to_string(g.index)},
                   {"uuid", g.uuid},
                   {"model", g.name},
                   {"pci_bus_id", g.pci_bus_id}};
    if (!in.node.empty()) base.emplace_back("node", in.node);
    Labels info = base;
    info.emplace_back("driver_version", inv.driver_version);
    info.emplace_back("cuda_driver_version", CudaVersion(inv.cuda_driver_version));
    info.emplace_back("brand", g.brand);
    info.emplace_back("architecture", g.architecture);
    info.emplace_back("compute_capability",
                      absl::StrCat(g.cuda_compute_major, ".", g.cuda_compute_minor));
    info.emplace_back("mig_enabled", g.mig_enabled ? "true" : "false");
    f.Add("gdp_gpu_info", info, 1);

    const std::vector<Labels> sets = WithPods(base, in.attribution, g.uuid);
    auto add = [&](const std::string& name, const std::optional<double>& v) {
      if (!v) return;
      for (const Labels& l : sets) f.Add(name, l, *v);
    };
    auto add_with = [&](const std::string& name, const std::string& key, const std::string& value,
                        double v) {
      for (Labels l : sets) {
        l.emplace_back(key, value);
        f.Add(name, l, v);
      }
    };

    auto it = readings.find(g.uuid);
    const GpuReading* r = it == readings.end() ? nullptr : it->second;
    if (r != nullptr) {
      add("gdp_gpu_lost", r->lost ? 1.0 : 0.0);
      add("gdp_gpu_utilization_ratio", r->utilization_ratio);
      add("gdp_gpu_memory_utilization_ratio", r->memory_utilization_ratio);
      add("gdp_gpu_framebuffer_used_bytes", r->fb_used_bytes);
      add("gdp_gpu_framebuffer_free_bytes", r->fb_free_bytes);
      add("gdp_gpu_framebuffer_total_bytes", r->fb_total_bytes);
      add("gdp_gpu_temperature_celsius", r->temperature_celsius);
      add("gdp_gpu_memory_temperature_celsius", r->memory_temperature_celsius);
      add("gdp_gpu_power_usage_watts", r->power_watts);
      add("gdp_gpu_power_limit_watts", r->power_limit_watts);
      add("gdp_gpu_energy_joules_total", r->energy_joules);
      add("gdp_gpu_sm_clock_hertz", r->sm_clock_hertz);
      add("gdp_gpu_memory_clock_hertz", r->memory_clock_hertz);
      add("gdp_gpu_pcie_transmit_bytes_per_second", r->pcie_tx_bytes_per_second);
      add("gdp_gpu_pcie_receive_bytes_per_second", r->pcie_rx_bytes_per_second);
      for (const EccCount& e : r->ecc) {
        for (Labels l : sets) {
          l.emplace_back("type", e.type);
          l.emplace_back("scope", e.scope);
          f.Add("gdp_gpu_ecc_errors_total", l, e.count);
        }
      }
      if (r->remapped_correctable) {
        add_with("gdp_gpu_remapped_rows", "cause", "correctable", *r->remapped_correctable);
        add_with("gdp_gpu_remapped_rows", "cause", "uncorrectable", *r->remapped_uncorrectable);
      }
      add("gdp_gpu_row_remap_pending", r->remap_pending);
      add("gdp_gpu_row_remap_failure", r->remap_failure);
      if (r->clock_event_reasons) {
        for (const auto& [bit, reason] : ClockEventReasons()) {
          add_with("gdp_gpu_clock_event_reason_active", "reason", reason,
                   (*r->clock_event_reasons & bit) != 0 ? 1 : 0);
        }
      }
      for (const MigReading& m : r->migs) {
        Labels mig_base = base;
        mig_base.emplace_back("mig_uuid", m.uuid);
        mig_base.emplace_back("mig_profile", m.profile);
        mig_base.emplace_back("gpu_instance_id", std::to_string(m.gpu_instance_id));
        mig_base.emplace_back("compute_instance_id", std::to_string(m.compute_instance_id));
        for (const Labels& l : WithPods(mig_base, in.attribution, m.uuid)) {
          if (m.fb_used_bytes) f.Add("gdp_gpu_mig_framebuffer_used_bytes", l, *m.fb_used_bytes);
          if (m.fb_free_bytes) f.Add("gdp_gpu_mig_framebuffer_free_bytes", l, *m.fb_free_bytes);
          if (m.fb_total_bytes) f.Add("gdp_gpu_mig_framebuffer_total_bytes", l, *m.fb_total_bytes);
        }
      }
    }

    const GpuHealthInfo* health = nullptr;
    if (auto h = in.health.find(g.uuid); h != in.health.end()) health = &h->second;
    if (health != nullptr) {
      add("gdp_gpu_healthy", health->healthy ? 1.0 : 0.0);
      if (!health->healthy) {
        add_with("gdp_gpu_unhealthy_reason_info", "reason",
                 health->reason.empty() ? "unknown" : health->reason, 1);
      }
      for (const auto& [xid, count] : health->xids) {
        add_with("gdp_gpu_xid_errors_total", "xid", std::to_string(xid),
                 static_cast<double>(count));
      }
    }

    if (!in.dcgm_compatibility) continue;
    // dcgm-exporter's names, units and labels (FACTS.md), for existing dashboards.
    Labels dcgm_base = {{"gpu", std::to_string(g.index)},
                        {"UUID", g.uuid},
                        {"pci_bus_id", g.pci_bus_id},
                        {"device", absl::StrCat("nvidia", g.minor)},
                        {"modelName", g.name}};
    if (!in.node.empty()) dcgm_base.emplace_back("Hostname", in.node);
    const std::vector<Labels> dcgm_sets = WithPods(dcgm_base, in.attribution, g.uuid);
    auto dcgm = [&](const std::string& name, const std::optional<double>& v, double scale) {
      if (!v) return;
      for (const Labels& l : dcgm_sets) f.Add(name, l, *v * scale);
    };
    if (r != nullptr) {
      dcgm("DCGM_FI_DEV_GPU_UTIL", r->utilization_ratio, 100);
      dcgm("DCGM_FI_DEV_MEM_COPY_UTIL", r->memory_utilization_ratio, 100);
      dcgm("DCGM_FI_DEV_FB_USED", r->fb_used_bytes, 1 / kMiB);
      dcgm("DCGM_FI_DEV_FB_FREE", r->fb_free_bytes, 1 / kMiB);
      dcgm("DCGM_FI_DEV_GPU_TEMP", r->temperature_celsius, 1);
      dcgm("DCGM_FI_DEV_MEMORY_TEMP", r->memory_temperature_celsius, 1);
      dcgm("DCGM_FI_DEV_POWER_USAGE", r->power_watts, 1);
      dcgm("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", r->energy_joules, 1000);
      dcgm("DCGM_FI_DEV_SM_CLOCK", r->sm_clock_hertz, 1e-6);
      dcgm("DCGM_FI_DEV_MEM_CLOCK", r->memory_clock_hertz, 1e-6);
    }
    if (health != nullptr) {
      dcgm("DCGM_FI_DEV_XID_ERRORS", static_cast<double>(health->last_xid), 1);
    }
  }
  f.AppendTo(out);
}

}  // namespace gdp::metrics
