// The consumer project's program: uses redist through the umbrella header from outside redist's tree.
// That it builds and runs proves the install/export, add_subdirectory and FetchContent paths work for users.
#include <redist/redist.hpp>

#include <cstddef>

int main() {
  static_assert(redist::size_of(redist::dtype::f64) == 8);
  const redist::dtype types[] = {redist::dtype::f32, redist::dtype::bf16, redist::dtype::i64,
                                 redist::dtype::u8};
  const std::size_t expected[] = {4, 2, 8, 1};
  for (std::size_t i = 0; i < 4; ++i) {
    if (redist::size_of(types[i]) != expected[i]) return 1;
  }
  return 0;
}
