// REDIST_DEBUG's values (detail/debug.hpp): which level each names, in any case, and which name none; the
// test hook overriding the cached level and restoring it; lines and figures as the debug output writes them.
#include <doctest/doctest.h>

#include <optional>
#include <string>

#include "redist/detail/debug.hpp"

using redist::detail::debug_level;
using redist::detail::parse_debug_level;

TEST_CASE("parse_debug_level: the levels, in any case") {
  CHECK(parse_debug_level(nullptr) == debug_level::off);
  CHECK(parse_debug_level("") == debug_level::off);
  CHECK(parse_debug_level("0") == debug_level::off);
  CHECK(parse_debug_level("OFF") == debug_level::off);
  CHECK(parse_debug_level("off") == debug_level::off);
  CHECK(parse_debug_level("INFO") == debug_level::info);
  CHECK(parse_debug_level("info") == debug_level::info);
  CHECK(parse_debug_level("Info") == debug_level::info);
  CHECK(parse_debug_level("TRACE") == debug_level::trace);
  CHECK(parse_debug_level("trace") == debug_level::trace);
  CHECK(parse_debug_level("tRaCe") == debug_level::trace);
}

TEST_CASE("parse_debug_level: anything else names no level") {
  for (const char* v : {"1", "DEBUG", "INF", "INFOO", "TRACE ", " INFO", "info\n", "yes", "o", "traceinfo"}) {
    INFO("value '" << v << "'");
    CHECK(parse_debug_level(v) == std::nullopt);
  }
}

TEST_CASE("debug_prints: INFO on the chosen rank only, TRACE on every rank, off nowhere") {
  using redist::detail::debug_prints;
  {
    redist::detail::debug_capture_for_testing capture(debug_level::info);
    CHECK(debug_prints(0));
    CHECK_FALSE(debug_prints(1));
    CHECK(debug_prints(3, 3));
    CHECK_FALSE(debug_prints(0, 3));
    CHECK_FALSE(redist::detail::debug_traces());
  }
  {
    redist::detail::debug_capture_for_testing capture(debug_level::trace);
    CHECK(debug_prints(0));
    CHECK(debug_prints(5));
    CHECK(redist::detail::debug_traces());
    {
      redist::detail::debug_capture_for_testing inner(debug_level::off);
      CHECK_FALSE(debug_prints(0));
    }
    CHECK(debug_prints(5));  // the outer level is back
  }
  redist::detail::set_debug_level_for_testing(debug_level::off);
  CHECK_FALSE(debug_prints(0));
  CHECK(redist::detail::current_debug_level() == debug_level::off);
}

TEST_CASE("debug_print: one prefixed line per call, into the capture while it lives") {
  redist::detail::debug_capture_for_testing capture(debug_level::info);
  redist::detail::debug_print(2, 4, "x ", 17, ' ', redist::detail::debug_bytes(1536));
  redist::detail::debug_print(0, 1, redist::detail::debug_bytes(12));
  CHECK(capture.take() == "redist[rank 2/4] x 17 1536 B (1.50 KiB)\nredist[rank 0/1] 12 B\n");
  CHECK(capture.take().empty());
}

TEST_CASE("debug figures: milliseconds, rates") {
  using redist::detail::debug_ms;
  using redist::detail::debug_rate;
  CHECK(debug_ms(0.0012345) == "1.234 ms");
  CHECK(debug_rate(1024, 0.0) == "-");
  CHECK(debug_rate(2048, 1.0) == "2.00 KiB/s");
  CHECK(debug_rate(512, 0.5) == "1.00 KiB/s");
  CHECK(debug_rate(3ull << 30, 2.0) == "1.50 GiB/s");
}
