// libFuzzer target for the config parser. The input is a YAML document; its
// first byte also picks a field whose flag value is the input's first line, so
// the override decoders are fuzzed too. Besides crashes and sanitizer reports
// it checks two invariants: a config that parses also validates, and a
// rejection always says why.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/config/overrides.h"
#include "src/config/schema.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);

  absl::StatusOr<gdp::config::Config> config = gdp::config::ParseConfig(text);
  if (config.ok() && !gdp::config::Validate(*config).empty()) std::abort();
  if (!config.ok() && config.status().message().empty()) std::abort();

  std::vector<const gdp::config::detail::FieldSpec*> table;
  for (const auto& f : gdp::config::detail::Fields()) {
    if (f.flag != nullptr) table.push_back(&f);
  }
  if (size > 0) {
    const auto& spec = *table[data[0] % table.size()];
    std::string value = text.substr(
        1, text.find('\n') == std::string::npos ? std::string::npos : text.find('\n') - 1);
    config = gdp::config::ParseConfig("", {{spec.path, value, spec.flag, spec.negate}});
    if (config.ok() && !gdp::config::Validate(*config).empty()) std::abort();
    if (!config.ok() && config.status().message().empty()) std::abort();
  }
  return 0;
}
