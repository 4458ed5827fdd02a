// kubelet-stub: a kubelet stand-in on the command line. Serves Registration on
// <dir>/kubelet.sock, prints one line per RegisterRequest and, with --watch,
// opens ListAndWatch on each registered endpoint and prints every list.
// Runs until SIGINT/SIGTERM; --remove-sockets-on-exit deletes every socket in
// the directory on the way out, as a restarting kubelet does.
#include <csignal>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "tests/kubelet_stub/kubelet_stub.h"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

std::string Describe(const v1beta1::ListAndWatchResponse& resp) {
  std::string out;
  for (const auto& d : resp.devices()) {
    if (!out.empty()) out += ",";
    out += d.id() + "=" + d.health();
    for (const auto& n : d.topology().nodes()) out += "@numa" + std::to_string(n.id());
  }
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kubelet stand-in for device-plugin tests"};
  std::string dir = "/var/lib/kubelet/device-plugins";
  bool watch = false;
  bool remove_sockets = false;
  app.add_option("--dir", dir, "plugin directory (kubelet.sock is created there)");
  app.add_flag("--watch", watch,
               "open ListAndWatch on every registered endpoint and print the lists");
  app.add_flag("--remove-sockets-on-exit", remove_sockets, "delete every socket in --dir on exit");
  CLI11_PARSE(app, argc, argv);

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  gdp::kubelet_stub::KubeletStub stub(dir);
  if (absl::Status s = stub.Start(); !s.ok()) {
    std::fprintf(stderr, "kubelet-stub: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::printf("listening %s\n", stub.socket_path().c_str());
  std::fflush(stdout);

  struct Watched {
    std::unique_ptr<gdp::kubelet_stub::PluginClient> client;
    std::unique_ptr<gdp::kubelet_stub::WatchStream> stream;
    size_t printed = 0;
  };
  std::map<std::string, Watched> watched;  // by resource
  size_t seen = 0;
  while (!g_stop) {
    stub.WaitForTotal(seen + 1, gdp::kubelet_stub::In(std::chrono::milliseconds(100)));
    const auto regs = stub.Registrations();
    for (; seen < regs.size(); ++seen) {
      const auto& r = regs[seen];
      std::printf("register resource=%s endpoint=%s version=%s preferred_allocation=%d\n",
                  r.resource_name().c_str(), r.endpoint().c_str(), r.version().c_str(),
                  r.options().get_preferred_allocation_available());
      if (watch) {
        Watched w;
        w.client = std::make_unique<gdp::kubelet_stub::PluginClient>(dir + "/" + r.endpoint());
        w.stream = w.client->Watch();
        watched[r.resource_name()] = std::move(w);
      }
    }
    for (auto& [resource, w] : watched) {
      const auto updates = w.stream->Updates();
      for (; w.printed < updates.size(); ++w.printed) {
        std::printf("list resource=%s devices=%s\n", resource.c_str(),
                    Describe(updates[w.printed]).c_str());
      }
    }
    std::fflush(stdout);
  }
  watched.clear();
  stub.Stop(remove_sockets ? gdp::kubelet_stub::KubeletStub::StopMode::kRemoveAllSockets
                           : gdp::kubelet_stub::KubeletStub::StopMode::kKeepPluginSockets);
  return 0;
}
