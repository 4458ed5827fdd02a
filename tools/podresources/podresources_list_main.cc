// podresources-list: prints the devices the kubelet's pod-resources API (v1 List)
// reports for every container, one line each:
//   NAMESPACE/POD/CONTAINER RESOURCE ID[,ID...]
// Usage: podresources-list [SOCKET]   (default /var/lib/kubelet/pod-resources/kubelet.sock)
// Exits 1 with the gRPC status when the call fails. A test tool, single-threaded;
// the client is the daemon's own (src/metrics/pod_resources.h).
#include <chrono>
#include <iostream>
#include <string>

#include "src/metrics/pod_resources.h"

int main(int argc, char** argv) {
  const std::string socket = argc > 1 ? argv[1] : gdp::metrics::kDefaultPodResourcesSocket;
  gdp::metrics::GrpcPodResourcesLister lister(socket, std::chrono::seconds(10));
  auto listed = lister.List();
  if (!listed.ok()) {
    std::cerr << "podresources-list: " << listed.status().message() << "\n";
    return 1;
  }
  for (const auto& c : *listed) {
    std::string ids;
    for (const auto& id : c.device_ids) ids += (ids.empty() ? "" : ",") + id;
    std::cout << c.pod_namespace << '/' << c.pod << '/' << c.container << ' ' << c.resource_name
              << ' ' << ids << '\n';
  }
  return 0;
}
