// Building error and agreement texts without streams: parts appended to a string (characters, integers
// through to_chars, booleans), shapes as "[2, 3]" and rank sets as "0-2, 5". A stream costs about a
// microsecond, what a small exchange takes, and every collective call describes itself before its agreement.
#pragma once

#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace redist::detail {

inline void append(std::string& s, std::string_view part) { s += part; }
inline void append(std::string& s, const char* part) { s += part; }
inline void append(std::string& s, const std::string& part) { s += part; }
inline void append(std::string& s, char part) { s += part; }
inline void append(std::string& s, bool part) { s += part ? "true" : "false"; }
template <std::integral T>
void append(std::string& s, T part) {
  char digits[24];
  s.append(digits, std::to_chars(digits, digits + sizeof digits, part).ptr);
}

// Every part appended in turn (appends, not operator+, which GCC 12 misreads under -Wrestrict).
template <class... Parts>
std::string str(const Parts&... parts) {
  std::string s;
  (append(s, parts), ...);
  return s;
}

inline std::string shape_text(std::span<const std::int64_t> s) {
  std::string out = "[";
  for (std::size_t d = 0; d < s.size(); ++d) {
    if (d != 0) out += ", ";
    append(out, s[d]);
  }
  return out += ']';
}

// "0-2, 5, 7-8" for ascending ranks.
inline std::string rank_ranges(const std::vector<int>& ranks) {
  std::string out;
  for (std::size_t i = 0; i < ranks.size();) {
    std::size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    append(out, ranks[i]);
    if (j > i) out += str('-', ranks[j]);
    i = j + 1;
  }
  return out;
}

// "1.50 KiB": bytes in binary units, those below 1 KiB as "812 B".
inline std::string human_bytes(std::uint64_t b) {
  if (b < 1024) return str(b, " B");
  constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(b) / 1024.0;
  std::size_t u = 0;
  while (v >= 1024.0 && u + 1 < std::size(units)) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

}  // namespace redist::detail
