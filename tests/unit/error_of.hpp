// Test helper: the message of the redist::error a call throws, so that a test can compare it whole. Any other
// exception propagates and fails the test case.
#pragma once

#include <string>

#include "redist/core/error.hpp"

namespace redist::test {

// The redist::error's what(), or "no error" when f returns.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const redist::error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace redist::test
