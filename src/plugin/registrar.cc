#include "src/plugin/registrar.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <utility>

#include "deviceplugin/v1beta1/api.grpc.pb.h"
#include "src/common/log.h"

namespace gdp::plugin {

Registrar::Registrar(std::string resource_name, std::string endpoint, Options options)
    : resource_name_(std::move(resource_name)),
      endpoint_(std::move(endpoint)),
      options_(std::move(options)),
      backoff_(options_.backoff_initial, options_.backoff_max) {}

Registrar::~Registrar() = default;

void Registrar::Reset() {
  backoff_.Reset();
  next_delay_ = std::chrono::milliseconds(0);
}

absl::Status Registrar::TryRegister(const std::stop_token& stop) {
  const std::string kubelet = kubelet_socket_path();
  absl::Status status;
  struct stat st {};
  if (::stat(kubelet.c_str(), &st) != 0) {
    status =
        absl::UnavailableError(options_.kubelet_socket + " not found at " + options_.plugin_dir +
                               ": is the kubelet running and the plugin directory mounted?");
  } else if (!S_ISSOCK(st.st_mode)) {
    status = absl::FailedPreconditionError(kubelet + " is not a unix socket");
  } else {
    // A fresh channel per attempt: a kubelet restart leaves nothing stale.
    auto channel = grpc::CreateChannel("unix://" + kubelet, grpc::InsecureChannelCredentials());
    auto stub = v1beta1::Registration::NewStub(channel);
    v1beta1::RegisterRequest req;
    req.set_version("v1beta1");
    req.set_endpoint(endpoint_);
    req.set_resource_name(resource_name_);
    req.mutable_options()->set_get_preferred_allocation_available(true);
    req.mutable_options()->set_pre_start_required(false);
    v1beta1::Empty resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + options_.attempt_timeout);
    std::stop_callback cancel(stop, [&ctx] { ctx.TryCancel(); });
    const grpc::Status rpc = stub->Register(&ctx, req, &resp);
    if (!rpc.ok()) {
      std::string hint;
      switch (rpc.error_code()) {
        case grpc::StatusCode::UNAVAILABLE:
          hint = "; the kubelet is not accepting connections (restarting?)";
          break;
        case grpc::StatusCode::DEADLINE_EXCEEDED:
          hint = "; the kubelet did not answer in time";
          break;
        case grpc::StatusCode::CANCELLED:
          hint = "; the plugin is stopping";
          break;
        default:
          hint = "; the kubelet refused the registration (check the kubelet's log)";
          break;
      }
      status = absl::Status(static_cast<absl::StatusCode>(rpc.error_code()),
                            "Register " + resource_name_ + " with " + kubelet +
                                " failed: " + rpc.error_message() + hint);
    }
  }
  if (status.ok()) {
    log::Info("registered with the kubelet", {{"resource", resource_name_},
                                              {"endpoint", endpoint_},
                                              {"attempts", backoff_.attempts() + 1}});
    Reset();
    return status;
  }
  next_delay_ = backoff_.Next();
  if (!stop.stop_requested()) {
    log::Warn("registration failed, will retry", {{"resource", resource_name_},
                                                  {"error", std::string(status.message())},
                                                  {"retry_in_ms", next_delay_.count()}});
  }
  return status;
}

}  // namespace gdp::plugin
