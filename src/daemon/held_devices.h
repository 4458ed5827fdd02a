// Held devices: a device that left the node (its GPU removed, its MIG device
// destroyed) while a pod still holds it stays advertised, Unhealthy, until the
// pod lets go; then it goes away. The kubelet keeps allocations in its
// checkpoint, and with pod resource health status a device missing from the
// list is reported Healthy, so dropping it at once would misreport the pod's
// device; advertising it Unhealthy keeps capacity honest and allocatable
// right. A held device is never handed out again: Allocate refuses it and
// GetPreferredAllocation leaves it out, so it cannot fail a request for the
// other devices. If the same device comes back (same ID), the real one
// replaces the held entry.
//
// Who holds what comes from the kubelet's pod-resources API (the daemon reads
// it); this file is the pure part. Thread-safety: functions are pure; a
// HeldBackend is immutable and thread-safe like any ResourceBackend.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "src/plugin/backend.h"
#include "src/podresources/podresources.h"

namespace gdp::daemon {

struct HeldDevice {
  std::string id;
  std::vector<std::string> gpus;  // the GPUs behind it when it was advertised
  std::string holder;             // "namespace/pod/container", or why it is kept
  bool operator==(const HeldDevice&) const = default;
};

// What each resource advertised: resource -> device ID -> GPUs behind it.
using Advertised = std::map<std::string, std::map<std::string, std::vector<std::string>>>;

// A backend plus devices that left the node but are held: they are listed
// Unhealthy, refused by Allocate and left out of preferred allocations.
// `inner` may be null (every device of the resource is gone but held).
class HeldBackend final : public plugin::ResourceBackend {
 public:
  HeldBackend(std::string resource_name, std::shared_ptr<const plugin::ResourceBackend> inner,
              std::vector<HeldDevice> held);

  const std::string& ResourceName() const override { return name_; }
  const std::vector<plugin::Device>& Devices() const override { return devices_; }
  absl::StatusOr<plugin::ContainerAllocation> Allocate(
      const std::vector<std::string>& device_ids) const override;
  absl::StatusOr<std::vector<std::string>> PreferredAllocation(
      const std::vector<std::string>& available, const std::vector<std::string>& must_include,
      int size) const override;
  std::vector<std::string> GpusBehind(const std::string& device_id) const override;

 private:
  const HeldDevice* FindHeld(const std::string& id) const;

  std::string name_;
  std::shared_ptr<const plugin::ResourceBackend> inner_;
  std::map<std::string, HeldDevice> held_;
  std::vector<plugin::Device> devices_;
};

struct HeldResult {
  // `next`, with a HeldBackend wherever a resource keeps held devices (and one
  // for a resource that is gone but for held devices).
  std::vector<std::shared_ptr<const plugin::ResourceBackend>> backends;
  std::map<std::string, std::vector<HeldDevice>> held;  // by resource, ID order
  Advertised advertised;                                // what `backends` advertise
};

// What to advertise after a change: `next` (the resources the new inventory
// and config give) plus every device that `previous` advertised, `next` lacks
// and a container in `holders` still holds. Held devices of `previous` are
// judged again each call, so a released one goes away.
HeldResult KeepHeldDevices(std::vector<std::shared_ptr<const plugin::ResourceBackend>> next,
                           const Advertised& previous, const podresources::HolderIndex& holders);

}  // namespace gdp::daemon
