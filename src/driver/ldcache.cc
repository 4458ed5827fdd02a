#include "src/driver/ldcache.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace gdp::driver {
namespace {

// glibc's sysdeps/generic/dl-cache.h.
constexpr std::string_view kOldMagic = "ld.so-1.7.0";
constexpr std::string_view kNewMagic = "glibc-ld.so.cache1.1";
// Debian's Abseil has its own string_view type; convert at the boundary.
absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }
constexpr size_t kOldHeader = 16;  // magic[11], padding, uint32 nlibs
constexpr size_t kOldEntry = 12;   // int32 flags, uint32 key, uint32 value
constexpr size_t kNewHeader =
    48;                           // magic+version[20], nlibs, len_strings, flags[4], ext, unused[3]
constexpr size_t kNewEntry = 24;  // flags, key, value, osversion, uint64 hwcap
constexpr size_t kNewAlign = 8;   // alignof(struct cache_file_new)
constexpr int32_t kFlagElfLibc6 = 0x0003;
#if defined(__aarch64__)
constexpr int32_t kFlagArch = 0x0a00;  // FLAG_AARCH64_LIB64
#else
constexpr int32_t kFlagArch = 0x0300;  // FLAG_X8664_LIB64
#endif
constexpr uint8_t kEndianLittle = 2;  // cache_file_new_flags_endian_little

uint32_t U32(std::string_view b, size_t at) {
  uint32_t v = 0;
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}

void PutU32(std::string* b, uint32_t v) { b->append(reinterpret_cast<const char*>(&v), sizeof v); }

// glibc's _dl_cache_libcmp: digits compare as numbers.
int LibCmp(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  while (i < a.size()) {
    if (digit(a[i])) {
      if (j >= b.size() || !digit(b[j])) return 1;
      uint64_t x = 0, y = 0;
      while (i < a.size() && digit(a[i])) x = x * 10 + static_cast<uint64_t>(a[i++] - '0');
      while (j < b.size() && digit(b[j])) y = y * 10 + static_cast<uint64_t>(b[j++] - '0');
      if (x != y) return x < y ? -1 : 1;
    } else if (j < b.size() && digit(b[j])) {
      return -1;
    } else if (j >= b.size() || a[i] != b[j]) {
      return j >= b.size() ? 1
                           : static_cast<unsigned char>(a[i]) - static_cast<unsigned char>(b[j]);
    } else {
      ++i, ++j;
    }
  }
  return j < b.size() ? -1 : 0;
}

}  // namespace

int32_t NativeLdCacheFlags() { return kFlagElfLibc6 | kFlagArch; }

absl::StatusOr<std::vector<LdCacheEntry>> ParseLdCache(std::string_view bytes) {
  size_t base = 0;
  if (bytes.substr(0, kOldMagic.size()) == kOldMagic) {
    // The older layout: its own table first, the current one after it.
    if (bytes.size() < kOldHeader) {
      return absl::InvalidArgumentError("ld.so.cache: cut short in its header");
    }
    const uint64_t old_libs = U32(bytes, 12);
    base = kOldHeader + old_libs * kOldEntry;
    base = (base + kNewAlign - 1) / kNewAlign * kNewAlign;
    if (base >= bytes.size() || bytes.substr(base, kNewMagic.size()) != kNewMagic) {
      return absl::InvalidArgumentError(
          "ld.so.cache: only the pre-glibc-2.3 layout, which is not read; run ldconfig under "
          "the driver root to rewrite it");
    }
  } else if (bytes.substr(0, kNewMagic.size()) != kNewMagic) {
    return absl::InvalidArgumentError(absl::StrCat("not an ld.so.cache: it starts neither with \"",
                                                   A(kNewMagic), "\" nor \"", A(kOldMagic), "\""));
  }
  if (bytes.size() < base + kNewHeader) {
    return absl::InvalidArgumentError(
        absl::StrCat("ld.so.cache: cut short in its header at offset ", base));
  }
  const uint64_t nlibs = U32(bytes, base + 20);
  const uint64_t table_end = base + kNewHeader + nlibs * kNewEntry;
  if (table_end > bytes.size()) {
    return absl::InvalidArgumentError(absl::StrCat("ld.so.cache: ", nlibs, " entries need ",
                                                   table_end, " bytes, the file has ",
                                                   bytes.size()));
  }
  auto string_at = [&](uint32_t offset, std::string* out) {
    const uint64_t at = base + static_cast<uint64_t>(offset);
    if (at >= bytes.size()) return false;
    const size_t end = bytes.find('\0', at);
    if (end == std::string_view::npos) return false;
    *out = std::string(bytes.substr(at, end - at));
    return true;
  };
  std::vector<LdCacheEntry> entries;
  entries.reserve(nlibs);
  for (uint64_t i = 0; i < nlibs; ++i) {
    const size_t at = base + kNewHeader + i * kNewEntry;
    LdCacheEntry e;
    e.flags = static_cast<int32_t>(U32(bytes, at));
    if (!string_at(U32(bytes, at + 4), &e.soname) || !string_at(U32(bytes, at + 8), &e.path)) {
      return absl::InvalidArgumentError(
          absl::StrCat("ld.so.cache: entry ", i, " at offset ", at,
                       " names a string outside the file or one without its end"));
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

std::string WriteLdCache(std::vector<LdCacheEntry> entries) {
  // ldconfig's order: names descending as _dl_cache_libcmp compares them, then flags.
  std::sort(entries.begin(), entries.end(), [](const LdCacheEntry& a, const LdCacheEntry& b) {
    const int c = LibCmp(a.soname, b.soname);
    return c != 0 ? c > 0 : a.flags > b.flags;
  });
  // Strings after the table; offsets count from the header's start.
  std::string strings;
  std::vector<std::pair<uint32_t, uint32_t>> offsets;
  const size_t strings_at = kNewHeader + entries.size() * kNewEntry;
  for (const LdCacheEntry& e : entries) {
    const auto key = static_cast<uint32_t>(strings_at + strings.size());
    strings.append(e.soname).push_back('\0');
    const auto value = static_cast<uint32_t>(strings_at + strings.size());
    strings.append(e.path).push_back('\0');
    offsets.emplace_back(key, value);
  }
  std::string out(kNewMagic);
  PutU32(&out, static_cast<uint32_t>(entries.size()));
  PutU32(&out, static_cast<uint32_t>(strings.size()));
  out.push_back(static_cast<char>(kEndianLittle));
  out.append(3, '\0');
  out.append(16, '\0');  // extension_offset (none) and unused[3]
  for (size_t i = 0; i < entries.size(); ++i) {
    PutU32(&out, static_cast<uint32_t>(entries[i].flags));
    PutU32(&out, offsets[i].first);
    PutU32(&out, offsets[i].second);
    PutU32(&out, 0);      // osversion_unused
    out.append(8, '\0');  // hwcap
  }
  return out + strings;
}

}  // namespace gdp::driver
