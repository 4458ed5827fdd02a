// Fake GPU machines: builders and the MockNvml programming behind them.
#include "tests/mocks/fake_gpus.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>

#include "absl/strings/str_format.h"

namespace gdp::nvml::fakes {
namespace {

using ::testing::_;
using ::testing::AnyNumber;

constexpr uint64_t kMiB = 1024ull * 1024;
constexpr uintptr_t kGpuStride = 0x1000;
constexpr uintptr_t kMigStride = 0x10;

std::string NvmlBusId(unsigned bus) { return absl::StrFormat("00000000:%02X:00.0", bus); }

std::vector<std::vector<nvmlGpuTopologyLevel_t>> Topology(
    unsigned n, const std::function<nvmlGpuTopologyLevel_t(unsigned, unsigned)>& level) {
  std::vector<std::vector<nvmlGpuTopologyLevel_t>> t(
      n, std::vector<nvmlGpuTopologyLevel_t>(n, NVML_TOPOLOGY_INTERNAL));
  for (unsigned i = 0; i < n; ++i) {
    for (unsigned j = 0; j < n; ++j) {
      if (i != j) t[i][j] = level(i, j);
    }
  }
  return t;
}

// What a handle points at in the machine.
struct Target {
  const FakeGpu* gpu = nullptr;
  const FakeMigDevice* mig = nullptr;
  unsigned gpu_index = 0;
};

std::optional<Target> Resolve(const FakeMachine& m, nvmlDevice_t handle) {
  const auto v = reinterpret_cast<uintptr_t>(handle);
  if (v < kGpuStride) return std::nullopt;
  const uintptr_t gpu = v / kGpuStride - 1;
  const uintptr_t rest = v % kGpuStride;
  if (gpu >= m.gpus.size() || rest % kMigStride != 0) return std::nullopt;
  Target t{&m.gpus[gpu], nullptr, static_cast<unsigned>(gpu)};
  if (rest == 0) return t;
  const unsigned mig_index = static_cast<unsigned>(rest / kMigStride - 1);
  for (const FakeMigDevice& mig : m.gpus[gpu].mig_devices) {
    if (mig.index == mig_index) t.mig = &mig;
  }
  if (t.mig == nullptr) return std::nullopt;
  return t;
}

nvmlReturn_t CopyString(const std::string& s, char* out, unsigned length) {
  if (s.size() + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
  std::memcpy(out, s.c_str(), s.size() + 1);
  return NVML_SUCCESS;
}

void FillPci(const std::string& bus_id, uint32_t device_id, nvmlPciInfo_t* pci) {
  std::memset(pci, 0, sizeof(*pci));
  std::snprintf(pci->busId, sizeof(pci->busId), "%s", bus_id.c_str());
  std::snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%s", bus_id.substr(4).c_str());
  unsigned domain = 0, bus = 0, device = 0;
  std::sscanf(bus_id.c_str(), "%x:%x:%x", &domain, &bus, &device);
  pci->domain = domain;
  pci->bus = bus;
  pci->device = device;
  pci->pciDeviceId = device_id;
}

FakeMigDevice Mig(unsigned gpu, unsigned index, unsigned gi, unsigned ci, unsigned gi_slices,
                  unsigned ci_slices, unsigned long long mib, unsigned sms) {
  FakeMigDevice m;
  m.index = index;
  m.uuid = FakeMigUuid(gpu, index);
  m.gpu_instance_id = gi;
  m.compute_instance_id = ci;
  m.attributes.multiprocessorCount = sms;
  m.attributes.gpuInstanceSliceCount = gi_slices;
  m.attributes.computeInstanceSliceCount = ci_slices;
  m.attributes.memorySizeMB = mib;
  return m;
}

}  // namespace

std::string FakeGpuUuid(unsigned i) {
  return absl::StrFormat("GPU-%08x-1111-4222-8333-%012x", 0xabc00000u + i, 0x100u + i);
}
std::string FakeMigUuid(unsigned gpu, unsigned mig_index) {
  return absl::StrFormat("MIG-%08x-1111-4222-8333-%012x", 0xdef00000u + gpu, 0x200u + mig_index);
}

nvmlDevice_t FakeHandle(unsigned gpu) {
  return reinterpret_cast<nvmlDevice_t>(kGpuStride * (gpu + 1));
}
nvmlDevice_t FakeMigHandle(unsigned gpu, unsigned mig_index) {
  return reinterpret_cast<nvmlDevice_t>(kGpuStride * (gpu + 1) + kMigStride * (mig_index + 1));
}

FakeMachine HopperNvSwitchMachine(unsigned n) {
  static constexpr unsigned kBuses[] = {0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb};
  static constexpr unsigned kSwitchBuses[] = {0x05, 0x06, 0x07, 0x08};
  FakeMachine m;
  for (unsigned i = 0; i < n; ++i) {
    FakeGpu g;
    g.minor = i;
    g.uuid = FakeGpuUuid(i);
    g.name = "NVIDIA H100 80GB HBM3";
    g.brand = NVML_BRAND_NVIDIA;
    g.architecture = NVML_DEVICE_ARCH_HOPPER;
    g.cc_major = 9;
    g.cc_minor = 0;
    g.memory_bytes = 81559 * kMiB;
    g.bus_id = NvmlBusId(i < 8 ? kBuses[i] : 0x10 + i);
    g.pci_device_id = 0x233010de;
    g.numa_node = i < n / 2 ? 0 : 1;
    g.mig_capable = true;
    for (unsigned link = 0; link < 18; ++link) {
      g.nvlinks.push_back({NvmlBusId(kSwitchBuses[link % 4]), NVML_NVLINK_DEVICE_TYPE_SWITCH});
    }
    m.gpus.push_back(std::move(g));
  }
  const unsigned half = n / 2;
  m.topology = Topology(n, [half](unsigned i, unsigned j) {
    return (i < half) == (j < half) ? NVML_TOPOLOGY_NODE : NVML_TOPOLOGY_SYSTEM;
  });
  return m;
}

FakeMachine NvLinkAllToAllMachine(unsigned n, unsigned links_per_pair) {
  FakeMachine m;
  for (unsigned i = 0; i < n; ++i) {
    FakeGpu g;
    g.minor = i;
    g.uuid = FakeGpuUuid(i);
    g.name = "NVIDIA A100-SXM4-40GB";
    g.brand = NVML_BRAND_NVIDIA;
    g.architecture = NVML_DEVICE_ARCH_AMPERE;
    g.cc_major = 8;
    g.cc_minor = 0;
    g.memory_bytes = 40960 * kMiB;
    g.bus_id = NvmlBusId(0x07 + 0x10 * i);
    g.pci_device_id = 0x20b010de;
    g.numa_node = 0;
    g.mig_capable = true;
    m.gpus.push_back(std::move(g));
  }
  for (unsigned i = 0; i < n; ++i) {
    for (unsigned j = 0; j < n; ++j) {
      if (i == j) continue;
      for (unsigned l = 0; l < links_per_pair; ++l) {
        m.gpus[i].nvlinks.push_back({m.gpus[j].bus_id, NVML_NVLINK_DEVICE_TYPE_GPU});
      }
    }
  }
  m.topology = Topology(n, [](unsigned, unsigned) { return NVML_TOPOLOGY_HOSTBRIDGE; });
  return m;
}

FakeMachine PcieTwoNumaMachine(unsigned n) {
  static constexpr unsigned kBuses[] = {0x3b, 0x5e, 0x86, 0xaf};
  FakeMachine m;
  for (unsigned i = 0; i < n; ++i) {
    FakeGpu g;
    g.minor = i;
    g.uuid = FakeGpuUuid(i);
    g.name = "Tesla T4";
    g.brand = NVML_BRAND_TESLA;
    g.architecture = NVML_DEVICE_ARCH_TURING;
    g.cc_major = 7;
    g.cc_minor = 5;
    g.memory_bytes = 15360 * kMiB;
    g.bus_id = NvmlBusId(i < 4 ? kBuses[i] : 0xc0 + i);
    g.pci_device_id = 0x1eb810de;
    g.numa_node = i < n / 2 ? 0 : 1;
    m.gpus.push_back(std::move(g));
  }
  const unsigned half = n / 2;
  m.topology = Topology(n, [half](unsigned i, unsigned j) {
    if (i / 2 == j / 2) return NVML_TOPOLOGY_SINGLE;
    return (i < half) == (j < half) ? NVML_TOPOLOGY_NODE : NVML_TOPOLOGY_SYSTEM;
  });
  return m;
}

FakeMachine A100MigMachine() {
  FakeMachine m;
  for (unsigned i = 0; i < 2; ++i) {
    FakeGpu g;
    g.minor = i;
    g.uuid = FakeGpuUuid(i);
    g.name = "NVIDIA A100-SXM4-80GB";
    g.brand = NVML_BRAND_NVIDIA;
    g.architecture = NVML_DEVICE_ARCH_AMPERE;
    g.cc_major = 8;
    g.cc_minor = 0;
    g.memory_bytes = 81920 * kMiB;
    g.bus_id = NvmlBusId(0x07 + 0x40 * i);
    g.pci_device_id = 0x20b210de;
    g.numa_node = 0;
    g.mig_capable = true;
    m.gpus.push_back(std::move(g));
  }
  FakeGpu& g = m.gpus[0];
  g.mig_enabled = true;
  g.mig_devices = {Mig(0, 0, 9, 0, 1, 1, 9856, 14), Mig(0, 1, 10, 0, 1, 1, 9856, 14),
                   Mig(0, 3, 2, 0, 3, 3, 40192, 42), Mig(0, 4, 1, 1, 3, 1, 40192, 14)};
  m.topology = Topology(2, [](unsigned, unsigned) { return NVML_TOPOLOGY_SYSTEM; });
  return m;
}

void ProgramMachine(MockNvml& mock, const FakeMachine& machine) {
  auto m = std::make_shared<const FakeMachine>(machine);
  auto gpu_only = [m](nvmlDevice_t h) -> const FakeGpu* {
    auto t = Resolve(*m, h);
    return t && t->mig == nullptr ? t->gpu : nullptr;
  };

  EXPECT_CALL(mock, Init()).Times(AnyNumber()).WillRepeatedly([] { return NVML_SUCCESS; });
  EXPECT_CALL(mock, Shutdown()).Times(AnyNumber()).WillRepeatedly([] { return NVML_SUCCESS; });
  EXPECT_CALL(mock, ErrorString(_)).Times(AnyNumber()).WillRepeatedly([](nvmlReturn_t r) {
    return std::string("fake NVML says ") + ReturnCodeName(r);
  });
  EXPECT_CALL(mock, SystemGetDriverVersion(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](char* v, unsigned len) { return CopyString(m->driver_version, v, len); });
  EXPECT_CALL(mock, SystemGetNVMLVersion(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](char* v, unsigned len) { return CopyString(m->nvml_version, v, len); });
  EXPECT_CALL(mock, SystemGetCudaDriverVersion(_)).Times(AnyNumber()).WillRepeatedly([m](int* v) {
    *v = m->cuda_driver_version;
    return NVML_SUCCESS;
  });
  EXPECT_CALL(mock, DeviceGetCount(_)).Times(AnyNumber()).WillRepeatedly([m](unsigned* count) {
    *count = static_cast<unsigned>(m->gpus.size());
    return NVML_SUCCESS;
  });
  EXPECT_CALL(mock, DeviceGetHandleByIndex(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](unsigned i, nvmlDevice_t* h) {
        if (i >= m->gpus.size()) return NVML_ERROR_INVALID_ARGUMENT;
        *h = FakeHandle(i);
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetHandleByUUID(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](const char* uuid, nvmlDevice_t* h) {
        for (unsigned i = 0; i < m->gpus.size(); ++i) {
          if (m->gpus[i].uuid == uuid) {
            *h = FakeHandle(i);
            return NVML_SUCCESS;
          }
          for (const FakeMigDevice& mig : m->gpus[i].mig_devices) {
            if (mig.uuid == uuid) {
              *h = FakeMigHandle(i, mig.index);
              return NVML_SUCCESS;
            }
          }
        }
        return NVML_ERROR_NOT_FOUND;
      });
  EXPECT_CALL(mock, DeviceGetUUID(_, _, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](nvmlDevice_t h, char* out, unsigned len) {
        auto t = Resolve(*m, h);
        if (!t) return NVML_ERROR_INVALID_ARGUMENT;
        return CopyString(t->mig ? t->mig->uuid : t->gpu->uuid, out, len);
      });
  EXPECT_CALL(mock, DeviceGetName(_, _, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](nvmlDevice_t h, char* out, unsigned len) {
        auto t = Resolve(*m, h);
        if (!t) return NVML_ERROR_INVALID_ARGUMENT;
        return CopyString(t->gpu->name, out, len);
      });
  EXPECT_CALL(mock, DeviceGetBrand(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([gpu_only](nvmlDevice_t h, nvmlBrandType_t* b) {
        const FakeGpu* g = gpu_only(h);
        if (g == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        *b = g->brand;
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetIndex(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](nvmlDevice_t h, unsigned* index) {
        auto t = Resolve(*m, h);
        if (!t || t->mig) return NVML_ERROR_INVALID_ARGUMENT;
        *index = t->gpu_index;
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetMinorNumber(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([gpu_only](nvmlDevice_t h, unsigned* minor) {
        const FakeGpu* g = gpu_only(h);
        if (g == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        *minor = g->minor;
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetArchitecture(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([gpu_only](nvmlDevice_t h, nvmlDeviceArchitecture_t* a) {
        const FakeGpu* g = gpu_only(h);
        if (g == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        *a = g->architecture;
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetCudaComputeCapability(_, _, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](nvmlDevice_t h, int* major, int* minor) {
        auto t = Resolve(*m, h);
        if (!t) return NVML_ERROR_INVALID_ARGUMENT;
        *major = t->gpu->cc_major;
        *minor = t->gpu->cc_minor;
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetMemoryInfo(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](nvmlDevice_t h, nvmlMemory_t* mem) {
        auto t = Resolve(*m, h);
        if (!t) return NVML_ERROR_INVALID_ARGUMENT;
        mem->total = t->mig ? t->mig->attributes.memorySizeMB * kMiB : t->gpu->memory_bytes;
        mem->used = 0;
        mem->free = mem->total;
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetPciInfo(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](nvmlDevice_t h, nvmlPciInfo_t* pci) {
        auto t = Resolve(*m, h);
        if (!t) return NVML_ERROR_INVALID_ARGUMENT;
        FillPci(t->gpu->bus_id, t->gpu->pci_device_id, pci);
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetNumaNodeId(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([gpu_only](nvmlDevice_t h, unsigned* node) {
        const FakeGpu* g = gpu_only(h);
        if (g == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        if (g->numa_node < 0) return NVML_ERROR_NOT_SUPPORTED;
        *node = static_cast<unsigned>(g->numa_node);
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetTopologyCommonAncestor(_, _, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](nvmlDevice_t a, nvmlDevice_t b, nvmlGpuTopologyLevel_t* level) {
        auto ta = Resolve(*m, a);
        auto tb = Resolve(*m, b);
        if (!ta || !tb || ta->mig || tb->mig || ta->gpu_index == tb->gpu_index ||
            m->topology.size() != m->gpus.size()) {
          return NVML_ERROR_INVALID_ARGUMENT;
        }
        *level = m->topology[ta->gpu_index][tb->gpu_index];
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetNvLinkState(_, _, _))
      .Times(AnyNumber())
      .WillRepeatedly([gpu_only](nvmlDevice_t h, unsigned link, nvmlEnableState_t* active) {
        const FakeGpu* g = gpu_only(h);
        if (g == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        if (g->nvlinks.empty()) return NVML_ERROR_NOT_SUPPORTED;
        if (link >= NVML_NVLINK_MAX_LINKS) return NVML_ERROR_INVALID_ARGUMENT;
        *active = link < g->nvlinks.size() ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetNvLinkRemotePciInfo(_, _, _))
      .Times(AnyNumber())
      .WillRepeatedly([gpu_only](nvmlDevice_t h, unsigned link, nvmlPciInfo_t* pci) {
        const FakeGpu* g = gpu_only(h);
        if (g == nullptr || link >= g->nvlinks.size()) return NVML_ERROR_INVALID_ARGUMENT;
        FillPci(g->nvlinks[link].remote_bus_id, 0, pci);
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetNvLinkRemoteDeviceType(_, _, _))
      .Times(AnyNumber())
      .WillRepeatedly(
          [m, gpu_only](nvmlDevice_t h, unsigned link, nvmlIntNvLinkDeviceType_t* type) {
            if (!m->remote_device_type_supported) return NVML_ERROR_FUNCTION_NOT_FOUND;
            const FakeGpu* g = gpu_only(h);
            if (g == nullptr || link >= g->nvlinks.size()) return NVML_ERROR_INVALID_ARGUMENT;
            *type = g->nvlinks[link].remote_type;
            return NVML_SUCCESS;
          });
  EXPECT_CALL(mock, DeviceGetMigMode(_, _, _))
      .Times(AnyNumber())
      .WillRepeatedly([gpu_only](nvmlDevice_t h, unsigned* current, unsigned* pending) {
        const FakeGpu* g = gpu_only(h);
        if (g == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        if (!g->mig_capable) return NVML_ERROR_NOT_SUPPORTED;
        *current = *pending = g->mig_enabled ? NVML_DEVICE_MIG_ENABLE : NVML_DEVICE_MIG_DISABLE;
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetMaxMigDeviceCount(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([gpu_only](nvmlDevice_t h, unsigned* count) {
        const FakeGpu* g = gpu_only(h);
        if (g == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        if (!g->mig_capable) return NVML_ERROR_NOT_SUPPORTED;
        *count = g->max_mig_devices;
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetMigDeviceHandleByIndex(_, _, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](nvmlDevice_t h, unsigned index, nvmlDevice_t* mig) {
        auto t = Resolve(*m, h);
        if (!t || t->mig || !t->gpu->mig_enabled || index >= t->gpu->max_mig_devices) {
          return NVML_ERROR_INVALID_ARGUMENT;
        }
        const auto& migs = t->gpu->mig_devices;
        if (std::none_of(migs.begin(), migs.end(),
                         [&](const FakeMigDevice& d) { return d.index == index; })) {
          return NVML_ERROR_NOT_FOUND;
        }
        *mig = FakeMigHandle(t->gpu_index, index);
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetGpuInstanceId(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](nvmlDevice_t h, unsigned* id) {
        auto t = Resolve(*m, h);
        if (!t || !t->mig) return NVML_ERROR_INVALID_ARGUMENT;
        *id = t->mig->gpu_instance_id;
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetComputeInstanceId(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](nvmlDevice_t h, unsigned* id) {
        auto t = Resolve(*m, h);
        if (!t || !t->mig) return NVML_ERROR_INVALID_ARGUMENT;
        *id = t->mig->compute_instance_id;
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetAttributes(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([m](nvmlDevice_t h, nvmlDeviceAttributes_t* attrs) {
        auto t = Resolve(*m, h);
        if (!t) return NVML_ERROR_INVALID_ARGUMENT;
        if (!t->mig) return NVML_ERROR_NOT_SUPPORTED;
        *attrs = t->mig->attributes;
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, DeviceGetSupportedEventTypes(_, _))
      .Times(AnyNumber())
      .WillRepeatedly([gpu_only](nvmlDevice_t h, unsigned long long* types) {
        if (gpu_only(h) == nullptr) return NVML_ERROR_INVALID_ARGUMENT;
        *types = nvmlEventTypeXidCriticalError | nvmlEventTypeDoubleBitEccError |
                 nvmlEventTypeSingleBitEccError;
        return NVML_SUCCESS;
      });
  EXPECT_CALL(mock, EventSetCreate(_)).Times(AnyNumber()).WillRepeatedly([](nvmlEventSet_t* set) {
    *set = reinterpret_cast<nvmlEventSet_t>(uintptr_t{0xe0e0});
    return NVML_SUCCESS;
  });
  EXPECT_CALL(mock, DeviceRegisterEvents(_, _, _))
      .Times(AnyNumber())
      .WillRepeatedly([gpu_only](nvmlDevice_t h, unsigned long long, nvmlEventSet_t) {
        return gpu_only(h) != nullptr ? NVML_SUCCESS : NVML_ERROR_INVALID_ARGUMENT;
      });
  EXPECT_CALL(mock, EventSetFree(_)).Times(AnyNumber()).WillRepeatedly([](nvmlEventSet_t) {
    return NVML_SUCCESS;
  });
}

}  // namespace gdp::nvml::fakes
