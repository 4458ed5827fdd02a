// Tests of the plugin component against the kubelet stand-in, on real unix
// sockets in a short temporary directory.
#include <dirent.h>
#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_join.h"
#include "src/plugin/device_plugin_server.h"
#include "src/plugin/kubelet_watcher.h"
#include "src/plugin/plugin_manager.h"
#include "src/plugin/registrar.h"
#include "tests/kubelet_stub/kubelet_stub.h"

namespace gdp::plugin {
namespace {

using kubelet_stub::In;
using kubelet_stub::KubeletStub;
using kubelet_stub::PluginClient;
using kubelet_stub::WatchStream;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A backend whose answers are easy to predict: Allocate lists the IDs in an
// env var, PreferredAllocation takes must_include then available in order.
class TestBackend final : public ResourceBackend {
 public:
  TestBackend(std::string name, std::vector<Device> devices,
              std::map<std::string, std::vector<std::string>> gpus = {})
      : name_(std::move(name)), devices_(std::move(devices)), gpus_(std::move(gpus)) {}

  const std::string& ResourceName() const override { return name_; }
  const std::vector<Device>& Devices() const override { return devices_; }

  absl::StatusOr<ContainerAllocation> Allocate(const std::vector<std::string>& ids) const override {
    std::set<std::string> seen;
    for (const std::string& id : ids) {
      if (!Known(id))
        return absl::InvalidArgumentError("unknown device ID " + id + " for " + name_);
      if (!seen.insert(id).second)
        return absl::InvalidArgumentError("device ID " + id + " requested twice");
    }
    ContainerAllocation a;
    a.envs["TEST_VISIBLE_DEVICES"] = absl::StrJoin(ids, ",");
    a.annotations["test/resource"] = name_;
    a.mounts.push_back(Mount{"/usr/lib/test", "/host/lib/test", true});
    for (const std::string& id : ids) {
      a.devices.push_back(DeviceSpec{"/dev/" + id, "/dev/" + id, "rw"});
      a.cdi_devices.push_back("example.com/dev=" + id);
    }
    return a;
  }

  absl::StatusOr<std::vector<std::string>> PreferredAllocation(
      const std::vector<std::string>& available, const std::vector<std::string>& must_include,
      int size) const override {
    if (size < 0 || static_cast<size_t>(size) > available.size()) {
      return absl::InvalidArgumentError("allocation size " + std::to_string(size) +
                                        " exceeds the " + std::to_string(available.size()) +
                                        " available devices");
    }
    std::vector<std::string> out = must_include;
    for (const std::string& id : available) {
      if (out.size() >= static_cast<size_t>(size)) break;
      if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
    }
    return out;
  }

  std::vector<std::string> GpusBehind(const std::string& id) const override {
    auto it = gpus_.find(id);
    if (it != gpus_.end()) return it->second;
    return {id};
  }

 private:
  bool Known(const std::string& id) const {
    return std::any_of(devices_.begin(), devices_.end(),
                       [&](const Device& d) { return d.id == id; });
  }
  std::string name_;
  std::vector<Device> devices_;
  std::map<std::string, std::vector<std::string>> gpus_;
};

std::vector<Device> ThreeGpus() {
  return {Device{"GPU-a", true, 0}, Device{"GPU-b", true, 1}, Device{"GPU-c", true, std::nullopt}};
}

std::shared_ptr<const ResourceBackend> GpuBackend(std::vector<Device> devices = ThreeGpus()) {
  return std::make_shared<TestBackend>("nvidia.com/gpu", std::move(devices));
}

// Health of each device in one ListAndWatch message, by ID.
std::map<std::string, std::string> Health(const v1beta1::ListAndWatchResponse& r) {
  std::map<std::string, std::string> out;
  for (const auto& d : r.devices()) out[d.id()] = d.health();
  return out;
}

std::function<bool(const v1beta1::ListAndWatchResponse&)> HealthIs(
    std::map<std::string, std::string> want) {
  return [want](const v1beta1::ListAndWatchResponse& r) { return Health(r) == want; };
}

size_t CountEntries(const std::string& dir) {
  size_t n = 0;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  while (dirent* e = ::readdir(d)) {
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") ++n;
  }
  ::closedir(d);
  return n;
}
size_t FdCount() { return CountEntries("/proc/self/fd"); }
std::string ThreadName(const std::filesystem::path& task) {
  std::ifstream comm(task / "comm");
  std::string name;
  std::getline(comm, name);
  return name;
}
// Threads other than gRPC's process-wide pools, which grow and shrink on their
// own (event engine, executors, timers; nexting threads, were the callback API used).
// Ours are named gdp-*; test threads keep the binary's name.
size_t ThreadCount() {
  static const std::set<std::string> kGrpcPools = {"event_engine",    "default-executo",
                                                   "resolver-execut", "grpc_global_tim",
                                                   "timer_manager",   "nexting_thread"};
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    n += kGrpcPools.count(ThreadName(e.path())) == 0 ? 1 : 0;
  }
  return n;
}
std::string ThreadNames() {
  std::string out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    out += ThreadName(e.path()) + " ";
  }
  return out;
}

