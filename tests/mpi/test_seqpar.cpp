// MPI tests of redist/seqpar.hpp on the world, on a communicator numbered backwards and on a sub-communicator
// of part of the world with permuted ranks: all_to_all for every pair of dims of 2-d, 3-d and 4-d tensors in
// four dtypes plus seeded random cases; slicing, gathering and the Ulysses pair with sequences that do not
// divide; the fused qkv form; the rotating broadcast of per-rank different trees (empty ones too), its double
// buffering and a use() that throws; and errors agreed on every rank, the communicator usable afterwards.
// Every expectation is computed from the case and the rank numbers alone.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../unit/row_major.hpp"
#include "../unit/splitmix.hpp"
#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/detail/hash.hpp"
#include "redist/seqpar.hpp"

namespace {

// A host tensor whose allocate throws std::bad_alloc while `refuse` is set: a rank that cannot allocate.
struct refusing_tensor {
  static inline bool refuse = false;
  redist::host_tensor t;
};

}  // namespace

template <>
struct redist::tensor_traits<refusing_tensor> {
  static constexpr memory_space space = memory_space::host;
  static void* data(refusing_tensor& r) noexcept { return r.t.data(); }
  static const void* data(const refusing_tensor& r) noexcept { return r.t.data(); }
  static redist::dtype dtype(const refusing_tensor& r) noexcept { return r.t.dtype(); }
  static std::size_t rank(const refusing_tensor& r) noexcept { return r.t.rank(); }
  static std::int64_t extent(const refusing_tensor& r, std::size_t d) { return r.t.extent(d); }
  static refusing_tensor allocate(redist::dtype t, std::span<const std::int64_t> shape) {
    if (refusing_tensor::refuse) throw std::bad_alloc();
    return {redist::host_tensor::uninitialized(t, {shape.begin(), shape.end()})};
  }
};

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::test::all_ranks;
using shape_t = std::vector<std::int64_t>;
using tree = redist::nested<host_tensor>;

using redist::test::flatten;
using redist::test::mix;
using redist::test::numel;
using redist::test::unflatten;

std::string text(const shape_t& s) { return redist::detail::shape_text(s); }

// Element `flat` of source `source`'s tensor in case `c`: i64 holds (case, source, flat) literally, the other
// dtypes a hash of them (bool: 0 or 1).
void element(dtype t, std::uint64_t c, std::uint64_t source, std::size_t flat, std::byte* out) {
  if (t == dtype::i64) {
    const auto v = static_cast<std::int64_t>(((c & 0xffffu) << 44) | (source << 32) | flat);
    std::memcpy(out, &v, 8);
    return;
  }
  const std::uint64_t h = mix(c, source, flat);
  if (t == dtype::boolean) {
    out[0] = static_cast<std::byte>(h & 1u);
    return;
  }
  std::memcpy(out, &h, redist::size_of(t));
}

host_tensor filled(dtype t, const shape_t& shape, std::uint64_t c, std::uint64_t source) {
  host_tensor x(t, shape);
  const std::size_t es = redist::size_of(t);
  auto* at = static_cast<std::byte*>(x.data());
  for (std::size_t f = 0; f < numel(shape); ++f) element(t, c, source, f, at + f * es);
  return x;
}

// Element `flat` of `shape` from source tensor `from` of shape `in` at index `idx` (zero when idx lies beyond
// in along dim `pad_dim`).
host_tensor expected_from(
    dtype t, const shape_t& shape,
    const std::function<std::optional<std::pair<std::uint64_t, std::size_t>>(std::vector<std::int64_t>)>&
        source_of,
    std::uint64_t c) {
  host_tensor out(t, shape);
  const std::size_t es = redist::size_of(t);
  auto* at = static_cast<std::byte*>(out.data());
  for (std::size_t f = 0; f < numel(shape); ++f) {
    const auto src = source_of(unflatten(f, shape));
    if (src) element(t, c, src->first, src->second, at + f * es);
  }
  return out;
}

// Empty when got is exactly want; else what differs.
std::string difference(const host_tensor& got, const host_tensor& want) {
  const shape_t gs(got.shape().begin(), got.shape().end()), ws(want.shape().begin(), want.shape().end());
  if (got.dtype() != want.dtype())
    return std::string("dtype ") + std::string(name(got.dtype())) + ", expected " +
           std::string(name(want.dtype()));
  if (gs != ws) return "shape " + text(gs) + ", expected " + text(ws);
  const auto g = got.bytes(), w = want.bytes();
  for (std::size_t i = 0; i < g.size(); ++i)
    if (g[i] != w[i]) return "byte " + std::to_string(i) + " of shape " + text(gs) + " differs";
  return {};
}

// The communicators every case runs on: the world, the world numbered backwards, and a sub-communicator of
// part of the world in a permuted order (made with group(); non-members skip it).
std::vector<int> permuted_members(int n) {
  std::vector<int> m;
  for (int r = 0; r < n; ++r)
    if (n < 3 || r != n / 2) m.push_back(r);
  std::reverse(m.begin(), m.end());
  if (m.size() >= 3) std::rotate(m.begin(), m.begin() + 1, m.end());
  return m;
}

