#include "src/nvml/inventory_codec.h"

#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace gdp::nvml {

namespace {

using nlohmann::json;

json EncodeMig(const MigDevice& m) {
  return json{{"index", m.index},
              {"uuid", m.uuid},
              {"gpuInstanceId", m.gpu_instance_id},
              {"computeInstanceId", m.compute_instance_id},
              {"profile", m.profile},
              {"memoryBytes", m.memory_bytes},
              {"multiprocessors", m.multiprocessor_count},
              {"gpuInstanceSlices", m.gpu_instance_slices},
              {"computeInstanceSlices", m.compute_instance_slices}};
}

json EncodeGpu(const Gpu& g) {
  json migs = json::array();
  for (const MigDevice& m : g.mig_devices) migs.push_back(EncodeMig(m));
  return json{{"index", g.index},
              {"minor", g.minor},
              {"uuid", g.uuid},
              {"name", g.name},
              {"brand", g.brand},
              {"architecture", g.architecture},
              {"computeMajor", g.cuda_compute_major},
              {"computeMinor", g.cuda_compute_minor},
              {"memoryBytes", g.memory_bytes},
              {"pciBusId", g.pci_bus_id},
              {"pciDeviceId", g.pci_device_id},
              {"numaNode", g.numa_node},
              {"migEnabled", g.mig_enabled},
              {"migCapable", g.mig_capable},
              {"vgpuGuest", g.vgpu_guest},
              {"migDevices", migs}};
}

// Reads one field of an object, naming it in the error: `where` is the path
// of the object ("gpus[3]").
class Reader {
 public:
  Reader(const json& object, std::string where) : object_(object), where_(std::move(where)) {}

  template <typename T>
  T Get(const char* key) {
    if (!status_.ok()) return T{};
    auto it = object_.find(key);
    if (it == object_.end()) {
      status_ = absl::InvalidArgumentError(absl::StrCat(where_, ".", key, " is missing"));
      return T{};
    }
    try {
      return it->template get<T>();
    } catch (const json::exception&) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat(where_, ".", key, " has the wrong type (", it->type_name(), ")"));
      return T{};
    }
  }

  const json* Array(const char* key) {
    if (!status_.ok()) return nullptr;
    auto it = object_.find(key);
    if (it == object_.end() || !it->is_array()) {
      status_ = absl::InvalidArgumentError(absl::StrCat(where_, ".", key, " is not an array"));
      return nullptr;
    }
    return &*it;
  }

  const absl::Status& status() const { return status_; }
  const std::string& where() const { return where_; }

 private:
  const json& object_;
  std::string where_;
  absl::Status status_;
};

absl::Status DecodeGpu(const json& j, const std::string& where, Gpu* g) {
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, " is not an object"));
  Reader r(j, where);
  g->index = r.Get<unsigned>("index");
  g->minor = r.Get<unsigned>("minor");
  g->uuid = r.Get<std::string>("uuid");
  g->name = r.Get<std::string>("name");
  g->brand = r.Get<std::string>("brand");
  g->architecture = r.Get<std::string>("architecture");
  g->cuda_compute_major = r.Get<int>("computeMajor");
  g->cuda_compute_minor = r.Get<int>("computeMinor");
  g->memory_bytes = r.Get<uint64_t>("memoryBytes");
  g->pci_bus_id = r.Get<std::string>("pciBusId");
  g->pci_device_id = r.Get<uint32_t>("pciDeviceId");
  g->numa_node = r.Get<int>("numaNode");
  g->mig_enabled = r.Get<bool>("migEnabled");
  g->mig_capable = r.Get<bool>("migCapable");
  g->vgpu_guest = r.Get<bool>("vgpuGuest");
  const json* migs = r.Array("migDevices");
  if (!r.status().ok()) return r.status();
  for (size_t i = 0; i < migs->size(); ++i) {
    const json& mj = (*migs)[i];
    const std::string mwhere = absl::StrCat(where, ".migDevices[", i, "]");
    if (!mj.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(mwhere, " is not an object"));
    }
    Reader mr(mj, mwhere);
    MigDevice m;
    m.index = mr.Get<unsigned>("index");
    m.uuid = mr.Get<std::string>("uuid");
    m.gpu_instance_id = mr.Get<unsigned>("gpuInstanceId");
    m.compute_instance_id = mr.Get<unsigned>("computeInstanceId");
    m.profile = mr.Get<std::string>("profile");
    m.memory_bytes = mr.Get<uint64_t>("memoryBytes");
    m.multiprocessor_count = mr.Get<unsigned>("multiprocessors");
    m.gpu_instance_slices = mr.Get<unsigned>("gpuInstanceSlices");
    m.compute_instance_slices = mr.Get<unsigned>("computeInstanceSlices");
    if (!mr.status().ok()) return mr.status();
    g->mig_devices.push_back(std::move(m));
  }
  return absl::OkStatus();
}

}  // namespace

