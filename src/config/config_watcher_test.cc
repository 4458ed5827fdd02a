#include "src/config/config_watcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

namespace gdp::config {
namespace {

using namespace std::chrono_literals;
constexpr auto kDeadline = 10s;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/gdp-cfgw-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Writes through a temporary file and a rename, as editors and tools do.
void WriteFile(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << content;
  }
  ASSERT_EQ(rename(tmp.c_str(), path.c_str()), 0);
}

std::string WithLevel(const std::string& level) {
  return "version: v1\nlog:\n  level: " + level + "\n";
}

// Records what the callback received; waits on it with a deadline.
class Recorder {
 public:
  ConfigWatcher::Callback callback() {
    return [this](std::shared_ptr<const Config> c) {
      std::lock_guard lock(mu_);
      configs_.push_back(std::move(c));
      cv_.notify_all();
    };
  }
  // Waits until `n` configs have arrived; returns the last, or null on timeout.
  std::shared_ptr<const Config> WaitFor(size_t n) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, kDeadline, [&] { return configs_.size() >= n; })) return nullptr;
    return configs_.back();
  }
  size_t count() {
    std::lock_guard lock(mu_);
    return configs_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<const Config>> configs_;
};

// Polls a condition until it holds or the deadline passes.
template <typename F>
bool Eventually(F condition) {
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return condition();
}

std::shared_ptr<const Config> Load(const std::string& path) {
  auto c = LoadConfig(PosixFileSystem::Get(), path, {});
  EXPECT_TRUE(c.ok()) << c.status();
  return std::make_shared<const Config>(c.ok() ? *c : Config{});
}

ConfigWatcher::Options Opts(const std::string& file, bool sighup = false,
                            std::chrono::milliseconds debounce = 100ms) {
  ConfigWatcher::Options o;
  o.config_file = file;
  o.handle_sighup = sighup;
  o.debounce = debounce;
  return o;
}

TEST(ConfigWatcherTest, ValidChangeIsApplied) {
  TempDir dir;
  const std::string file = dir.path() + "/config.yaml";
  WriteFile(file, WithLevel("info"));
  Recorder rec;
  ConfigWatcher w(PosixFileSystem::Get(), Opts(file), Load(file), rec.callback());
  ASSERT_TRUE(w.Start().ok());

  WriteFile(file, WithLevel("debug"));
  auto got = rec.WaitFor(1);
  ASSERT_NE(got, nullptr) << "no reload after the file changed";
  EXPECT_EQ(got->log_level, "debug");
  EXPECT_EQ(w.current()->log_level, "debug");
  EXPECT_EQ(w.reloads_applied(), 1u);
  EXPECT_EQ(w.reloads_failed(), 0u);
}

TEST(ConfigWatcherTest, OverridesAreReappliedOnReload) {
  TempDir dir;
  const std::string file = dir.path() + "/config.yaml";
  WriteFile(file, WithLevel("info"));
  Recorder rec;
  auto opts = Opts(file);
  opts.overrides = {{"metrics.port", "0", "--metrics-port"}};
  ConfigWatcher w(PosixFileSystem::Get(), opts, Load(file), rec.callback());
  ASSERT_TRUE(w.Start().ok());
  WriteFile(file, "version: v1\nmetrics: {port: 8080}\n");
  auto got = rec.WaitFor(1);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->metrics_port, 0);  // the flag still wins
}

TEST(ConfigWatcherTest, InvalidChangeIsRejectedAndOldConfigKept) {
  TempDir dir;
  const std::string file = dir.path() + "/config.yaml";
  WriteFile(file, WithLevel("warn"));
  Recorder rec;
  ConfigWatcher w(PosixFileSystem::Get(), Opts(file), Load(file), rec.callback());
  ASSERT_TRUE(w.Start().ok());

  WriteFile(file, "version: v1\nlog: {level: loud}\nmetrics: {port: -1}\n");
  ASSERT_TRUE(Eventually([&] { return w.reloads_failed() >= 1; }));
  EXPECT_EQ(rec.count(), 0u);
  EXPECT_EQ(w.current()->log_level, "warn");
  EXPECT_EQ(w.reloads_applied(), 0u);

  // A later valid change still goes through.
  WriteFile(file, WithLevel("error"));
  auto got = rec.WaitFor(1);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->log_level, "error");
}

