#include "sim/user_space.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <system_error>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "sim/root.h"
#include "src/driver/ldcache.h"

namespace gdp::sim {
namespace fs = std::filesystem;

namespace {

constexpr char kLibDir[] = "/usr/lib/x86_64-linux-gnu";
constexpr char kCudaSoname[] = "libcuda.so.1";
// The driver's libraries the simulator has, by soname: the file is
// <stem><version>; a dev name, when given, links to the soname (libcuda.so).
struct Library {
  const char* soname;
  const char* stem;
  const char* dev_name;
  bool required;
};
constexpr Library kLibraries[] = {
    {"libnvidia-ml.so.1", "libnvidia-ml.so.", nullptr, true},
    {kCudaSoname, "libcuda.so.", "libcuda.so", false},
};
// GSP firmware files of the real driver (stand-ins here, never loaded).
constexpr const char* kFirmware[] = {"gsp_ga10x.bin", "gsp_tu10x.bin"};

absl::Status Fail(const std::string& what, const std::error_code& ec) {
  return absl::InternalError(absl::StrCat(what, ": ", ec.message()));
}

absl::Status WriteAtomically(const std::string& path, const std::string& bytes) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) return Fail("cannot create the folder of " + path, ec);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << bytes;
    if (!out.flush()) return absl::InternalError("cannot write " + tmp);
  }
  fs::rename(tmp, path, ec);
  return ec ? Fail("cannot rename " + tmp, ec) : absl::OkStatus();
}

extern "C" char** environ;  // NOLINT(readability-redundant-declaration): for posix_spawnp

// Runs patchelf with `args`; its standard output in *out. The error says what to install.
absl::Status Patchelf(const std::vector<std::string>& args, std::string* out = nullptr) {
  std::vector<std::string> argv_s = {"patchelf"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(argv_s.size() + 1);
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, "patchelf", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof buf)) > 0;) text.append(buf, n);
  ::close(pipe_fds[0]);
  if (rc != 0) {
    return absl::FailedPreconditionError(
        "cannot run patchelf, which lays the simulator library's dependencies out under the "
        "driver's version; install it (hack/deps.sh, Debian package patchelf)");
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string cmd = "patchelf";
    for (const std::string& a : args) absl::StrAppend(&cmd, " ", a);
    return absl::InternalError(absl::StrCat(cmd, " failed (status ", status, ")"));
  }
  if (out != nullptr) *out = std::move(text);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> Needed(const std::string& file) {
  std::string out;
  if (absl::Status s = Patchelf({"--print-needed", file}, &out); !s.ok()) return s;
  std::vector<std::string> names;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) names.push_back(line);
  }
  return names;
}

bool IsSharedRuntime(const std::string& name) {
  for (const char* prefix :
       {"libasan.", "libubsan.", "libtsan.", "liblsan.", "libstdc++.", "libgcc_s."}) {
    if (absl::StartsWith(name, prefix)) return true;
  }
  return false;
}

// A dependency's name under the driver's version, as the driver's own
// libraries are named: libabsl_strings.so.20220623 -> libgpusim_absl_strings.so.<version>.
std::string DriverName(const std::string& name, const std::string& version) {
  std::string stem = name.substr(0, name.find(".so"));
  if (absl::StartsWith(stem, "libgpusim_")) {
    stem = stem.substr(10);
  } else if (absl::StartsWith(stem, "lib")) {
    stem = stem.substr(3);
  }
  return absl::StrCat("libgpusim_", stem, ".so.", version);
}

// The simulator libraries' own dependencies (those `gpusim root` put beside
// them, not glibc's) renamed to DriverName, each with that soname, and the
// names the library and they ask for changed to match: a driver root's
// libraries are all named for its version, so what finds them by that finds
// these too (a CDI spec mounting the driver's libraries into a container).
// Every file is rewritten through a copy renamed into place, so a process
// that has one mapped keeps it. Returns the renamed dependencies' names.
absl::StatusOr<std::vector<std::string>> RenameDependencies(
    const fs::path& dir, const std::vector<std::string>& libraries, const std::string& version) {
  std::vector<std::string> files = libraries;              // the libraries, then their dependencies
  std::map<std::string, std::vector<std::string>> needed;  // file -> its deps among `files`
  for (size_t i = 0; i < files.size(); ++i) {
    absl::StatusOr<std::vector<std::string>> names = Needed((dir / files[i]).string());
    if (!names.ok()) return names.status();
    for (const std::string& n : *names) {
      std::error_code ec;
      if (!fs::exists(dir / n, ec)) continue;  // glibc's, from the system
      // The runtimes a process has one of, shared with the program under their own
      // names: a sanitizer's, and C++'s (a second libstdc++ would initialise itself
      // again beside the program's). A container's image provides C++'s.
      if (IsSharedRuntime(n)) continue;
      needed[files[i]].push_back(n);
      if (std::find(files.begin(), files.end(), n) == files.end()) files.push_back(n);
    }
  }
  std::vector<std::string> renamed;
  for (const std::string& f : files) {
    const bool is_dep = std::find(libraries.begin(), libraries.end(), f) == libraries.end();
    const std::string target = is_dep ? DriverName(f, version) : f;
    // Two runs: patchelf 0.14 mixes the two edits' strings up when given both at once.
    std::vector<std::string> replace;
    for (const std::string& n : needed[f]) {
      if (DriverName(n, version) != n) {
        replace.insert(replace.end(), {"--replace-needed", n, DriverName(n, version)});
      }
    }
    const bool set_soname = is_dep && target != f;
    if (is_dep) renamed.push_back(target);
    if (replace.empty() && !set_soname) continue;  // already laid out for this version
    std::error_code ec;
    const fs::path tmp = dir / (target + ".tmp");
    fs::copy_file(dir / f, tmp, fs::copy_options::overwrite_existing, ec);
    if (ec) return Fail("cannot copy " + (dir / f).string(), ec);
    if (!replace.empty()) {
      replace.push_back(tmp.string());
      if (absl::Status s = Patchelf(replace); !s.ok()) return s;
    }
    if (set_soname) {
      if (absl::Status s = Patchelf({"--set-soname", target, tmp.string()}); !s.ok()) return s;
    }
    fs::rename(tmp, dir / target, ec);
    if (ec) return Fail("cannot rename " + tmp.string(), ec);
    if (target != f) fs::remove(dir / f, ec);
  }
  return renamed;
}

}  // namespace