// Polls `pred` until it holds or the deadline passes (for state that has no
// condition variable to wait on: /proc counts, files, atomics).
bool Eventually(const std::function<bool()>& pred, milliseconds timeout = milliseconds(5000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return true;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

ino_t Inode(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// Keeps gRPC initialised for the whole run, so its global threads and fds are
// part of every baseline rather than coming and going between tests.
class GrpcEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { grpc_init(); }
  void TearDown() override { grpc_shutdown(); }
};
const auto* const kGrpcEnv = ::testing::AddGlobalTestEnvironment(new GrpcEnvironment);

class PluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gdp-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  DevicePluginServer::Options ServerOptions(milliseconds deadline = milliseconds(1000)) const {
    return DevicePluginServer::Options{dir_, deadline};
  }
  PluginManager::Options ManagerOptions() const {
    PluginManager::Options o;
    o.plugin_dir = dir_;
    o.register_timeout = milliseconds(2000);
    o.backoff_initial = milliseconds(50);
    o.backoff_max = milliseconds(400);
    return o;
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
};

// ---------------------------------------------------------------------------
// Pure helpers

TEST(SocketNameTest, DerivedFromResourceName) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"nvidia.com/gpu", "nvidia-gpu.sock"},
      {"nvidia.com/gpu.shared", "nvidia-gpu.shared.sock"},
      {"nvidia.com/mig-1g.10gb", "nvidia-mig-1g.10gb.sock"},
      {"example.org/odd name!", "example-odd-name-.sock"},
      {"gpu", "gpu.sock"},
  };
  for (const auto& [resource, want] : cases) EXPECT_EQ(SocketNameFor(resource), want) << resource;
}

TEST(ToGrpcStatusTest, KeepsCodeAndMessage) {
  const std::vector<std::pair<absl::Status, grpc::StatusCode>> cases = {
      {absl::OkStatus(), grpc::StatusCode::OK},
      {absl::InvalidArgumentError("unknown device ID x"), grpc::StatusCode::INVALID_ARGUMENT},
      {absl::NotFoundError("nf"), grpc::StatusCode::NOT_FOUND},
      {absl::UnavailableError("u"), grpc::StatusCode::UNAVAILABLE},
      {absl::InternalError("i"), grpc::StatusCode::INTERNAL},
      {absl::ResourceExhaustedError("r"), grpc::StatusCode::RESOURCE_EXHAUSTED},
  };
  for (const auto& [in, code] : cases) {
    const grpc::Status out = ToGrpcStatus(in);
    EXPECT_EQ(out.error_code(), code) << in;
    EXPECT_EQ(out.error_message(), std::string(in.message()));
  }
}

// ---------------------------------------------------------------------------
// DevicePluginServer

class ServerTest : public PluginTest {};

TEST_F(ServerTest, OptionsAndPreStart) {
  DevicePluginServer server(GpuBackend(), ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  EXPECT_EQ(server.socket_path(), Path("nvidia-gpu.sock"));
  PluginClient client(server.socket_path());
  v1beta1::DevicePluginOptions options;
  ASSERT_TRUE(client.GetOptions(&options).ok());
  EXPECT_TRUE(options.get_preferred_allocation_available());
  EXPECT_FALSE(options.pre_start_required());
  v1beta1::PreStartContainerRequest pre;
  pre.add_devices_ids("GPU-a");
  EXPECT_TRUE(client.PreStartContainer(pre).ok());
  EXPECT_FALSE(server.Start().ok()) << "a second Start must be refused";
}

TEST_F(ServerTest, ListAndWatchSendsWholeListWithTopology) {
  DevicePluginServer server(GpuBackend(), ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  PluginClient client(server.socket_path());
  auto stream = client.Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(5))));
  const auto first = stream->Updates()[0];
  ASSERT_EQ(first.devices_size(), 3);
  EXPECT_EQ(first.devices(0).id(), "GPU-a");
  EXPECT_EQ(first.devices(0).health(), "Healthy");
  ASSERT_EQ(first.devices(0).topology().nodes_size(), 1);
  EXPECT_EQ(first.devices(0).topology().nodes(0).id(), 0);
  EXPECT_EQ(first.devices(1).topology().nodes(0).id(), 1);
  EXPECT_FALSE(first.devices(2).has_topology()) << "no NUMA node known: no topology hint";
}

TEST_F(ServerTest, HealthChangeSendsNewListOnlyOnRealChange) {
  DevicePluginServer server(GpuBackend(), ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  PluginClient client(server.socket_path());
  auto stream = client.Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(5))));

  server.SetUnhealthy({"GPU-b"});
  ASSERT_TRUE(stream->WaitFor(
      HealthIs({{"GPU-a", "Healthy"}, {"GPU-b", "Unhealthy"}, {"GPU-c", "Healthy"}}),
      In(seconds(5))));
  server.SetHealth({{"GPU-b", false}, {"not-a-device", false}});  // no change
  server.SetHealth({{"GPU-b", true}});                            // real change
  ASSERT_TRUE(stream->WaitForCount(3, In(seconds(5))));
  const auto updates = stream->Updates();
  ASSERT_EQ(updates.size(), 3u) << "the no-op SetHealth must not send a list";
  EXPECT_EQ(Health(updates[2]),
            (std::map<std::string, std::string>{
                {"GPU-a", "Healthy"}, {"GPU-b", "Healthy"}, {"GPU-c", "Healthy"}}));
}

