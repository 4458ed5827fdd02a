// RestConfig: where the API server is and how to authenticate to it, read from
// the pod's service account (in cluster) or from a kubeconfig file (the one
// `kubectl` uses). Plain values; every function here is stateless and
// thread-safe, and reads files only through the FileSystem it is given.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "src/common/filesystem.h"

namespace gdp::kube {

struct RestConfig {
  std::string server;  // "https://10.96.0.1:443" (no trailing slash)
  // Bearer token. When token_file is set, the file is read again before each
  // request instead (projected service-account tokens rotate about hourly).
  std::string token;
  std::string token_file;
  // Trust: PEM text (ca_data) or a PEM file (ca_file); both empty means the
  // system's trust store.
  std::string ca_data;
  std::string ca_file;
  // Client certificate authentication: PEM text or files.
  std::string client_cert_data;
  std::string client_cert_file;
  std::string client_key_data;
  std::string client_key_file;
  bool insecure_skip_tls_verify = false;
  // Per-request deadline (connect + transfer).
  std::chrono::milliseconds timeout{15000};
  // For messages: "in-cluster service account" or "kubeconfig /root/.kube/config (context kind)".
  std::string source;
};

// Looks an environment variable up; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup ProcessEnv();

inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

// The pod's service account: KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT,
// <dir>/token (re-read per request) and <dir>/ca.crt. FailedPrecondition when
// the variables are unset (not in a pod); NotFound naming the file when the
// token or CA is missing (automountServiceAccountToken: false?).
absl::StatusOr<RestConfig> InClusterConfig(const FileSystem& fs, const EnvLookup& env,
                                           const std::string& dir = kServiceAccountDir);

// A kubeconfig file: the named context (empty: current-context), its cluster
// (server, certificate-authority[-data], insecure-skip-tls-verify) and user
// (token, tokenFile, client-certificate[-data], client-key[-data]). Relative
// file names are relative to the kubeconfig's directory. exec and
// auth-provider users are refused with a message saying so.
absl::StatusOr<RestConfig> LoadKubeconfig(const FileSystem& fs, const std::string& path,
                                          const std::string& context = "");

// The kubeconfig kubectl would read: the first entry of $KUBECONFIG, else
// $HOME/.kube/config ("" when neither is known).
std::string DefaultKubeconfigPath(const EnvLookup& env);

// What the daemon uses: an explicit kubeconfig when `kubeconfig` is not empty;
// else the service account when KUBERNETES_SERVICE_HOST is set; else the
// default kubeconfig. The error says which of these was tried.
absl::StatusOr<RestConfig> LoadRestConfig(const FileSystem& fs, const EnvLookup& env,
                                          const std::string& kubeconfig);

}  // namespace gdp::kube
