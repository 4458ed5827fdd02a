// Child processes for integration tests: spawn a binary with arguments and
// environment, capture its stderr+stdout in a file, wait for text to appear in
// it or for the process to exit (each with a deadline), signal it, and read its
// fd and thread counts from /proc. Not thread-safe: one test owns one Process.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace gdp::testing {

class Process {
 public:
  // Starts `argv[0]` with the given arguments; `env` entries are added to the
  // test's own environment. Output goes to `log_path`.
  Process(std::vector<std::string> argv, std::map<std::string, std::string> env,
          std::string log_path);
  ~Process();  // SIGKILLs and reaps the child if it still runs
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Everything the process printed so far.
  std::string Output() const;
  // Waits until `text` appears in the output; false at the deadline or if the
  // process exits first.
  bool WaitForOutput(const std::string& text, std::chrono::milliseconds timeout) const;
  // Waits for the process to exit; its exit code, or 128+signal, or nullopt at the deadline.
  std::optional<int> WaitForExit(std::chrono::milliseconds timeout);
  void Signal(int sig) const;
  bool Running();

  int OpenFdCount() const;
  int ThreadCount() const;
  // Threads whose name (/proc/<pid>/task/<tid>/comm) starts with `prefix`.
  int ThreadCount(const std::string& prefix) const;

 private:
  pid_t pid_ = -1;
  std::string log_path_;
  std::optional<int> exit_code_;
};

// Runs a command to completion; returns its exit code and puts its output in *out.
int RunCommand(const std::vector<std::string>& argv, std::string* out);

// A port on 127.0.0.1 that was free a moment ago.
int FreeLocalPort();

// Polls `pred` every 2 ms until it holds or the deadline passes.
template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    struct timespec ts = {0, 2'000'000};
    nanosleep(&ts, nullptr);
  }
}

}  // namespace gdp::testing