absl::Status LayDriverUserSpace(const std::string& root, const std::string& version,
                                const std::vector<std::string>& binaries,
                                const std::string& libcuda) {
  const std::string dir = root + kLibDir;
  std::error_code ec;
  // A newly built libcuda goes in at its soname, as LayoutRoot put libnvidia-ml.
  if (!libcuda.empty()) {
    const std::string at = absl::StrCat(dir, "/", kCudaSoname);
    fs::remove(at, ec);
    fs::copy_file(libcuda, at + ".tmp", fs::copy_options::overwrite_existing, ec);
    if (!ec) fs::rename(at + ".tmp", at, ec);
    if (ec) return Fail("cannot install " + at, ec);
  }
  // Each library, found as a file at its soname or through the link there, is
  // renamed for the version.
  std::vector<std::string> versioned;  // file names, one per library present
  std::vector<const Library*> present;
  for (const Library& lib : kLibraries) {
    const std::string link = absl::StrCat(dir, "/", lib.soname);
    fs::path file = link;
    if (fs::is_symlink(link, ec)) file = fs::path(dir) / fs::read_symlink(link, ec);
    if (ec || !fs::is_regular_file(file, ec)) {
      if (lib.required) {
        return absl::NotFoundError(absl::StrCat("the simulator library is not at ", link,
                                                "; lay out the root with `gpusim root`"));
      }
      continue;
    }
    const std::string name = absl::StrCat(lib.stem, version);
    if (file.filename() != name) {
      fs::rename(file, fs::path(dir) / name, ec);
      if (ec) return Fail(absl::StrCat("cannot rename ", file.string(), " to ", name), ec);
    }
    versioned.push_back(name);
    present.push_back(&lib);
  }
  absl::StatusOr<std::vector<std::string>> deps = RenameDependencies(dir, versioned, version);
  if (!deps.ok()) return deps.status();
  // The links, each replaced atomically: soname -> versioned file, dev name -> soname.
  std::vector<driver::LdCacheEntry> entries;
  auto link = [&](const std::string& name, const std::string& target) -> absl::Status {
    const std::string at = absl::StrCat(dir, "/", name);
    fs::remove(at + ".tmp", ec);
    fs::create_symlink(target, at + ".tmp", ec);
    if (!ec) fs::rename(at + ".tmp", at, ec);
    if (ec) return Fail("cannot link " + at, ec);
    entries.push_back({name, absl::StrCat(kLibDir, "/", name), driver::NativeLdCacheFlags()});
    return absl::OkStatus();
  };
  for (size_t i = 0; i < present.size(); ++i) {
    if (absl::Status s = link(present[i]->soname, versioned[i]); !s.ok()) return s;
    if (present[i]->dev_name != nullptr) {
      if (absl::Status s = link(present[i]->dev_name, present[i]->soname); !s.ok()) return s;
    }
  }
  // Another version's library files go.
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    bool ours = absl::StartsWith(name, "libgpusim_");
    bool keep = std::find(deps->begin(), deps->end(), name) != deps->end() ||
                std::find(versioned.begin(), versioned.end(), name) != versioned.end();
    for (const Library& lib : kLibraries) {
      ours = ours || absl::StartsWith(name, lib.stem);
      keep = keep || name == lib.soname || (lib.dev_name != nullptr && name == lib.dev_name);
    }
    if (ours && !keep) fs::remove(entry.path(), ec);
  }
  // The ld cache: what ldconfig would list for the driver's libraries.
  for (const std::string& d : *deps) {
    entries.push_back({d, absl::StrCat(kLibDir, "/", d), driver::NativeLdCacheFlags()});
  }
  const std::string cache = driver::WriteLdCache(entries);
  if (absl::Status s = WriteAtomically(root + "/etc/ld.so.cache", cache); !s.ok()) return s;
  // The firmware folder of this version only.
  const fs::path firmware = fs::path(root) / "lib/firmware/nvidia";
  for (const auto& entry : fs::directory_iterator(firmware, ec)) {
    if (entry.path().filename() != version) fs::remove_all(entry.path(), ec);
  }
  for (const char* name : kFirmware) {
    const std::string path = (firmware / version / name).string();
    if (absl::Status s = WriteAtomically(
            path, absl::StrCat("gpusim: a stand-in for ", name, " of driver ", version, "\n"));
        !s.ok()) {
      return s;
    }
  }
  for (const std::string& source : binaries) {
    const std::string bin = root + "/usr/bin/" + fs::path(source).filename().string();
    fs::create_directories(fs::path(bin).parent_path(), ec);
    if (!ec) fs::copy_file(source, bin + ".tmp", fs::copy_options::overwrite_existing, ec);
    if (!ec) fs::rename(bin + ".tmp", bin, ec);  // a running daemon keeps the old one
    if (ec) return Fail("cannot install " + bin, ec);
  }
  return absl::OkStatus();
}

}  // namespace gdp::sim
