// The process seam of the MPS supervisor: running a program to completion
// (with environment, stdin and a deadline), asking whether a process lives,
// signalling it, and preparing directories. The supervisor reads files
// through gdp::FileSystem; everything that starts or touches processes comes
// through Os, so unit tests drive it with a StrictMock
// (tests/mocks/mock_mps_os.h) and integration tests run real processes
// through PosixOs.
//
// PosixOs is stateless and thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gdp::mps {

struct Command {
  std::vector<std::string> argv;  // argv[0] is an absolute path; no PATH search
  // Added to (or replacing entries of) the caller's environment.
  std::map<std::string, std::string> env;
  std::string stdin_text;  // written to the program's stdin, which is then closed
  std::chrono::milliseconds timeout{10'000};
  bool operator==(const Command&) const = default;
};

struct CommandResult {
  int exit_code = 0;   // the exit status, or 128 + signal number
  std::string output;  // stdout and stderr, interleaved as written
};

class Os {
 public:
  virtual ~Os() = default;
  // Runs `command` until its process exits. Processes it leaves behind (a
  // daemon it forked) are not waited for, even if they hold its stdout.
  // NotFound / PermissionDenied when the program cannot be executed;
  // DeadlineExceeded (the process killed) past command.timeout.
  virtual absl::StatusOr<CommandResult> Run(const Command& command) = 0;
  // Whether `pid` is a live process (a zombie is not; one that is our child
  // is reaped).
  virtual bool ProcessAlive(int pid) = 0;
  virtual void Signal(int pid, int signal) = 0;
  // mkdir -p, mode 0755 for what it creates.
  virtual absl::Status MakeDirectories(const std::string& path) = 0;
  // Whether this process may create files in directory `path`; the error
  // names the path and the errno text.
  virtual absl::Status CheckWritable(const std::string& path) = 0;
};

class PosixOs final : public Os {
 public:
  absl::StatusOr<CommandResult> Run(const Command& command) override;
  bool ProcessAlive(int pid) override;
  void Signal(int pid, int signal) override;
  absl::Status MakeDirectories(const std::string& path) override;
  absl::Status CheckWritable(const std::string& path) override;
  // A process-wide instance; never destroyed.
  static Os& Get();
};

}  // namespace gdp::mps