template <class F>
void on_each_comm(F&& f) {
  const redist::mpi_communicator world(MPI_COMM_WORLD);
  f(world, "world");
  const auto rev = redist::test::reversed_world();
  const redist::mpi_communicator reversed(rev.get());
  f(reversed, "reversed world");
  const auto members = permuted_members(world.size());
  if (const auto* sub = world.group(members); sub != nullptr) f(*sub, "permuted sub-communicator");
}

// Collects the first problem of a case; agreed over the world afterwards.
struct verdict {
  std::string first;
  void add(const std::string& where, const std::string& problem) {
    if (!problem.empty() && first.empty()) first = where + ": " + problem;
  }
  void check() const {
    const bool ok = all_ranks(first.empty());
    INFO("this rank: " << (first.empty() ? "ok" : first));
    CHECK(ok);
  }
};

template <class F>
std::string run_case(F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    return std::string("threw: ") + e.what();
  }
}

// ---- all_to_all -------------------------------------------------------------------------------------------

// What rank `me` of P must hold after all_to_all of rank i's filled(t, in, c, i): output index o comes from
// rank o[g] / chunk[g], at that rank's index o with [g] %= chunk[g] and [s] += me * chunk[s].
host_tensor expected_all_to_all(dtype t, const shape_t& in, std::size_t s, std::size_t g, int P, int me,
                                std::uint64_t c) {
  shape_t chunk = in;
  chunk[s] /= P;
  shape_t out = chunk;
  out[g] *= P;
  return expected_from(
      t, out,
      [&](std::vector<std::int64_t> idx) -> std::optional<std::pair<std::uint64_t, std::size_t>> {
        const auto source = static_cast<std::uint64_t>(idx[g] / chunk[g]);
        idx[g] %= chunk[g];
        idx[s] += me * chunk[s];
        return std::pair{source, flatten(idx, in)};
      },
      c);
}

std::string all_to_all_problem(const redist::mpi_communicator& comm, dtype t, const shape_t& in, int s, int g,
                               std::uint64_t c) {
  return run_case([&] {
    const host_tensor x = filled(t, in, c, static_cast<std::uint64_t>(comm.rank()));
    const host_tensor y = redist::seqpar::all_to_all(comm, x, s, g);
    const auto n = static_cast<int>(in.size());
    const auto sd = static_cast<std::size_t>((s + n) % n), gd = static_cast<std::size_t>((g + n) % n);
    return difference(y, expected_all_to_all(t, in, sd, gd, comm.size(), comm.rank(), c));
  });
}

// The same through all_to_all_into, into a tensor made here, with the staging buffer of `ws`.
std::string all_to_all_into_problem(const redist::mpi_communicator& comm, dtype t, const shape_t& in, int s,
                                    int g, std::uint64_t c, redist::seqpar::workspace& ws) {
  return run_case([&] {
    const host_tensor x = filled(t, in, c, static_cast<std::uint64_t>(comm.rank()));
    const auto n = static_cast<int>(in.size());
    const auto sd = static_cast<std::size_t>((s + n) % n), gd = static_cast<std::size_t>((g + n) % n);
    const host_tensor want = expected_all_to_all(t, in, sd, gd, comm.size(), comm.rank(), c);
    host_tensor out(t, shape_t(want.shape().begin(), want.shape().end()));
    redist::seqpar::all_to_all_into(comm, x, s, g, out, &ws);
    return difference(out, want);
  });
}

const dtype test_dtypes[] = {dtype::f32, dtype::bf16, dtype::i64, dtype::boolean};

}  // namespace

TEST_CASE("all_to_all: every pair of dims of 2-d, 3-d and 4-d tensors, four dtypes, three communicators") {
  verdict v;
  on_each_comm([&](const redist::mpi_communicator& comm, const char* label) {
    const std::int64_t P = comm.size();
    std::uint64_t c = 0;
    for (std::size_t nd = 2; nd <= 4; ++nd)
      for (int leading_ones = 0; leading_ones < 2; ++leading_ones)
        for (std::size_t s = 0; s < nd; ++s)
          for (std::size_t g = 0; g < nd; ++g)
            for (dtype t : test_dtypes) {
              // Extents 2, 3, 2, 3 (or 1 before the scatter and gather dims), the scatter dim P or 2P.
              shape_t in(nd);
              for (std::size_t d = 0; d < nd; ++d) in[d] = leading_ones && d < std::max(s, g) ? 1 : 2 + d % 2;
              in[s] = P * (1 + static_cast<std::int64_t>((nd + s + g) % 2));
              std::ostringstream where;
              where << label << ", " << name(t) << " " << text(in) << ", scatter_dim " << s << ", gather_dim "
                    << g;
              v.add(where.str(),
                    all_to_all_problem(comm, t, in, static_cast<int>(s), static_cast<int>(g), ++c));
            }
    // Negative dims count from the end.
    v.add(std::string(label) + ", negative dims",
          all_to_all_problem(comm, dtype::f32, {3, 2 * P, 2}, -2, -3, 999));
  });
  v.check();
}

