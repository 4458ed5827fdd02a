// A stand-in for NVIDIA's nvidia-smi over NVML, installed by `gpusim root` as
// <root>/usr/bin/nvidia-smi beside the simulator library. As the real one, it
// loads libnvidia-ml.so.1 at run time (dlopen; its RPATH finds the library in
// ../lib/x86_64-linux-gnu, in a driver root and in a container given the
// driver's files alike), so a missing driver is its usual message, not a
// loader error. What it prints comes from NVML only, so it shows what any NVML
// client sees, and in the shapes scripts parse:
//   nvidia-smi                   the summary table (one block per GPU)
//   nvidia-smi -L                one line per GPU, its MIG devices under it
//   nvidia-smi --query-gpu=F,... --format=csv[,noheader][,nounits]
//   -i N[,M...]                  only these GPUs (by index)
// Exit codes as NVIDIA's: 0; 2 for bad arguments; 6 when no GPU is visible;
// 9 when NVML cannot reach the driver.
#include <dlfcn.h>
#include <nvml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace {

// The NVML calls used, resolved from libnvidia-ml.so.1.
struct Nvml {
  decltype(&nvmlInit_v2) Init = nullptr;
  decltype(&nvmlShutdown) Shutdown = nullptr;
  decltype(&nvmlSystemGetDriverVersion) SystemGetDriverVersion = nullptr;
  decltype(&nvmlSystemGetCudaDriverVersion) SystemGetCudaDriverVersion = nullptr;
  decltype(&nvmlDeviceGetCount_v2) DeviceGetCount = nullptr;
  decltype(&nvmlDeviceGetHandleByIndex_v2) DeviceGetHandleByIndex = nullptr;
  decltype(&nvmlDeviceGetName) DeviceGetName = nullptr;
  decltype(&nvmlDeviceGetUUID) DeviceGetUUID = nullptr;
  decltype(&nvmlDeviceGetPciInfo_v3) DeviceGetPciInfo = nullptr;
  decltype(&nvmlDeviceGetMemoryInfo) DeviceGetMemoryInfo = nullptr;
  decltype(&nvmlDeviceGetUtilizationRates) DeviceGetUtilizationRates = nullptr;
  decltype(&nvmlDeviceGetTemperature) DeviceGetTemperature = nullptr;
  decltype(&nvmlDeviceGetPowerUsage) DeviceGetPowerUsage = nullptr;
  decltype(&nvmlDeviceGetPowerManagementLimit) DeviceGetPowerManagementLimit = nullptr;
  decltype(&nvmlDeviceGetPersistenceMode) DeviceGetPersistenceMode = nullptr;
  decltype(&nvmlDeviceGetMigMode) DeviceGetMigMode = nullptr;
  decltype(&nvmlDeviceGetMaxMigDeviceCount) DeviceGetMaxMigDeviceCount = nullptr;
  decltype(&nvmlDeviceGetMigDeviceHandleByIndex) DeviceGetMigDeviceHandleByIndex = nullptr;

  // False when the library or one of the calls is missing.
  bool Load() {
    void* lib = ::dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return false;
    bool ok = true;
    auto sym = [&](auto* f, const char* name) {
      *f = reinterpret_cast<std::remove_reference_t<decltype(*f)>>(::dlsym(lib, name));
      ok = ok && *f != nullptr;
    };
    sym(&Init, "nvmlInit_v2");
    sym(&Shutdown, "nvmlShutdown");
    sym(&SystemGetDriverVersion, "nvmlSystemGetDriverVersion");
    sym(&SystemGetCudaDriverVersion, "nvmlSystemGetCudaDriverVersion");
    sym(&DeviceGetCount, "nvmlDeviceGetCount_v2");
    sym(&DeviceGetHandleByIndex, "nvmlDeviceGetHandleByIndex_v2");
    sym(&DeviceGetName, "nvmlDeviceGetName");
    sym(&DeviceGetUUID, "nvmlDeviceGetUUID");
    sym(&DeviceGetPciInfo, "nvmlDeviceGetPciInfo_v3");
    sym(&DeviceGetMemoryInfo, "nvmlDeviceGetMemoryInfo");
    sym(&DeviceGetUtilizationRates, "nvmlDeviceGetUtilizationRates");
    sym(&DeviceGetTemperature, "nvmlDeviceGetTemperature");
    sym(&DeviceGetPowerUsage, "nvmlDeviceGetPowerUsage");
    sym(&DeviceGetPowerManagementLimit, "nvmlDeviceGetPowerManagementLimit");
    sym(&DeviceGetPersistenceMode, "nvmlDeviceGetPersistenceMode");
    sym(&DeviceGetMigMode, "nvmlDeviceGetMigMode");
    sym(&DeviceGetMaxMigDeviceCount, "nvmlDeviceGetMaxMigDeviceCount");
    sym(&DeviceGetMigDeviceHandleByIndex, "nvmlDeviceGetMigDeviceHandleByIndex");
    return ok;
  }
};
Nvml nvml;  // loaded once in main, before anything else reads it

