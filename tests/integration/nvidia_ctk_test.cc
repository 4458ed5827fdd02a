// Our CDI spec against NVIDIA's: `nvidia-ctk cdi generate` (the NVIDIA
// Container Toolkit, built from its Go module by hack/nvidia-toolkit.sh) and
// `gpu-device-plugin cdi-spec` run against the same simulated driver root.
// Every device node, mount, hook and environment entry of NVIDIA's spec must
// have its counterpart in ours, or be one of the differences listed below
// with the reason it is intended; a listed difference that no longer occurs
// fails too, so the list stays true. The differences are printed.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/process.h"

namespace gdp::testing {
namespace {

using json = nlohmann::json;

// What a spec gives, flattened to comparable entries: "node <path> <hostPath>",
// "mount <containerPath> <hostPath>", "link <path>", "ldcache <folder>",
// "hook <name>", "env <entry>"; per device (by name) and common ("").
using Entries = std::map<std::string, std::set<std::string>>;

Entries Flatten(const json& spec) {
  Entries out;
  auto edits = [&out](const std::string& device, const json& e) {
    std::set<std::string>& s = out[device];
    for (const json& n : e.value("deviceNodes", json::array())) {
      s.insert("node " + n["path"].get<std::string>() + " " +
               n.value("hostPath", n["path"].get<std::string>()));
    }
    for (const json& m : e.value("mounts", json::array())) {
      s.insert("mount " + m["containerPath"].get<std::string>() + " " +
               m["hostPath"].get<std::string>());
    }
    for (const json& v : e.value("env", json::array())) s.insert("env " + v.get<std::string>());
    for (const json& h : e.value("hooks", json::array())) {
      const std::vector<std::string> args = h["args"].get<std::vector<std::string>>();
      // The hook's name follows the binary (and nvidia-ctk's `hook`).
      size_t i = args.size() > 1 && args[1] == "hook" ? 2 : 1;
      if (i >= args.size()) continue;
      const std::string& name = args[i];
      s.insert("hook " + name);
      for (++i; i + 1 < args.size(); ++i) {
        if (name == "create-symlinks" && args[i] == "--link") {
          const std::string& link = args[i + 1];
          s.insert("link " + link.substr(link.find("::") + 2));
        } else if (name == "update-ldcache" && args[i] == "--folder") {
          s.insert("ldcache " + args[i + 1]);
        }
      }
    }
  };
  edits("", spec.value("containerEdits", json::object()));
  for (const json& d : spec["devices"]) {
    edits(d["name"].get<std::string>(), d.value("containerEdits", json::object()));
  }
  return out;
}

// A difference: where ("" for the common edits, "each device" for an entry
// every device of NVIDIA's spec has), the entry, and on whose side.
struct Difference {
  std::string where;
  std::string entry;  // its first word and what follows, as Flatten writes it
  bool only_nvidia;
  bool operator<(const Difference& o) const {
    return std::tie(where, entry, only_nvidia) < std::tie(o.where, o.entry, o.only_nvidia);
  }
};

// Compares per device and in the common edits; entries every device of
// NVIDIA's has are reported once, as "each device".
std::set<Difference> Compare(const Entries& nvidia, const Entries& ours) {
  std::set<Difference> out;
  std::map<std::string, unsigned> per_device;  // entry -> devices of NVIDIA's lacking it in ours
  unsigned devices = 0;
  for (const auto& [where, entries] : nvidia) {
    const auto o = ours.find(where);
    if (o == ours.end()) {
      out.insert({where, "device", true});
      continue;
    }
    if (!where.empty()) ++devices;
    for (const std::string& e : entries) {
      if (o->second.count(e) != 0) continue;
      if (where.empty()) {
        out.insert({"", e, true});
      } else {
        // Hooks and environment read the same on every device; paths are the device's own.
        const bool same = e.rfind("hook ", 0) == 0 || e.rfind("env ", 0) == 0;
        ++per_device[same ? e : e.substr(0, e.find(' ') + 1) + "<of the device>"];
      }
    }
    for (const std::string& e : o->second) {
      if (entries.count(e) == 0) out.insert({where, e, false});
    }
  }
  for (const auto& [e, n] : per_device) {
    out.insert({n == devices ? "each device" : "some devices", e, true});
  }
  return out;
}

// The differences that are intended, each with its reason. `entry` matches
// a difference's entry exactly, or its prefix when it ends in '*'.
struct Intended {
  const char* where;
  const char* entry;
  bool only_nvidia;
  const char* reason;
};

bool Matches(const Intended& i, const Difference& d) {
  if (d.where != i.where || d.only_nvidia != i.only_nvidia) return false;
  const std::string e = i.entry;
  return e.back() == '*' ? d.entry.rfind(e.substr(0, e.size() - 1), 0) == 0 : d.entry == e;
}

// Differences in either mode.
const std::vector<Intended> kAlways = {
    {"all", "device", true,
     "NVIDIA's `all` device: the kubelet asks for the devices Allocate names, never `all`"},
    {"", "hook enable-cuda-compat", true,
     "CUDA forward compatibility (an image's newer libcuda over an older driver) needs a hook "
     "that reads the image; left to images that ship compat libraries, which set "
     "LD_LIBRARY_PATH themselves"},
    {"", "env NVIDIA_CTK_LIBCUDA_DIR=*", true, "read by the enable-cuda-compat hook only"},
    {"", "hook disable-device-node-modification", true,
     "stops libnvidia-ml in the container from creating device nodes; the container's device "
     "cgroup already refuses it every GPU it was not given"},
    {"", "hook update-application-profile", true,
     "restricts EGL/Vulkan GPU visibility; the spec carries no graphics libraries"},
    {"each device", "hook apply-cuda-memory-limits", true,
     "a no-op unless a container sets NVIDIA_GPU_MEMORY_LIMIT, and it "
     "needs nvmlDeviceSetMemoryLimits (newer drivers); replicas' memory limits come from MPS "
     "here"},
};

// Without a hook binary: the links are mounts of the library file.
const std::vector<Intended> kWithoutHook = {
    {"", "hook create-symlinks", true,
     "no hook runs on the host: each link is a read-only mount of its library at that name"},
    {"", "link *", true, "a mount of the library at the link's path (below)"},
    {"", "mount /usr/lib/x86_64-linux-gnu/libcuda.so*", false,
     "libcuda's links (libcuda.so.1, libcuda.so) as mounts of the library file"},
    {"", "mount /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1*", false,
     "libnvidia-ml's soname as a mount of the library file"},
    {"", "hook update-ldcache", true,
     "no hook runs on the host: the libraries keep the driver's folder, which the loader of "
     "Debian- and Ubuntu-based images searches without an ld cache entry"},
    {"", "ldcache *", true, "see update-ldcache"},
};

class NvidiaCtkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("GDP_NVIDIA_TOOLKIT_BIN");  // NOLINT(concurrency-mt-unsafe)
    ASSERT_NE(bin, nullptr) << "GDP_NVIDIA_TOOLKIT_BIN is not set: hack/test.sh sets it to what "
                               "hack/nvidia-toolkit.sh builds";
    toolkit_ = bin;
    char tmpl[] = "/tmp/gdp-ctk-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/root";
    std::string out;
    ASSERT_EQ(RunCommand({GDP_GPUSIM_BIN, "root", root_, "--profile", "dgx-h100"}, &out), 0) << out;
    // The driver's persistenced runs, so that both specs find its socket.
    ASSERT_EQ(RunCommand({root_ + "/usr/bin/nvidia-persistenced"}, &out), 0) << out;
  }
  void TearDown() override {
    std::ifstream pid_file(root_ + "/run/nvidia-persistenced/nvidia-persistenced.pid");
    pid_t pid = 0;
    if (pid_file >> pid && pid > 0) kill(pid, SIGTERM);
    std::filesystem::remove_all(dir_);
  }

