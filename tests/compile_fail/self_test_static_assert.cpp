// expect: redist compile-fail harness works
// Exercises the compile-fail harness itself: this file must not compile, and the test passes only because
// the compiler's message matches the regex above; if it ever compiled, the test would fail.
#include <redist/core/dtype.hpp>

static_assert(redist::size_of(redist::dtype::f32) == 0, "redist compile-fail harness works");