TEST_CASE("all_to_all_into: one workspace across exchanges of different sizes and layouts") {
  verdict v;
  on_each_comm([&](const redist::mpi_communicator& comm, const char* label) {
    const std::int64_t P = comm.size();
    redist::seqpar::workspace ws;
    struct one {
      shape_t in;
      int s, g;
    };
    const one cases[] = {{{4, 3 * P, 5}, 1, 0}, {{3 * P, 2, 2}, 0, 1}, {{2, 2 * P, 3}, 1, 2},
                         {{2, 5, 2 * P}, 2, 0}, {{2 * P, 3}, 0, 0},    {{4, 3 * P, 5}, 1, 0}};
    std::uint64_t c = 4000;
    for (const auto& k : cases)
      for (dtype t : {dtype::bf16, dtype::i64}) {
        std::ostringstream where;
        where << label << ", " << name(t) << " " << text(k.in) << ", scatter_dim " << k.s << ", gather_dim "
              << k.g;
        v.add(where.str(), all_to_all_into_problem(comm, t, k.in, k.s, k.g, ++c, ws));
      }
    // Staged both ways ({2, 2P, 3} scatter 1 gather 2, i64): 2 * x's bytes, kept for later calls.
    if (P > 1 && ws.capacity() < 2 * 2 * 2 * static_cast<std::size_t>(P) * 3 * 8)
      v.add(label, "the workspace holds " + std::to_string(ws.capacity()) + " bytes");
  });
  v.check();
}

TEST_CASE(
    "prepared all_to_all: repeated calls equal all_to_all's, every pair of dims, with and without a "
    "workspace") {
  verdict v;
  on_each_comm([&](const redist::mpi_communicator& comm, const char* label) {
    const std::int64_t P = comm.size();
    redist::seqpar::workspace ws;
    std::uint64_t c = 7000;
    for (std::size_t s = 0; s < 3; ++s)
      for (std::size_t g = 0; g < 3; ++g)
        for (dtype t : {dtype::bf16, dtype::i64}) {
          shape_t in{2, 3, 2};
          in[s] = 2 * P;
          const auto si = static_cast<int>(s), gi = static_cast<int>(g);
          const host_tensor first = filled(t, in, c, static_cast<std::uint64_t>(comm.rank()));
          const auto prepared = redist::seqpar::prepare_all_to_all(comm, first, si, gi);
          std::ostringstream where;
          where << label << ", " << name(t) << " " << text(in) << ", scatter_dim " << s << ", gather_dim "
                << g;
          v.add(where.str(), run_case([&] {
                  // Three calls, each with other values, alternately through the workspace and without one.
                  for (int call = 0; call < 3; ++call) {
                    const host_tensor x = filled(t, in, ++c, static_cast<std::uint64_t>(comm.rank()));
                    const host_tensor want = expected_all_to_all(t, in, s, g, comm.size(), comm.rank(), c);
                    host_tensor out(t, shape_t(want.shape().begin(), want.shape().end()));
                    CHECK(prepared.out_shape().size() == want.shape().size());
                    redist::seqpar::all_to_all_into(comm, prepared, x, out, call % 2 == 0 ? &ws : nullptr);
                    if (auto d = difference(out, want); !d.empty())
                      return "call " + std::to_string(call) + ": " + d;
                  }
                  return std::string();
                }));
        }
  });
  v.check();
}

TEST_CASE("all_to_all: seeded random shapes, dims and dtypes") {
  REDIST_AGREED_SEED(seed);
  verdict v;
  on_each_comm([&](const redist::mpi_communicator& comm, const char* label) {
    std::mt19937_64 rng(seed);
    const dtype all_dtypes[] = {dtype::f32, dtype::f64, dtype::f16, dtype::bf16, dtype::i8,
                                dtype::i16, dtype::i32, dtype::i64, dtype::u8,   dtype::boolean};
    for (int i = 0; i < 24; ++i) {
      const std::size_t nd = 1 + rng() % 5;
      shape_t in(nd);
      for (auto& e : in) e = static_cast<std::int64_t>(rng() % 4);  // zero extents too
      const auto s = static_cast<std::size_t>(rng() % nd), g = static_cast<std::size_t>(rng() % nd);
      in[s] = comm.size() * static_cast<std::int64_t>(rng() % 4);
      const dtype t = all_dtypes[rng() % std::size(all_dtypes)];
      std::ostringstream where;
      where << label << ", case " << i << ": " << name(t) << " " << text(in) << ", scatter_dim " << s
            << ", gather_dim " << g;
      v.add(where.str(), all_to_all_problem(comm, t, in, static_cast<int>(s), static_cast<int>(g),
                                            5000 + static_cast<std::uint64_t>(i)));
    }
  });
  v.check();
}

namespace {

// ---- slicing, padding, gathering --------------------------------------------------------------------------

// Rank r's slice of the full tensor filled(t, full, c, 0) along dim: rows [r * unit, (r + 1) * unit), zero
// beyond the full extent.
host_tensor expected_slice(dtype t, const shape_t& full, std::size_t dim, int P, int r, std::uint64_t c) {
  const std::int64_t unit = (full[dim] + P - 1) / P;
  shape_t out = full;
  out[dim] = unit;
  return expected_from(
      t, out,
      [&](std::vector<std::int64_t> idx) -> std::optional<std::pair<std::uint64_t, std::size_t>> {
        idx[dim] += r * unit;
        if (idx[dim] >= full[dim]) return std::nullopt;
        return std::pair{std::uint64_t{0}, flatten(idx, full)};
      },
      c);
}

// The full tensor, zero-padded along dim to `rows` rows.
host_tensor expected_padded(dtype t, const shape_t& full, std::size_t dim, std::int64_t rows,
                            std::uint64_t c) {
  shape_t out = full;
  out[dim] = rows;
  return expected_from(
      t, out,
      [&](std::vector<std::int64_t> idx) -> std::optional<std::pair<std::uint64_t, std::size_t>> {
        if (idx[dim] >= full[dim]) return std::nullopt;
        return std::pair{std::uint64_t{0}, flatten(idx, full)};
      },
      c);
}

std::vector<std::int64_t> awkward_lengths(std::int64_t P) { return {0, 1, P - 1, P, P + 1, 2 * P + 3, 13}; }

}  // namespace