TEST_F(ServerTest, BurstOfChangesEndsWithTheLatestList) {
  DevicePluginServer server(GpuBackend(), ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  PluginClient client(server.socket_path());
  auto stream = client.Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(5))));
  constexpr int kChanges = 200;
  for (int i = 0; i < kChanges; ++i) server.SetHealth({{"GPU-a", i % 2 == 1}});  // ends healthy
  server.SetUnhealthy({"GPU-c"});
  const auto want = HealthIs({{"GPU-a", "Healthy"}, {"GPU-b", "Healthy"}, {"GPU-c", "Unhealthy"}});
  ASSERT_TRUE(stream->WaitFor(want, In(seconds(5))));
  EXPECT_TRUE(want(stream->Updates().back())) << "the last list sent is the current one";
  EXPECT_LE(stream->UpdateCount(), static_cast<size_t>(kChanges + 2));
  EXPECT_EQ(server.stats().list_and_watch_sends.load(), stream->UpdateCount());
}

TEST_F(ServerTest, TwentyConcurrentStreamsAllGetUpdates) {
  DevicePluginServer server(GpuBackend(), ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  PluginClient client(server.socket_path());
  std::vector<std::unique_ptr<WatchStream>> streams;
  for (int i = 0; i < 20; ++i) streams.push_back(client.Watch());
  for (auto& s : streams) ASSERT_TRUE(s->WaitForCount(1, In(seconds(5))));
  EXPECT_EQ(server.stats().open_streams.load(), 20);
  server.SetUnhealthy({"GPU-a"});
  const auto want = HealthIs({{"GPU-a", "Unhealthy"}, {"GPU-b", "Healthy"}, {"GPU-c", "Healthy"}});
  for (auto& s : streams) EXPECT_TRUE(s->WaitFor(want, In(seconds(5))));
}

// The server's own thread: one per running server, whatever the core count
// (gRPC's callback API would start its nexting_thread pool). That it sleeps
// while idle is checked on the daemon (tests/integration/daemon_test.cc): in
// this process the client's connection shares gRPC's poller with it.
std::vector<std::filesystem::path> ThreadsNamed(const std::string& name) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    if (ThreadName(e.path()) == name) out.push_back(e.path());
  }
  return out;
}

TEST_F(ServerTest, OneThreadPerServer) {
  DevicePluginServer server(GpuBackend(), ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  PluginClient client(server.socket_path());
  auto stream = client.Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(5))));
  const std::vector<std::filesystem::path> threads = ThreadsNamed("gdp-grpc");
  ASSERT_EQ(threads.size(), 1U) << ThreadNames();
  EXPECT_TRUE(ThreadsNamed("nexting_thread").empty()) << ThreadNames();
  server.SetUnhealthy({"GPU-a"});
  EXPECT_TRUE(stream->WaitForCount(2, In(seconds(5))));
  server.Stop();
  // Joined; its task leaves /proc at once natively, a moment later under qemu-user (which
  // wakes the joiner before its host thread has exited).
  for (int i = 0; i < 100 && !ThreadsNamed("gdp-grpc").empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(ThreadsNamed("gdp-grpc").empty()) << ThreadNames();
}

TEST_F(ServerTest, CancelledStreamEndsPromptly) {
  DevicePluginServer server(GpuBackend(), ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  PluginClient client(server.socket_path());
  auto keep = client.Watch();
  auto stream = client.Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(5))));
  ASSERT_TRUE(keep->WaitForCount(1, In(seconds(5))));
  const auto start = std::chrono::steady_clock::now();
  stream->Cancel();
  ASSERT_TRUE(stream->WaitFinished(In(seconds(2))));
  EXPECT_EQ(stream->status().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(
      Eventually([&] { return server.stats().open_streams.load() == 1; }, milliseconds(1000)));
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1000));
  // The other stream still works.
  server.SetUnhealthy({"GPU-c"});
  EXPECT_TRUE(keep->WaitForCount(2, In(seconds(5))));
}

