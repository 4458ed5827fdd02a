// The built-in profiles: the YAML files under sim/profiles/, embedded into the
// library at build time by embed_profiles.cmake (a generated .cc holding each
// file as a raw string literal). Immutable static data; thread-safe.
#pragma once

#include <span>

namespace gdp::sim {

struct EmbeddedProfile {
  const char* name;  // file name without .yaml
  const char* yaml;
};

std::span<const EmbeddedProfile> EmbeddedProfiles();

}  // namespace gdp::sim