  // Runs `argv`, which writes the spec to `file`; the spec.
  json Run(const std::vector<std::string>& argv, const std::string& file) {
    std::string out;
    EXPECT_EQ(RunCommand(argv, &out), 0) << argv[0] << ": " << out;
    std::ifstream in(file);
    return json::parse(in, nullptr, /*allow_exceptions=*/false);
  }
  json Nvidia() {
    const std::string file = dir_ + "/nvidia.json";
    // The simulator's library built with a sanitizer needs its runtime first.
    const std::string preload = GDP_SANITIZER_RUNTIME;
    return Run({"/usr/bin/env", "LD_PRELOAD=" + preload, "ASAN_OPTIONS=detect_leaks=0",
                toolkit_ + "/nvidia-ctk", "cdi", "generate", "--driver-root=" + root_,
                "--nvidia-cdi-hook-path=" + toolkit_ + "/nvidia-cdi-hook",
                "--device-name-strategy=uuid", "--format=json", "--output=" + file},
               file);
  }
  json Ours(const std::string& hook) {
    const std::string file = dir_ + "/ours.json";
    return Run({"/bin/sh", "-c",
                std::string(GDP_DAEMON_BIN) + " cdi-spec --nvidia-driver-root " + root_ +
                    (hook.empty() ? "" : " --nvidia-cdi-hook-path " + hook) + " > " + file},
               file);
  }

  // Every difference is intended and every intended one occurs; prints them.
  void Check(const json& nvidia, const json& ours, const std::vector<Intended>& intended,
             const std::string& mode) {
    ASSERT_FALSE(nvidia.is_discarded());
    ASSERT_FALSE(ours.is_discarded());
    const Entries theirs = Flatten(nvidia);
    ASSERT_GT(theirs.size(), 8u) << nvidia.dump(1);
    ASSERT_GT(theirs.at("").size(), 20u) << "NVIDIA's spec has next to no common edits";
    const std::set<Difference> diffs = Compare(theirs, Flatten(ours));
    std::vector<bool> used(intended.size(), false);
    std::cout << "Differences from nvidia-ctk cdi generate, " << mode << ":\n";
    for (const Difference& d : diffs) {
      size_t i = 0;
      while (i < intended.size() && !Matches(intended[i], d)) ++i;
      const std::string what = (d.only_nvidia ? "only NVIDIA's: " : "only ours: ") + d.entry +
                               " (" + (d.where.empty() ? "common" : d.where) + ")";
      if (i == intended.size()) {
        ADD_FAILURE() << "unexplained difference: " << what;
        continue;
      }
      used[i] = true;
      std::cout << "  " << what << ": " << intended[i].reason << "\n";
    }
    for (size_t i = 0; i < intended.size(); ++i) {
      EXPECT_TRUE(used[i]) << "listed as intended but not found (" << mode
                           << "): " << intended[i].entry;
    }
  }

  std::string toolkit_, dir_, root_;
};

TEST_F(NvidiaCtkTest, WithoutAHookEveryEntryOfNvidiasSpecHasItsCounterpart) {
  std::vector<Intended> intended = kAlways;
  intended.insert(intended.end(), kWithoutHook.begin(), kWithoutHook.end());
  Check(Nvidia(), Ours(""), intended, "without a hook binary");
}

TEST_F(NvidiaCtkTest, WithNvidiasHookTheLinksAndLdCacheAreItsHooks) {
  Check(Nvidia(), Ours(toolkit_ + "/nvidia-cdi-hook"), kAlways, "with nvidia-cdi-hook");
}

}  // namespace
}  // namespace gdp::testing
