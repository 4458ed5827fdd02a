// XID meanings: the driver's error codes that NVML reports through
// nvmlEventTypeXidCriticalError, with the descriptions NVIDIA's XID catalog
// gives them, so that health log lines and ListAndWatch reasons say what
// happened ("XID 79: GPU has fallen off the bus") rather than only a number.
//
// Pure functions over a constant table; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace gdp::health {

// NVML reports an XID it cannot decode as 999 (nvml.h, nvmlEventData_t::eventData).
inline constexpr unsigned long long kUnknownXid = 999;

// NVIDIA's description of a well-known XID, or an empty view for one the
// table does not hold.
std::string_view XidDescription(unsigned long long xid);

// "XID 79: GPU has fallen off the bus"; "XID 200" for an XID the table lacks.
std::string XidReason(unsigned long long xid);

}  // namespace gdp::health