TEST_CASE("slice_inputs and gather_outputs: lengths that do not divide, padding and unpadding") {
  verdict v;
  on_each_comm([&](const redist::mpi_communicator& comm, const char* label) {
    const std::int64_t P = comm.size();
    std::uint64_t c = 100;
    for (std::size_t dim = 0; dim < 3; ++dim)
      for (std::int64_t len : awkward_lengths(P))
        for (dtype t : {dtype::bf16, dtype::i64}) {
          if (len < 0) continue;
          shape_t full = {2, 3, 2};
          full[dim] = len;
          ++c;
          std::ostringstream where;
          where << label << ", " << name(t) << " " << text(full) << ", dim " << dim;
          v.add(where.str(), run_case([&]() -> std::string {
                  // Every collective runs on every rank whatever this rank found: compare afterwards.
                  const host_tensor x = filled(t, full, c, 0);
                  const host_tensor mine = redist::seqpar::slice_inputs(comm, x, static_cast<int>(dim));
                  const host_tensor whole =
                      redist::seqpar::gather_outputs(comm, mine, static_cast<int>(dim), len);
                  const std::int64_t padded = mine.extent(dim) * P;
                  const host_tensor with_padding =
                      redist::seqpar::gather_outputs(comm, mine, static_cast<int>(dim) - 3, padded);
                  if (auto p = difference(mine, expected_slice(t, full, dim, comm.size(), comm.rank(), c));
                      !p.empty())
                    return "slice_inputs: " + p;
                  if (auto p = difference(whole, x); !p.empty()) return "gather_outputs, unpadded: " + p;
                  const std::string p = difference(with_padding, expected_padded(t, full, dim, padded, c));
                  return p.empty() ? p : "gather_outputs, padded: " + p;
                }));
        }
  });
  v.check();
}

namespace {

// The Ulysses pair on a full tensor of shape `full` (filled(t, full, c, 0)) with its sequence at seq_dim and
// heads at head_dim: rank r starts from its padded slice of the sequence (built here, not by slice_inputs).
std::string ulysses_problem(const redist::mpi_communicator& comm, dtype t, const shape_t& full,
                            std::size_t seq, std::size_t head, std::uint64_t c) {
  return run_case([&]() -> std::string {
    const int P = comm.size(), r = comm.rank();
    const std::int64_t S = full[seq], H = full[head], hp = H / P, unit = (S + P - 1) / P;
    const host_tensor local = expected_slice(t, full, seq, P, r, c);
    const int sd = static_cast<int>(seq), hd = static_cast<int>(head);
    // The whole sequence, this rank's heads [r * hp, (r + 1) * hp), the padding cut off (or kept). Every
    // collective runs on every rank whatever this rank found: the first problem is returned at the end.
    std::string problem;
    const auto note = [&](const std::string& what, const std::string& p) {
      if (problem.empty() && !p.empty()) problem = what + ": " + p;
    };
    for (const bool cut : {true, false}) {
      shape_t shape = full;
      shape[head] = hp;
      shape[seq] = cut ? S : unit * P;
      const host_tensor want = expected_from(
          t, shape,
          [&](std::vector<std::int64_t> idx) -> std::optional<std::pair<std::uint64_t, std::size_t>> {
            if (idx[seq] >= S) return std::nullopt;
            idx[head] += r * hp;
            return std::pair{std::uint64_t{0}, flatten(idx, full)};
          },
          c);
      const host_tensor got = cut ? redist::seqpar::gather_seq_scatter_heads(comm, local, sd, hd, S)
                                  : redist::seqpar::gather_seq_scatter_heads(comm, local, sd, hd);
      note(cut ? "gather_seq_scatter_heads (unpadded)" : "gather_seq_scatter_heads", difference(got, want));
      // Back: the sequence padded again and scattered, every head gathered: the rank's slice of the input.
      const host_tensor back = redist::seqpar::gather_heads_scatter_seq(comm, got, hd, sd);
      note("gather_heads_scatter_seq", difference(back, local));
      note("gather_outputs",
           difference(redist::seqpar::gather_outputs(comm, back, sd, S), filled(t, full, c, 0)));
    }
    return problem;
  });
}

}  // namespace

