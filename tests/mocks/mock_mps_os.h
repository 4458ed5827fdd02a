// GoogleMock of the MPS supervisor's process seam (src/mps/os.h). Use
// StrictMock<MockMpsOs> so every process the supervisor would run is expected.
#pragma once

#include <gmock/gmock.h>

#include "src/mps/os.h"

namespace gdp::mps {

class MockMpsOs : public Os {
 public:
  MOCK_METHOD(absl::StatusOr<CommandResult>, Run, (const Command& command), (override));
  MOCK_METHOD(bool, ProcessAlive, (int pid), (override));
  MOCK_METHOD(void, Signal, (int pid, int signal), (override));
  MOCK_METHOD(absl::Status, MakeDirectories, (const std::string& path), (override));
  MOCK_METHOD(absl::Status, CheckWritable, (const std::string& path), (override));
};

}  // namespace gdp::mps
