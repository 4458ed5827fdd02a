#include "src/daemon/held_devices.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace gdp::daemon {

HeldBackend::HeldBackend(std::string resource_name,
                         std::shared_ptr<const plugin::ResourceBackend> inner,
                         std::vector<HeldDevice> held)
    : name_(std::move(resource_name)), inner_(std::move(inner)) {
  if (inner_ != nullptr) devices_ = inner_->Devices();
  for (HeldDevice& h : held) {
    plugin::Device d;
    d.id = h.id;
    d.healthy = false;
    devices_.push_back(std::move(d));
    std::string id = h.id;
    held_.emplace(std::move(id), std::move(h));
  }
}

const HeldDevice* HeldBackend::FindHeld(const std::string& id) const {
  auto it = held_.find(id);
  return it == held_.end() ? nullptr : &it->second;
}

absl::StatusOr<plugin::ContainerAllocation> HeldBackend::Allocate(
    const std::vector<std::string>& device_ids) const {
  for (const std::string& id : device_ids) {
    if (const HeldDevice* h = FindHeld(id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("device ", id, " of ", name_,
                       " has left the node; it stays listed, Unhealthy, only while ", h->holder,
                       " holds it, and cannot be allocated"));
    }
  }
  if (inner_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("no device of ", name_, " is on the node any more"));
  }
  return inner_->Allocate(device_ids);
}

absl::StatusOr<std::vector<std::string>> HeldBackend::PreferredAllocation(
    const std::vector<std::string>& available, const std::vector<std::string>& must_include,
    int size) const {
  for (const std::string& id : must_include) {
    if (FindHeld(id) != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("must-include device ", id, " of ", name_,
                                                     " has left the node and cannot be allocated"));
    }
  }
  std::vector<std::string> present;
  present.reserve(available.size());
  for (const std::string& id : available) {
    if (FindHeld(id) == nullptr) present.push_back(id);
  }
  if (inner_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("no device of ", name_, " is on the node any more"));
  }
  return inner_->PreferredAllocation(present, must_include, size);
}

std::vector<std::string> HeldBackend::GpusBehind(const std::string& device_id) const {
  if (const HeldDevice* h = FindHeld(device_id)) return h->gpus;
  return inner_ != nullptr ? inner_->GpusBehind(device_id) : std::vector<std::string>{};
}

namespace {

std::string HolderText(const std::vector<podresources::Holder>& holders) {
  return absl::StrJoin(holders, ", ", [](std::string* out, const podresources::Holder& h) {
    absl::StrAppend(out, h.pod_namespace, "/", h.pod, "/", h.container);
  });
}

}  // namespace

HeldResult KeepHeldDevices(std::vector<std::shared_ptr<const plugin::ResourceBackend>> next,
                           const Advertised& previous, const podresources::HolderIndex& holders) {
  HeldResult out;
  std::map<std::string, std::shared_ptr<const plugin::ResourceBackend>> by_name;
  std::vector<std::string> order;
  for (auto& b : next) {
    order.push_back(b->ResourceName());
    by_name.emplace(b->ResourceName(), std::move(b));
  }
  // Resources gone altogether keep their place after the present ones.
  for (const auto& [resource, devices] : previous) {
    if (by_name.count(resource) == 0) order.push_back(resource);
  }
  for (const std::string& resource : order) {
    std::shared_ptr<const plugin::ResourceBackend> inner;
    if (auto it = by_name.find(resource); it != by_name.end()) inner = it->second;
    std::set<std::string> present;
    if (inner != nullptr) {
      for (const plugin::Device& d : inner->Devices()) present.insert(d.id);
    }
    std::vector<HeldDevice> held;
    if (auto prev = previous.find(resource); prev != previous.end()) {
      for (const auto& [id, gpus] : prev->second) {
        if (present.count(id) != 0) continue;
        auto r = holders.find(resource);
        if (r == holders.end()) continue;
        auto h = r->second.find(id);
        if (h == r->second.end() || h->second.empty()) continue;
        held.push_back(HeldDevice{id, gpus, HolderText(h->second)});
      }
    }
    std::shared_ptr<const plugin::ResourceBackend> serve = inner;
    if (!held.empty()) {
      out.held[resource] = held;
      serve = std::make_shared<HeldBackend>(resource, inner, std::move(held));
    }
    if (serve == nullptr) continue;  // gone, and nothing of it held
    auto& adv = out.advertised[resource];
    for (const plugin::Device& d : serve->Devices()) adv[d.id] = serve->GpusBehind(d.id);
    out.backends.push_back(std::move(serve));
  }
  return out;
}

}  // namespace gdp::daemon
