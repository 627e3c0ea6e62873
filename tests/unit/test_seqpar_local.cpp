// One-process tests of redist/seqpar.hpp: the all-to-all's packing and unpacking index math for 1 to 5
// simulated ranks (every pair of dims, padding and cutting; copies made at once and as one table) and
// slice_inputs' slicing against an element-by-element reference, the public operations on a
// self_communicator, local errors, and the agreement messages.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "error_of.hpp"
#include "redist/comm/self.hpp"
#include "redist/detail/hash.hpp"
#include "redist/seqpar.hpp"
#include "row_major.hpp"
#include "splitmix.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
namespace sp = redist::detail::seqpar;

// What fill(to, copies) writes into a copy of `init`, the same through both copy sinks: made at once (host
// tensors) and listed as one table (device tensors), here run by the host space.
template <class Fill>
std::vector<std::byte> through_both(const std::vector<std::byte>& init, Fill fill) {
  std::vector<std::byte> now = init, table = init;
  redist::detail::direct_copies direct;
  fill(now.data(), direct);
  redist::detail::copy_list list;
  fill(table.data(), list);
  list.run(redist::host_space{});
  REQUIRE(now == table);
  return now;
}
using shape_t = std::vector<std::int64_t>;

using redist::test::error_of;
using redist::test::flatten;
using redist::test::mix;
using redist::test::numel;
using redist::test::unflatten;

// Never zero, so that a zero byte in a result is padding, not data.
std::byte byte_of(std::uint64_t source, std::size_t i) {
  return static_cast<std::byte>(1 + mix(source * 1000003 + i) % 255);
}

std::vector<std::byte> bytes_for(std::uint64_t source, std::size_t n) {
  std::vector<std::byte> b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = byte_of(source, i);
  return b;
}

// What rank `me` of P must hold, element by element, from the definition: output index o comes from rank
// i = o[g] / chunk[g], chunk index o with [g] %= chunk[g], i's input index that with [s] += me * chunk[s];
// zero where that lies in the padding (>= in[s]). Inputs: per rank, its bytes.
std::vector<std::byte> reference(const std::vector<std::vector<std::byte>>& inputs, const shape_t& in,
                                 std::size_t elem, std::size_t s, std::size_t g, std::size_t P,
                                 std::size_t me, std::int64_t scatter_rows, std::int64_t keep) {
  shape_t chunk = in;
  chunk[s] = scatter_rows / static_cast<std::int64_t>(P);
  shape_t out = chunk;
  out[g] = keep;
  std::vector<std::byte> result(numel(out) * elem);
  for (std::size_t f = 0; f < numel(out); ++f) {
    auto idx = unflatten(f, out);
    const auto source = static_cast<std::size_t>(idx[g] / chunk[g]);
    idx[g] %= chunk[g];
    idx[s] += static_cast<std::int64_t>(me) * chunk[s];
    if (idx[s] >= in[s]) continue;  // padding: zero
    std::memcpy(result.data() + f * elem, inputs[source].data() + flatten(idx, in) * elem, elem);
  }
  return result;
}

// The library's path for rank `me`, the exchange simulated: pack every rank's input (or take it whole when
// the layout says it is sent in place), take block `me` of each, unpack (or take the blocks whole).
std::vector<std::byte> through_layout(const std::vector<std::vector<std::byte>>& inputs, const shape_t& in,
                                      std::size_t elem, std::size_t s, std::size_t g, std::size_t P,
                                      std::size_t me, std::int64_t scatter_rows, std::int64_t keep) {
  const auto l = sp::make_layout("test", in, elem, s, g, P, scatter_rows, keep);
  std::vector<std::byte> recv(l.block * P);
  for (std::size_t i = 0; i < P; ++i) {
    std::vector<std::byte> send(l.block * P);
    if (l.send_in_place) {
      REQUIRE(inputs[i].size() == send.size());
      send = inputs[i];
    } else if (!send.empty()) {
      send =
          through_both(send, [&](std::byte* to, auto& copies) { sp::pack(l, inputs[i].data(), to, copies); });
    }
    if (l.block != 0) std::memcpy(recv.data() + i * l.block, send.data() + me * l.block, l.block);
  }
  if (l.recv_in_place) return recv;
  std::vector<std::byte> out(numel(l.out) * elem, std::byte{0xEE});
  if (!out.empty())
    out = through_both(out, [&](std::byte* to, auto& copies) { sp::unpack(l, recv.data(), to, copies); });
  return out;
}