TEST_F(ServerTest, AllocateAnswersPerContainer) {
  DevicePluginServer server(GpuBackend(), ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  PluginClient client(server.socket_path());
  v1beta1::AllocateResponse resp;
  ASSERT_TRUE(
      client.Allocate(PluginClient::AllocateRequestFor({{"GPU-a", "GPU-b"}, {"GPU-c"}}), &resp)
          .ok());
  ASSERT_EQ(resp.container_responses_size(), 2);
  const auto& c0 = resp.container_responses(0);
  EXPECT_EQ(c0.envs().at("TEST_VISIBLE_DEVICES"), "GPU-a,GPU-b");
  EXPECT_EQ(c0.annotations().at("test/resource"), "nvidia.com/gpu");
  ASSERT_EQ(c0.mounts_size(), 1);
  EXPECT_EQ(c0.mounts(0).container_path(), "/usr/lib/test");
  EXPECT_EQ(c0.mounts(0).host_path(), "/host/lib/test");
  EXPECT_TRUE(c0.mounts(0).read_only());
  ASSERT_EQ(c0.devices_size(), 2);
  EXPECT_EQ(c0.devices(1).container_path(), "/dev/GPU-b");
  EXPECT_EQ(c0.devices(1).permissions(), "rw");
  ASSERT_EQ(c0.cdi_devices_size(), 2);
  EXPECT_EQ(c0.cdi_devices(0).name(), "example.com/dev=GPU-a");
  EXPECT_EQ(resp.container_responses(1).envs().at("TEST_VISIBLE_DEVICES"), "GPU-c");
  EXPECT_EQ(server.stats().allocate_calls.load(), 1u);
  EXPECT_EQ(server.stats().allocate_errors.load(), 0u);
  uint64_t in_buckets = 0;
  for (const auto& b : server.stats().allocate_latency_buckets) in_buckets += b.load();
  EXPECT_EQ(in_buckets, 1u);  // a local Allocate takes well under the last bound (1 s)
}

TEST_F(ServerTest, AllocateErrorsAreInvalidArgument) {
  DevicePluginServer server(GpuBackend(), ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  PluginClient client(server.socket_path());
  struct Case {
    std::string name;
    v1beta1::AllocateRequest req;
    std::string message_has;
  };
  const std::vector<Case> cases = {
      {"unknown ID", PluginClient::AllocateRequestFor({{"GPU-a"}, {"GPU-zzz"}}), "GPU-zzz"},
      {"duplicate ID", PluginClient::AllocateRequestFor({{"GPU-a", "GPU-a"}}), "GPU-a"},
      {"no containers", v1beta1::AllocateRequest(), "no container_requests"},
  };
  for (const Case& c : cases) {
    v1beta1::AllocateResponse resp;
    const grpc::Status s = client.Allocate(c.req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_NE(s.error_message().find(c.message_has), std::string::npos)
        << c.name << ": " << s.error_message();
  }
  EXPECT_EQ(server.stats().allocate_calls.load(), 3u);
  EXPECT_EQ(server.stats().allocate_errors.load(), 3u);
}

TEST_F(ServerTest, GetPreferredAllocationPassesThrough) {
  DevicePluginServer server(GpuBackend(), ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  PluginClient client(server.socket_path());
  v1beta1::PreferredAllocationRequest req;
  auto* c0 = req.add_container_requests();
  for (const char* id : {"GPU-a", "GPU-b", "GPU-c"}) c0->add_available_deviceids(id);
  c0->add_must_include_deviceids("GPU-c");
  c0->set_allocation_size(2);
  auto* c1 = req.add_container_requests();
  c1->add_available_deviceids("GPU-b");
  c1->set_allocation_size(1);
  v1beta1::PreferredAllocationResponse resp;
  ASSERT_TRUE(client.GetPreferredAllocation(req, &resp).ok());
  ASSERT_EQ(resp.container_responses_size(), 2);
  EXPECT_EQ(std::vector<std::string>(resp.container_responses(0).deviceids().begin(),
                                     resp.container_responses(0).deviceids().end()),
            (std::vector<std::string>{"GPU-c", "GPU-a"}));
  EXPECT_EQ(resp.container_responses(1).deviceids(0), "GPU-b");

  c1->set_allocation_size(5);
  const grpc::Status s = client.GetPreferredAllocation(req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("exceeds"), std::string::npos) << s.error_message();
  EXPECT_EQ(server.stats().preferred_allocation_calls.load(), 2u);
  EXPECT_EQ(server.stats().preferred_allocation_errors.load(), 1u);
}

TEST_F(ServerTest, StopEndsStreamsAtOnceAndRemovesSocket) {
  // A long shutdown deadline: Stop must not need it, it ends streams itself.
  DevicePluginServer server(GpuBackend(), ServerOptions(milliseconds(10000)));
  ASSERT_TRUE(server.Start().ok());
  PluginClient client(server.socket_path());
  std::vector<std::unique_ptr<WatchStream>> streams;
  for (int i = 0; i < 5; ++i) streams.push_back(client.Watch());
  for (auto& s : streams) ASSERT_TRUE(s->WaitForCount(1, In(seconds(5))));
  const auto start = std::chrono::steady_clock::now();
  server.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(2000));
  for (auto& s : streams) EXPECT_TRUE(s->WaitFinished(In(seconds(2))));
  EXPECT_FALSE(Exists(server.socket_path()));
  EXPECT_FALSE(server.running());
  EXPECT_EQ(server.stats().open_streams.load(), 0);
}

TEST_F(ServerTest, RestartKeepsHealthAndReplacesStaleSocket) {
  DevicePluginServer server(GpuBackend(), ServerOptions());
  // A stale file where the socket goes (a crashed previous run).
  std::ofstream(server.socket_path()) << "stale";
  ASSERT_TRUE(server.Start().ok());
  server.SetUnhealthy({"GPU-a"});
  server.Stop();
  ASSERT_TRUE(server.Start().ok());
  PluginClient client(server.socket_path());
  auto stream = client.Watch();
  EXPECT_TRUE(stream->WaitFor(
      HealthIs({{"GPU-a", "Unhealthy"}, {"GPU-b", "Healthy"}, {"GPU-c", "Healthy"}}),
      In(seconds(5))));
}

TEST_F(ServerTest, StartFailsWithReasonWhenDirectoryMissing) {
  DevicePluginServer server(GpuBackend(),
                            DevicePluginServer::Options{dir_ + "/missing", milliseconds(100)});
  const absl::Status s = server.Start();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("missing"), absl::string_view::npos) << s;
}

// ---------------------------------------------------------------------------
// Registrar

class RegistrarTest : public PluginTest {
 protected:
  Registrar::Options Options() const {
    return Registrar::Options{dir_, "kubelet.sock", milliseconds(2000), milliseconds(10),
                              milliseconds(100)};
  }
};

TEST_F(RegistrarTest, SendsTheKubeletsRequest) {
  KubeletStub kubelet(dir_);
  ASSERT_TRUE(kubelet.Start().ok());
  Registrar registrar("nvidia.com/gpu", "nvidia-gpu.sock", Options());
  ASSERT_TRUE(registrar.TryRegister().ok());
  const auto req = kubelet.LastRegistration("nvidia.com/gpu");
  EXPECT_EQ(req.version(), "v1beta1");
  EXPECT_EQ(req.endpoint(), "nvidia-gpu.sock");
  EXPECT_EQ(req.resource_name(), "nvidia.com/gpu");
  EXPECT_TRUE(req.options().get_preferred_allocation_available());
  EXPECT_FALSE(req.options().pre_start_required());
}

TEST_F(RegistrarTest, FailuresSayWhyAndBackOff) {
  Registrar registrar("nvidia.com/gpu", "nvidia-gpu.sock", Options());
  absl::Status s = registrar.TryRegister();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("kubelet.sock not found at " + dir_), absl::string_view::npos) << s;
  EXPECT_GT(registrar.NextDelay().count(), 0);

  KubeletStub kubelet(dir_);
  ASSERT_TRUE(kubelet.Start().ok());
  kubelet.SetRegisterResponse(
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unsupported version"));
  s = registrar.TryRegister();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("unsupported version"), absl::string_view::npos) << s;

  kubelet.SetRegisterResponse(grpc::Status::OK);
  EXPECT_TRUE(registrar.TryRegister().ok());
  EXPECT_EQ(registrar.NextDelay().count(), 0) << "success resets the backoff";
}

// ---------------------------------------------------------------------------
// KubeletWatcher

TEST_F(PluginTest, WatcherReportsKubeletSocketAndRemovedSockets) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<KubeletWatcher::Event, std::string>> events;
  KubeletWatcher watcher(dir_, "kubelet.sock",
                         [&](KubeletWatcher::Event e, const std::string& name) {
                           std::lock_guard lock(mu);
                           events.emplace_back(e, name);
                           cv.notify_all();
                         });
  ASSERT_TRUE(watcher.Start().ok());
  {
    DevicePluginServer server(GpuBackend(), ServerOptions());
    ASSERT_TRUE(server.Start().ok());
    KubeletStub kubelet(dir_);
    ASSERT_TRUE(kubelet.Start().ok());
    std::ofstream(Path("unrelated.txt")) << "x";
    ::unlink(Path("unrelated.txt").c_str());
    server.Stop();
  }
  std::unique_lock lock(mu);
  const bool got = cv.wait_until(lock, In(seconds(5)), [&] {
    return std::count(events.begin(), events.end(),
                      std::make_pair(KubeletWatcher::Event::kSocketRemoved,
                                     std::string("nvidia-gpu.sock"))) > 0 &&
           std::count(events.begin(), events.end(),
                      std::make_pair(KubeletWatcher::Event::kKubeletSocketCreated,
                                     std::string("kubelet.sock"))) > 0;
  });
  EXPECT_TRUE(got);
  for (const auto& [e, name] : events) EXPECT_NE(name, "unrelated.txt");
}

