// podresources-list: prints the devices the kubelet's pod-resources API (v1 List)
// reports for every container, one line each:
//   NAMESPACE/POD/CONTAINER RESOURCE ID[,ID...]
// Usage: podresources-list [SOCKET]   (default /var/lib/kubelet/pod-resources/kubelet.sock)
// Exits 1 with the gRPC status when the call fails. A test tool, single-threaded.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <iostream>
#include <string>

#include "podresources/v1/api.grpc.pb.h"

int main(int argc, char** argv) {
  const std::string socket = argc > 1 ? argv[1] : "/var/lib/kubelet/pod-resources/kubelet.sock";
  auto channel = grpc::CreateChannel("unix://" + socket, grpc::InsecureChannelCredentials());
  auto stub = v1::PodResourcesLister::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListPodResourcesRequest req;
  v1::ListPodResourcesResponse resp;
  const grpc::Status status = stub->List(&ctx, req, &resp);
  if (!status.ok()) {
    std::cerr << "podresources-list: List on " << socket << " failed: " << status.error_message()
              << " (code " << status.error_code() << "); is the kubelet running?\n";
    return 1;
  }
  for (const auto& pod : resp.pod_resources()) {
    for (const auto& c : pod.containers()) {
      for (const auto& d : c.devices()) {
        std::string ids;
        for (const auto& id : d.device_ids()) ids += (ids.empty() ? "" : ",") + id;
        std::cout << pod.namespace_() << '/' << pod.name() << '/' << c.name() << ' '
                  << d.resource_name() << ' ' << ids << '\n';
      }
    }
  }
  return 0;
}