TEST_CASE(
    "gather_seq_scatter_heads / gather_heads_scatter_seq: sequences that do not divide, dims in any order") {
  verdict v;
  on_each_comm([&](const redist::mpi_communicator& comm, const char* label) {
    const std::int64_t P = comm.size();
    std::uint64_t c = 300;
    for (std::int64_t S : awkward_lengths(P))
      for (dtype t : test_dtypes) {
        struct layout {
          shape_t full;
          std::size_t seq, head;
        };
        const layout layouts[] = {{{S, 2 * P, 3}, 0, 1},     // [seq, heads, dim]
                                  {{2, S, P, 2}, 1, 2},      // [batch, seq, heads, dim]
                                  {{2, 2 * P, S, 3}, 2, 1},  // [batch, heads, seq, dim]
                                  {{3, S, 2 * P}, 1, 2}};    // heads last
        for (const auto& l : layouts) {
          std::ostringstream where;
          where << label << ", " << name(t) << " " << text(l.full) << ", seq_dim " << l.seq << ", head_dim "
                << l.head;
          v.add(where.str(), ulysses_problem(comm, t, l.full, l.seq, l.head, ++c));
        }
      }
  });
  v.check();
}

TEST_CASE("gather_seq_scatter_heads_qkv: each rank gets its heads of each of q, k and v, fused again") {
  verdict v;
  on_each_comm([&](const redist::mpi_communicator& comm, const char* label) {
    const int P = comm.size(), r = comm.rank();
    std::uint64_t c = 700;
    for (std::int64_t S : awkward_lengths(P))
      for (dtype t : {dtype::bf16, dtype::i64})
        for (std::size_t seq : {0u, 1u}) {
          const std::int64_t D = 2 * P;  // columns of each of q, k and v
          const shape_t full = seq == 0 ? shape_t{S, 3 * D} : shape_t{2, S, 3 * D};
          const std::size_t last = full.size() - 1;
          ++c;
          std::ostringstream where;
          where << label << ", " << name(t) << " " << text(full) << ", seq_dim " << seq;
          v.add(where.str(), run_case([&]() -> std::string {
                  const host_tensor local = expected_slice(t, full, seq, P, r, c);
                  std::string problem;  // the first; every collective runs whatever this rank found
                  for (const bool cut : {true, false}) {
                    shape_t shape = full;
                    shape[seq] = cut ? S : local.extent(seq) * P;
                    shape[last] = 3 * D / P;
                    const host_tensor want = expected_from(
                        t, shape,
                        [&](std::vector<std::int64_t> idx)
                            -> std::optional<std::pair<std::uint64_t, std::size_t>> {
                          if (idx[seq] >= S) return std::nullopt;
                          const std::int64_t part = idx[last] / (D / P), within = idx[last] % (D / P);
                          idx[last] = part * D + r * (D / P) + within;
                          return std::pair{std::uint64_t{0}, flatten(idx, full)};
                        },
                        c);
                    const host_tensor got = cut ? redist::seqpar::gather_seq_scatter_heads_qkv(
                                                      comm, local, static_cast<int>(seq), S)
                                                : redist::seqpar::gather_seq_scatter_heads_qkv(
                                                      comm, local, static_cast<int>(seq));
                    if (auto p = difference(got, want); !p.empty() && problem.empty())
                      problem = (cut ? "unpadded: " : "padded: ") + p;
                  }
                  return problem;
                }));
        }
  });
  v.check();
}

namespace {

// ---- the rotating broadcast -------------------------------------------------------------------------------

// Rank r's inputs: four kinds of trees by r % 4, shapes growing with r; kind 1 is empty.
tree tree_of(int r, std::uint64_t c) {
  const auto u = static_cast<std::uint64_t>(r);
  switch (r % 4) {
    case 0:
      return tree::fields{{"tokens", filled(dtype::i64, {r + 2}, c, u * 10)},
                          {"extra", tree::list{filled(dtype::f32, {2, r % 3}, c, u * 10 + 1),
                                               filled(dtype::boolean, {3}, c, u * 10 + 2)}}};
    case 1:
      return tree{};
    case 2:
      return filled(dtype::bf16, {r, 2}, c, u * 10);
    default:
      return tree::list{tree::fields{{"x", filled(dtype::f32, {0}, c, u * 10)}}, tree::list{},
                        filled(dtype::i64, {1, r}, c, u * 10 + 1)};
  }
}

// Empty when got has want's structure, names, dtypes, shapes and bytes.
std::string tree_difference(const tree& got, const tree& want) {
  if (got.is_tensor() != want.is_tensor() || got.is_list() != want.is_list()) return "structure differs";
  if (want.is_tensor()) return difference(got.tensor(), want.tensor());
  if (want.is_list()) {
    if (got.items().size() != want.items().size()) return "list length differs";
    for (std::size_t i = 0; i < want.items().size(); ++i)
      if (auto p = tree_difference(got.items()[i], want.items()[i]); !p.empty()) return p;
    return {};
  }
  if (got.named().size() != want.named().size()) return "field count differs";
  for (std::size_t i = 0; i < want.named().size(); ++i) {
    if (got.named()[i].name != want.named()[i].name) return "field name differs";
    if (auto p = tree_difference(got.named()[i].value, want.named()[i].value); !p.empty()) return p;
  }
  return {};
}

std::size_t tree_bytes(const tree& t) {
  std::size_t n = 0;
  t.for_each_tensor([&](const host_tensor& x) { n += x.nbytes(); });
  return n;
}

// Runs a rotating broadcast of tree_of(rank) on comm; empty when every step got the right tree in order.
template <class Comm>
std::string rotation_problem(const Comm& comm, std::uint64_t c, std::vector<int>* uses = nullptr) {
  return run_case([&]() -> std::string {
    const tree mine = tree_of(comm.rank(), c);
    int expected_k = 0;
    std::string problem;
    redist::seqpar::rotating_broadcast(comm, mine, [&](int k, const tree& inputs) {
      if (uses != nullptr) uses->push_back(k);
      if (k != expected_k++ && problem.empty()) problem = "step " + std::to_string(k) + " out of order";
      if (k == comm.rank() && &inputs != &mine && problem.empty()) problem = "own step is not the inputs";
      if (auto p = tree_difference(inputs, tree_of(k, c)); !p.empty() && problem.empty())
        problem = "step " + std::to_string(k) + ": " + p;
    });
    if (problem.empty() && expected_k != comm.size()) problem = std::to_string(expected_k) + " steps";
    return problem;
  });
}

// An mpi_communicator that records when broadcasts start (every other operation, and the request type, are
// inherited, so the wrapper follows the communicator concept as it grows).
struct event {
  char kind;  // 's' ibroadcast started, 'u' use called
  int k;
};

class recording_comm : public redist::mpi_communicator {
 public:
  recording_comm(MPI_Comm comm, std::vector<event>* log) : redist::mpi_communicator(comm), log_(log) {}

