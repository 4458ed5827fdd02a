// NVML return codes → absl::Status: the one place where NVML's error space is
// translated into the project's.
#include <string>

#include "absl/strings/str_cat.h"
#include "src/nvml/nvml_api.h"

namespace gdp::nvml {
namespace {

absl::StatusCode CodeFor(nvmlReturn_t r) {
  switch (r) {
    case NVML_SUCCESS:
      return absl::StatusCode::kOk;
    case NVML_ERROR_NOT_FOUND:
    case NVML_ERROR_GPU_NOT_FOUND:
      return absl::StatusCode::kNotFound;
    case NVML_ERROR_NO_PERMISSION:
    case NVML_ERROR_OPERATING_SYSTEM:
      return absl::StatusCode::kPermissionDenied;
    case NVML_ERROR_GPU_IS_LOST:
    case NVML_ERROR_NOT_READY:
    case NVML_ERROR_IRQ_ISSUE:
    case NVML_ERROR_INSUFFICIENT_POWER:
      return absl::StatusCode::kUnavailable;
    case NVML_ERROR_NOT_SUPPORTED:
    case NVML_ERROR_FUNCTION_NOT_FOUND:
    case NVML_ERROR_VGPU_ECC_NOT_SUPPORTED:
    case NVML_ERROR_FREQ_NOT_SUPPORTED:
    case NVML_ERROR_RESET_TYPE_NOT_SUPPORTED:
    case NVML_ERROR_DEPRECATED:
      return absl::StatusCode::kUnimplemented;
    case NVML_ERROR_UNINITIALIZED:
    case NVML_ERROR_LIBRARY_NOT_FOUND:
    case NVML_ERROR_DRIVER_NOT_LOADED:
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH:
    case NVML_ERROR_RESET_REQUIRED:
    case NVML_ERROR_CORRUPTED_INFOROM:
    case NVML_ERROR_INVALID_STATE:
      return absl::StatusCode::kFailedPrecondition;
    case NVML_ERROR_INVALID_ARGUMENT:
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH:
      return absl::StatusCode::kInvalidArgument;
    case NVML_ERROR_TIMEOUT:
      return absl::StatusCode::kDeadlineExceeded;
    case NVML_ERROR_ALREADY_INITIALIZED:
      return absl::StatusCode::kAlreadyExists;
    case NVML_ERROR_INSUFFICIENT_SIZE:
      return absl::StatusCode::kOutOfRange;
    case NVML_ERROR_IN_USE:
      return absl::StatusCode::kAborted;
    case NVML_ERROR_MEMORY:
    case NVML_ERROR_INSUFFICIENT_RESOURCES:
      return absl::StatusCode::kResourceExhausted;
    case NVML_ERROR_NO_DATA:
      return absl::StatusCode::kNotFound;
    case NVML_ERROR_UNKNOWN:
      return absl::StatusCode::kInternal;
  }
  return absl::StatusCode::kUnknown;
}

}  // namespace

const char* ReturnCodeName(nvmlReturn_t r) {
  switch (r) {
#define GDP_NVML_CASE(x) \
  case x:                \
    return #x;
    GDP_NVML_CASE(NVML_SUCCESS)
    GDP_NVML_CASE(NVML_ERROR_UNINITIALIZED)
    GDP_NVML_CASE(NVML_ERROR_INVALID_ARGUMENT)
    GDP_NVML_CASE(NVML_ERROR_NOT_SUPPORTED)
    GDP_NVML_CASE(NVML_ERROR_NO_PERMISSION)
    GDP_NVML_CASE(NVML_ERROR_ALREADY_INITIALIZED)
    GDP_NVML_CASE(NVML_ERROR_NOT_FOUND)
    GDP_NVML_CASE(NVML_ERROR_INSUFFICIENT_SIZE)
    GDP_NVML_CASE(NVML_ERROR_INSUFFICIENT_POWER)
    GDP_NVML_CASE(NVML_ERROR_DRIVER_NOT_LOADED)
    GDP_NVML_CASE(NVML_ERROR_TIMEOUT)
    GDP_NVML_CASE(NVML_ERROR_IRQ_ISSUE)
    GDP_NVML_CASE(NVML_ERROR_LIBRARY_NOT_FOUND)
    GDP_NVML_CASE(NVML_ERROR_FUNCTION_NOT_FOUND)
    GDP_NVML_CASE(NVML_ERROR_CORRUPTED_INFOROM)
    GDP_NVML_CASE(NVML_ERROR_GPU_IS_LOST)
    GDP_NVML_CASE(NVML_ERROR_RESET_REQUIRED)
    GDP_NVML_CASE(NVML_ERROR_OPERATING_SYSTEM)
    GDP_NVML_CASE(NVML_ERROR_LIB_RM_VERSION_MISMATCH)
    GDP_NVML_CASE(NVML_ERROR_IN_USE)
    GDP_NVML_CASE(NVML_ERROR_MEMORY)
    GDP_NVML_CASE(NVML_ERROR_NO_DATA)
    GDP_NVML_CASE(NVML_ERROR_VGPU_ECC_NOT_SUPPORTED)
    GDP_NVML_CASE(NVML_ERROR_INSUFFICIENT_RESOURCES)
    GDP_NVML_CASE(NVML_ERROR_FREQ_NOT_SUPPORTED)
    GDP_NVML_CASE(NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
    GDP_NVML_CASE(NVML_ERROR_DEPRECATED)
    GDP_NVML_CASE(NVML_ERROR_NOT_READY)
    GDP_NVML_CASE(NVML_ERROR_GPU_NOT_FOUND)
    GDP_NVML_CASE(NVML_ERROR_INVALID_STATE)
    GDP_NVML_CASE(NVML_ERROR_RESET_TYPE_NOT_SUPPORTED)
    GDP_NVML_CASE(NVML_ERROR_UNKNOWN)
#undef GDP_NVML_CASE
  }
  return "NVML_ERROR_UNRECOGNIZED";
}

absl::Status NvmlStatus(NvmlApi& api, nvmlReturn_t r, const std::string& call,
                        const std::string& subject) {
  if (r == NVML_SUCCESS) return absl::OkStatus();
  std::string where = subject.empty() ? call : absl::StrCat(call, "(", subject, ")");
  std::string message = absl::StrCat(where, ": ", api.ErrorString(r), " (", ReturnCodeName(r), ")");
  if (ReturnCodeName(r) == std::string_view("NVML_ERROR_UNRECOGNIZED")) {
    absl::StrAppend(&message, " code ", static_cast<int>(r));
  }
  return absl::Status(CodeFor(r), message);
}

}  // namespace gdp::nvml
