#include "src/metrics/gpu_collector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/mocks/mock_nvml.h"

namespace gdp::metrics {
namespace {

using ::testing::_;
using ::testing::DoAll;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Return;
using ::testing::SetArgPointee;
using ::testing::StrEq;
using ::testing::StrictMock;

nvml::Inventory OneGpu() {
  nvml::Inventory inv;
  inv.driver_version = "550.54.15";
  inv.cuda_driver_version = 12040;
  nvml::Gpu g;
  g.index = 0;
  g.minor = 0;
  g.uuid = "GPU-0";
  g.name = "NVIDIA T4";
  g.brand = "Tesla";
  g.architecture = "Turing";
  g.cuda_compute_major = 7;
  g.cuda_compute_minor = 5;
  g.pci_bus_id = "0000:3b:00.0";
  inv.gpus = {g};
  return inv;
}

nvmlDevice_t Handle() { return reinterpret_cast<nvmlDevice_t>(0x1000); }

// Every telemetry entry point answers `r` (an old driver, or a GPU without the sensor).
void ExpectAllTelemetry(StrictMock<nvml::MockNvml>& api, nvmlReturn_t r) {
  EXPECT_CALL(api, DeviceGetUtilizationRates(Handle(), _)).WillOnce(Return(r));
  EXPECT_CALL(api, DeviceGetMemoryInfo(Handle(), _)).WillOnce(Return(r));
  EXPECT_CALL(api, DeviceGetTemperature(Handle(), NVML_TEMPERATURE_GPU, _)).WillOnce(Return(r));
  EXPECT_CALL(api, DeviceGetFieldValues(Handle(), 1, _)).WillOnce(Return(r));
  EXPECT_CALL(api, DeviceGetPowerUsage(Handle(), _)).WillOnce(Return(r));
  EXPECT_CALL(api, DeviceGetEnforcedPowerLimit(Handle(), _)).WillOnce(Return(r));
  EXPECT_CALL(api, DeviceGetTotalEnergyConsumption(Handle(), _)).WillOnce(Return(r));
  EXPECT_CALL(api, DeviceGetClockInfo(Handle(), _, _)).Times(2).WillRepeatedly(Return(r));
  EXPECT_CALL(api, DeviceGetPcieThroughput(Handle(), _, _)).Times(2).WillRepeatedly(Return(r));
  EXPECT_CALL(api, DeviceGetTotalEccErrors(Handle(), _, _, _)).Times(4).WillRepeatedly(Return(r));
  EXPECT_CALL(api, DeviceGetRemappedRows(Handle(), _, _, _, _)).WillOnce(Return(r));
  EXPECT_CALL(api, DeviceGetCurrentClocksEventReasons(Handle(), _)).WillOnce(Return(r));
}

const char kInfoLine[] =
    "gdp_gpu_info{architecture=\"Turing\",brand=\"Tesla\",compute_capability=\"7.5\","
    "cuda_driver_version=\"12.4\",driver_version=\"550.54.15\",gpu=\"0\",mig_enabled=\"false\","
    "model=\"NVIDIA T4\",node=\"node-a\",pci_bus_id=\"0000:3b:00.0\",uuid=\"GPU-0\"} 1\n";
const char kLabels[] =
    "gpu=\"0\",model=\"NVIDIA T4\",node=\"node-a\",pci_bus_id=\"0000:3b:00.0\",uuid=\"GPU-0\"";

TEST(GpuCollectorTest, UnsupportedValuesAreLeftOutNotErrors) {
  for (nvmlReturn_t r : {NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND}) {
    StrictMock<nvml::MockNvml> api;
    const nvml::Inventory inv = OneGpu();
    EXPECT_CALL(api, DeviceGetHandleByUUID(StrEq("GPU-0"), _))
        .WillOnce(DoAll(SetArgPointee<1>(Handle()), Return(NVML_SUCCESS)));
    ExpectAllTelemetry(api, r);
    GpuMetricsInput in;
    in.inventory = &inv;
    in.readings = ReadGpus(api, inv);
    in.node = "node-a";
    std::vector<MetricFamily> families;
    AppendGpuFamilies(in, &families);
    EXPECT_EQ(Render(families), std::string("# HELP gdp_gpu_info Always 1; labels name the GPU's "
                                            "product, driver and CUDA driver versions.\n"
                                            "# TYPE gdp_gpu_info gauge\n") +
                                    kInfoLine +
                                    "# HELP gdp_gpu_lost 1 when NVML reports the GPU lost (fallen "
                                    "off the bus), else 0.\n# TYPE gdp_gpu_lost gauge\n" +
                                    "gdp_gpu_lost{" + kLabels + "} 0\n")
        << nvml::ReturnCodeName(r);
  }
}

TEST(GpuCollectorTest, LostGpuIsReportedLost) {
  StrictMock<nvml::MockNvml> api;
  const nvml::Inventory inv = OneGpu();
  EXPECT_CALL(api, DeviceGetHandleByUUID(StrEq("GPU-0"), _))
      .WillOnce(Return(NVML_ERROR_GPU_IS_LOST));
  std::vector<GpuReading> r = ReadGpus(api, inv);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(r[0].lost);
  EXPECT_FALSE(r[0].temperature_celsius.has_value());
}

TEST(GpuCollectorTest, ConvertsNvmlUnitsToBaseUnits) {
  StrictMock<nvml::MockNvml> api;
  const nvml::Inventory inv = OneGpu();
  EXPECT_CALL(api, DeviceGetHandleByUUID(StrEq("GPU-0"), _))
      .WillOnce(DoAll(SetArgPointee<1>(Handle()), Return(NVML_SUCCESS)));
  EXPECT_CALL(api, DeviceGetUtilizationRates(Handle(), _))
      .WillOnce(DoAll(SetArgPointee<1>(nvmlUtilization_t{75, 20}), Return(NVML_SUCCESS)));
  EXPECT_CALL(api, DeviceGetMemoryInfo(Handle(), _))
      .WillOnce(DoAll(SetArgPointee<1>(nvmlMemory_t{16ULL << 30, 12ULL << 30, 4ULL << 30}),
                      Return(NVML_SUCCESS)));
  EXPECT_CALL(api, DeviceGetTemperature(Handle(), NVML_TEMPERATURE_GPU, _))
      .WillOnce(DoAll(SetArgPointee<2>(81u), Return(NVML_SUCCESS)));
  EXPECT_CALL(api, DeviceGetFieldValues(Handle(), 1, _))
      .WillOnce([](nvmlDevice_t, int, nvmlFieldValue_t* v) {
        EXPECT_EQ(v->fieldId, static_cast<unsigned>(NVML_FI_DEV_MEMORY_TEMP));
        v->nvmlReturn = NVML_SUCCESS;
        v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
        v->value.uiVal = 66;
        return NVML_SUCCESS;
      });
  EXPECT_CALL(api, DeviceGetPowerUsage(Handle(), _))
      .WillOnce(DoAll(SetArgPointee<1>(68500u), Return(NVML_SUCCESS)));
  EXPECT_CALL(api, DeviceGetEnforcedPowerLimit(Handle(), _))
      .WillOnce(DoAll(SetArgPointee<1>(70000u), Return(NVML_SUCCESS)));
  EXPECT_CALL(api, DeviceGetTotalEnergyConsumption(Handle(), _))
      .WillOnce(DoAll(SetArgPointee<1>(123456ULL), Return(NVML_SUCCESS)));
  EXPECT_CALL(api, DeviceGetClockInfo(Handle(), NVML_CLOCK_SM, _))
      .WillOnce(DoAll(SetArgPointee<2>(1590u), Return(NVML_SUCCESS)));
  EXPECT_CALL(api, DeviceGetClockInfo(Handle(), NVML_CLOCK_MEM, _))
      .WillOnce(DoAll(SetArgPointee<2>(5001u), Return(NVML_SUCCESS)));
  EXPECT_CALL(api, DeviceGetPcieThroughput(Handle(), NVML_PCIE_UTIL_TX_BYTES, _))
      .WillOnce(DoAll(SetArgPointee<2>(2u), Return(NVML_SUCCESS)));
  EXPECT_CALL(api, DeviceGetPcieThroughput(Handle(), NVML_PCIE_UTIL_RX_BYTES, _))
      .WillOnce(Return(NVML_ERROR_NOT_SUPPORTED));
  EXPECT_CALL(api, DeviceGetTotalEccErrors(Handle(), _, _, _))
      .Times(4)
      .WillRepeatedly(DoAll(SetArgPointee<3>(3ULL), Return(NVML_SUCCESS)));
  EXPECT_CALL(api, DeviceGetRemappedRows(Handle(), _, _, _, _))
      .WillOnce(Return(NVML_ERROR_NOT_SUPPORTED));
  EXPECT_CALL(api, DeviceGetCurrentClocksEventReasons(Handle(), _))
      .WillOnce(
          DoAll(SetArgPointee<1>(nvmlClocksEventReasonSwPowerCap | 0x40ULL), Return(NVML_SUCCESS)));
  GpuReading r = ReadGpus(api, inv).at(0);
  EXPECT_EQ(r.utilization_ratio, 0.75);
  EXPECT_EQ(r.memory_utilization_ratio, 0.2);
  EXPECT_EQ(r.fb_used_bytes, double(4ULL << 30));
  EXPECT_EQ(r.fb_free_bytes, double(12ULL << 30));
  EXPECT_EQ(r.temperature_celsius, 81);
  EXPECT_EQ(r.memory_temperature_celsius, 66);
  EXPECT_EQ(r.power_watts, 68.5);
  EXPECT_EQ(r.power_limit_watts, 70);
  EXPECT_EQ(r.energy_joules, 123.456);
  EXPECT_EQ(r.sm_clock_hertz, 1590e6);
  EXPECT_EQ(r.memory_clock_hertz, 5001e6);
  EXPECT_EQ(r.pcie_tx_bytes_per_second, 2048);
  EXPECT_FALSE(r.pcie_rx_bytes_per_second.has_value());
  EXPECT_EQ(r.ecc.size(), 4u);
  EXPECT_FALSE(r.remapped_correctable.has_value());

  GpuMetricsInput in;
  in.inventory = &inv;
  in.readings = {r};
  std::vector<MetricFamily> families;
  AppendGpuFamilies(in, &families);
  const std::string text = Render(families);
  EXPECT_THAT(text,
              HasSubstr("gdp_gpu_clock_event_reason_active{gpu=\"0\",model=\"NVIDIA T4\","
                        "pci_bus_id=\"0000:3b:00.0\",reason=\"sw_power_cap\",uuid=\"GPU-0\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("reason=\"hw_thermal_slowdown\",uuid=\"GPU-0\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("reason=\"gpu_idle\",uuid=\"GPU-0\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("gdp_gpu_ecc_errors_total{gpu=\"0\",model=\"NVIDIA T4\","
                              "pci_bus_id=\"0000:3b:00.0\",scope=\"aggregate\",type=\"corrected\","
                              "uuid=\"GPU-0\"} 3\n"));
  EXPECT_THAT(text, Not(HasSubstr("node=")));  // no node name configured
}

GpuReading Reading() {
  GpuReading r;
  r.uuid = "GPU-0";
  r.utilization_ratio = 0.5;
  r.fb_used_bytes = 1024.0 * 1024 * 1024;
  r.energy_joules = 2.5;
  return r;
}

TEST(GpuFamiliesTest, GpuSharedByTwoPodsAppearsOncePerPod) {
  const nvml::Inventory inv = OneGpu();
  GpuMetricsInput in;
  in.inventory = &inv;
  in.readings = {Reading()};
  in.attribution["GPU-0"] = {{"ml", "a", "main"}, {"ml", "b", "main"}};
  std::vector<MetricFamily> families;
  AppendGpuFamilies(in, &families);
  const std::string text = Render(families);
  EXPECT_THAT(text, HasSubstr("gdp_gpu_utilization_ratio{container=\"main\",gpu=\"0\","
                              "model=\"NVIDIA T4\",namespace=\"ml\",pci_bus_id=\"0000:3b:00.0\","
                              "pod=\"a\",uuid=\"GPU-0\"} 0.5\n"));
  EXPECT_THAT(text, HasSubstr("namespace=\"ml\",pci_bus_id=\"0000:3b:00.0\",pod=\"b\","
                              "uuid=\"GPU-0\"} 0.5\n"));
  // The info metric describes the GPU, not its users.
  EXPECT_THAT(text, Not(HasSubstr("gdp_gpu_info{container")));
}

TEST(GpuFamiliesTest, HealthReasonAndXidCounts) {
  const nvml::Inventory inv = OneGpu();
  GpuMetricsInput in;
  in.inventory = &inv;
  in.readings = {Reading()};
  in.health["GPU-0"] = GpuHealthInfo{false, "XID 79: GPU has fallen off the bus", {{79, 2}}, 79};
  std::vector<MetricFamily> families;
  AppendGpuFamilies(in, &families);
  const std::string text = Render(families);
  const std::string labels = "gpu=\"0\",model=\"NVIDIA T4\",pci_bus_id=\"0000:3b:00.0\"";
  EXPECT_THAT(text, HasSubstr("gdp_gpu_healthy{" + labels + ",uuid=\"GPU-0\"} 0\n"));
  EXPECT_THAT(text,
              HasSubstr("gdp_gpu_unhealthy_reason_info{" + labels +
                        ",reason=\"XID 79: GPU has fallen off the bus\",uuid=\"GPU-0\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("gdp_gpu_xid_errors_total{" + labels + ",uuid=\"GPU-0\",xid=\"79\"} 2\n"));
  EXPECT_THAT(text, Not(HasSubstr("DCGM_")));
}

TEST(GpuFamiliesTest, DcgmCompatibilityUsesDcgmNamesUnitsAndLabels) {
  const nvml::Inventory inv = OneGpu();
  GpuMetricsInput in;
  in.inventory = &inv;
  in.readings = {Reading()};
  in.node = "node-a";
  in.dcgm_compatibility = true;
  in.attribution["GPU-0"] = {{"ml", "a", "main"}};
  in.health["GPU-0"] = GpuHealthInfo{true, "", {{13, 1}}, 13};
  std::vector<MetricFamily> families;
  AppendGpuFamilies(in, &families);
  const std::string text = Render(families);
  const std::string labels =
      "Hostname=\"node-a\",UUID=\"GPU-0\",container=\"main\",device=\"nvidia0\",gpu=\"0\","
      "modelName=\"NVIDIA T4\",namespace=\"ml\",pci_bus_id=\"0000:3b:00.0\",pod=\"a\"";
  EXPECT_THAT(text, HasSubstr("DCGM_FI_DEV_GPU_UTIL{" + labels + "} 50\n"));
  EXPECT_THAT(text, HasSubstr("DCGM_FI_DEV_FB_USED{" + labels + "} 1024\n"));
  EXPECT_THAT(text, HasSubstr("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{" + labels + "} 2500\n"));
  EXPECT_THAT(text, HasSubstr("DCGM_FI_DEV_XID_ERRORS{" + labels + "} 13\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n"));
  // The native names stay.
  EXPECT_THAT(text, HasSubstr("gdp_gpu_utilization_ratio{"));
}

}  // namespace
}  // namespace gdp::metrics