TEST(ConfigWatcherTest, DeletedFileIsAFailedReload) {
  TempDir dir;
  const std::string file = dir.path() + "/config.yaml";
  WriteFile(file, WithLevel("warn"));
  Recorder rec;
  ConfigWatcher w(PosixFileSystem::Get(), Opts(file), Load(file), rec.callback());
  ASSERT_TRUE(w.Start().ok());
  ASSERT_EQ(unlink(file.c_str()), 0);
  ASSERT_TRUE(Eventually([&] { return w.reloads_failed() >= 1; }));
  EXPECT_EQ(w.current()->log_level, "warn");
  EXPECT_EQ(rec.count(), 0u);
}

TEST(ConfigWatcherTest, UnchangedConfigDoesNotCallBack) {
  TempDir dir;
  const std::string file = dir.path() + "/config.yaml";
  WriteFile(file, WithLevel("info"));
  Recorder rec;
  ConfigWatcher w(PosixFileSystem::Get(), Opts(file), Load(file), rec.callback());
  ASSERT_TRUE(w.Start().ok());
  // Same meaning, different text.
  WriteFile(file, "# a comment\n" + WithLevel("info"));
  ASSERT_TRUE(Eventually([&] { return w.reloads_succeeded() >= 1; }));
  EXPECT_EQ(w.reloads_applied(), 0u);
  EXPECT_EQ(rec.count(), 0u);
}

TEST(ConfigWatcherTest, UnrelatedFilesInTheDirectoryAreIgnored) {
  TempDir dir;
  const std::string file = dir.path() + "/config.yaml";
  WriteFile(file, WithLevel("info"));
  Recorder rec;
  ConfigWatcher w(PosixFileSystem::Get(), Opts(file), Load(file), rec.callback());
  ASSERT_TRUE(w.Start().ok());
  WriteFile(dir.path() + "/other.txt", "x");
  // Then a real change: if the unrelated write had caused a reload it would be counted too.
  WriteFile(file, WithLevel("debug"));
  ASSERT_NE(rec.WaitFor(1), nullptr);
  EXPECT_EQ(w.reloads_succeeded(), 1u);
}

// Kubernetes ConfigMap volume layout: config.yaml -> ..data/config.yaml,
// ..data -> ..<timestamp>; an update writes a new timestamped directory and
// renames a new ..data symlink over the old one.
TEST(ConfigWatcherTest, ConfigMapSymlinkSwapIsDetected) {
  TempDir dir;
  const std::string& d = dir.path();
  ASSERT_EQ(mkdir((d + "/..2024_01").c_str(), 0755), 0);
  WriteFile(d + "/..2024_01/config.yaml", WithLevel("info"));
  ASSERT_EQ(symlink("..2024_01", (d + "/..data").c_str()), 0);
  ASSERT_EQ(symlink("..data/config.yaml", (d + "/config.yaml").c_str()), 0);
  const std::string file = d + "/config.yaml";

  Recorder rec;
  ConfigWatcher w(PosixFileSystem::Get(), Opts(file), Load(file), rec.callback());
  ASSERT_TRUE(w.Start().ok());

  ASSERT_EQ(mkdir((d + "/..2024_02").c_str(), 0755), 0);
  WriteFile(d + "/..2024_02/config.yaml", WithLevel("debug"));
  ASSERT_EQ(symlink("..2024_02", (d + "/..data_tmp").c_str()), 0);
  ASSERT_EQ(rename((d + "/..data_tmp").c_str(), (d + "/..data").c_str()), 0);
  std::filesystem::remove_all(d + "/..2024_01");

  auto got = rec.WaitFor(1);
  ASSERT_NE(got, nullptr) << "the ..data swap was not noticed";
  EXPECT_EQ(got->log_level, "debug");
}