constexpr int kBadArgs = 2;
constexpr int kNoDevices = 6;
constexpr int kNoDriver = 9;

struct Options {
  bool list = false;
  std::vector<std::string> query;
  bool csv = false, header = true, units = true;
  std::vector<unsigned> only;
};

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

int Usage(const char* why) {
  std::fprintf(stderr,
               "%s\nUsage: nvidia-smi [-L] [-i INDEX[,INDEX...]] "
               "[--query-gpu=FIELD[,FIELD...] --format=csv[,noheader][,nounits]]\n",
               why);
  return kBadArgs;
}

// One GPU's values, read once.
struct Gpu {
  unsigned index = 0;
  nvmlDevice_t handle{};
  std::string name, uuid, bus_id, driver;
  unsigned long long mem_used = 0, mem_total = 0;
  unsigned util = 0, temp = 0, power_mw = 0, limit_mw = 0;
  bool persistence = false, mig = false;
};

constexpr unsigned long long kMiB = 1024ULL * 1024;

Gpu Read(unsigned index, nvmlDevice_t h, const std::string& driver) {
  Gpu g;
  g.index = index;
  g.handle = h;
  g.driver = driver;
  char buf[NVML_DEVICE_NAME_V2_BUFFER_SIZE] = {};
  if (nvml.DeviceGetName(h, buf, sizeof buf) == NVML_SUCCESS) g.name = buf;
  char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
  if (nvml.DeviceGetUUID(h, uuid, sizeof uuid) == NVML_SUCCESS) g.uuid = uuid;
  nvmlPciInfo_t pci{};
  if (nvml.DeviceGetPciInfo(h, &pci) == NVML_SUCCESS) g.bus_id = pci.busId;
  nvmlMemory_t mem{};
  if (nvml.DeviceGetMemoryInfo(h, &mem) == NVML_SUCCESS) {
    g.mem_used = mem.used / kMiB;
    g.mem_total = mem.total / kMiB;
  }
  nvmlUtilization_t u{};
  if (nvml.DeviceGetUtilizationRates(h, &u) == NVML_SUCCESS) g.util = u.gpu;
  nvml.DeviceGetTemperature(h, NVML_TEMPERATURE_GPU, &g.temp);
  nvml.DeviceGetPowerUsage(h, &g.power_mw);
  nvml.DeviceGetPowerManagementLimit(h, &g.limit_mw);
  nvmlEnableState_t p{};
  if (nvml.DeviceGetPersistenceMode(h, &p) == NVML_SUCCESS)
    g.persistence = p == NVML_FEATURE_ENABLED;
  unsigned current = 0, pending = 0;
  if (nvml.DeviceGetMigMode(h, &current, &pending) == NVML_SUCCESS) {
    g.mig = current == NVML_DEVICE_MIG_ENABLE;
  }
  return g;
}

// --query-gpu: each field's header and value (with and without its unit).
struct Field {
  const char* header;
  const char* unit;  // appended to the header as " [unit]" and to the value
  std::function<std::string(const Gpu&)> value;
};

