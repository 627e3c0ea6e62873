// Test helper for the device-path tests (tests/mpi/test_device_path.cpp on a stand-in device, tests/cuda on
// a GPU): every rank's batch of three keys of splitmix bytes, what each rank wants (a consumer that
// reorders), batches copied between tensor types, and byte-for-byte comparison of host batches.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../unit/splitmix.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/sequence_batch.hpp"

namespace redist::test {

using host_batch = sequence_batch<host_tensor>;

// Rank r holds `per_rank` ids r * 1000 + i with keys "a" (i32 [3]), "b" (bf16), "c" (f64 [2]) of 1..6 tokens
// of splitmix bytes (f64 values kept finite and bf16 not NaN, so that float32 staging round-trips alike).
inline host_batch make_host(int r, std::size_t per_rank, std::uint64_t seed) {
  std::vector<sample_id> ids;
  for (std::size_t i = 0; i < per_rank; ++i) ids.push_back(static_cast<sample_id>(r) * 1000 + i);
  const std::vector<std::pair<dtype, std::vector<std::int64_t>>> keys{
      {dtype::i32, {3}}, {dtype::bf16, {}}, {dtype::f64, {2}}};
  std::vector<host_batch::field> fields;
  for (std::size_t k = 0; k < keys.size(); ++k) {
    redist::seqlen_table lens;
    std::int64_t rows = 0;
    for (sample_id id : ids) {
      const auto t = static_cast<std::int64_t>(1 + draw(seed, id, k) % 6);
      lens.push_back(std::span(&t, 1));
      rows += t;
    }
    std::vector<std::int64_t> shape{rows};
    shape.insert(shape.end(), keys[k].second.begin(), keys[k].second.end());
    host_tensor t(keys[k].first, shape);
    auto bytes = t.bytes();
    for (std::size_t i = 0; i < bytes.size(); ++i)
      bytes[i] = static_cast<std::byte>(draw(seed + 1, static_cast<std::uint64_t>(r), k, i));
    if (keys[k].first == dtype::f64) {  // exact in float32: multiples of 1/8 below 12,500 in magnitude
      const auto values = t.values<double>();
      for (std::size_t i = 0; i < values.size(); ++i) {
        const auto d = draw(seed + 2, static_cast<std::uint64_t>(r), k, i) % 200000;
        values[i] = (static_cast<double>(d) - 100000) / 8;
      }
    }
    if (keys[k].first == dtype::bf16)
      for (auto& v : t.values<redist::bf16>()) v.bits &= 0x3fff;
    fields.push_back(
        {std::string(1, static_cast<char>('a' + k)), keys[k].first, keys[k].second, lens, std::move(t)});
  }
  return host_batch(ids, std::move(fields));
}

// The same batch with tensors of type To, made by make(dtype, shape); copy(to, from, bytes) moves each
// tensor's bytes.
template <class From, class To, class Make, class Copy>
redist::sequence_batch<To> convert(const redist::sequence_batch<From>& b, Make make, Copy copy) {
  std::vector<typename redist::sequence_batch<To>::field> fields;
  for (const auto& f : b.fields()) {
    const auto& t = *f.data;
    std::vector<std::int64_t> shape;
    for (std::size_t d = 0; d < redist::tensor_traits<From>::rank(t); ++d)
      shape.push_back(redist::tensor_traits<From>::extent(t, d));
    To out = make(f.dtype, shape);
    const std::size_t n = redist::detail::dense_bytes(f.dtype, shape, "convert");
    if (n != 0) copy(redist::tensor_traits<To>::data(out), redist::tensor_traits<From>::data(t), n);
    fields.push_back({f.name, f.dtype, f.trailing_shape, f.seqlens, std::move(out)});
  }
  return redist::sequence_batch<To>(std::vector<sample_id>(b.ids().begin(), b.ids().end()), std::move(fields),
                                    b.metadata());
}
inline bool same(const host_batch& a, const host_batch& b) {
  if (!std::equal(a.ids().begin(), a.ids().end(), b.ids().begin(), b.ids().end())) return false;
  if (a.fields().size() != b.fields().size()) return false;
  for (std::size_t f = 0; f < a.fields().size(); ++f) {
    const auto x = a.fields()[f].data->bytes(), y = b.fields()[f].data->bytes();
    if (a.fields()[f].name != b.fields()[f].name || !std::equal(x.begin(), x.end(), y.begin(), y.end()))
      return false;
  }
  return true;
}

// Rank r wants the ids of rank r + 1 (mod n) backwards, then every other id of rank r - 1, then one of its
// own: a consumer that reorders and keeps some of what it has.
inline std::vector<sample_id> wanted_by(int r, int n, std::size_t per_rank) {
  std::vector<sample_id> w;
  const auto next = static_cast<sample_id>((r + 1) % n), prev = static_cast<sample_id>((r + n - 1) % n);
  for (std::size_t i = per_rank; i-- > 0;) w.push_back(next * 1000 + i);
  for (std::size_t i = 1; i < per_rank; i += 2)
    if (prev != next) w.push_back(prev * 1000 + i);
  if (static_cast<sample_id>(r) != next && static_cast<sample_id>(r) != prev)
    w.push_back(static_cast<sample_id>(r) * 1000);
  return w;
}

}  // namespace redist::test
