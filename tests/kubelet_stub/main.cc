// kubelet-stub: a kubelet stand-in on the command line. Serves Registration on
// <dir>/kubelet.sock, prints one line per RegisterRequest and, with --watch,
// opens ListAndWatch on each registered endpoint and prints every list.
// Runs until SIGINT/SIGTERM; --remove-sockets-on-exit deletes every socket in
// the directory on the way out, as a restarting kubelet does.
// --pod-resources-socket also serves the pod-resources API's List there, from
// --pod-resources-file (podresources-list's text form, re-read when it changes).
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "CLI/CLI.hpp"
#include "tests/kubelet_stub/kubelet_stub.h"
#include "tests/kubelet_stub/pod_resources_stub.h"

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
  std::string pod_resources_socket;
  std::string pod_resources_file;
  app.add_option("--pod-resources-socket", pod_resources_socket,
                 "also serve the pod-resources API (List) on this socket");
  app.add_option("--pod-resources-file", pod_resources_file,
                 "what List answers: lines NAMESPACE/POD/CONTAINER RESOURCE ID[,ID...]");
  CLI11_PARSE(app, argc, argv);

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  gdp::kubelet_stub::KubeletStub stub(dir);
  if (absl::Status s = stub.Start(); !s.ok()) {
    std::fprintf(stderr, "kubelet-stub: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::printf("listening %s\n", stub.socket_path().c_str());
  std::unique_ptr<gdp::kubelet_stub::PodResourcesStub> pod_resources;
  std::string pod_resources_text;
  auto reload_pod_resources = [&] {
    if (pod_resources == nullptr || pod_resources_file.empty()) return;
    std::ifstream in(pod_resources_file);
    std::stringstream text;
    text << in.rdbuf();
    if (text.str() == pod_resources_text) return;
    pod_resources_text = text.str();
    auto parsed = gdp::kubelet_stub::ParseAssignments(pod_resources_text);
    if (!parsed.ok()) {
      std::fprintf(stderr, "kubelet-stub: %s: %s\n", pod_resources_file.c_str(),
                   std::string(parsed.status().message()).c_str());
      return;
    }
    pod_resources->SetAssignments(*std::move(parsed));
  };
  if (!pod_resources_socket.empty()) {
    pod_resources = std::make_unique<gdp::kubelet_stub::PodResourcesStub>(pod_resources_socket);
    if (absl::Status s = pod_resources->Start(); !s.ok()) {
      std::fprintf(stderr, "kubelet-stub: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    reload_pod_resources();
    std::printf("pod-resources %s\n", pod_resources_socket.c_str());
  }
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
    reload_pod_resources();
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
  if (pod_resources != nullptr) pod_resources->Stop();
  stub.Stop(remove_sockets ? gdp::kubelet_stub::KubeletStub::StopMode::kRemoveAllSockets
                           : gdp::kubelet_stub::KubeletStub::StopMode::kKeepPluginSockets);
  return 0;
}