  const recording_comm* group(std::span<const int> ranks) const {
    const auto* sub = redist::mpi_communicator::group(ranks);
    if (sub == nullptr) return nullptr;
    auto& slot = groups_[std::vector<int>(ranks.begin(), ranks.end())];
    if (!slot) slot = std::make_unique<recording_comm>(sub->native(), log_);
    return slot.get();
  }
  redist::mpi_request ibroadcast(std::span<std::byte> b, int root) const {
    log_->push_back({'s', root});
    return redist::mpi_communicator::ibroadcast(b, root);
  }

 private:
  std::vector<event>* log_;
  mutable std::map<std::vector<int>, std::unique_ptr<recording_comm>> groups_;
};
static_assert(redist::communicator<recording_comm>);

}  // namespace

TEST_CASE("rotating_broadcast: every rank's own tree, structures differing by rank, empty ones too") {
  verdict v;
  on_each_comm([&](const redist::mpi_communicator& comm, const char* label) {
    v.add(label, rotation_problem(comm, 11));
    v.add(std::string(label) + ", second run", rotation_problem(comm, 12));
  });
  v.check();
}

TEST_CASE("rotating_broadcast: step k + 1's broadcast starts before use(k) is called") {
  verdict v;
  on_each_comm([&](const redist::mpi_communicator& comm, const char* label) {
    std::vector<event> log;
    const recording_comm rec(comm.native(), &log);
    std::vector<int> uses;
    std::string problem = run_case([&]() -> std::string {
      const tree mine = tree_of(comm.rank(), 21);
      redist::seqpar::rotating_broadcast(rec, mine, [&](int k, const tree& inputs) {
        log.push_back({'u', k});
        if (auto p = tree_difference(inputs, tree_of(k, 21)); !p.empty()) uses.push_back(-1);
      });
      return {};
    });
    if (std::count(uses.begin(), uses.end(), -1) != 0) problem = "a step's tree is wrong";
    auto at = [&](char kind, int k) -> long {
      for (std::size_t i = 0; i < log.size(); ++i)
        if (log[i].kind == kind && log[i].k == k) return static_cast<long>(i);
      return -1;
    };
    const int P = comm.size();
    for (int k = 0; k < P && problem.empty(); ++k) {
      // Ranks with no bytes (the empty trees of kind 1) are not broadcast.
      const bool moves = tree_bytes(tree_of(k, 21)) != 0;
      if (at('u', k) < 0) problem = "use(" + std::to_string(k) + ") never called";
      if (moves != (at('s', k) >= 0))
        problem = "step " + std::to_string(k) + ": broadcast started: " + std::to_string(at('s', k) >= 0) +
                  ", bytes: " + std::to_string(moves);
      if (moves && !(at('s', k) < at('u', k)))
        problem = "step " + std::to_string(k) + ": use before its broadcast started";
      if (k + 1 < P && tree_bytes(tree_of(k + 1, 21)) != 0 && !(at('s', k + 1) < at('u', k)))
        problem = "step " + std::to_string(k + 1) + "'s broadcast did not start before use(" +
                  std::to_string(k) + ")";
    }
    v.add(label, problem);
  });
  v.check();
}

TEST_CASE("rotating_broadcast: a use() that throws on one rank; the others finish, the thrower rethrows") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int thrower = comm.size() - 1;
  const tree mine = tree_of(comm.rank(), 31);
  int calls = 0;
  std::string caught = "nothing";
  try {
    redist::seqpar::rotating_broadcast(comm, mine, [&](int k, const tree&) {
      ++calls;
      if (comm.rank() == thrower && k == 0) throw std::runtime_error("use failed");
    });
  } catch (const std::runtime_error& e) {
    caught = e.what();
  }
  const bool ok = comm.rank() == thrower ? caught == "use failed" && calls == 1
                                         : caught == "nothing" && calls == comm.size();
  INFO("calls " << calls << ", caught " << caught);
  CHECK(all_ranks(ok));
  const std::string after = rotation_problem(comm, 32);
  INFO("after: " << after);
  CHECK(all_ranks(after.empty()));
}

