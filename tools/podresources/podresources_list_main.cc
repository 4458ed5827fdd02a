// podresources-list: prints the devices the kubelet's pod-resources API (v1 List)
// reports for every container, one line each:
//   NAMESPACE/POD/CONTAINER RESOURCE ID[,ID...]
// Usage: podresources-list [SOCKET]   (default /var/lib/kubelet/pod-resources/kubelet.sock)
// Exits 1 with the error when the call fails. A test tool, single-threaded.
#include <iostream>
#include <string>

#include "absl/strings/str_join.h"
#include "src/podresources/podresources.h"

int main(int argc, char** argv) {
  gdp::podresources::GrpcPodResourcesLister lister(
      argc > 1 ? argv[1] : gdp::podresources::kDefaultSocket, std::chrono::seconds(10));
  auto assignments = lister.List();
  if (!assignments.ok()) {
    std::cerr << "podresources-list: " << assignments.status().message() << '\n';
    return 1;
  }
  for (const auto& a : *assignments) {
    std::cout << a.pod_namespace << '/' << a.pod << '/' << a.container << ' ' << a.resource_name
              << ' ' << absl::StrJoin(a.device_ids, ",") << '\n';
  }
  return 0;
}