const std::map<std::string, Field>& QueryFields() {
  static const std::map<std::string, Field> kFields = {
      {"index", {"index", nullptr, [](const Gpu& g) { return std::to_string(g.index); }}},
      {"name", {"name", nullptr, [](const Gpu& g) { return g.name; }}},
      {"uuid", {"uuid", nullptr, [](const Gpu& g) { return g.uuid; }}},
      {"gpu_uuid", {"uuid", nullptr, [](const Gpu& g) { return g.uuid; }}},
      {"pci.bus_id", {"pci.bus_id", nullptr, [](const Gpu& g) { return g.bus_id; }}},
      {"driver_version", {"driver_version", nullptr, [](const Gpu& g) { return g.driver; }}},
      {"memory.used",
       {"memory.used", "MiB", [](const Gpu& g) { return std::to_string(g.mem_used); }}},
      {"memory.total",
       {"memory.total", "MiB", [](const Gpu& g) { return std::to_string(g.mem_total); }}},
      {"memory.free",
       {"memory.free", "MiB",
        [](const Gpu& g) { return std::to_string(g.mem_total - g.mem_used); }}},
      {"utilization.gpu",
       {"utilization.gpu", "%", [](const Gpu& g) { return std::to_string(g.util); }}},
      {"temperature.gpu",
       {"temperature.gpu", nullptr, [](const Gpu& g) { return std::to_string(g.temp); }}},
      {"power.draw",
       {"power.draw", "W",
        [](const Gpu& g) {
          char b[32];
          std::snprintf(b, sizeof b, "%.2f", g.power_mw / 1000.0);
          return std::string(b);
        }}},
      {"mig.mode.current",
       {"mig.mode.current", nullptr,
        [](const Gpu& g) { return std::string(g.mig ? "Enabled" : "Disabled"); }}},
  };
  return kFields;
}

int Query(const std::vector<Gpu>& gpus, const Options& o) {
  const auto& fields = QueryFields();
  std::vector<const Field*> chosen;
  for (const std::string& f : o.query) {
    auto it = fields.find(f);
    if (it == fields.end()) {
      std::string known;
      for (const auto& [name, _] : fields) known += (known.empty() ? "" : ", ") + name;
      std::fprintf(stderr, "Field \"%s\" is not a valid field to query. Known here: %s\n",
                   f.c_str(), known.c_str());
      return kBadArgs;
    }
    chosen.push_back(&it->second);
  }
  if (o.header) {
    for (size_t i = 0; i < chosen.size(); ++i) {
      std::printf("%s%s", i ? ", " : "", chosen[i]->header);
      if (chosen[i]->unit != nullptr && o.units) std::printf(" [%s]", chosen[i]->unit);
    }
    std::printf("\n");
  }
  for (const Gpu& g : gpus) {
    for (size_t i = 0; i < chosen.size(); ++i) {
      std::printf("%s%s", i ? ", " : "", chosen[i]->value(g).c_str());
      if (chosen[i]->unit != nullptr && o.units) std::printf(" %s", chosen[i]->unit);
    }
    std::printf("\n");
  }
  return 0;
}

void List(const std::vector<Gpu>& gpus) {
  for (const Gpu& g : gpus) {
    std::printf("GPU %u: %s (UUID: %s)\n", g.index, g.name.c_str(), g.uuid.c_str());
    if (!g.mig) continue;
    unsigned max = 0;
    if (nvml.DeviceGetMaxMigDeviceCount(g.handle, &max) != NVML_SUCCESS) continue;
    unsigned n = 0;
    for (unsigned i = 0; i < max; ++i) {
      nvmlDevice_t m{};
      if (nvml.DeviceGetMigDeviceHandleByIndex(g.handle, i, &m) != NVML_SUCCESS) continue;
      char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE] = {};
      char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = {};
      nvml.DeviceGetName(m, name, sizeof name);
      nvml.DeviceGetUUID(m, uuid, sizeof uuid);
      // "NVIDIA A100-SXM4-80GB MIG 1g.10gb" -> "1g.10gb"
      std::string profile = name;
      if (size_t at = profile.rfind("MIG "); at != std::string::npos)
        profile = profile.substr(at + 4);
      std::printf("  MIG %-12s Device %2u: (UUID: %s)\n", profile.c_str(), n++, uuid);
    }
  }
}

// printf into a cell `width` wide (padded or cut), as the table's columns are.
template <typename... A>
std::string Cell(size_t width, const char* format, A... args) {
  char b[256];
  std::snprintf(b, sizeof b, format, args...);
  std::string s = b;
  s.resize(width, ' ');
  return s;
}

