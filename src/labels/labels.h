// Node labels: the GPU Feature Discovery (GFD) label set for this node,
// computed as a pure function of the Inventory, the Config and a few facts
// about the node (its machine type, which GPUs are unhealthy right now).
// docs/labels.md lists every label with an example and says where its value
// comes from. Pure functions; thread-safe.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>

#include "src/config/config.h"
#include "src/nvml/inventory.h"

namespace gdp::labels {

using Labels = std::map<std::string, std::string>;

// What the labels need besides the Inventory and the Config.
struct NodeFacts {
  // /sys/class/dmi/id/product_name, e.g. "DGX H100"; empty: gpu.machine=unknown.
  std::string machine;
  // UUIDs of the GPUs that are Unhealthy now (XID, lost).
  std::set<std::string> unhealthy;
  // The first GPU's PCI class (sysfs "class", e.g. "0x030200"); empty: unknown.
  std::string pci_class;
};

// gpu.mode from a PCI class: a 3D controller (0x0302xx) computes, a VGA
// controller (0x0300xx) drives a display; anything else is unknown.
std::string GpuModeOf(std::string_view pci_class);

// How the GPUs are shared. Today always {none, 1, false}: the single place
// where the sharing config (time-slicing replicas, MPS) plugs in is
// SharingOf() in labels.cc.
struct Sharing {
  std::string strategy = "none";  // none | time-slicing | mps
  int replicas = 1;
  bool mps = false;
};
Sharing SharingOf(const config::Config& config);

// Every label this plugin owns (all under nvidia.com/), for `inventory`
// advertised under `config`:
//   gpu.count, gpu.product, gpu.memory (MiB), gpu.family, gpu.compute.major,
//   gpu.compute.minor, gpu.machine, gpu.replicas, gpu.sharing-strategy,
//   gpu.unhealthy-count, cuda.driver-version.{major,minor,revision,full},
//   cuda.runtime-version.{major,minor,full}, mig.capable, mig.strategy,
//   mps.capable; with migStrategy single the gpu.* labels describe the MIG
//   devices (gpu.product "<product>-MIG-<profile>", gpu.multiprocessors,
//   gpu.slices.gi/ci); with mixed, mig-<profile>.{count,memory,
//   multiprocessors,slices.gi,slices.ci} per profile.
// A node without GPUs gets no labels (so they are removed).
Labels ComputeLabels(const nvml::Inventory& inventory, const config::Config& config,
                     const NodeFacts& facts);

// A valid label value: at most 63 characters of [A-Za-z0-9-_.], starting and
// ending with a letter or digit; spaces and other characters become '-'
// ("Tesla T4" -> "Tesla-T4"). Empty when nothing valid is left.
std::string SanitizeLabelValue(std::string_view text);

// The GFD family name of a compute capability: "turing" for 7.5, "volta" for
// 7.0, "ampere" for 8.0/8.6, "ada-lovelace" for 8.9, "hopper" for 9.0,
// "blackwell" for 10.x/12.x; "undefined" for one it does not know.
std::string FamilyOf(int compute_major, int compute_minor);

// The Node Feature Discovery feature-file form: "key=value" lines, sorted.
std::string FeatureFile(const Labels& labels);

}  // namespace gdp::labels