void check_case(const shape_t& in, std::size_t elem, std::size_t s, std::size_t g, std::size_t P, bool pad,
                bool cut) {
  const auto Pi = static_cast<std::int64_t>(P);
  const std::int64_t rows = pad ? (in[s] + Pi - 1) / Pi * Pi : in[s];
  if (rows % Pi != 0) return;
  const std::int64_t chunk_g = s == g ? rows / Pi : in[g];
  std::int64_t keep = chunk_g * Pi;
  if (cut && keep > 0) keep -= std::min<std::int64_t>(Pi - 1, keep);
  std::vector<std::vector<std::byte>> inputs;
  for (std::size_t r = 0; r < P; ++r) inputs.push_back(bytes_for(r, numel(in) * elem));
  for (std::size_t me = 0; me < P; ++me) {
    INFO("shape " << redist::detail::shape_text(in) << " elem " << elem << " scatter " << s << " gather " << g
                  << " P " << P << " rank " << me << " pad " << pad << " keep " << keep);
    const auto want = reference(inputs, in, elem, s, g, P, me, rows, keep);
    const auto got = through_layout(inputs, in, elem, s, g, P, me, rows, keep);
    CHECK(got == want);
  }
}

}  // namespace

TEST_CASE("seqpar layout: pack / exchange / unpack equals the element-wise definition") {
  const std::vector<shape_t> shapes = {{12},          {0},           {12, 5},       {6, 1},
                                       {1, 12},       {4, 3, 10},    {1, 1, 12},    {3, 0, 12},
                                       {2, 12, 3, 2}, {1, 12, 1, 3}, {2, 3, 4, 60}, {5, 7, 3, 2}};
  for (const auto& in : shapes)
    for (std::size_t P = 1; P <= 5; ++P)
      for (std::size_t s = 0; s < in.size(); ++s)
        for (std::size_t g = 0; g < in.size(); ++g)
          for (std::size_t elem : {std::size_t{1}, std::size_t{2}, std::size_t{8}}) {
            check_case(in, elem, s, g, P, false, false);
            check_case(in, elem, s, g, P, true, false);
            check_case(in, elem, s, g, P, true, true);
          }
}

TEST_CASE("seqpar layout: sent and received in place exactly when blocks are contiguous and nothing padded") {
  auto l = sp::make_layout("t", shape_t{8, 3, 2}, 2, 0, 1, 4, 8, 12);
  CHECK(l.send_in_place);
  CHECK_FALSE(l.recv_in_place);
  l = sp::make_layout("t", shape_t{1, 8, 3}, 2, 1, 0, 4, 8, 4);
  CHECK(l.send_in_place);
  CHECK(l.recv_in_place);
  l = sp::make_layout("t", shape_t{7, 3}, 2, 0, 1, 4, 8, 12);  // padded
  CHECK_FALSE(l.send_in_place);
  l = sp::make_layout("t", shape_t{2, 8, 3}, 2, 1, 0, 4, 8, 7);  // cut
  CHECK_FALSE(l.recv_in_place);
  l = sp::make_layout("t", shape_t{2, 8, 3}, 2, 1, 2, 1, 8, 3);  // one rank: a copy either way
  CHECK(l.send_in_place);
  CHECK(l.recv_in_place);
  CHECK(l.block == 2 * 8 * 3 * 2);
}

