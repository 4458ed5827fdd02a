#include "src/labels/node_labeller.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/mocks/fake_filesystem.h"
#include "tests/mocks/mock_api_client.h"

namespace gdp::labels {
namespace {

using ::testing::_;
using ::testing::Contains;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::Invoke;
using ::testing::Pair;
using ::testing::StrictMock;
using json = nlohmann::json;
using namespace std::chrono_literals;

// Polls `pred` until it holds or 10 s pass.
bool WaitFor(const std::function<bool()>& pred) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

std::shared_ptr<const nvml::Inventory> T4x2() {
  auto inv = std::make_shared<nvml::Inventory>();
  inv->driver_version = "535.183.01";
  inv->cuda_driver_version = 12020;
  for (unsigned i = 0; i < 2; ++i) {
    nvml::Gpu g;
    g.index = i;
    g.uuid = "GPU-" + std::to_string(i);
    g.name = "Tesla T4";
    g.cuda_compute_major = 7;
    g.cuda_compute_minor = 5;
    g.memory_bytes = 15360ull << 20;
    inv->gpus.push_back(g);
  }
  return inv;
}

// Records what the labeller sent; answers with `patch_result` / `post_result`.
class Recorder {
 public:
  void Expect(StrictMock<kube::MockApiClient>& api) {
    EXPECT_CALL(api, Patch(_, _, _, _))
        .WillRepeatedly(
            Invoke([this](const std::string& path, kube::PatchType type, const json& body,
                          const kube::PatchOptions& o) -> absl::StatusOr<json> {
              std::lock_guard<std::mutex> lock(mu);
              patches.push_back({path, type, body, o});
              if (!patch_results.empty()) {
                absl::Status s = patch_results.front();
                patch_results.erase(patch_results.begin());
                if (!s.ok()) return s;
              }
              return body;
            }));
    EXPECT_CALL(api, Post(_, _))
        .WillRepeatedly(
            Invoke([this](const std::string& path, const json& body) -> absl::StatusOr<json> {
              std::lock_guard<std::mutex> lock(mu);
              posts.emplace_back(path, body);
              if (!post_results.empty()) {
                absl::Status s = post_results.front();
                post_results.erase(post_results.begin());
                if (!s.ok()) return s;
              }
              return body;
            }));
  }
  struct PatchCall {
    std::string path;
    kube::PatchType type;
    json body;
    kube::PatchOptions options;
  };
  size_t Patches() {
    std::lock_guard<std::mutex> lock(mu);
    return patches.size();
  }
  size_t Posts() {
    std::lock_guard<std::mutex> lock(mu);
    return posts.size();
  }
  PatchCall LastPatch() {
    std::lock_guard<std::mutex> lock(mu);
    return patches.back();
  }
  std::pair<std::string, json> Post(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    return posts.at(i);
  }

