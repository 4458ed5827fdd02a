#include "src/daemon/node_settings.h"

#include <poll.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace gdp::daemon {
namespace {

using ::testing::HasSubstr;

nlohmann::json Node(const std::map<std::string, std::string>& labels, const std::string& rv) {
  nlohmann::json l = nlohmann::json::object();
  for (const auto& [k, v] : labels) l[k] = v;
  return {{"metadata", {{"name", "gpu-node-0"}, {"resourceVersion", rv}, {"labels", l}}}};
}

nlohmann::json ConfigMap(const std::map<std::string, std::string>& data, const std::string& rv) {
  nlohmann::json d = nlohmann::json::object();
  for (const auto& [k, v] : data) d[k] = v;
  return {{"metadata", {{"name", "configs"}, {"resourceVersion", rv}}}, {"data", d}};
}

NodeSettingsOptions Options(bool named) {
  NodeSettingsOptions o;
  o.node_name = "gpu-node-0";
  o.deploy_label = "nvidia.com/gpu.deploy.device-plugin";
  if (named) o.named.config_map = "kube-system/configs";
  return o;
}

TEST(NodeDirectiveTest, DeployLabelPausesOnPausedAndFalseOnly) {
  for (const auto& [value, paused] :
       std::vector<std::pair<std::string, bool>>{{"paused-for-driver-upgrade", true},
                                                 {"paused-for-mig-change", true},
                                                 {"false", true},
                                                 {"true", false},
                                                 {"", false}}) {
    const NodeDirective d = DirectiveFor(
        Options(false), Node({{"nvidia.com/gpu.deploy.device-plugin", value}}, "1"), std::nullopt);
    EXPECT_EQ(d.paused, paused) << value;
    EXPECT_FALSE(d.named_configs);
  }
  NodeSettingsOptions off = Options(false);
  off.deploy_label.clear();
  EXPECT_FALSE(
      DirectiveFor(off, Node({{"nvidia.com/gpu.deploy.device-plugin", "false"}}, "1"), std::nullopt)
          .paused);
}

TEST(NodeDirectiveTest, ConfigLabelPicksANamedConfigOrSaysWhyNot) {
  const auto cm = ConfigMap({{"default", "version: v1\n"}, {"timeslice4", "ts"}}, "7");
  NodeDirective d = DirectiveFor(
      Options(true), Node({{"nvidia.com/device-plugin.config", "timeslice4"}}, "1"), cm);
  ASSERT_TRUE(d.choice.has_value());
  EXPECT_EQ(d.choice->name, "timeslice4");
  d = DirectiveFor(Options(true), Node({}, "2"), cm);
  ASSERT_TRUE(d.choice.has_value());
  EXPECT_EQ(d.choice->name, "default");
  d = DirectiveFor(Options(true), Node({{"nvidia.com/device-plugin.config", "nope"}}, "3"), cm);
  EXPECT_FALSE(d.choice.has_value());
  EXPECT_THAT(d.config_error, HasSubstr("nvidia.com/device-plugin.config=nope names no config"));
  d = DirectiveFor(Options(true), Node({}, "4"), std::nullopt);
  EXPECT_THAT(d.config_error, HasSubstr("the ConfigMap kube-system/configs does not exist"));
}

// An API server in memory: lists answer the current object, watches deliver
// the changes queued after them, and block until cancelled otherwise.
class FakeApi final : public kube::ApiClient {
 public:
  absl::StatusOr<nlohmann::json> Get(const std::string& path) override {
    std::lock_guard lock(mu_);
    nlohmann::json items = nlohmann::json::array();
    if (auto it = objects_.find(Collection(path)); it != objects_.end())
      items.push_back(it->second);
    return nlohmann::json{{"metadata", {{"resourceVersion", std::to_string(rv_)}}},
                          {"items", items}};
  }
  absl::StatusOr<nlohmann::json> Post(const std::string&, const nlohmann::json&) override {
    return absl::UnimplementedError("post");
  }
  absl::StatusOr<nlohmann::json> Patch(const std::string&, kube::PatchType, const nlohmann::json&,
                                       const kube::PatchOptions&) override {
    return absl::UnimplementedError("patch");
  }
  absl::Status Watch(const std::string& path, const WatchCallback& on_event,
                     const kube::WatchCancel& cancel, std::chrono::milliseconds) override {
    const std::string collection = Collection(path);
    for (;;) {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(20),
                   [&] { return cancel.cancelled() || !queue_[collection].empty(); });
      if (cancel.cancelled()) return absl::CancelledError("cancelled");
      while (!queue_[collection].empty()) {
        nlohmann::json obj = queue_[collection].front();
        queue_[collection].pop_front();
        lock.unlock();
        if (!on_event(kube::WatchEvent{"MODIFIED", obj})) return absl::OkStatus();
        lock.lock();
      }
    }
  }

  void Set(const std::string& collection, nlohmann::json obj) {
    {
      std::lock_guard lock(mu_);
      ++rv_;
      obj["metadata"]["resourceVersion"] = std::to_string(rv_);
      objects_[collection] = obj;
      queue_[collection].push_back(obj);
    }
    cv_.notify_all();
  }

 private:
  static std::string Collection(const std::string& path) { return path.substr(0, path.find('?')); }
  std::mutex mu_;
  std::condition_variable cv_;
  int rv_ = 1;
  std::map<std::string, nlohmann::json> objects_;
  std::map<std::string, std::deque<nlohmann::json>> queue_;
};

TEST(NodeSettingsTest, FollowsTheNodeAndTheConfigMapLive) {
  FakeApi api;
  api.Set("/api/v1/nodes", Node({}, "0"));
  api.Set("/api/v1/namespaces/kube-system/configmaps", ConfigMap({{"default", "a"}}, "0"));
  std::mutex mu;
  std::condition_variable cv;
  std::vector<NodeDirective> seen;
  NodeSettings settings(api, Options(true), [&](const NodeDirective& d) {
    {
      std::lock_guard lock(mu);
      seen.push_back(d);
    }
    cv.notify_all();
  });
  settings.Start();
  auto wait_for = [&](auto pred) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10),
                       [&] { return !seen.empty() && pred(seen.back()); });
  };
  ASSERT_TRUE(
      wait_for([](const NodeDirective& d) { return d.choice && d.choice->name == "default"; }));
  EXPECT_TRUE(settings.synced());
  // An edit of the ConfigMap alone is followed too.
  api.Set("/api/v1/namespaces/kube-system/configmaps",
          ConfigMap({{"default", "a"}, {"timeslice4", "b"}}, "0"));
  api.Set("/api/v1/nodes", Node({{"nvidia.com/device-plugin.config", "timeslice4"}}, "0"));
  ASSERT_TRUE(
      wait_for([](const NodeDirective& d) { return d.choice && d.choice->name == "timeslice4"; }));
  api.Set("/api/v1/nodes", Node({{"nvidia.com/device-plugin.config", "timeslice4"},
                                 {"nvidia.com/gpu.deploy.device-plugin", "paused-for-mig-change"}},
                                "0"));
  ASSERT_TRUE(wait_for([](const NodeDirective& d) { return d.paused; }));
  const auto start = std::chrono::steady_clock::now();
  settings.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  std::lock_guard lock(mu);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_FALSE(seen[i] == seen[i - 1]) << "no repeats";
}

}  // namespace
}  // namespace gdp::daemon