namespace {

// ---- errors -----------------------------------------------------------------------------------------------

using redist::test::outcome;
using redist::test::outcome_of;

using redist::test::check_agreed_error;

// After an error: a correct call on the same communicator works on every rank.
void check_still_works(const redist::mpi_communicator& comm) {
  const std::string p = all_to_all_problem(comm, dtype::i64, {2, 2 * comm.size(), 3}, 1, 2, 77);
  INFO("a correct all_to_all after the error: " << (p.empty() ? "ok" : p));
  CHECK(all_ranks(p.empty(), comm.native()));
}

// The ranks that misbehave in a case: 1 and the last.
std::vector<int> bad_ranks(int n) {
  if (n < 2) return {};
  std::vector<int> r{1};
  if (n - 1 != 1) r.push_back(n - 1);
  return r;
}

}  // namespace

TEST_CASE("errors: a scatter dim that does not divide, on every rank") {
  on_each_comm([&](const redist::mpi_communicator& comm, const char*) {
    const int P = comm.size();
    const host_tensor x = filled(dtype::f32, {3, P + 1}, 1, 0);
    const outcome o = outcome_of([&] { (void)redist::seqpar::all_to_all(comm, x, 1, 0); });
    if (P == 1) {
      CHECK(all_ranks(!o.redist_error, comm.native()));  // 2 rows divide by one rank
    } else {
      check_agreed_error(o, comm,
                         {"redist::seqpar::all_to_all: scatter_dim 1 has extent " + std::to_string(P + 1),
                          "not divisible by the " + std::to_string(P) + " ranks"});
      const host_tensor qkv = filled(dtype::bf16, {2, 3 * (P + 1)}, 1, 0);
      check_agreed_error(
          outcome_of([&] { (void)redist::seqpar::gather_seq_scatter_heads_qkv(comm, qkv, 0); }), comm,
          {"gather_seq_scatter_heads_qkv: each of q, k and v has"});
      const host_tensor heads = filled(dtype::bf16, {2, P + 1, 4}, 1, 0);
      check_agreed_error(
          outcome_of([&] { (void)redist::seqpar::gather_seq_scatter_heads(comm, heads, 0, 1); }), comm,
          {"gather_seq_scatter_heads: head_dim 1 has extent"});
    }
    check_still_works(comm);
  });
}

TEST_CASE("errors: dims out of range on one rank") {
  const redist::mpi_communicator comm(MPI_COMM_WORLD);
  const int P = comm.size();
  for (int bad : bad_ranks(P)) {
    const host_tensor x = filled(dtype::f32, {2 * P, 3}, 1, 0);
    const int s = comm.rank() == bad ? 2 : 0;
    check_agreed_error(
        outcome_of([&] { (void)redist::seqpar::all_to_all(comm, x, s, 1); }), comm,
        {"redist::seqpar::all_to_all: scatter_dim 2 is out of range for a tensor of 2 dims",
         "(on rank " + std::to_string(bad) + ")", "rank " + std::to_string(bad) + " passes scatter_dim 2"});
    const int d = comm.rank() == bad ? -3 : 1;
    check_agreed_error(outcome_of([&] { (void)redist::seqpar::gather_outputs(comm, x, d, 3 * P); }), comm,
                       {"redist::seqpar::gather_outputs: dim -3 is out of range"});
    check_still_works(comm);
  }
  // On every rank (one rank too).
  const host_tensor x = filled(dtype::f32, {2 * P, 3}, 1, 0);
  check_agreed_error(outcome_of([&] { (void)redist::seqpar::gather_heads_scatter_seq(comm, x, 1, 5); }), comm,
                     {"redist::seqpar::gather_heads_scatter_seq: seq_dim 5 is out of range"});
  check_still_works(comm);
}

TEST_CASE("errors: a rank that cannot allocate its output, before any byte moves") {
  on_each_comm([&](const redist::mpi_communicator& comm, const char*) {
    const int P = comm.size();
    for (int bad : bad_ranks(P)) {
      const std::vector<std::string> parts{"rank " + std::to_string(bad) + " could not allocate its output"};
      refusing_tensor::refuse = comm.rank() == bad;
      const host_tensor x = filled(dtype::bf16, {2 * P, 3}, 1, 0);
      check_agreed_error(
          outcome_of([&] { (void)redist::seqpar::all_to_all<refusing_tensor>(comm, x, 0, 1); }), comm, parts);
      check_agreed_error(
          outcome_of([&] { (void)redist::seqpar::gather_outputs<refusing_tensor>(comm, x, 1, 3 * P); }), comm,
          parts);
      const host_tensor qkv = filled(dtype::bf16, {2, 3 * P}, 1, 0);
      check_agreed_error(outcome_of([&] {
                           (void)redist::seqpar::gather_seq_scatter_heads_qkv<refusing_tensor>(comm, qkv, 0);
                         }),
                         comm, parts);
      refusing_tensor::refuse = false;
      check_still_works(comm);
    }
  });
}

