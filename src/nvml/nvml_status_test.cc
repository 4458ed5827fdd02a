#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "src/nvml/nvml_api.h"
#include "tests/mocks/mock_nvml.h"

namespace gdp::nvml {
namespace {

using ::testing::Return;
using ::testing::StrictMock;

struct CodeCase {
  nvmlReturn_t nvml;
  absl::StatusCode code;
};

TEST(NvmlStatusTest, MapsReturnCodesToStatusCodes) {
  const CodeCase cases[] = {
      {NVML_ERROR_NOT_FOUND, absl::StatusCode::kNotFound},
      {NVML_ERROR_NO_PERMISSION, absl::StatusCode::kPermissionDenied},
      {NVML_ERROR_GPU_IS_LOST, absl::StatusCode::kUnavailable},
      {NVML_ERROR_NOT_SUPPORTED, absl::StatusCode::kUnimplemented},
      {NVML_ERROR_FUNCTION_NOT_FOUND, absl::StatusCode::kUnimplemented},
      {NVML_ERROR_UNINITIALIZED, absl::StatusCode::kFailedPrecondition},
      {NVML_ERROR_LIBRARY_NOT_FOUND, absl::StatusCode::kFailedPrecondition},
      {NVML_ERROR_DRIVER_NOT_LOADED, absl::StatusCode::kFailedPrecondition},
      {NVML_ERROR_LIB_RM_VERSION_MISMATCH, absl::StatusCode::kFailedPrecondition},
      {NVML_ERROR_INVALID_ARGUMENT, absl::StatusCode::kInvalidArgument},
      {NVML_ERROR_TIMEOUT, absl::StatusCode::kDeadlineExceeded},
      {NVML_ERROR_INSUFFICIENT_SIZE, absl::StatusCode::kOutOfRange},
      {NVML_ERROR_MEMORY, absl::StatusCode::kResourceExhausted},
      {NVML_ERROR_UNKNOWN, absl::StatusCode::kInternal},
      {static_cast<nvmlReturn_t>(500), absl::StatusCode::kUnknown},
  };
  StrictMock<MockNvml> api;
  EXPECT_CALL(api, ErrorString).WillRepeatedly(Return("text"));
  for (const CodeCase& c : cases) {
    SCOPED_TRACE(ReturnCodeName(c.nvml));
    EXPECT_EQ(NvmlStatus(api, c.nvml, "nvmlX").code(), c.code);
  }
}

TEST(NvmlStatusTest, SuccessIsOkWithoutAskingForText) {
  StrictMock<MockNvml> api;  // no ErrorString call expected
  EXPECT_TRUE(NvmlStatus(api, NVML_SUCCESS, "nvmlInit_v2").ok());
}

TEST(NvmlStatusTest, MessageNamesCallSubjectTextAndCode) {
  StrictMock<MockNvml> api;
  EXPECT_CALL(api, ErrorString(NVML_ERROR_GPU_IS_LOST)).WillOnce(Return("GPU is lost"));
  absl::Status s = NvmlStatus(api, NVML_ERROR_GPU_IS_LOST, "nvmlDeviceGetUUID", "GPU 3");
  EXPECT_EQ(s.message(), "nvmlDeviceGetUUID(GPU 3): GPU is lost (NVML_ERROR_GPU_IS_LOST)");

  EXPECT_CALL(api, ErrorString(NVML_ERROR_UNINITIALIZED)).WillOnce(Return("Uninitialized"));
  EXPECT_EQ(NvmlStatus(api, NVML_ERROR_UNINITIALIZED, "nvmlDeviceGetCount").message(),
            "nvmlDeviceGetCount: Uninitialized (NVML_ERROR_UNINITIALIZED)");
}

TEST(NvmlStatusTest, NamesEveryCode) {
  EXPECT_STREQ(ReturnCodeName(NVML_SUCCESS), "NVML_SUCCESS");
  EXPECT_STREQ(ReturnCodeName(NVML_ERROR_FUNCTION_NOT_FOUND), "NVML_ERROR_FUNCTION_NOT_FOUND");
  EXPECT_STREQ(ReturnCodeName(NVML_ERROR_RESET_TYPE_NOT_SUPPORTED),
               "NVML_ERROR_RESET_TYPE_NOT_SUPPORTED");
  EXPECT_STREQ(ReturnCodeName(static_cast<nvmlReturn_t>(500)), "NVML_ERROR_UNRECOGNIZED");
}

}  // namespace
}  // namespace gdp::nvml