// A debounce far longer than the test: only SIGHUP or Trigger can cause the reload.
TEST(ConfigWatcherTest, SighupReloads) {
  TempDir dir;
  const std::string file = dir.path() + "/config.yaml";
  WriteFile(file, WithLevel("info"));
  Recorder rec;
  ConfigWatcher w(PosixFileSystem::Get(), Opts(file, /*sighup=*/true, 1h), Load(file),
                  rec.callback());
  ASSERT_TRUE(w.Start().ok());
  WriteFile(file, WithLevel("error"));
  ASSERT_EQ(kill(getpid(), SIGHUP), 0);
  auto got = rec.WaitFor(1);
  ASSERT_NE(got, nullptr) << "SIGHUP did not reload";
  EXPECT_EQ(got->log_level, "error");
}

TEST(ConfigWatcherTest, TriggerReloads) {
  TempDir dir;
  const std::string file = dir.path() + "/config.yaml";
  WriteFile(file, WithLevel("info"));
  Recorder rec;
  ConfigWatcher w(PosixFileSystem::Get(), Opts(file, false, 1h), Load(file), rec.callback());
  ASSERT_TRUE(w.Start().ok());
  WriteFile(file, WithLevel("warn"));
  w.Trigger();
  auto got = rec.WaitFor(1);
  ASSERT_NE(got, nullptr) << "Trigger did not reload";
  EXPECT_EQ(got->log_level, "warn");
}

TEST(ConfigWatcherTest, BurstsAreDebounced) {
  TempDir dir;
  const std::string file = dir.path() + "/config.yaml";
  WriteFile(file, WithLevel("info"));
  Recorder rec;
  // Long enough that the whole burst lands inside one window even on a loaded machine.
  ConfigWatcher w(PosixFileSystem::Get(), Opts(file, false, 500ms), Load(file), rec.callback());
  ASSERT_TRUE(w.Start().ok());
  for (int i = 0; i < 20; ++i) WriteFile(file, WithLevel(i % 2 ? "warn" : "debug"));
  WriteFile(file, WithLevel("error"));
  auto got = rec.WaitFor(1);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->log_level, "error");
  EXPECT_EQ(w.reloads_succeeded(), 1u);
}

TEST(ConfigWatcherTest, StopIsPromptWithAReloadPending) {
  TempDir dir;
  const std::string file = dir.path() + "/config.yaml";
  WriteFile(file, WithLevel("info"));
  ConfigWatcher w(PosixFileSystem::Get(), Opts(file, true, 1h), Load(file), nullptr);
  ASSERT_TRUE(w.Start().ok());
  WriteFile(file, WithLevel("debug"));  // a reload now waits an hour
  const auto start = std::chrono::steady_clock::now();
  w.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 500ms);
  w.Stop();  // idempotent
  EXPECT_EQ(w.reloads_succeeded(), 0u);
}

TEST(ConfigWatcherTest, StartFailsForAMissingDirectory) {
  ConfigWatcher w(PosixFileSystem::Get(), Opts("/nonexistent/gdp/config.yaml"),
                  std::make_shared<const Config>(), nullptr);
  absl::Status s = w.Start();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), testing::HasSubstr("/nonexistent/gdp"));
}

TEST(ConfigWatcherTest, StartRefusesSighupWhenNotBlocked) {
  TempDir dir;
  const std::string file = dir.path() + "/config.yaml";
  WriteFile(file, WithLevel("info"));
  absl::Status status;
  std::thread t([&] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    ConfigWatcher w(PosixFileSystem::Get(), Opts(file, true), Load(file), nullptr);
    status = w.Start();
  });
  t.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), testing::HasSubstr("BlockSighup"));
}

}  // namespace
}  // namespace gdp::config
