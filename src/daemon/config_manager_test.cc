#include "src/daemon/config_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

namespace gdp::daemon {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

nlohmann::json Node(const std::map<std::string, std::string>& labels) {
  nlohmann::json l = nlohmann::json::object();
  for (const auto& [k, v] : labels) l[k] = v;
  return {{"metadata", {{"name", "gpu-node-0"}, {"labels", l}}}};
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class ConfigManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/config-manager-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/available/..2026_12_07");  // as a ConfigMap mount has
    std::ofstream(dir_ + "/available/default") << "version: v1\n";
    std::ofstream(dir_ + "/available/ts4") << "version: v1\nsharing: {}\n";
    fs::create_directories(dir_ + "/config");
    options_.node_name = "gpu-node-0";
    options_.source_dir = dir_ + "/available";
    options_.destination = dir_ + "/config/config.yaml";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string dir_;
  ConfigManagerOptions options_;
};

TEST_F(ConfigManagerTest, TheLabelPicksTheFileThenTheDefaultAndAMissingNameKeepsTheFile) {
  ConfigManager m(options_, PosixFileSystem::Get());
  bool changed = false;
  auto c = m.Apply(Node({{"nvidia.com/device-plugin.config", "ts4"}}), &changed);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "ts4");
  EXPECT_TRUE(changed);
  EXPECT_EQ(Slurp(options_.destination), "version: v1\nsharing: {}\n");
  c = m.Apply(Node({{"nvidia.com/device-plugin.config", "ts4"}}), &changed);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(changed) << "the same file is not written again";

  c = m.Apply(Node({}), &changed);  // no label: the fallback named "default"
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "default");
  EXPECT_TRUE(changed);

  c = m.Apply(Node({{"nvidia.com/device-plugin.config", "nope"}}), &changed);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("nope"));
  EXPECT_THAT(c.status().message(), HasSubstr("ts4"));
  EXPECT_FALSE(changed);
  EXPECT_EQ(Slurp(options_.destination), "version: v1\n") << "kept";
}

TEST_F(ConfigManagerTest, NvidiasEnvironment) {
  std::map<std::string, std::string> env = {{"NODE_NAME", "n1"},
                                            {"NODE_LABEL", "example.com/config"},
                                            {"CONFIG_FILE_SRCDIR", "/src"},
                                            {"CONFIG_FILE_DST", "/dst/config.yaml"},
                                            {"DEFAULT_CONFIG", "small"},
                                            {"FALLBACK_STRATEGIES", "named,empty"},
                                            {"ONESHOT", "true"},
                                            {"SEND_SIGNAL", "true"},
                                            {"SIGNAL", "1"},
                                            {"PROCESS_TO_SIGNAL", "nvidia-device-plugin"}};
  auto lookup = [&env](const std::string& n) -> std::optional<std::string> {
    auto it = env.find(n);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  auto o = ConfigManagerOptionsFromEnv(lookup);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->label, "example.com/config");
  EXPECT_EQ(o->source_dir, "/src");
  EXPECT_EQ(o->destination, "/dst/config.yaml");
  EXPECT_EQ(o->default_name, "small");
  EXPECT_EQ(o->fallbacks.size(), 2u);
  EXPECT_TRUE(o->oneshot);
  EXPECT_TRUE(o->send_signal);
  EXPECT_EQ(o->signal, SIGHUP);
  for (const auto& [name, value, message] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"FALLBACK_STRATEGIES", "named,bogus", "FALLBACK_STRATEGIES: \"bogus\""},
           {"ONESHOT", "maybe", "ONESHOT: \"maybe\" is not a boolean"},
           {"SIGNAL", "HUP", "SIGNAL: \"HUP\" is not a signal number"},
           {"NODE_NAME", "", "NODE_NAME is not set"}}) {
    auto saved = env;
    env[name] = value;
    auto bad = ConfigManagerOptionsFromEnv(lookup);
    ASSERT_FALSE(bad.ok()) << name;
    EXPECT_THAT(bad.status().message(), HasSubstr(message));
    env = saved;
  }
}

TEST_F(ConfigManagerTest, SignalsTheProcessByItsCommandName) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execlp("sleep", "sleep", "30", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // A process table where that child runs as nvidia-device-plugin.
  const std::string proc = dir_ + "/proc";
  fs::create_directories(proc + "/" + std::to_string(child));
  fs::create_directories(proc + "/1");
  std::ofstream(proc + "/" + std::to_string(child) + "/cmdline")
      << std::string("/usr/bin/nvidia-device-plugin\0--x\0", 34);
  std::ofstream(proc + "/1/cmdline") << std::string("/sbin/init\0", 11);
  options_.proc_root = proc;
  options_.signal = SIGTERM;
  ConfigManager m(options_, PosixFileSystem::Get());
  EXPECT_EQ(m.SignalPlugin(), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
}

}  // namespace
}  // namespace gdp::daemon
