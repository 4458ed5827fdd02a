// Fake GPU machines for unit tests: a FakeMachine describes a whole,
// consistent node (UUIDs, PCI bus ids, NUMA nodes, NVLinks to peers or to
// NVSwitches, PCIe ancestors, MIG devices) and ProgramMachine() makes a
// MockNvml answer every discovery query as that node would.
//
//   testing::StrictMock<MockNvml> nvml;
//   ProgramMachine(nvml, HopperNvSwitchMachine());
//   // override one answer: later expectations take precedence
//   EXPECT_CALL(nvml, DeviceGetUUID(FakeHandle(3), _,
//   _)).WillRepeatedly(Return(NVML_ERROR_GPU_IS_LOST));
//
// Handles are fake pointers (FakeHandle, FakeMigHandle); never dereference
// them. The events API is programmed only for setup (create, register, free,
// supported types); EventSetWait is left to the test, which decides what
// happens and when.
//
// Thread-safety: the programmed actions only read an immutable copy of the
// machine, so the mock may be called from any thread once programmed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/nvml/nvml_api.h"
#include "tests/mocks/mock_nvml.h"

namespace gdp::nvml::fakes {

struct FakeMigDevice {
  unsigned index = 0;  // slot under the parent (nvmlDeviceGetMigDeviceHandleByIndex)
  std::string uuid;
  unsigned gpu_instance_id = 0;
  unsigned compute_instance_id = 0;
  nvmlDeviceAttributes_t attributes = {};
};

struct FakeNvLink {
  std::string remote_bus_id;  // as NVML reports it, e.g. "00000000:1B:00.0"
  nvmlIntNvLinkDeviceType_t remote_type = NVML_NVLINK_DEVICE_TYPE_GPU;
};

struct FakeGpu {
  unsigned minor = 0;
  std::string uuid;
  std::string name;
  nvmlBrandType_t brand = NVML_BRAND_NVIDIA;
  nvmlDeviceArchitecture_t architecture = NVML_DEVICE_ARCH_HOPPER;
  int cc_major = 9;
  int cc_minor = 0;
  uint64_t memory_bytes = 0;
  std::string bus_id;  // as NVML reports it: upper-case, 8-digit domain
  uint32_t pci_device_id = 0;
  int numa_node = 0;  // -1: nvmlDeviceGetNumaNodeId answers NOT_SUPPORTED
  bool mig_capable = false;
  bool mig_enabled = false;
  unsigned max_mig_devices = 7;
  std::vector<FakeMigDevice> mig_devices;
  std::vector<FakeNvLink> nvlinks;  // links 0..size-1 active; none: NVLink NOT_SUPPORTED
};

struct FakeMachine {
  std::string driver_version = "550.54.15";
  std::string nvml_version = "12.550.54.15";
  int cuda_driver_version = 12040;
  std::vector<FakeGpu> gpus;
  // topology[i][j] (i != j): nvmlDeviceGetTopologyCommonAncestor's answer.
  std::vector<std::vector<nvmlGpuTopologyLevel_t>> topology;
  // false: nvmlDeviceGetNvLinkRemoteDeviceType answers FUNCTION_NOT_FOUND
  // (an older driver), so switches must be inferred from bus ids.
  bool remote_device_type_supported = true;
};

// n × "NVIDIA H100 80GB HBM3", 18 NVLinks each to four NVSwitches (DGX H100
// style); the first half on NUMA node 0, the second on node 1.
FakeMachine HopperNvSwitchMachine(unsigned n = 8);
// n × "NVIDIA A100-SXM4-40GB" with `links_per_pair` direct NVLinks between
// every pair (no switch); all on NUMA node 0.
FakeMachine NvLinkAllToAllMachine(unsigned n = 4, unsigned links_per_pair = 4);
// n × "Tesla T4" without NVLink: pairs share a PCIe switch, the first half on
// NUMA node 0 and the second on node 1.
FakeMachine PcieTwoNumaMachine(unsigned n = 4);
// 2 × "NVIDIA A100-SXM4-80GB": GPU 0 in MIG mode with 1g.10gb in slots 0 and
// 1, slot 2 empty, a 3g.40gb in slot 3 and a 1c.3g.40gb in slot 4; GPU 1 MIG
// capable but disabled.
FakeMachine A100MigMachine();

// The UUID the builders give GPU i ("GPU-...") and MIG device j of GPU i.
std::string FakeGpuUuid(unsigned i);
std::string FakeMigUuid(unsigned gpu, unsigned mig_index);

nvmlDevice_t FakeHandle(unsigned gpu);
nvmlDevice_t FakeMigHandle(unsigned gpu, unsigned mig_index);

// Makes `mock` answer as `machine` (EXPECT_CALL(...).Times(AnyNumber()), so it
// works for NiceMock and StrictMock alike).
void ProgramMachine(MockNvml& mock, const FakeMachine& machine);

}  // namespace gdp::nvml::fakes