TEST_CASE("errors: a prepared exchange, agreed when prepared and checked on each rank when called") {
  on_each_comm([&](const redist::mpi_communicator& comm, const char*) {
    const int P = comm.size();
    for (int bad : bad_ranks(P)) {
      // Preparing is agreed: one rank's other shape fails on every rank.
      const host_tensor odd = filled(dtype::bf16, {2 * P, comm.rank() == bad ? 4 : 3}, 1, 0);
      check_agreed_error(
          outcome_of([&] { (void)redist::seqpar::prepare_all_to_all(comm, odd, 0, 1); }), comm,
          {"redist::seqpar::prepare_all_to_all: the ranks' calls differ",
           "rank " + std::to_string(bad) + " passes x bf16 [" + std::to_string(2 * P) + ", 4]"});
      check_still_works(comm);
    }
    // Tensors that do not match what was prepared, on every rank: the same error everywhere, nothing moved.
    const host_tensor x = filled(dtype::bf16, {2 * P, 3}, 1, 0);
    const auto prepared = redist::seqpar::prepare_all_to_all(comm, x, 0, 1);
    const host_tensor wide = filled(dtype::bf16, {2 * P, 5}, 1, 0);
    host_tensor out(dtype::bf16, {2, 3 * P});
    const host_tensor before = out;
    check_agreed_error(outcome_of([&] { redist::seqpar::all_to_all_into(comm, prepared, wide, out); }), comm,
                       {"redist::seqpar::all_to_all_into: x is bf16 [" + std::to_string(2 * P) +
                        ", 5] where the prepared exchange takes bf16 [" + std::to_string(2 * P) + ", 3]"});
    host_tensor wrong_out(dtype::f32, {2, 3 * P});
    check_agreed_error(
        outcome_of([&] { redist::seqpar::all_to_all_into(comm, prepared, x, wrong_out); }), comm,
        {"out is f32 [2, " + std::to_string(3 * P) + "] where the prepared exchange takes bf16"});
    CHECK(difference(out, before).empty());
    // Prepared on another communicator: each rank finds it alone (no agreement), before any byte moves.
    if (P > 1) {
      const redist::mpi_communicator self(MPI_COMM_SELF);
      const outcome o = outcome_of([&] { redist::seqpar::all_to_all_into(self, prepared, x, out); });
      INFO(o.message);
      CHECK(o.redist_error);
      CHECK(o.message.find("prepared for a communicator of " + std::to_string(P) + " ranks (as rank " +
                           std::to_string(comm.rank()) + "), called on one of 1 (as rank 0)") !=
            std::string::npos);
    }
    check_still_works(comm);
  });
}

TEST_CASE("errors: shapes, dtypes or arguments that differ on one rank") {
  on_each_comm([&](const redist::mpi_communicator& comm, const char* label) {
    const int P = comm.size();
    if (P < 2) {
      MESSAGE(label << ": one rank, no other rank to differ from: only the same-call case runs");
    }
    for (int bad : bad_ranks(P)) {
      const bool me_bad = comm.rank() == bad;
      const std::string b = std::to_string(bad);
      // A shape that differs (still divisible: only the agreement can catch it).
      const host_tensor x = filled(dtype::bf16, {2 * P, me_bad ? 4 : 3}, 1, 0);
      check_agreed_error(outcome_of([&] { (void)redist::seqpar::all_to_all(comm, x, 0, 1); }), comm,
                         {"redist::seqpar::all_to_all: the ranks' calls differ",
                          "rank " + b + " passes x bf16 [" + std::to_string(2 * P) + ", 4]"});
      // A dtype that differs.
      const host_tensor y = filled(me_bad ? dtype::f16 : dtype::bf16, {2 * P, 3}, 1, 0);
      check_agreed_error(outcome_of([&] { (void)redist::seqpar::all_to_all(comm, y, 0, 1); }), comm,
                         {"the ranks' calls differ in x", "rank " + b + " passes x f16"});
      // A gather dim that differs.
      check_agreed_error(outcome_of([&] { (void)redist::seqpar::all_to_all(comm, y, 0, me_bad ? 0 : 1); }),
                         comm, {"the ranks' calls differ in x, gather_dim", "gather_dim 0"});
      // all_to_all_into with an output of the wrong shape on one rank.
      const host_tensor w = filled(dtype::bf16, {2 * P, 3}, 1, 0);
      host_tensor out(dtype::bf16, {2, 3 * P - (me_bad ? 1 : 0)});
      check_agreed_error(outcome_of([&] { redist::seqpar::all_to_all_into(comm, w, 0, 1, out); }), comm,
                         {"redist::seqpar::all_to_all_into: out is bf16 [2, " + std::to_string(3 * P - 1) +
                          "], expected bf16 [2, " + std::to_string(3 * P) + "]"});
      // An unpadded length that differs.
      const host_tensor z = filled(dtype::i64, {2, 3}, 1, 0);
      const std::int64_t unpadded = 3 * P - (me_bad ? 1 : 0);
      check_agreed_error(outcome_of([&] { (void)redist::seqpar::gather_outputs(comm, z, 1, unpadded); }),
                         comm, {"redist::seqpar::gather_outputs: the ranks' calls differ", "unpadded_size"});
      check_still_works(comm);
    }
    // The same call everywhere: no error (the agreement does not cry wolf).
    const host_tensor x = filled(dtype::bf16, {2 * P, 3}, 1, 0);
    const outcome o = outcome_of([&] { (void)redist::seqpar::all_to_all(comm, x, 0, 1); });
    INFO(o.message);
    CHECK(all_ranks(!o.redist_error, comm.native()));
  });
}
