// expect: says space = device but lacks `static int device\(const T&\)`
// A device tensor type whose traits do not say which device: the diagnostic names the missing member.
#include "redist/core/sequence_batch.hpp"

struct on_device {
  void* p;
};

template <>
struct redist::tensor_traits<on_device> {
  static constexpr memory_space space = memory_space::device;
  static void* data(on_device& t) { return t.p; }
  static const void* data(const on_device& t) { return t.p; }
  static redist::dtype dtype(const on_device&) { return redist::dtype::f32; }
  static std::size_t rank(const on_device&) { return 1; }
  static std::int64_t extent(const on_device&, std::size_t) { return 0; }
};

int main() { return static_cast<int>(redist::sequence_batch<on_device>().size()); }