  std::mutex mu;
  std::vector<PatchCall> patches;
  std::vector<std::pair<std::string, json>> posts;
  std::vector<absl::Status> patch_results;
  std::vector<absl::Status> post_results;
};

LabellerOptions Options() {
  LabellerOptions o;
  o.node_name = "node-b";
  o.backoff_initial = 5ms;
  o.backoff_max = 20ms;
  o.machine_file = "/sys/class/dmi/id/product_name";
  return o;
}

class NodeLabellerTest : public ::testing::Test {
 protected:
  NodeLabellerTest() {
    fs_.AddFile("/sys/class/dmi/id/product_name", "R740\n");
    rec_.Expect(api_);
  }
  StrictMock<kube::MockApiClient> api_;
  FakeFileSystem fs_;
  Recorder rec_;
};

TEST_F(NodeLabellerTest, AppliesTheLabelsByServerSideApply) {
  NodeLabeller labeller(&api_, fs_, Options());
  auto cfg = std::make_shared<const config::Config>();
  labeller.SetConfig(cfg);
  labeller.SetInventory(T4x2());
  labeller.Start();
  ASSERT_TRUE(WaitFor([&] { return labeller.Stats().applies == 1; }));
  Recorder::PatchCall p = rec_.LastPatch();
  EXPECT_EQ(p.path, "/api/v1/nodes/node-b");
  EXPECT_EQ(p.type, kube::PatchType::kApply);
  EXPECT_EQ(p.options.field_manager, "gpu-device-plugin");
  EXPECT_TRUE(p.options.force);
  Labels want = ComputeLabels(*T4x2(), *cfg, NodeFacts{"R740", {}});
  EXPECT_EQ(p.body, (json{{"apiVersion", "v1"},
                          {"kind", "Node"},
                          {"metadata", {{"name", "node-b"}, {"labels", want}}}}));
  EXPECT_EQ(labeller.Applied(), want);
  labeller.Stop();
  EXPECT_EQ(rec_.Patches(), 1u);  // nothing changed: one apply
}

TEST_F(NodeLabellerTest, WaitsForBothInputs) {
  NodeLabeller labeller(&api_, fs_, Options());
  labeller.Start();
  labeller.SetInventory(T4x2());
  std::this_thread::sleep_for(30ms);  // give it the chance to act wrongly
  EXPECT_EQ(rec_.Patches(), 0u);
  labeller.SetConfig(std::make_shared<const config::Config>());
  ASSERT_TRUE(WaitFor([&] { return labeller.Stats().applies == 1; }));
}

TEST_F(NodeLabellerTest, RetriesWithBackoffWhileTheApiServerIsAway) {
  rec_.patch_results = {absl::UnavailableError("connection refused"),
                        absl::UnavailableError("connection refused"),
                        absl::PermissionDeniedError("forbidden")};
  NodeLabeller labeller(&api_, fs_, Options());
  labeller.SetConfig(std::make_shared<const config::Config>());
  labeller.SetInventory(T4x2());
  labeller.Start();
  ASSERT_TRUE(WaitFor([&] { return labeller.Stats().applies == 1; }));
  EXPECT_EQ(labeller.Stats().apply_failures, 3u);
  EXPECT_EQ(rec_.Patches(), 4u);
}

TEST_F(NodeLabellerTest, ConfigChangeReappliesWithNewLabels) {
  NodeLabeller labeller(&api_, fs_, Options());
  labeller.SetConfig(std::make_shared<const config::Config>());
  labeller.SetInventory(T4x2());
  labeller.Start();
  ASSERT_TRUE(WaitFor([&] { return labeller.Stats().applies == 1; }));
  auto mixed = std::make_shared<config::Config>();
  mixed->mig_strategy = config::MigStrategy::kMixed;
  labeller.SetConfig(mixed);
  ASSERT_TRUE(WaitFor([&] { return labeller.Stats().applies == 2; }));
  EXPECT_THAT(labeller.Applied(), Contains(Pair("nvidia.com/mig.strategy", "mixed")));
}

TEST_F(NodeLabellerTest, ResyncsPeriodically) {
  LabellerOptions o = Options();
  o.resync_interval = 20ms;
  NodeLabeller labeller(&api_, fs_, o);
  labeller.SetConfig(std::make_shared<const config::Config>());
  labeller.SetInventory(T4x2());
  labeller.Start();
  ASSERT_TRUE(WaitFor([&] { return labeller.Stats().applies >= 3; }));
}

TEST_F(NodeLabellerTest, HealthChangesUpdateLabelsAndRecordEvents) {
  NodeLabeller labeller(&api_, fs_, Options());
  labeller.SetConfig(std::make_shared<const config::Config>());
  labeller.SetInventory(T4x2());
  labeller.Start();
  ASSERT_TRUE(WaitFor([&] { return labeller.Stats().applies == 1; }));

  labeller.OnHealthChanged({"GPU-1", false, "XID 79: GPU has fallen off the bus"});
  ASSERT_TRUE(WaitFor(
      [&] { return labeller.Stats().events_posted == 1 && labeller.Stats().applies == 2; }));
  EXPECT_THAT(labeller.Applied(), Contains(Pair("nvidia.com/gpu.unhealthy-count", "1")));
  auto [path, event] = rec_.Post(0);
  EXPECT_EQ(path, "/api/v1/namespaces/default/events");
  EXPECT_EQ(event["reason"], "GpuXid");
  EXPECT_EQ(event["type"], "Warning");
  EXPECT_EQ(event["message"],
            "GPU 1 (GPU-1, Tesla T4) is unhealthy: XID 79: GPU has fallen off the bus");
  EXPECT_EQ(event["involvedObject"],
            (json{{"apiVersion", "v1"}, {"kind", "Node"}, {"name", "node-b"}, {"uid", "node-b"}}));

  labeller.OnHealthChanged({"GPU-1", false, "GPU is lost"});
  labeller.OnHealthChanged({"GPU-1", true, "recovered: answers NVML again"});
  ASSERT_TRUE(WaitFor([&] { return labeller.Stats().events_posted == 3; }));
  EXPECT_EQ(rec_.Post(1).second["reason"], "GpuLost");
  EXPECT_EQ(rec_.Post(2).second["reason"], "GpuRecovered");
  EXPECT_EQ(rec_.Post(2).second["type"], "Normal");
  ASSERT_TRUE(WaitFor([&] {
    Labels l = labeller.Applied();
    return l["nvidia.com/gpu.unhealthy-count"] == "0";
  }));
}

TEST_F(NodeLabellerTest, TransientEventFailuresAreRetriedPermanentOnesDropped) {
  rec_.post_results = {absl::UnavailableError("down"), absl::InvalidArgumentError("bad event")};
  NodeLabeller labeller(&api_, fs_, Options());
  labeller.SetConfig(std::make_shared<const config::Config>());
  labeller.SetInventory(T4x2());
  labeller.Start();
  labeller.OnHealthChanged({"GPU-0", false, "XID 48: Double Bit ECC Error"});
  // down (retried), then refused for good (dropped).
  ASSERT_TRUE(WaitFor([&] { return labeller.Stats().events_dropped == 1; }));
  EXPECT_EQ(labeller.Stats().event_failures, 2u);
  EXPECT_EQ(labeller.Stats().events_posted, 0u);
  labeller.OnHealthChanged({"GPU-0", true, "recovered"});
  ASSERT_TRUE(WaitFor([&] { return labeller.Stats().events_posted == 1; }));
  EXPECT_EQ(rec_.Posts(), 3u);
}

TEST_F(NodeLabellerTest, EventsOffPostsNothing) {
  LabellerOptions o = Options();
  o.events = false;
  NodeLabeller labeller(&api_, fs_, o);
  labeller.SetConfig(std::make_shared<const config::Config>());
  labeller.SetInventory(T4x2());
  labeller.Start();
  labeller.OnHealthChanged({"GPU-0", false, "XID 48: Double Bit ECC Error"});
  ASSERT_TRUE(WaitFor([&] { return labeller.Applied()["nvidia.com/gpu.unhealthy-count"] == "1"; }));
  EXPECT_EQ(rec_.Posts(), 0u);
}

TEST_F(NodeLabellerTest, FullEventQueueDropsTheOldest) {
  rec_.post_results.assign(1000, absl::UnavailableError("down"));
  LabellerOptions o = Options();
  o.max_queued_events = 2;
  o.backoff_initial = 10s;  // the first failure parks the queue
  o.backoff_max = 10s;
  NodeLabeller labeller(&api_, fs_, o);
  labeller.Start();
  for (int i = 0; i < 5; ++i) labeller.OnHealthChanged({"GPU-0", i % 2 == 1, "x"});
  ASSERT_TRUE(WaitFor([&] { return labeller.Stats().events_dropped >= 3; }));
  const auto start = std::chrono::steady_clock::now();
  labeller.Stop();  // promptly, although a retry is 10 s away
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(NodeLabellerNfdTest, WritesTheFeatureFileInsteadOfTheNode) {
  FakeFileSystem fs;
  LabellerOptions o = Options();
  o.nfd_feature_file = "/etc/kubernetes/node-feature-discovery/features.d/gpu";
  o.events = false;
  NodeLabeller labeller(nullptr, fs, o);
  auto cfg = std::make_shared<const config::Config>();
  labeller.SetConfig(cfg);
  labeller.SetInventory(T4x2());
  labeller.Start();
  ASSERT_TRUE(WaitFor([&] { return labeller.Stats().applies == 1; }));
  auto text = fs.ReadFile(o.nfd_feature_file);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, FeatureFile(ComputeLabels(*T4x2(), *cfg, {})));
  EXPECT_THAT(*text, HasSubstr("nvidia.com/gpu.product=Tesla-T4\n"));
  labeller.OnHealthChanged({"GPU-0", false, "XID 79: GPU has fallen off the bus"});
  ASSERT_TRUE(WaitFor([&] {
    auto t = fs.ReadFile(o.nfd_feature_file);
    return t.ok() && t->find("nvidia.com/gpu.unhealthy-count=1\n") != std::string::npos;
  }));
}

TEST(MakeEventTest, CoreV1EventForTheNode) {
  auto when = std::chrono::system_clock::from_time_t(1795000000);
  json e = NodeLabeller::MakeEvent("n1", "default", "GpuXid", "Warning", "msg", when);
  EXPECT_EQ(e["metadata"]["namespace"], "default");
  EXPECT_THAT(e["metadata"]["name"].get<std::string>(), HasSubstr("n1."));
  EXPECT_EQ(e["firstTimestamp"], "2026-11-18T11:06:40Z");
  EXPECT_EQ(e["lastTimestamp"], e["firstTimestamp"]);
  EXPECT_EQ(e["count"], 1);
  EXPECT_EQ(e["source"], (json{{"component", "gpu-device-plugin"}, {"host", "n1"}}));
}

TEST(OptionsFromConfigTest, CopiesTheLabelsBlock) {
  config::LabelsConfig c;
  c.node_name = "n";
  c.nfd_feature_file = "/f";
  c.events = false;
  c.resync_interval = std::chrono::seconds(7);
  LabellerOptions o = OptionsFromConfig(c);
  EXPECT_EQ(o.node_name, "n");
  EXPECT_EQ(o.nfd_feature_file, "/f");
  EXPECT_FALSE(o.events);
  EXPECT_EQ(o.resync_interval, 7s);
}

}  // namespace
}  // namespace gdp::labels
