// What every fuzz target shares: a check that stops the run with a message (libFuzzer then saves the input),
// and a fuzzed-input reader for targets that build structured input rather than decode bytes.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "redist/core/error.hpp"

namespace redist::fuzz {

// A property the target asserts: on failure, the message and an abort, which libFuzzer reports as a crash.
inline void check(bool ok, std::string_view what) {
  if (ok) [[likely]]
    return;
  std::fprintf(stderr, "redist fuzz: property violated: %.*s\n", static_cast<int>(what.size()), what.data());
  std::abort();
}

// Runs f; a redist::error is the library refusing the input, which is allowed: false. Any other exception
// escapes and ends the run (std::bad_alloc included: the library must refuse, not fail to allocate).
template <class F>
bool accepted(F&& f) {
  try {
    f();
  } catch (const redist::error&) {
    return false;
  }
  return true;
}

}  // namespace redist::fuzz
