// libFuzzer target: Allocate and GetPreferredAllocation request handling of
// the resources backend, on a fixed 8-GPU machine (two NVLink islands).
//
// The first byte picks the decoding: a kubelet AllocateRequest or
// PreferredAllocationRequest protobuf (what arrives over the wire), or a
// byte-driven generator that mixes known IDs, near-miss IDs, duplicates and
// odd sizes (far more likely to reach the deep paths than random protobuf).
// Every answer is checked against an independent oracle: success exactly when
// the request is valid, and a successful answer honours every promise of the
// ResourceBackend contract. A broken invariant aborts.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "deviceplugin/v1beta1/api.pb.h"
#include "src/config/config.h"
#include "src/resources/resources.h"
#include "src/resources/testing/inventories.h"
#include "tests/mocks/fake_filesystem.h"

namespace {

using gdp::plugin::ResourceBackend;

#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "invariant broken at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

struct Fixture {
  std::shared_ptr<const ResourceBackend> backend;
  std::set<std::string> known;
  std::vector<std::string> ids;  // in device order
  size_t control_nodes;
};

const Fixture& GetFixture(int which) {
  // Built once and never destroyed (reachable, so LeakSanitizer is quiet).
  static const Fixture* fixtures = [] {
    using gdp::config::DeviceIdStrategy;
    using gdp::config::DeviceListStrategy;
    gdp::FakeFileSystem fs_storage;
    gdp::FakeFileSystem* fs = &fs_storage;  // only read while building
    for (unsigned i = 0; i < 8; ++i) fs->AddCharDevice("/dev/nvidia" + std::to_string(i), 195, i);
    fs->AddCharDevice("/dev/nvidiactl", 195, 255);
    fs->AddCharDevice("/dev/nvidia-uvm", 510, 0);
    auto* out = new Fixture[2];
    for (int f = 0; f < 2; ++f) {
      gdp::config::Config cfg;
      cfg.device_id_strategy = f == 0 ? DeviceIdStrategy::kUuid : DeviceIdStrategy::kIndex;
      cfg.device_list_strategy = {DeviceListStrategy::kEnvvar, DeviceListStrategy::kCdiAnnotations,
                                  DeviceListStrategy::kCdiCri};
      auto built = gdp::resources::BuildResources(gdp::resources::testing::TwoIslands(), cfg, *fs);
      if (!built.ok() || built->size() != 1) std::abort();
      out[f].backend = built->front();
      for (const auto& d : out[f].backend->Devices()) {
        out[f].known.insert(d.id);
        out[f].ids.push_back(d.id);
      }
      out[f].control_nodes = 2;
    }
    return out;
  }();
  return fixtures[which];
}

bool Unique(const std::vector<std::string>& v) {
  return std::set<std::string>(v.begin(), v.end()).size() == v.size();
}

bool AllKnown(const Fixture& fx, const std::vector<std::string>& v) {
  for (const auto& id : v) {
    if (!fx.known.count(id)) return false;
  }
  return true;
}

void CheckAllocate(const Fixture& fx, const std::vector<std::string>& ids) {
  auto got = fx.backend->Allocate(ids);
  const bool valid = !ids.empty() && AllKnown(fx, ids) && Unique(ids);
  FUZZ_CHECK(got.ok() == valid);
  if (!got.ok()) {
    FUZZ_CHECK(got.status().code() == absl::StatusCode::kInvalidArgument);
    FUZZ_CHECK(!got.status().message().empty());
    return;
  }
  const auto env = got->envs.find("NVIDIA_VISIBLE_DEVICES");
  FUZZ_CHECK(env != got->envs.end());
  std::vector<std::string> visible = absl::StrSplit(env->second, ',');
  FUZZ_CHECK(visible.size() == ids.size());
  FUZZ_CHECK(Unique(visible));
  FUZZ_CHECK(got->cdi_devices.size() == ids.size());
  FUZZ_CHECK(got->annotations.size() == 1);
  FUZZ_CHECK(got->devices.size() == ids.size() + fx.control_nodes);
  for (const auto& d : got->devices) FUZZ_CHECK(d.container_path.starts_with("/dev/nvidia"));
  // Same answer whatever the order of the request.
  std::vector<std::string> reversed(ids.rbegin(), ids.rend());
  auto again = fx.backend->Allocate(reversed);
  FUZZ_CHECK(again.ok() && again->envs == got->envs && again->cdi_devices == got->cdi_devices);
}

void CheckPreferred(const Fixture& fx, const std::vector<std::string>& available,
                    const std::vector<std::string>& must, int size) {
  auto got = fx.backend->PreferredAllocation(available, must, size);
  const std::set<std::string> avail_set(available.begin(), available.end());
  bool valid = size > 0 && AllKnown(fx, available) && AllKnown(fx, must) && Unique(available) &&
               Unique(must) && static_cast<size_t>(size) <= available.size() &&
               must.size() <= static_cast<size_t>(size);
  for (const auto& m : must) valid = valid && avail_set.count(m);
  FUZZ_CHECK(got.ok() == valid);
  if (!got.ok()) {
    FUZZ_CHECK(got.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  FUZZ_CHECK(got->size() == static_cast<size_t>(size));
  FUZZ_CHECK(Unique(*got));
  for (const auto& id : *got) FUZZ_CHECK(avail_set.count(id));
  const std::set<std::string> chosen(got->begin(), got->end());
  for (const auto& m : must) FUZZ_CHECK(chosen.count(m));
  std::vector<std::string> reversed(available.rbegin(), available.rend());
  auto again = fx.backend->PreferredAllocation(reversed, must, size);
  FUZZ_CHECK(again.ok() && *again == *got);
}

// Byte-driven generator.
class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint8_t Next() { return pos_ < size_ ? data_[pos_++] : 0; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

std::string PickId(const Fixture& fx, Bytes& in) {
  const uint8_t b = in.Next();
  if (b < 200) return fx.ids[b % fx.ids.size()];
  switch (b % 5) {
    case 0:
      return "";
    case 1:
      return fx.ids[in.Next() % fx.ids.size()] + "::0";  // a replica ID that does not exist
    case 2:
      return std::to_string(static_cast<int>(in.Next()) - 8);
    case 3: {
      std::string id = fx.ids[in.Next() % fx.ids.size()];
      id.back() ^= 1;
      return id;
    }
    default:
      return std::string(in.Next() % 64, 'x');
  }
}

std::vector<std::string> PickList(const Fixture& fx, Bytes& in) {
  std::vector<std::string> out(in.Next() % 12);
  for (auto& id : out) id = PickId(fx, in);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const Fixture& fx = GetFixture((mode >> 2) & 1);
  const uint8_t* rest = data + 1;
  const int rest_size = static_cast<int>(size - 1);
  switch (mode & 3) {
    case 0: {
      v1beta1::AllocateRequest req;
      if (!req.ParseFromArray(rest, rest_size)) return 0;
      for (const auto& c : req.container_requests()) {
        CheckAllocate(fx, {c.devices_ids().begin(), c.devices_ids().end()});
      }
      break;
    }
    case 1: {
      v1beta1::PreferredAllocationRequest req;
      if (!req.ParseFromArray(rest, rest_size)) return 0;
      for (const auto& c : req.container_requests()) {
        CheckPreferred(fx, {c.available_deviceids().begin(), c.available_deviceids().end()},
                       {c.must_include_deviceids().begin(), c.must_include_deviceids().end()},
                       c.allocation_size());
      }
      break;
    }
    default: {
      Bytes in(rest, size - 1);
      while (!in.empty()) {
        if (in.Next() & 1) {
          CheckAllocate(fx, PickList(fx, in));
        } else {
          std::vector<std::string> available = PickList(fx, in);
          std::vector<std::string> must;
          if (in.Next() & 1 || available.empty()) {
            must = PickList(fx, in);
          } else {  // mostly a subset of available, so the search itself runs
            must.resize(in.Next() % 4);
            for (auto& id : must) id = available[in.Next() % available.size()];
          }
          const uint8_t s = in.Next();
          const int n = s & 0x80 ? static_cast<int8_t>(s) : s % (available.size() + 2);
          CheckPreferred(fx, available, must, n);
        }
      }
      break;
    }
  }
  return 0;
}