TEST_F(PluginTest, WatcherStartStopLeaksNoFdsOrThreads) {
  {  // warm-up
    KubeletWatcher w(dir_, "kubelet.sock", [](KubeletWatcher::Event, const std::string&) {});
    ASSERT_TRUE(w.Start().ok());
  }
  const size_t fds = FdCount();
  const size_t threads = ThreadCount();
  for (int i = 0; i < 20; ++i) {
    KubeletWatcher w(dir_, "kubelet.sock", [](KubeletWatcher::Event, const std::string&) {});
    ASSERT_TRUE(w.Start().ok());
    w.Stop();
  }
  EXPECT_EQ(FdCount(), fds);
  EXPECT_EQ(ThreadCount(), threads);
}

// ---------------------------------------------------------------------------
// PluginManager

class ManagerTest : public PluginTest {};

TEST_F(ManagerTest, RegistersEveryResource) {
  KubeletStub kubelet(dir_);
  ASSERT_TRUE(kubelet.Start().ok());
  PluginManager manager(ManagerOptions());
  ASSERT_TRUE(manager.Start().ok());
  auto shared = std::make_shared<TestBackend>(
      "nvidia.com/gpu.shared", std::vector<Device>{Device{"GPU-a::0"}, Device{"GPU-a::1"}});
  ASSERT_TRUE(manager.Apply({GpuBackend(), shared}).ok());
  ASSERT_TRUE(kubelet.WaitForRegistration("nvidia.com/gpu", In(seconds(5))));
  ASSERT_TRUE(kubelet.WaitForRegistration("nvidia.com/gpu.shared", In(seconds(5))));
  EXPECT_EQ(kubelet.LastRegistration("nvidia.com/gpu.shared").endpoint(), "nvidia-gpu.shared.sock");
  EXPECT_TRUE(Eventually([&] { return manager.AllRegistered(); }));
  EXPECT_EQ(manager.counters().registrations, 2u);

  // The endpoint the kubelet was given serves the resource.
  PluginClient client(Path(kubelet.LastRegistration("nvidia.com/gpu").endpoint()));
  v1beta1::AllocateResponse resp;
  EXPECT_TRUE(client.Allocate(PluginClient::AllocateRequestFor({{"GPU-b"}}), &resp).ok());

  EXPECT_EQ(manager.Apply({GpuBackend(), GpuBackend()}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(manager.Apply({nullptr}).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ManagerTest, RetriesUntilTheKubeletAppears) {
  PluginManager manager(ManagerOptions());
  ASSERT_TRUE(manager.Start().ok());
  ASSERT_TRUE(manager.Apply({GpuBackend()}).ok());
  ASSERT_TRUE(Eventually([&] { return manager.counters().registration_failures >= 2; }));
  EXPECT_FALSE(manager.AllRegistered());
  EXPECT_TRUE(Exists(Path("nvidia-gpu.sock"))) << "the server serves before it is registered";

  KubeletStub kubelet(dir_);
  ASSERT_TRUE(kubelet.Start().ok());
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(kubelet.WaitForRegistration("nvidia.com/gpu", In(seconds(5))));
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1000));
  EXPECT_TRUE(Eventually([&] { return manager.AllRegistered(); }));
}

TEST_F(ManagerTest, GpuHealthReachesEveryDeviceBehindIt) {
  KubeletStub kubelet(dir_);
  ASSERT_TRUE(kubelet.Start().ok());
  PluginManager manager(ManagerOptions());
  ASSERT_TRUE(manager.Start().ok());
  auto replicas = std::make_shared<TestBackend>(
      "nvidia.com/gpu",
      std::vector<Device>{Device{"GPU-a::0"}, Device{"GPU-a::1"}, Device{"GPU-b::0"}},
      std::map<std::string, std::vector<std::string>>{
          {"GPU-a::0", {"GPU-a"}}, {"GPU-a::1", {"GPU-a"}}, {"GPU-b::0", {"GPU-b"}}});
  ASSERT_TRUE(manager.Apply({replicas}).ok());
  ASSERT_TRUE(kubelet.WaitForRegistration("nvidia.com/gpu", In(seconds(5))));
  PluginClient client(Path("nvidia-gpu.sock"));
  auto stream = client.Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(5))));

  manager.SetGpuHealth("GPU-a", false);
  EXPECT_TRUE(stream->WaitFor(
      HealthIs({{"GPU-a::0", "Unhealthy"}, {"GPU-a::1", "Unhealthy"}, {"GPU-b::0", "Healthy"}}),
      In(seconds(5))));
  manager.SetGpuHealth("GPU-a", true);
  ASSERT_TRUE(stream->WaitForCount(3, In(seconds(5))));
  EXPECT_TRUE(HealthIs({{"GPU-a::0", "Healthy"}, {"GPU-a::1", "Healthy"}, {"GPU-b::0", "Healthy"}})(
      stream->Updates().back()));
  manager.SetGpuHealth("GPU-a", true);  // no change: no list
  manager.Resources();                  // the manager has handled it
  EXPECT_EQ(stream->UpdateCount(), 3u);
}

