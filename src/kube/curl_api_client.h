// CurlApiClient: ApiClient over libcurl (HTTPS with the RestConfig's CA,
// bearer token or client certificate).
//
// Thread-safe: the RestConfig is immutable after construction and every
// request uses its own curl easy handle, so calls from several threads run in
// parallel. Requests block for at most RestConfig::timeout.
#pragma once

#include <memory>

#include "src/common/filesystem.h"
#include "src/kube/api_client.h"
#include "src/kube/rest_config.h"

namespace gdp::kube {

class CurlApiClient final : public ApiClient {
 public:
  // `fs` (not owned, must outlive the client) reads the token file per request.
  explicit CurlApiClient(RestConfig config, const FileSystem* fs = &PosixFileSystem::Get());

  absl::StatusOr<nlohmann::json> Get(const std::string& path) override;
  absl::StatusOr<nlohmann::json> Post(const std::string& path, const nlohmann::json& body) override;
  absl::StatusOr<nlohmann::json> Patch(const std::string& path, PatchType type,
                                       const nlohmann::json& body,
                                       const PatchOptions& options) override;

  const RestConfig& config() const { return config_; }

 private:
  absl::StatusOr<nlohmann::json> Do(const char* method, const std::string& path,
                                    const char* content_type, const std::string* body);

  const RestConfig config_;
  const FileSystem* fs_;
};

}  // namespace gdp::kube
