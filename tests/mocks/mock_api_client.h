// GoogleMock of kube::ApiClient for components that talk to the API server
// (node labels, node events, object watchers, doctor, kubectl-gpu). Use StrictMock so an
// unexpected request fails the test. Thread-safe as gmock mocks are.
#pragma once

#include <gmock/gmock.h>

#include "src/kube/api_client.h"

namespace gdp::kube {

class MockApiClient : public ApiClient {
 public:
  MOCK_METHOD(absl::StatusOr<nlohmann::json>, Get, (const std::string& path), (override));
  MOCK_METHOD(absl::StatusOr<nlohmann::json>, Post,
              (const std::string& path, const nlohmann::json& body), (override));
  MOCK_METHOD(absl::StatusOr<nlohmann::json>, Patch,
              (const std::string& path, PatchType type, const nlohmann::json& body,
               const PatchOptions& options),
              (override));
  MOCK_METHOD(absl::Status, Watch,
              (const std::string& path, const WatchCallback& on_event, const WatchCancel& cancel,
               std::chrono::milliseconds timeout),
              (override));
};

}  // namespace gdp::kube
