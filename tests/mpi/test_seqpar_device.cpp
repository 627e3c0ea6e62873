// MPI tests of redist/seqpar.hpp on device tensors without a GPU, on the stand-in device of sim_device.hpp:
// every op on sim tensors gives the host op's bytes, shapes and dtypes exactly (packed and in-place
// all-to-alls, padding and cutting, a kept space_workspace, the fused qkv form), on the world, numbered
// backwards and on part of the world; no copy touches host memory; the tables per call (kernel launches on
// a GPU) do not grow with the tensor's rows; and the rotating broadcast with a second stream for use()
// orders the two streams twice per step and hands every rank each tree's bytes.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../unit/splitmix.hpp"
#include "mpi_test.hpp"
#include "nested_text.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/seqpar.hpp"
#include "sim_device.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::test::host_touches;
using redist::test::sim_space;
using redist::test::sim_tensor;
using shape_t = std::vector<std::int64_t>;
namespace sp = redist::seqpar;

host_tensor random_tensor(dtype t, const shape_t& shape, std::uint64_t seed) {
  host_tensor x(t, shape);
  auto bytes = x.bytes();
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<std::byte>(redist::test::draw(seed, i) & 0xff);
  return x;
}

sim_tensor to_sim(const host_tensor& h) {
  sim_tensor s = sim_tensor::make(h.dtype(), h.shape());
  if (s.nbytes != 0) std::memcpy(s.bytes.get(), h.data(), s.nbytes);
  return s;
}

bool same(const host_tensor& h, const sim_tensor& s) {
  return h.dtype() == s.type &&
         std::equal(h.shape().begin(), h.shape().end(), s.shape.begin(), s.shape.end()) &&
         h.bytes().size() == s.nbytes &&
         (s.nbytes == 0 || std::memcmp(h.data(), s.bytes.get(), s.nbytes) == 0);
}

// Runs op on a host tensor and on its sim copy; true when the results agree, no copy touched host memory and
// the sim run used `tables` tables (set on first use, compared after).
struct device_check {
  bool ok = true;
  template <class Op>
  std::size_t run(const host_tensor& x, Op op) {
    const host_tensor want = op(x, redist::host_space{});
    const sim_tensor dev = to_sim(x);
    sim_space space;
    host_touches = 0;
    const sim_tensor got = op(dev, space);
    ok = ok && host_touches == 0 && same(want, got);
    return space.count->tables;
  }
};

// The ops at a tensor of `outer` leading rows; returns the tables each used.
std::vector<std::size_t> every_op(const redist::mpi_communicator& comm, std::int64_t outer, device_check& c) {
  const std::int64_t P = comm.size();
  std::vector<std::size_t> tables;
  const auto seed = static_cast<std::uint64_t>(comm.rank() * 100 + outer);
  const host_tensor x = random_tensor(dtype::i16, {outer, 2 * P, 5}, seed);
  for (const auto& dims : {std::pair{1, 0}, {0, 2}, {1, 1}, {2, 1}, {-2, -1}}) {
    const int sd = dims.first, gd = dims.second;  // named: clang 14 captures no structured binding
    if (sd == 0 && outer % P != 0) continue;
    if (sd == 2) continue;  // extent 5 divides by 1 and 5 ranks only
    tables.push_back(c.run(x, [&](const auto& t, const auto& space) {
      return sp::all_to_all(comm, t, sd, gd, nullptr, space);
    }));
  }
  // A kept workspace of the space, reused by a second exchange.
  {
    const host_tensor want = sp::all_to_all(comm, x, 1, 2);
    sim_space space;
    redist::space_workspace<sim_space> ws(space);
    sim_tensor out = sim_tensor::make(dtype::i16, want.shape());
    host_touches = 0;
    sp::all_to_all_into(comm, to_sim(x), 1, 2, out, &ws, space);
    sp::all_to_all_into(comm, to_sim(x), 1, 2, out, &ws, space);
    c.ok = c.ok && host_touches == 0 && same(want, out) && (P == 1 || ws.capacity() != 0);
    tables.push_back(space.count->tables);
  }
  const std::int64_t seq = 2 * P + 1;  // does not divide: padding
  const host_tensor long_x = random_tensor(dtype::f32, {outer, seq, 3}, seed + 1);
  tables.push_back(
      c.run(long_x, [&](const auto& t, const auto& space) { return sp::slice_inputs(comm, t, 1, space); }));
  const host_tensor slice = sp::slice_inputs(comm, long_x, 1);
  tables.push_back(c.run(
      slice, [&](const auto& t, const auto& space) { return sp::gather_outputs(comm, t, 1, seq, space); }));
  const host_tensor heads = random_tensor(dtype::bf16, {3, outer * P, 4}, seed + 2);
  const std::int64_t unpadded = P == 1 ? 3 : 3 * P - 1;
  tables.push_back(c.run(heads, [&](const auto& t, const auto& space) {
    return sp::gather_seq_scatter_heads(comm, t, 0, 1, unpadded, nullptr, space);
  }));
  const host_tensor back = random_tensor(dtype::u8, {5, outer, 3}, seed + 3);
  tables.push_back(c.run(back, [&](const auto& t, const auto& space) {
    return sp::gather_heads_scatter_seq(comm, t, 1, 0, nullptr, space);
  }));
  const host_tensor qkv = random_tensor(dtype::f64, {outer, 3 * 2 * P}, seed + 4);
  tables.push_back(c.run(qkv, [&](const auto& t, const auto& space) {
    return sp::gather_seq_scatter_heads_qkv(comm, t, 0, std::nullopt, nullptr, space);
  }));
  return tables;
}