TEST_F(ManagerTest, ReRegistersQuicklyAfterKubeletRestart) {
  KubeletStub kubelet(dir_);
  ASSERT_TRUE(kubelet.Start().ok());
  PluginManager manager(ManagerOptions());
  ASSERT_TRUE(manager.Start().ok());
  ASSERT_TRUE(manager.Apply({GpuBackend()}).ok());
  ASSERT_TRUE(kubelet.WaitForRegistration("nvidia.com/gpu", In(seconds(5))));
  manager.SetGpuHealth("GPU-b", false);
  {
    PluginClient client(Path("nvidia-gpu.sock"));
    auto stream = client.Watch();
    ASSERT_TRUE(stream->WaitForCount(1, In(seconds(5))));

    // The kubelet restarts: it goes away, deletes every socket, comes back.
    kubelet.Stop(KubeletStub::StopMode::kRemoveAllSockets);
    EXPECT_TRUE(stream->WaitFinished(In(seconds(2))))
        << "the old kubelet's stream ends with the old server";
  }
  EXPECT_TRUE(Eventually([&] { return !manager.AllRegistered(); }, milliseconds(2000)));
  ASSERT_TRUE(kubelet.Start().ok());
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(kubelet.WaitForRegistration("nvidia.com/gpu", In(seconds(5)), 2));
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1000));
  EXPECT_TRUE(Eventually([&] { return manager.counters().kubelet_restarts >= 1; }));

  PluginClient client(Path("nvidia-gpu.sock"));
  auto stream = client.Watch();
  EXPECT_TRUE(stream->WaitFor(
      HealthIs({{"GPU-a", "Healthy"}, {"GPU-b", "Unhealthy"}, {"GPU-c", "Healthy"}}),
      In(seconds(5))))
      << "health survives the restart";
  v1beta1::AllocateResponse resp;
  EXPECT_TRUE(client.Allocate(PluginClient::AllocateRequestFor({{"GPU-a"}}), &resp).ok());
}

