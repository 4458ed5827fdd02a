// kubectl-gpu (`kubectl gpu` as a kubectl plugin): the cluster's GPUs per
// node, with capacity, allocatable, in use and unhealthy counts, and which pod
// and container hold which devices. Reads the kubeconfig kubectl reads
// ($KUBECONFIG, else ~/.kube/config; --kubeconfig and --context override).
//
//   kubectl gpu [--node NAME] [-o table|json] [--daemon-port 9101]
//               [--daemon-tls [--daemon-ca-file CA] [--daemon-token-file FILE]]
//
// Exit codes: 0 ok, 1 the API server could not be read, 2 bad usage or kubeconfig.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "absl/strings/ascii.h"
#include "src/common/filesystem.h"
#include "src/kube/openssl_api_client.h"
#include "src/kube/rest_config.h"
#include "tools/kubectl-gpu/cluster_view.h"

int main(int argc, char** argv) {
  CLI::App app{
      "kubectl gpu: GPUs per node (capacity, allocatable, in use, unhealthy) and which pod and "
      "container holds which GPU"};
  std::string kubeconfig;
  std::string context;
  std::string output = "table";
  gdp::kubectl_gpu::Options options;
  int timeout_s = 10;
  app.add_option("--kubeconfig", kubeconfig,
                 "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)");
  app.add_option("--context", context, "kubeconfig context (default: current-context)");
  app.add_option("-o,--output", output, "table or json")->check(CLI::IsMember({"table", "json"}));
  app.add_option("--node", options.node, "only this node");
  app.add_option("--daemon-port", options.daemon_port,
                 "port of gpu-device-plugin's HTTP endpoint (/allocations) on nodes without a "
                 "plugin pod naming its \"metrics\" port");
  app.add_option("--request-timeout", timeout_s, "seconds per API server request");
  gdp::kubectl_gpu::DaemonAccess access;
  std::string token_file;
  app.add_flag("--daemon-tls", access.tls,
               "the daemons serve their endpoint with TLS (metrics.tls): use https");
  app.add_option("--daemon-ca-file", access.ca_file,
                 "with --daemon-tls: verify the daemons' certificates with this CA (PEM; default: "
                 "the system's CAs)");
  app.add_flag("--daemon-insecure-skip-tls-verify", access.skip_verify,
               "with --daemon-tls: do not verify the daemons' certificates");
  app.add_option("--daemon-token-file", token_file,
                 "the daemons check callers (metrics.auth): send the bearer token in this file, "
                 "e.g. <(kubectl create token SERVICE-ACCOUNT)");
  CLI11_PARSE(app, argc, argv);

  const gdp::FileSystem& fs = gdp::PosixFileSystem::Get();
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = fs.ReadFile(token_file);
    if (!token.ok()) {
      std::cerr << "kubectl-gpu: --daemon-token-file: " << token.status().message() << '\n';
      return 2;
    }
    access.token = std::string(absl::StripAsciiWhitespace(*token));
    if (access.token.empty()) {
      std::cerr << "kubectl-gpu: --daemon-token-file: " << token_file << " is empty\n";
      return 2;
    }
    if (!access.tls) {
      std::cerr << "kubectl-gpu: --daemon-token-file needs --daemon-tls: a token is not sent "
                   "in clear text\n";
      return 2;
    }
  }
  if (kubeconfig.empty()) kubeconfig = gdp::kube::DefaultKubeconfigPath(gdp::kube::ProcessEnv());
  if (kubeconfig.empty()) {
    std::cerr << "kubectl-gpu: no kubeconfig: set $KUBECONFIG or pass --kubeconfig\n";
    return 2;
  }
  absl::StatusOr<gdp::kube::RestConfig> rest = gdp::kube::LoadKubeconfig(fs, kubeconfig, context);
  if (!rest.ok()) {
    std::cerr << "kubectl-gpu: " << rest.status().message() << '\n';
    return 2;
  }
  rest->timeout = std::chrono::seconds(timeout_s);
  gdp::kube::OpenSslApiClient api(*std::move(rest), &fs);
  gdp::kubectl_gpu::HttpDaemonClient daemon(2, access);
  absl::StatusOr<std::vector<gdp::kubectl_gpu::NodeView>> view =
      gdp::kubectl_gpu::BuildClusterView(api, daemon, options);
  if (!view.ok()) {
    std::cerr << "kubectl-gpu: " << view.status().message() << '\n';
    return 1;
  }
  const std::string text = output == "json" ? gdp::kubectl_gpu::ToJson(*view).dump(2) + "\n"
                                            : gdp::kubectl_gpu::RenderTable(*view);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}