template <class F>
void on_each_comm(F f) {
  f(redist::mpi_communicator(MPI_COMM_WORLD));
  const auto backwards = redist::test::reversed_world();
  f(redist::mpi_communicator(backwards.get()));
  const auto part = redist::test::all_but_rank0();
  if (part.is_member()) f(redist::mpi_communicator(part.get()));
}

// A rank's tree for the rotating broadcast: several tensors (packed), one (sent in place) or none.
template <class Tensor, class Make>
redist::nested<Tensor> tree_of(int r, Make make) {
  using tree = redist::nested<Tensor>;
  const auto seed = static_cast<std::uint64_t>(r) + 7;
  if (r % 3 == 1) return tree(make(random_tensor(dtype::i32, {r + 1, 3}, seed)));
  if (r % 3 == 2) return tree{};
  typename tree::list items{tree(make(random_tensor(dtype::bf16, {2 + r}, seed))),
                            tree(make(random_tensor(dtype::u8, {0}, seed)))};
  return tree(typename tree::fields{{"a", tree(make(random_tensor(dtype::f32, {r + 2, 2}, seed + 1)))},
                                    {"b", tree(std::move(items))}});
}

// A tree's structure, dtypes and shapes as text, then its bytes.
template <class Tensor>
std::pair<std::string, std::vector<std::byte>> flat(const redist::nested<Tensor>& t) {
  std::pair<std::string, std::vector<std::byte>> out;
  redist::test::describe(t, out.first, out.second);
  return out;
}

}  // namespace

TEST_CASE("seqpar on device tensors: every op gives the host op's bytes; tables do not grow with the rows") {
  on_each_comm([](const redist::mpi_communicator& comm) {
    device_check c;
    const auto few = every_op(comm, comm.size() * 2, c);
    const auto many = every_op(comm, comm.size() * 24, c);
    CHECK(redist::test::all_ranks(c.ok, comm.native()));
    CHECK(redist::test::all_ranks(few == many, comm.native()));
  });
}

TEST_CASE("seqpar on device tensors: the rotating broadcast with use() on a second stream") {
  on_each_comm([](const redist::mpi_communicator& comm) {
    const int r = comm.rank(), P = comm.size();
    const auto host_mine = tree_of<host_tensor>(r, [](host_tensor t) { return t; });
    const auto sim_mine = tree_of<sim_tensor>(r, to_sim);
    std::vector<std::pair<std::string, std::vector<std::byte>>> want, got;
    sp::rotating_broadcast(comm, host_mine,
                           [&](int, const redist::nested<host_tensor>& t) { want.push_back(flat(t)); });
    sim_space space, use_space;
    use_space.stream_id = 2;
    host_touches = 0;
    sp::rotating_broadcast(
        comm, sim_mine, [&](int, const redist::nested<sim_tensor>& t) { got.push_back(flat(t)); }, space,
        use_space);
    const bool ok = host_touches == 0 && want == got && want.size() == static_cast<std::size_t>(P);
    // Once before the first step, then twice per step: use() after the data, the stream after use().
    const bool ordered =
        space.count->orderings + use_space.count->orderings == 1 + 2 * static_cast<std::size_t>(P);
    CHECK(redist::test::all_ranks(ok, comm.native()));
    CHECK(redist::test::all_ranks(ordered, comm.native()));
  });
}