TEST_F(ManagerTest, OurSocketDeletedAloneRestartsServer) {
  KubeletStub kubelet(dir_);
  ASSERT_TRUE(kubelet.Start().ok());
  PluginManager manager(ManagerOptions());
  ASSERT_TRUE(manager.Start().ok());
  ASSERT_TRUE(manager.Apply({GpuBackend()}).ok());
  ASSERT_TRUE(kubelet.WaitForRegistration("nvidia.com/gpu", In(seconds(5))));
  ASSERT_EQ(::unlink(Path("nvidia-gpu.sock").c_str()), 0);
  ASSERT_TRUE(kubelet.WaitForRegistration("nvidia.com/gpu", In(milliseconds(1000)), 2));
  EXPECT_TRUE(Eventually([&] { return Exists(Path("nvidia-gpu.sock")); }));
  PluginClient client(Path("nvidia-gpu.sock"));
  v1beta1::DevicePluginOptions options;
  EXPECT_TRUE(client.GetOptions(&options).ok());
  // Our own socket replacement must not loop: the count settles at 2.
  manager.Resources();  // a full round of the manager's loop
  manager.Resources();
  EXPECT_EQ(kubelet.RegistrationCount("nvidia.com/gpu"), 2u);
  EXPECT_EQ(manager.counters().server_restarts, 1u);
}

TEST_F(ManagerTest, ApplyKeepsUnchangedAndReplacesChanged) {
  KubeletStub kubelet(dir_);
  ASSERT_TRUE(kubelet.Start().ok());
  PluginManager manager(ManagerOptions());
  ASSERT_TRUE(manager.Start().ok());
  auto other =
      std::make_shared<TestBackend>("example.com/thing", std::vector<Device>{Device{"t0"}});
  ASSERT_TRUE(manager.Apply({GpuBackend(), other}).ok());
  ASSERT_TRUE(kubelet.WaitForRegistration("nvidia.com/gpu", In(seconds(5))));
  ASSERT_TRUE(kubelet.WaitForRegistration("example.com/thing", In(seconds(5))));
  const ino_t gpu_inode = Inode(Path("nvidia-gpu.sock"));

  // Same resources, new backend objects with the same devices: nothing moves.
  auto other2 =
      std::make_shared<TestBackend>("example.com/thing", std::vector<Device>{Device{"t0"}});
  ASSERT_TRUE(manager.Apply({GpuBackend(), other2}).ok());
  manager.Resources();  // after the loop round that would have registered
  EXPECT_EQ(kubelet.RegistrationCount("nvidia.com/gpu"), 1u);
  EXPECT_EQ(kubelet.RegistrationCount("example.com/thing"), 1u);
  EXPECT_EQ(Inode(Path("nvidia-gpu.sock")), gpu_inode);
  EXPECT_EQ(manager.counters().registrations, 2u);

  // The GPU list changes (a GPU added, one removed): the same stream gets the
  // new list; no new socket, no new registration. A removed resource loses
  // its socket; the other keeps its registration.
  PluginClient client(Path("nvidia-gpu.sock"));
  auto stream = client.Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(5))));
  PluginClient thing_client(Path("example-thing.sock"));
  auto thing_stream = thing_client.Watch();
  ASSERT_TRUE(thing_stream->WaitForCount(1, In(seconds(5))));
  manager.SetGpuHealth("GPU-z", false);  // known before the GPU appears
  ASSERT_TRUE(manager.Apply({GpuBackend({Device{"GPU-a"}, Device{"GPU-z"}})}).ok());
  EXPECT_TRUE(
      stream->WaitFor(HealthIs({{"GPU-a", "Healthy"}, {"GPU-z", "Unhealthy"}}), In(seconds(5))))
      << "the new device arrives with its known health in the same message";
  for (const auto& update : stream->Updates()) {
    for (const auto& d : update.devices()) {
      EXPECT_FALSE(d.id() == "GPU-z" && d.health() == "Healthy") << "never flapped Healthy";
    }
  }
  EXPECT_FALSE(Exists(Path("example-thing.sock")));
  ASSERT_TRUE(thing_stream->WaitFinished(In(seconds(5))));
  EXPECT_EQ(thing_stream->Updates().back().devices_size(), 0)
      << "a resource that leaves sends an empty list before its stream ends";
  const auto resources = manager.Resources();
  ASSERT_EQ(resources.size(), 1u);
  EXPECT_EQ(resources[0].resource_name, "nvidia.com/gpu");
  EXPECT_EQ(kubelet.RegistrationCount("nvidia.com/gpu"), 1u);
  EXPECT_EQ(Inode(Path("nvidia-gpu.sock")), gpu_inode);
  EXPECT_FALSE(stream->finished());
  v1beta1::AllocateResponse resp;
  EXPECT_TRUE(client.Allocate(PluginClient::AllocateRequestFor({{"GPU-z"}}), &resp).ok());
  EXPECT_FALSE(client.Allocate(PluginClient::AllocateRequestFor({{"GPU-b"}}), &resp).ok())
      << "a device no longer listed is not handed out";
  EXPECT_EQ(kubelet.RegistrationCount("example.com/thing"), 1u);
}

