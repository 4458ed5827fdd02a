// Inventories of well-known machines, built as plain values, for the
// resources tests, the preferred-allocation benchmark and the fuzz target.
// Header-only; test code only (nothing in the daemon includes it).
#pragma once

#include <string>

#include "absl/strings/str_format.h"
#include "src/nvml/inventory.h"

namespace gdp::resources::testing {

inline std::string FakeUuid(unsigned i) {
  return absl::StrFormat("GPU-%08x-0000-4000-8000-%012x", 0x1000 + i, i);
}

// n GPUs, index = minor = position, every pair kSystem until the caller says otherwise.
// The inventory with each GPU's UUID replaced by its index ("0", "1", ...)
// and each MIG device's by "<gpu index>:<MIG index>": the kubelet-facing IDs
// are UUIDs, and short ones keep tests about selection readable.
inline nvml::Inventory ShortIds(nvml::Inventory inv) {
  for (nvml::Gpu& g : inv.gpus) {
    g.uuid = std::to_string(g.index);
    for (nvml::MigDevice& m : g.mig_devices) m.uuid = g.uuid + ":" + std::to_string(m.index);
  }
  return inv;
}

inline nvml::Inventory Blank(unsigned n) {
  nvml::Inventory inv;
  inv.driver_version = "550.54.15";
  inv.cuda_driver_version = 12040;
  for (unsigned i = 0; i < n; ++i) {
    nvml::Gpu g;
    g.index = i;
    g.minor = i;
    g.uuid = FakeUuid(i);
    g.name = "NVIDIA H100 80GB HBM3";
    g.pci_bus_id = absl::StrFormat("0000:%02x:00.0", 0x10 + i);
    inv.gpus.push_back(g);
  }
  inv.links.assign(n, std::vector<nvml::Link>(n));
  for (unsigned i = 0; i < n; ++i) inv.links[i][i].path = nvml::PathKind::kSelf;
  return inv;
}

inline void Connect(nvml::Inventory* inv, unsigned a, unsigned b, nvml::PathKind path,
                    unsigned nvlinks = 0) {
  inv->links[a][b] = inv->links[b][a] = nvml::Link{path, nvlinks};
}

// DGX H100: 8 GPUs, every pair 18 NVLinks through NVSwitch, NUMA 0 and 1.
inline nvml::Inventory DgxH100() {
  nvml::Inventory inv = Blank(8);
  for (unsigned i = 0; i < 8; ++i) {
    inv.gpus[i].numa_node = i < 4 ? 0 : 1;
    for (unsigned j = i + 1; j < 8; ++j) Connect(&inv, i, j, nvml::PathKind::kNvLink, 18);
  }
  return inv;
}

// Two NVLink islands of four (0-3 on NUMA 0, 4-7 on NUMA 1), 2 links per pair
// except (2,3) with 4 and (6,7) with 6; across islands only the system.
inline nvml::Inventory TwoIslands() {
  nvml::Inventory inv = Blank(8);
  for (unsigned i = 0; i < 8; ++i) {
    inv.gpus[i].numa_node = i < 4 ? 0 : 1;
    for (unsigned j = i + 1; j < 8; ++j) {
      if ((i < 4) == (j < 4)) Connect(&inv, i, j, nvml::PathKind::kNvLink, 2);
    }
  }
  Connect(&inv, 2, 3, nvml::PathKind::kNvLink, 4);
  Connect(&inv, 6, 7, nvml::PathKind::kNvLink, 6);
  return inv;
}

// 4 x T4 over PCIe: (0,1) share a switch on NUMA 0, (2,3) share one on NUMA 1.
inline nvml::Inventory T4x4() {
  nvml::Inventory inv = Blank(4);
  for (unsigned i = 0; i < 4; ++i) {
    inv.gpus[i].name = "Tesla T4";
    inv.gpus[i].numa_node = i < 2 ? 0 : 1;
  }
  Connect(&inv, 0, 1, nvml::PathKind::kPcieSwitch);
  Connect(&inv, 2, 3, nvml::PathKind::kPcieSwitch);
  return inv;
}

// 64 GPUs: eight all-NVLink islands of eight; islands 2k and 2k+1 share a
// NUMA node (kNumaNode between them), the rest only the system.
inline nvml::Inventory Islands64() {
  nvml::Inventory inv = Blank(64);
  for (unsigned i = 0; i < 64; ++i) {
    inv.gpus[i].numa_node = static_cast<int>(i / 16);
    for (unsigned j = i + 1; j < 64; ++j) {
      if (i / 8 == j / 8) {
        Connect(&inv, i, j, nvml::PathKind::kNvLink, 12);
      } else if (i / 16 == j / 16) {
        Connect(&inv, i, j, nvml::PathKind::kNumaNode);
      }
    }
  }
  return inv;
}

}  // namespace gdp::resources::testing