std::string EncodeInventory(const Inventory& inventory) {
  json gpus = json::array();
  for (const Gpu& g : inventory.gpus) gpus.push_back(EncodeGpu(g));
  json links = json::array();
  for (const std::vector<Link>& row : inventory.links) {
    json r = json::array();
    for (const Link& l : row) r.push_back(json{static_cast<int>(l.path), l.nvlinks});
    links.push_back(std::move(r));
  }
  return json{{"format", kInventoryCodecFormat},
              {"driverVersion", inventory.driver_version},
              {"nvmlVersion", inventory.nvml_version},
              {"cudaDriverVersion", inventory.cuda_driver_version},
              {"gpus", std::move(gpus)},
              {"links", std::move(links)}}
             .dump() +
         "\n";
}

absl::StatusOr<std::shared_ptr<const Inventory>> DecodeInventory(std::string_view text) {
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError("the inventory is not a JSON object");
  }
  Reader r(doc, "inventory");
  if (const int format = r.Get<int>("format"); r.status().ok() && format != kInventoryCodecFormat) {
    return absl::InvalidArgumentError(absl::StrCat(
        "inventory.format is ", format, "; this build reads format ", kInventoryCodecFormat));
  }
  auto inv = std::make_shared<Inventory>();
  inv->driver_version = r.Get<std::string>("driverVersion");
  inv->nvml_version = r.Get<std::string>("nvmlVersion");
  inv->cuda_driver_version = r.Get<int>("cudaDriverVersion");
  const json* gpus = r.Array("gpus");
  const json* links = r.Array("links");
  if (!r.status().ok()) return r.status();
  for (size_t i = 0; i < gpus->size(); ++i) {
    Gpu g;
    if (absl::Status s = DecodeGpu((*gpus)[i], absl::StrCat("inventory.gpus[", i, "]"), &g);
        !s.ok()) {
      return s;
    }
    inv->gpus.push_back(std::move(g));
  }
  if (links->size() != inv->gpus.size()) {
    return absl::InvalidArgumentError(absl::StrCat("inventory.links has ", links->size(),
                                                   " rows for ", inv->gpus.size(), " GPUs"));
  }
  constexpr int kLastPath = static_cast<int>(PathKind::kSystem);
  for (size_t i = 0; i < links->size(); ++i) {
    const json& row = (*links)[i];
    if (!row.is_array() || row.size() != inv->gpus.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("inventory.links[", i, "] is not an array of ", inv->gpus.size()));
    }
    std::vector<Link> out;
    for (size_t k = 0; k < row.size(); ++k) {
      const json& cell = row[k];
      if (!cell.is_array() || cell.size() != 2 || !cell[0].is_number_integer() ||
          !cell[1].is_number_unsigned() || cell[0].get<int>() < 0 ||
          cell[0].get<int>() > kLastPath) {
        return absl::InvalidArgumentError(absl::StrCat(
            "inventory.links[", i, "][", k, "] is not [path kind 0-", kLastPath, ", nvlinks]"));
      }
      out.push_back(Link{static_cast<PathKind>(cell[0].get<int>()), cell[1].get<unsigned>()});
    }
    inv->links.push_back(std::move(out));
  }
  return std::shared_ptr<const Inventory>(std::move(inv));
}

}  // namespace gdp::nvml
