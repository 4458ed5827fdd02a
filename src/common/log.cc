#include "src/common/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>

#include <nlohmann/json.hpp>

namespace gdp::log {
namespace {

std::atomic<Format> g_format{Format::kText};

spdlog::logger& Logger() {
  static const std::shared_ptr<spdlog::logger> logger = [] {
    auto l = spdlog::stderr_logger_mt("gpu-device-plugin");
    l->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
    l->set_level(spdlog::level::info);
    l->flush_on(spdlog::level::debug);
    return l;
  }();
  return *logger;
}

bool NeedsQuotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\n' || c == '\t') return true;
  }
  return false;
}

}  // namespace

bool ParseLevel(std::string_view text, Level* level) {
  if (text == "debug")
    *level = Level::kDebug;
  else if (text == "info")
    *level = Level::kInfo;
  else if (text == "warn" || text == "warning")
    *level = Level::kWarn;
  else if (text == "error")
    *level = Level::kError;
  else
    return false;
  return true;
}

void SetLevel(Level level) {
  static constexpr spdlog::level::level_enum kMap[] = {spdlog::level::debug, spdlog::level::info,
                                                       spdlog::level::warn, spdlog::level::err};
  Logger().set_level(kMap[static_cast<int>(level)]);
}

void SetFormat(Format format) {
  g_format = format;
  if (format == Format::kJson) {
    Logger().set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})",
                         spdlog::pattern_time_type::utc);
  }
}

std::string Render(std::string_view message, Fields fields, Format format) {
  if (format == Format::kJson) {
    std::string out = "\"msg\":" + nlohmann::json(message).dump();
    for (const Field& f : fields) {
      out += "," + nlohmann::json(f.key).dump() + ":" + nlohmann::json(f.value).dump();
    }
    return out;
  }
  std::string out(message);
  for (const Field& f : fields) {
    out += ' ';
    out += f.key;
    out += '=';
    out += NeedsQuotes(f.value) ? nlohmann::json(f.value).dump() : f.value;
  }
  return out;
}

void Write(Level level, std::string_view message, Fields fields) {
  static constexpr spdlog::level::level_enum kMap[] = {spdlog::level::debug, spdlog::level::info,
                                                       spdlog::level::warn, spdlog::level::err};
  spdlog::logger& logger = Logger();
  const auto spd_level = kMap[static_cast<int>(level)];
  if (!logger.should_log(spd_level)) return;
  logger.log(spd_level, "{}", Render(message, fields, g_format.load()));
}

}  // namespace gdp::log
