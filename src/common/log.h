// Structured logging: a message plus key=value fields, one line per record.
//
//   log::Info("device unhealthy", {{"device", uuid}, {"xid", 79}});
//   -> 2026-11-28T00:00:00.000Z info device unhealthy device=GPU-... xid=79
//
// Backed by spdlog; every function is thread-safe. The format (text or JSON)
// and level are process-wide and set once at start by the daemon.
#pragma once

#include <fmt/format.h>

#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace gdp::log {

enum class Level { kDebug, kInfo, kWarn, kError };
enum class Format { kText, kJson };

// One key=value pair. Any value fmt can format is accepted.
struct Field {
  template <typename T>
  Field(std::string_view k, const T& v) : key(k), value(fmt::format("{}", v)) {}
  // Debian's Abseil has its own string_view (absl::Status::message()).
  Field(std::string_view k, absl::string_view v) : key(k), value(v.data(), v.size()) {}
  std::string_view key;
  std::string value;
};

using Fields = std::initializer_list<Field>;

// Parses "debug", "info", "warn" or "error"; returns false for anything else.
bool ParseLevel(std::string_view text, Level* level);
void SetLevel(Level level);
void SetFormat(Format format);

// Renders one record without the timestamp and level (exposed for tests).
std::string Render(std::string_view message, Fields fields, Format format);

void Write(Level level, std::string_view message, Fields fields);
inline void Debug(std::string_view m, Fields f = {}) { Write(Level::kDebug, m, f); }
inline void Info(std::string_view m, Fields f = {}) { Write(Level::kInfo, m, f); }
inline void Warn(std::string_view m, Fields f = {}) { Write(Level::kWarn, m, f); }
inline void Error(std::string_view m, Fields f = {}) { Write(Level::kError, m, f); }

}  // namespace gdp::log