TEST_CASE("seqpar slice_rows: each rank's slice is the zero-padded rows [r * unit, (r + 1) * unit)") {
  for (const shape_t& in : {shape_t{7}, shape_t{3, 7, 2}, shape_t{7, 3}, shape_t{2, 0}, shape_t{2, 2, 5}}) {
    for (std::size_t d = 0; d < in.size(); ++d)
      for (std::size_t P = 1; P <= 9; ++P)
        for (std::size_t r = 0; r < P; ++r) {
          const std::size_t elem = 2;
          const auto x = bytes_for(7, numel(in) * elem);
          const std::int64_t unit = (in[d] + static_cast<std::int64_t>(P) - 1) / static_cast<std::int64_t>(P);
          shape_t out_shape = in;
          out_shape[d] = unit;
          std::vector<std::byte> want(numel(out_shape) * elem);
          for (std::size_t f = 0; f < numel(out_shape); ++f) {
            auto idx = unflatten(f, out_shape);
            idx[d] += static_cast<std::int64_t>(r) * unit;
            if (idx[d] < in[d]) std::memcpy(want.data() + f * elem, x.data() + flatten(idx, in) * elem, elem);
          }
          std::vector<std::byte> got(want.size(), std::byte{0xEE});
          if (!got.empty())
            got = through_both(got, [&](std::byte* to, auto& copies) {
              sp::slice_rows(in, elem, d, r, P, x.data(), to, copies);
            });
          INFO("shape " << redist::detail::shape_text(in) << " dim " << d << " P " << P << " rank " << r);
          CHECK(got == want);
        }
  }
}

namespace {

host_tensor filled(dtype t, shape_t shape, std::uint64_t source) {
  host_tensor x(t, std::move(shape));
  const auto b = bytes_for(source, x.nbytes());
  if (!b.empty()) std::memcpy(x.data(), b.data(), b.size());
  if (t == dtype::boolean)
    for (auto& v : x.bytes()) v = static_cast<std::byte>(static_cast<unsigned>(v) & 1u);
  return x;
}

bool same(const host_tensor& a, const host_tensor& b) {
  return a.dtype() == b.dtype() &&
         std::equal(a.shape().begin(), a.shape().end(), b.shape().begin(), b.shape().end()) &&
         std::equal(a.bytes().begin(), a.bytes().end(), b.bytes().begin(), b.bytes().end());
}

}  // namespace

TEST_CASE("seqpar on one process: every operation is the identity (or a cut), on every dtype") {
  const redist::self_communicator self;
  for (dtype t : {dtype::f32, dtype::bf16, dtype::i64, dtype::boolean}) {
    const host_tensor x = filled(t, {3, 4, 6}, 1);
    for (int s = -3; s < 3; ++s)
      for (int g = -3; g < 3; ++g) CHECK(same(redist::seqpar::all_to_all(self, x, s, g), x));
    CHECK(same(redist::seqpar::slice_inputs(self, x, 1), x));
    CHECK(same(redist::seqpar::gather_outputs(self, x, 1, 4), x));
    CHECK(same(redist::seqpar::gather_seq_scatter_heads(self, x, 1, 2), x));
    CHECK(same(redist::seqpar::gather_seq_scatter_heads(self, x, 1, 2, 4), x));
    CHECK(same(redist::seqpar::gather_heads_scatter_seq(self, x, 2, 1), x));
    CHECK(same(redist::seqpar::gather_seq_scatter_heads_qkv(self, x, 1), x));
    CHECK(same(redist::seqpar::gather_seq_scatter_heads_qkv(self, x, 0, 3), x));
  }
  // Views in, owning tensors out.
  host_tensor x = filled(dtype::i64, {4, 2}, 3);
  const redist::host_tensor_view v(x);
  const host_tensor y = redist::seqpar::all_to_all(self, v, 0, 1);
  CHECK(same(y, x));
  // Empty tensors.
  const host_tensor e = filled(dtype::f32, {0, 3}, 0);
  CHECK(same(redist::seqpar::all_to_all(self, e, 0, 1), e));
  CHECK(same(redist::seqpar::gather_outputs(self, e, 0, 0), e));
  CHECK(same(redist::seqpar::slice_inputs(self, e, 0), e));
}

