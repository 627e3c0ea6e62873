// expect: tensor_traits<T> lacks `static std::size_t rank\(const T&\)`
// A tensor type whose traits omit rank() and extent(): the diagnostic names the missing members.
#include "redist/core/sequence_batch.hpp"

struct flat {
  float* p;
};

template <>
struct redist::tensor_traits<flat> {
  static constexpr memory_space space = memory_space::host;
  static void* data(flat& t) { return t.p; }
  static const void* data(const flat& t) { return t.p; }
  static redist::dtype dtype(const flat&) { return redist::dtype::f32; }
};

int main() { return static_cast<int>(redist::sequence_batch<flat>().size()); }