TEST_F(ManagerTest, StopRemovesSocketsAndEndsStreams) {
  KubeletStub kubelet(dir_);
  ASSERT_TRUE(kubelet.Start().ok());
  auto manager = std::make_unique<PluginManager>(ManagerOptions());
  ASSERT_TRUE(manager->Start().ok());
  auto other =
      std::make_shared<TestBackend>("example.com/thing", std::vector<Device>{Device{"t0"}});
  ASSERT_TRUE(manager->Apply({GpuBackend(), other}).ok());
  ASSERT_TRUE(kubelet.WaitForRegistration("example.com/thing", In(seconds(5))));
  ASSERT_TRUE(kubelet.WaitForRegistration("nvidia.com/gpu", In(seconds(5))));
  PluginClient client(Path("nvidia-gpu.sock"));
  auto stream = client.Watch();
  ASSERT_TRUE(stream->WaitForCount(1, In(seconds(5))));
  const auto start = std::chrono::steady_clock::now();
  manager->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(2000));
  EXPECT_TRUE(stream->WaitFinished(In(seconds(2))));
  EXPECT_FALSE(Exists(Path("nvidia-gpu.sock")));
  EXPECT_FALSE(Exists(Path("example-thing.sock")));
  EXPECT_TRUE(Exists(kubelet.socket_path())) << "the kubelet's socket is not ours to remove";
  EXPECT_EQ(manager->Apply({GpuBackend()}).code(), absl::StatusCode::kFailedPrecondition);
  manager->Stop();  // idempotent
}

TEST_F(ManagerTest, StopWhileRetryingIsPrompt) {
  PluginManager manager(ManagerOptions());
  ASSERT_TRUE(manager.Start().ok());
  ASSERT_TRUE(manager.Apply({GpuBackend()}).ok());
  ASSERT_TRUE(Eventually([&] { return manager.counters().registration_failures >= 1; }));
  const auto start = std::chrono::steady_clock::now();
  manager.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1000));
  EXPECT_EQ(CountEntries(dir_), 0u);
}

// Runs `cycle` after a warm-up round and checks that fds and threads come back
// to what they were before.
void ExpectNoLeaks(const std::function<void()>& cycle, int rounds) {
  cycle();  // warm-up: gRPC's lazily created global threads and fds
  const size_t fds = FdCount();
  const size_t threads = ThreadCount();
  for (int i = 0; i < rounds; ++i) cycle();
  EXPECT_TRUE(Eventually([&] { return FdCount() <= fds; })) << "fds: " << FdCount() << " > " << fds;
  EXPECT_TRUE(Eventually([&] { return ThreadCount() <= threads; }))
      << "threads: " << ThreadCount() << " > " << threads << ": " << ThreadNames();
}

TEST_F(ManagerTest, StartStopCyclesLeakNothing) {
  KubeletStub kubelet(dir_);
  ASSERT_TRUE(kubelet.Start().ok());
  size_t expected = 0;
  ExpectNoLeaks(
      [&] {
        PluginManager manager(ManagerOptions());
        ASSERT_TRUE(manager.Start().ok());
        ASSERT_TRUE(manager.Apply({GpuBackend()}).ok());
        ASSERT_TRUE(kubelet.WaitForRegistration("nvidia.com/gpu", In(seconds(5)), ++expected));
        PluginClient client(Path("nvidia-gpu.sock"));
        auto stream = client.Watch();
        ASSERT_TRUE(stream->WaitForCount(1, In(seconds(5))));
        manager.Stop();
        ASSERT_TRUE(stream->WaitFinished(In(seconds(2))));
      },
      5);
  EXPECT_EQ(CountEntries(dir_), 1u) << "only kubelet.sock is left";
}

TEST_F(ManagerTest, TenKubeletRestartsLeakNothing) {
  KubeletStub kubelet(dir_);
  ASSERT_TRUE(kubelet.Start().ok());
  PluginManager manager(ManagerOptions());
  ASSERT_TRUE(manager.Start().ok());
  ASSERT_TRUE(manager.Apply({GpuBackend()}).ok());
  ASSERT_TRUE(kubelet.WaitForRegistration("nvidia.com/gpu", In(seconds(5))));
  ExpectNoLeaks(
      [&] {
        const size_t before = kubelet.RegistrationCount("nvidia.com/gpu");
        kubelet.Stop(KubeletStub::StopMode::kRemoveAllSockets);
        ASSERT_TRUE(Eventually([&] { return !manager.AllRegistered(); }));
        ASSERT_TRUE(kubelet.Start().ok());
        ASSERT_TRUE(kubelet.WaitForRegistration("nvidia.com/gpu", In(seconds(5)), before + 1));
        ASSERT_TRUE(Eventually([&] { return manager.AllRegistered(); }));
        PluginClient client(Path("nvidia-gpu.sock"));
        v1beta1::DevicePluginOptions options;
        ASSERT_TRUE(client.GetOptions(&options).ok());
      },
      10);
  EXPECT_GE(manager.counters().kubelet_restarts, 11u);
}

}  // namespace
}  // namespace gdp::plugin
