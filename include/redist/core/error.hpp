// redist::error, the one exception type the library throws, and the helper that builds its message.
// Every failure the library reports is a redist::error whose message names the function and what is wrong.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace redist {

class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

// Streams every argument into one message: fail("redist::f: key '", key, "' has ", n, " rows").
template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  throw error(os.str());
}

}  // namespace detail
}  // namespace redist
