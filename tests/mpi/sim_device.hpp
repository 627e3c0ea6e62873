// Test helper: a stand-in device for the MPI tests of the device path without a GPU. sim_tensor says
// `device` in its traits and lives in host memory registered as device memory; sim_space stands in for
// cuda_space, making host_space's copies after checking that every copy, cast and fill it is asked for
// touches only that memory (host_touches counts the others), and counting its tables (each a kernel launch
// on a GPU) and its stream orderings. Each test program that includes it has one stand-in device.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "redist/core/memory_space.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/checked.hpp"

namespace redist::test {

// The "device" memory: every live allocation of the stand-in space and of sim tensors, by start address.
inline std::map<const std::byte*, std::size_t>& device_memory() {
  static std::map<const std::byte*, std::size_t> m;
  return m;
}
inline std::size_t host_touches = 0;  // copies, casts or fills the space was asked to make outside it

inline bool on_device(const std::byte* p, std::size_t n) {
  if (n == 0) return true;
  auto& m = device_memory();
  auto it = m.upper_bound(p);
  if (it == m.begin()) return false;
  --it;
  return p >= it->first && p + n <= it->first + it->second;
}
inline void touch(const std::byte* p, std::size_t n) {
  if (!on_device(p, n)) ++host_touches;
}
inline std::byte* device_alloc(std::size_t n) {
  auto* p = static_cast<std::byte*>(::operator new[](std::max<std::size_t>(n, 1)));
  device_memory().emplace(p, n);
  return p;
}
inline void device_free(std::byte* p) {
  if (p == nullptr) return;
  device_memory().erase(p);
  ::operator delete[](p);
}

// A tensor in the stand-in device memory.
struct sim_tensor {
  std::shared_ptr<std::byte> bytes;
  redist::dtype type = redist::dtype::f32;
  std::vector<std::int64_t> shape{0};
  std::size_t nbytes = 0;
  static sim_tensor make(redist::dtype t, std::span<const std::int64_t> s) {
    sim_tensor x;
    x.type = t;
    x.shape.assign(s.begin(), s.end());
    x.nbytes = redist::detail::dense_bytes(t, s, "sim_tensor");
    x.bytes = std::shared_ptr<std::byte>(device_alloc(x.nbytes), device_free);
    return x;
  }
};

// The stand-in for cuda_space: host_space's work, after checking every pointer is device memory.
struct sim_space {
  static constexpr redist::memory_space space = redist::memory_space::device;
  struct counts {
    std::size_t tables = 0;     // tables run (kernel launches on a GPU)
    std::size_t orderings = 0;  // after() calls between different streams
    std::size_t reads = 0;      // to_host() calls (stream waits on a GPU)
  };
  int stream_id = 1;
  std::shared_ptr<counts> count = std::make_shared<counts>();

  int stream() const { return stream_id; }
  void copy(std::byte* to, const std::byte* from, std::size_t n) const {
    touch(to, n);
    touch(from, n);
    redist::host_space::copy(to, from, n);
  }
  void fill(std::byte* to, std::size_t n, std::byte v = std::byte{0}) const {
    touch(to, n);
    redist::host_space::fill(to, n, v);
  }
  void to_host(std::byte* to, const std::byte* from, std::size_t n) const {
    touch(from, n);
    if (on_device(to, n) && n != 0) ++host_touches;  // the destination must be host memory
    ++count->reads;
    redist::host_space::copy(to, from, n);
  }
  void from_host(std::byte* to, const std::byte* from, std::size_t n) const {
    touch(to, n);
    if (on_device(from, n) && n != 0) ++host_touches;  // the source must be host memory
    redist::host_space::copy(to, from, n);
  }
  void after(const sim_space& other) const {
    if (other.stream_id != stream_id) ++count->orderings;
  }
  void gather(std::span<const redist::const_segment> pieces, std::byte* to) const {
    std::size_t n = 0;
    for (const auto& s : pieces) {
      touch(s.data, s.bytes);
      n += s.bytes;
    }
    touch(to, n);
    ++count->tables;
    redist::host_space::gather(pieces, to);
  }
  void scatter(const std::byte* from, std::span<const redist::segment> pieces) const {
    std::size_t n = 0;
    for (const auto& s : pieces) {
      touch(s.data, s.bytes);
      n += s.bytes;
    }
    touch(from, n);
    ++count->tables;
    redist::host_space::scatter(from, pieces);
  }
  void copy_pieces(std::span<const redist::const_segment> from, std::span<const redist::segment> to) const {
    for (const auto& s : from) touch(s.data, s.bytes);
    for (const auto& s : to) touch(s.data, s.bytes);
    ++count->tables;
    redist::host_space::copy_pieces(from, to);
  }
  void run(std::span<const redist::detail::copy_piece> t) const {
    for (const auto& p : t) {
      if (p.src != nullptr) touch(p.src, p.bytes);
      touch(p.dst, p.bytes);
    }
    ++count->tables;
    redist::host_space::run(t);
  }
  void run(std::span<const redist::detail::cast_piece> t, redist::detail::cast_direction d) const {
    for (const auto& p : t) {
      const std::size_t es = redist::size_of(p.type);
      const bool to = d == redist::detail::cast_direction::to_f32;
      touch(to ? p.src + p.first * es : p.src, to ? p.count * es : p.count * 4);
      touch(to ? p.dst : p.dst + p.first * es, to ? (p.count + p.pad) * 4 : p.count * es);
    }
    ++count->tables;
    redist::host_space::run(t, d);
  }
  std::size_t first_lossy_piece(std::span<const redist::detail::cast_piece> t) const {
    for (const auto& p : t)
      touch(p.src + p.first * redist::size_of(p.type), p.count * redist::size_of(p.type));
    ++count->tables;
    return redist::host_space::first_lossy_piece(t);
  }
  std::byte* allocate(std::size_t n) const { return n == 0 ? nullptr : device_alloc(n); }
  void deallocate(std::byte* p, std::size_t) const noexcept { device_free(p); }
};

// What the stream check reads of a communicator that has a stream, as the device communicators do.
struct streamed {
  int rank_ = 0;
  int rank() const { return rank_; }
  int stream() const { return 1; }
};

}  // namespace redist::test

template <>
struct redist::tensor_traits<redist::test::sim_tensor> {
  using sim_tensor = redist::test::sim_tensor;
  static constexpr memory_space space = memory_space::device;
  static int device(const sim_tensor&) { return 0; }
  static void* data(sim_tensor& t) { return t.bytes.get(); }
  static const void* data(const sim_tensor& t) { return t.bytes.get(); }
  static redist::dtype dtype(const sim_tensor& t) { return t.type; }
  static std::size_t rank(const sim_tensor& t) { return t.shape.size(); }
  static std::int64_t extent(const sim_tensor& t, std::size_t d) { return t.shape[d]; }
  static sim_tensor allocate(redist::dtype t, std::span<const std::int64_t> s) {
    return sim_tensor::make(t, s);
  }
};
template <>
struct redist::space_policy<redist::memory_space::device> {
  using type = redist::test::sim_space;
};