void Table(const std::vector<Gpu>& gpus, const std::string& driver, int cuda) {
  const char* rule =
      "+-----------------------------------------------------------------------------------------+"
      "\n";
  const char* mid =
      "+-----------------------------------------+------------------------+----------------------+"
      "\n";
  std::printf("%s", rule);
  std::printf("|%s|\n", Cell(89, " NVIDIA-SMI %-22s Driver Version: %-14s CUDA Version: %d.%d",
                             driver.c_str(), driver.c_str(), cuda / 1000, (cuda % 1000) / 10)
                            .c_str());
  std::printf(
      "|-----------------------------------------+------------------------+----------------------+"
      "\n");
  std::printf(
      "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC "
      "|\n");
  std::printf(
      "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. "
      "|\n");
  std::printf(
      "|=========================================+========================+======================|"
      "\n");
  for (const Gpu& g : gpus) {
    std::printf(
        "|%s|%s|%s|\n",
        Cell(41, " %3u  %-27.27s %4s  ", g.index, g.name.c_str(), g.persistence ? "On" : "Off")
            .c_str(),
        Cell(24, " %-16s %4s ", g.bus_id.c_str(), "Off").c_str(),
        Cell(22, " %19s  ", g.mig ? "On" : "0").c_str());
    std::printf(
        "|%s|%s|%s|\n",
        Cell(41, " N/A  %3uC  P0  %13uW / %5uW ", g.temp, g.power_mw / 1000, g.limit_mw / 1000)
            .c_str(),
        Cell(24, " %6lluMiB / %7lluMiB ", g.mem_used, g.mem_total).c_str(),
        Cell(22, " %6u%%      Default ", g.util).c_str());
    std::printf("%s", mid);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-L" || a == "--list-gpus") {
      o.list = true;
    } else if (a.rfind("--query-gpu=", 0) == 0) {
      o.query = Split(a.substr(12), ',');
    } else if (a.rfind("--format=", 0) == 0) {
      for (const std::string& f : Split(a.substr(9), ',')) {
        if (f == "csv") {
          o.csv = true;
        } else if (f == "noheader") {
          o.header = false;
        } else if (f == "nounits") {
          o.units = false;
        } else {
          return Usage(("unknown format " + f).c_str());
        }
      }
    } else if ((a == "-i" || a == "--id") && i + 1 < argc) {
      for (const std::string& n : Split(argv[++i], ',')) {
        char* end = nullptr;
        const unsigned long v = std::strtoul(n.c_str(), &end, 10);
        if (end == n.c_str() || *end != '\0') return Usage(("bad GPU index " + n).c_str());
        o.only.push_back(static_cast<unsigned>(v));
      }
    } else if (a.rfind("-i", 0) == 0 && a.size() > 2) {
      return Usage("write -i N with a space");
    } else {
      return Usage(("unknown argument " + a).c_str());
    }
  }
  if (!o.query.empty() && !o.csv) return Usage("--query-gpu needs --format=csv");

  if (!nvml.Load() || nvml.Init() != NVML_SUCCESS) {
    std::printf(
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure "
        "that the latest NVIDIA driver is installed and running.\n\n");
    return kNoDriver;
  }
  char driver[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE] = {};
  nvml.SystemGetDriverVersion(driver, sizeof driver);
  int cuda = 0;
  nvml.SystemGetCudaDriverVersion(&cuda);
  unsigned count = 0;
  nvml.DeviceGetCount(&count);
  std::vector<Gpu> gpus;
  for (unsigned i = 0; i < count; ++i) {
    if (!o.only.empty() && std::find(o.only.begin(), o.only.end(), i) == o.only.end()) continue;
    nvmlDevice_t h{};
    if (nvml.DeviceGetHandleByIndex(i, &h) == NVML_SUCCESS) gpus.push_back(Read(i, h, driver));
  }
  int rc = 0;
  if (gpus.empty()) {
    std::printf("No devices were found\n");
    rc = kNoDevices;
  } else if (!o.query.empty()) {
    rc = Query(gpus, o);
  } else if (o.list) {
    List(gpus);
  } else {
    Table(gpus, driver, cuda);
  }
  nvml.Shutdown();
  return rc;
}