TEST_CASE("seqpar on one process: all_to_all_into checks its output and reuses a workspace") {
  const redist::self_communicator self;
  redist::seqpar::workspace ws;
  host_tensor x = filled(dtype::bf16, {2, 3, 4}, 5);
  host_tensor out(dtype::bf16, {2, 3, 4});
  redist::seqpar::all_to_all_into(self, x, 1, 2, out, &ws);
  CHECK(same(out, x));
  CHECK(ws.capacity() == 0);  // one rank: x itself is the one block, sent straight into out
  const std::byte* kept = ws.reserve(64);
  CHECK(ws.reserve(10) == kept);  // grows only
  CHECK(ws.capacity() == 64);
  CHECK(same(redist::seqpar::gather_heads_scatter_seq(self, x, 2, 1, &ws), x));
  host_tensor wrong(dtype::bf16, {2, 3, 5});
  CHECK(error_of([&] { redist::seqpar::all_to_all_into(self, x, 0, 1, wrong); }) ==
        "redist::seqpar::all_to_all_into: out is bf16 [2, 3, 5], expected bf16 [2, 3, 4]");
  host_tensor other(dtype::f16, {2, 3, 4});
  CHECK(error_of([&] { redist::seqpar::all_to_all_into(self, x, 0, 1, other); }) ==
        "redist::seqpar::all_to_all_into: out is f16 [2, 3, 4], expected bf16 [2, 3, 4]");
  redist::host_tensor_view alias(x.data(), dtype::bf16, {2, 3, 4});
  CHECK(error_of([&] { redist::seqpar::all_to_all_into(self, x, 0, 1, alias); }) ==
        "redist::seqpar::all_to_all_into: out overlaps x; the exchange reads x while it writes out");
}

TEST_CASE("seqpar on one process: the rotating broadcast calls use once, with the inputs themselves") {
  const redist::self_communicator self;
  using tree = redist::nested<host_tensor>;
  for (const tree& mine : {tree{}, tree{filled(dtype::f32, {2, 3}, 1)},
                           tree{tree::fields{{"a", filled(dtype::i64, {2}, 2)},
                                             {"b", tree::list{filled(dtype::bf16, {1, 2}, 3)}}}}}) {
    int calls = 0;
    redist::seqpar::rotating_broadcast(self, mine, [&](int k, const tree& t) {
      CHECK(k == 0);
      CHECK(&t == &mine);
      ++calls;
    });
    CHECK(calls == 1);
  }
}

TEST_CASE("seqpar errors on one process name the function and what is wrong") {
  const redist::self_communicator self;
  const host_tensor x = filled(dtype::f32, {3, 4, 6}, 1);
  CHECK(error_of([&] { (void)redist::seqpar::all_to_all(self, x, 3, 0); }) ==
        "redist::seqpar::all_to_all: scatter_dim 3 is out of range for a tensor of 3 dims (valid: -3 to 2)");
  CHECK(error_of([&] { (void)redist::seqpar::all_to_all(self, x, 0, -4); }) ==
        "redist::seqpar::all_to_all: gather_dim -4 is out of range for a tensor of 3 dims (valid: -3 to 2)");
  CHECK(error_of([&] { (void)redist::seqpar::slice_inputs(self, x, 5); }) ==
        "redist::seqpar::slice_inputs: dim 5 is out of range for a tensor of 3 dims (valid: -3 to 2)");
  CHECK(error_of([&] {
          (void)redist::seqpar::gather_outputs(self, x, 1, 3);
        }).find("redist::seqpar::gather_outputs: unpadded_size 3 does not fit the 4 gathered rows") == 0);
  CHECK(error_of([&] { (void)redist::seqpar::gather_seq_scatter_heads(self, x, 1, 1); }) ==
        "redist::seqpar::gather_seq_scatter_heads: seq_dim and head_dim are both dim 1");
  CHECK(error_of([&] { (void)redist::seqpar::gather_heads_scatter_seq(self, x, -1, 2); }) ==
        "redist::seqpar::gather_heads_scatter_seq: seq_dim and head_dim are both dim 2");
  CHECK(error_of([&] {
          (void)redist::seqpar::gather_seq_scatter_heads(self, x, 1, 2, 5);
        }).find("unpadded_seq_len 5 does not fit the 4 gathered rows") != std::string::npos);
  const host_tensor odd = filled(dtype::f32, {3, 4, 7}, 1);
  CHECK(error_of([&] { (void)redist::seqpar::gather_seq_scatter_heads_qkv(self, odd, 0); }) ==
        "redist::seqpar::gather_seq_scatter_heads_qkv: the last dim has extent 7 (shape [3, 4, 7]), not 3 "
        "equal "
        "parts q, k and v");
  CHECK(
      error_of([&] { (void)redist::seqpar::gather_seq_scatter_heads_qkv(self, x, 2); }) ==
      "redist::seqpar::gather_seq_scatter_heads_qkv: seq_dim 2 is the last dim, which holds the fused [q | k "
      "| v]");
  // The same communicator still works.
  CHECK(same(redist::seqpar::all_to_all(self, x, 0, 1), x));
}
