// MPI tests of mismatched calls: every ordered pair of different ops, one rank calling the other, and each
// shared argument of each op differing on one rank: one redist::error alike everywhere, then an exact call.
#include <doctest/doctest.h>
#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mpi_test.hpp"
#include "redist/comm/mpi.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/metadata_codec.hpp"
#include "redist/core/nested.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/dispatch.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/gather_scatter.hpp"
#include "redist/plan/storage_tracker.hpp"
#include "redist/redistribute.hpp"
#include "redist/seqpar.hpp"
#include "redist/shard.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::sample_id;
using redist::test::all_ranks;
using redist::test::outcome;
using redist::test::outcome_of;
using batch = redist::sequence_batch<>;
using tree = redist::nested<>;
using comm_type = redist::mpi_communicator;
using shape_t = std::vector<std::int64_t>;

// ---- tensors whose every element says where it came from ----

// Element idx of rank s's tensor: 1,000,000 s + sum of idx[d] * 100^(dims - 1 - d) (every index below 100).
std::int32_t at(int s, std::span<const std::int64_t> idx) {
  std::int64_t v = 0;
  for (const std::int64_t i : idx) v = 100 * v + i;
  return static_cast<std::int32_t>(1'000'000 * static_cast<std::int64_t>(s) + v);
}

// Calls f(idx) for every index of shape in row-major order.
template <class F>
void for_each_index(const shape_t& shape, F f) {
  std::size_t count = 1;
  for (const std::int64_t e : shape) count *= static_cast<std::size_t>(e);
  shape_t idx(shape.size(), 0);
  for (std::size_t n = 0; n < count; ++n) {
    f(std::span<const std::int64_t>(idx));
    for (std::size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

// Rank s's i32 tensor of `shape`; another dtype (an argument that differs) is zeros.
host_tensor grid(int s, const shape_t& shape, dtype type = dtype::i32) {
  host_tensor t(type, shape);
  if (type != dtype::i32) return t;
  auto v = t.values<std::int32_t>();
  std::size_t n = 0;
  for_each_index(shape, [&](std::span<const std::int64_t> idx) { v[n++] = at(s, idx); });
  return t;
}

// Empty when got is an i32 tensor of `shape` whose element idx is want(idx); else the first difference.
template <class Want>
std::string grid_problem(const host_tensor& got, const shape_t& shape, Want want) {
  const auto gs = got.shape();
  if (got.dtype() != dtype::i32 || !std::equal(gs.begin(), gs.end(), shape.begin(), shape.end()))
    return "the result has another dtype or shape";
  const auto v = got.values<std::int32_t>();
  std::size_t n = 0;
  std::string problem;
  for_each_index(shape, [&](std::span<const std::int64_t> idx) {
    if (problem.empty() && v[n] != want(idx)) problem = "element " + std::to_string(n) + " differs";
    ++n;
  });
  return problem;
}

// ---- the one-call ring of samples (redistribute's forms, gather_metadata) ----

// Rank r holds ids 10r+1 and 10r+2 with keys "a" (i64, 2 + id % 3 tokens) and "b" (f32 [2], 1 token),
// element e of (id, key) being 1000 id + e (exact in float32), and wants the next rank's ids, second first.
std::int64_t tokens_of(sample_id id, int key) { return key == 0 ? 2 + static_cast<std::int64_t>(id % 3) : 1; }

std::vector<sample_id> ring_ids(int r) {
  return {10 * static_cast<sample_id>(r) + 1, 10 * static_cast<sample_id>(r) + 2};
}

batch ring_batch(int r) {
  const std::vector<sample_id> ids = ring_ids(r);
  redist::seqlen_table lens_a, lens_b;
  std::int64_t rows = 0;
  for (const sample_id id : ids) {
    const std::int64_t ta = tokens_of(id, 0), tb = 1;
    lens_a.push_back(std::span(&ta, 1));
    lens_b.push_back(std::span(&tb, 1));
    rows += ta;
  }
  host_tensor a(dtype::i64, {rows});
  auto va = a.values<std::int64_t>();
  host_tensor b(dtype::f32, {2, 2});
  auto vb = b.values<float>();
  for (std::size_t i = 0, k = 0; i < ids.size(); ++i) {
    for (std::int64_t e = 0; e < tokens_of(ids[i], 0); ++e)
      va[k++] = static_cast<std::int64_t>(1000 * ids[i]) + e;
    for (std::size_t e = 0; e < 2; ++e) vb[2 * i + e] = static_cast<float>(1000 * ids[i] + e);
  }
  std::vector<batch::field> fields;
  fields.push_back({"a", dtype::i64, {}, std::move(lens_a), std::move(a)});
  fields.push_back({"b", dtype::f32, {2}, std::move(lens_b), std::move(b)});
  return batch(ids, std::move(fields));
}

std::vector<sample_id> ring_wanted(int r, int n) {
  const std::vector<sample_id> next = ring_ids((r + 1) % n);
  return {next[1], next[0]};
}

// Empty when got holds exactly `wanted`, keys a and b, element by element as ring_batch made them.
std::string ring_problem(const batch& got, const std::vector<sample_id>& wanted) {
  if (!std::equal(got.ids().begin(), got.ids().end(), wanted.begin(), wanted.end())) return "ids differ";
  const auto a = got.data("a").values<std::int64_t>();
  const auto b = got.data("b").values<float>();
  std::size_t k = 0;
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    for (std::int64_t e = 0; e < tokens_of(wanted[i], 0); ++e)
      if (k >= a.size() || a[k++] != static_cast<std::int64_t>(1000 * wanted[i]) + e) return "key a differs";
    for (std::size_t e = 0; e < 2; ++e)
      if (b.size() != 2 * wanted.size() || b[2 * i + e] != static_cast<float>(1000 * wanted[i] + e))
        return "key b differs";
  }
  return k == a.size() ? "" : "key a has extra rows";
}

// Rank r's metadata as a rank with a flawed catalog sees it: id 1 of key "a" with other seqlens (flaw 0), or
// key "b" as i32 on every rank (flaw 1).
batch flawed_meta(int r, int flaw) {
  const std::vector<sample_id> ids = ring_ids(r);
  redist::seqlen_table lens_a, lens_b;
  for (const sample_id id : ids) {
    const std::int64_t ta = flaw == 0 && id == 1 ? 7 : tokens_of(id, 0), tb = 1;
    lens_a.push_back(std::span(&ta, 1));
    lens_b.push_back(std::span(&tb, 1));
  }
  std::vector<batch::field> fields;
  fields.push_back({"a", dtype::i64, {}, std::move(lens_a), std::nullopt});
  fields.push_back({"b", flaw == 1 ? dtype::i32 : dtype::f32, {2}, std::move(lens_b), std::nullopt});
  return batch(ids, std::move(fields));
}

// Every rank's metadata, catalog (with a flaw of flawed_meta's, when given) and wants, as every rank
// computes them alike without communicating.
struct ring_world {
  std::vector<batch> metas;
  redist::catalog cat;
  std::vector<redist::id_list> wants;
  std::vector<std::string> keys{"a", "b"};
  explicit ring_world(int n, std::optional<int> flaw = std::nullopt) {
    for (int r = 0; r < n; ++r) {
      metas.push_back(redist::decode_metadata(redist::encode_metadata(ring_batch(r))));
      cat.add(flaw ? flawed_meta(r, *flaw) : metas.back(), r);
      wants.push_back(ring_wanted(r, n));
    }
  }
  redist::storage_tracker tracker() const { return redist::storage_tracker::from_batches(metas); }
};

// ---- the ops ----

// One way an argument that every rank must share can differ: the field the agreement names, and how.
struct difference {
  std::string field;
  std::string how;
};

// A collective op called with valid arguments (which < 0) or with its which-th difference; returns empty when
// the call's result is exactly as expected (a call with a difference is expected to throw).
using op_call = std::function<std::string(const comm_type&, int which)>;

struct op_entry {
  std::string label;       // how the test names it
  std::string op;          // its "op" field
  std::string form_field;  // a field only this form of its op has, for ops of one name
  int family;              // entries of one family are one collective by design: they must interoperate
  std::vector<difference> differences;
  op_call call;
};

constexpr int valid = -1;

op_entry plan_redistribute() {
  return {"redistribute (plan)",
          "redist::redistribute",
          "plan",
          0,
          {{"staging", "float32_staging"},
           {"max_staging_bytes", "64"},
           {"allow_lossy", "true"},
           {"plan", "a gather-scatter plan for the same request"},
           {"catalog", "other seqlens of one (id, key)"},
           {"catalog", "another dtype of one key"}},
          [](const comm_type& comm, int which) {
            const ring_world w(comm.size(), which >= 4 ? std::optional<int>(which - 4) : std::nullopt);
            const auto p = which == 3 ? redist::plan_gather_scatter(w.tracker(), w.wants, w.keys)
                                      : redist::plan_all_to_all(w.tracker(), w.wants, w.keys);
            redist::sample_store<> store;
            store.add(ring_batch(comm.rank()));
            redist::redistribute_options opts;
            if (which == 1) opts.max_staging_bytes = 64;
            if (which == 2) opts.allow_lossy = true;
            if (which == 0)
              redist::redistribute<redist::float32_staging>(comm, store, p, w.cat, opts);
            else
              redist::redistribute(comm, store, p, w.cat, opts);
            const auto wanted = ring_wanted(comm.rank(), comm.size());
            return ring_problem(store.collect(wanted, w.keys), wanted);
          }};
}

const std::vector<difference> one_call_differences = {
    {"staging", "float32_staging"}, {"max_staging_bytes", "64"}, {"allow_lossy", "true"},
    {"pattern", "gather_scatter"},  {"ranks_per_node", "2"},     {"keys", "[b, a]"}};

redist::redistribute_options one_call_options(int which) {
  redist::redistribute_options opts;
  if (which == 1) opts.max_staging_bytes = 64;
  if (which == 2) opts.allow_lossy = true;
  if (which == 3) opts.pattern = redist::plan_pattern::gather_scatter;
  if (which == 4) opts.ranks_per_node = 2;
  if (which == 5) opts.keys = {"b", "a"};
  return opts;
}

op_entry one_call_redistribute() {
  return {"redistribute (one call)",
          "redist::redistribute",
          "pattern",
          1,
          one_call_differences,
          [](const comm_type& comm, int which) {
            const auto wanted = ring_wanted(comm.rank(), comm.size());
            const batch local = ring_batch(comm.rank());
            const auto opts = one_call_options(which);
            return ring_problem(which == 0
                                    ? redist::redistribute<redist::float32_staging>(comm, local, wanted, opts)
                                    : redist::redistribute(comm, local, wanted, opts),
                                wanted);
          }};
}

op_entry redistribute_into() {
  return {"redistribute_into",
          "redist::redistribute",
          "pattern",
          1,
          one_call_differences,
          [](const comm_type& comm, int which) {
            const auto wanted = ring_wanted(comm.rank(), comm.size());
            const batch local = ring_batch(comm.rank());
            const auto opts = one_call_options(which);
            batch out;
            if (which == 0)
              redist::redistribute_into<redist::float32_staging>(comm, local, wanted, out, opts);
            else
              redist::redistribute_into(comm, local, wanted, out, opts);
            return ring_problem(out, wanted);
          }};
}

op_entry gather_metadata() {
  return {"gather_metadata", "redist::gather_metadata", "", 2, {}, [](const comm_type& comm, int) {
            const redist::world_metadata w = redist::gather_metadata(comm, ring_batch(comm.rank()));
            if (w.batches.size() != static_cast<std::size_t>(comm.size())) return std::string("batch count");
            for (int s = 0; s < comm.size(); ++s) {
              const auto ids = ring_ids(s);
              const auto& got = w.batches[static_cast<std::size_t>(s)].ids();
              if (!std::equal(got.begin(), got.end(), ids.begin(), ids.end()))
                return "rank " + std::to_string(s) + "'s ids";
            }
            return std::string();
          }};
}

// all_to_all's arguments: x [2P, 2P] i32, scatter dim 0, gather dim 1, unless `which` changes one.
struct a2a_args {
  shape_t shape;
  dtype type = dtype::i32;
  int scatter_dim = 0, gather_dim = 1;
  a2a_args(int which, std::int64_t P) : shape{2 * P, 2 * P} {
    if (which == 0) type = dtype::f32;
    if (which == 1) shape[1] = 2 * P + 1;
    if (which == 2) scatter_dim = 1;
    if (which == 3) gather_dim = 0;
  }
  shape_t out_shape(std::int64_t P) const {
    shape_t s = shape;
    s[static_cast<std::size_t>(scatter_dim)] /= P;
    s[static_cast<std::size_t>(gather_dim)] *= P;
    return s;
  }
};

const std::vector<difference> a2a_differences = {
    {"x", "f32"}, {"x", "another extent"}, {"scatter_dim", "1"}, {"gather_dim", "0"}};

// Rank r's valid all_to_all result: chunk r of every source s, side by side along dim 1.
std::string a2a_problem(const host_tensor& got, int r, std::int64_t P) {
  return grid_problem(got, {2, 2 * P * P}, [&](std::span<const std::int64_t> i) {
    const shape_t src{2 * r + i[0], i[1] % (2 * P)};
    return at(static_cast<int>(i[1] / (2 * P)), src);
  });
}

op_entry all_to_all() {
  return {"seqpar::all_to_all",
          "redist::seqpar::all_to_all",
          "",
          3,
          a2a_differences,
          [](const comm_type& comm, int which) {
            const std::int64_t P = comm.size();
            const a2a_args a(which, P);
            const host_tensor x = grid(comm.rank(), a.shape, a.type);
            return a2a_problem(redist::seqpar::all_to_all(comm, x, a.scatter_dim, a.gather_dim), comm.rank(),
                               P);
          }};
}

op_entry all_to_all_into() {
  return {"seqpar::all_to_all_into",
          "redist::seqpar::all_to_all_into",
          "",
          4,
          a2a_differences,
          [](const comm_type& comm, int which) {
            const std::int64_t P = comm.size();
            const a2a_args a(which, P);
            const host_tensor x = grid(comm.rank(), a.shape, a.type);
            host_tensor out(a.type, a.out_shape(P));
            redist::seqpar::all_to_all_into(comm, x, a.scatter_dim, a.gather_dim, out);
            return a2a_problem(out, comm.rank(), P);
          }};
}

// The valid unpadded length of P blocks of 2 rows: one row of padding, but none on one rank.
std::int64_t unpadded_of(std::int64_t P) { return P > 1 ? 2 * P - 1 : 2; }

op_entry gather_outputs() {
  return {"seqpar::gather_outputs",
          "redist::seqpar::gather_outputs",
          "",
          5,
          {{"x", "f32"}, {"x", "another extent"}, {"dim", "1"}, {"unpadded_size", "2P"}},
          [](const comm_type& comm, int which) {
            const std::int64_t P = comm.size();
            const std::int64_t U = which == 3 ? 2 * P : unpadded_of(P);
            const host_tensor x =
                grid(comm.rank(), {2, which == 1 ? 3 : 2}, which == 0 ? dtype::f32 : dtype::i32);
            const host_tensor got = redist::seqpar::gather_outputs(comm, x, which == 2 ? 1 : 0, U);
            return grid_problem(got, {U, 2}, [](std::span<const std::int64_t> i) {
              const shape_t src{i[0] % 2, i[1]};
              return at(static_cast<int>(i[0] / 2), src);
            });
          }};
}

op_entry gather_seq_scatter_heads() {
  return {"seqpar::gather_seq_scatter_heads",
          "redist::seqpar::gather_seq_scatter_heads",
          "",
          6,
          {{"x", "f32"},
           {"x", "another extent"},
           {"seq_dim", "2"},
           {"head_dim", "2"},
           {"unpadded_seq_len", "2P - 1"}},
          [](const comm_type& comm, int which) {
            // x [seq 2, heads 2P, 2P]: rank r gets heads [2r, 2r + 2) of every rank's sequence.
            const std::int64_t P = comm.size();
            const shape_t shape{2, 2 * P, which == 1 ? 2 * P + 1 : 2 * P};
            const host_tensor x = grid(comm.rank(), shape, which == 0 ? dtype::f32 : dtype::i32);
            std::optional<std::int64_t> unpadded;
            if (which == 4) unpadded = unpadded_of(P);
            const host_tensor got = redist::seqpar::gather_seq_scatter_heads(comm, x, which == 2 ? 2 : 0,
                                                                             which == 3 ? 2 : 1, unpadded);
            return grid_problem(got, {2 * P, 2, 2 * P}, [&](std::span<const std::int64_t> i) {
              const shape_t src{i[0] % 2, 2 * comm.rank() + i[1], i[2]};
              return at(static_cast<int>(i[0] / 2), src);
            });
          }};
}

op_entry gather_heads_scatter_seq() {
  return {"seqpar::gather_heads_scatter_seq",
          "redist::seqpar::gather_heads_scatter_seq",
          "",
          7,
          {{"x", "f32"}, {"x", "another extent"}, {"head_dim", "2"}, {"seq_dim", "2"}},
          [](const comm_type& comm, int which) {
            // x [seq 2P, heads 2, 2]: rank r gets sequence rows [2r, 2r + 2) of every rank's heads.
            const std::int64_t P = comm.size();
            const shape_t shape{2 * P, 2, which == 1 ? 3 : 2};
            const host_tensor x = grid(comm.rank(), shape, which == 0 ? dtype::f32 : dtype::i32);
            const host_tensor got =
                redist::seqpar::gather_heads_scatter_seq(comm, x, which == 2 ? 2 : 1, which == 3 ? 2 : 0);
            return grid_problem(got, {2, 2 * P, 2}, [&](std::span<const std::int64_t> i) {
              const shape_t src{2 * comm.rank() + i[0], i[1] % 2, i[2]};
              return at(static_cast<int>(i[1] / 2), src);
            });
          }};
}

op_entry gather_seq_scatter_heads_qkv() {
  return {"seqpar::gather_seq_scatter_heads_qkv",
          "redist::seqpar::gather_seq_scatter_heads_qkv",
          "",
          8,
          {{"x", "f32"}, {"x", "another extent"}, {"seq_dim", "1"}, {"unpadded_seq_len", "2P - 1"}},
          [](const comm_type& comm, int which) {
            // qkv [seq 2, 2, 3 D] with D = 2P: rank r gets columns [2r, 2r + 2) of each of q, k and v.
            const std::int64_t P = comm.size();
            const shape_t shape{which == 1 ? 3 : 2, 2, 6 * P};
            const host_tensor x = grid(comm.rank(), shape, which == 0 ? dtype::f32 : dtype::i32);
            std::optional<std::int64_t> unpadded;
            if (which == 3) unpadded = unpadded_of(P);
            const host_tensor got =
                redist::seqpar::gather_seq_scatter_heads_qkv(comm, x, which == 2 ? 1 : 0, unpadded);
            return grid_problem(got, {2 * P, 2, 6}, [&](std::span<const std::int64_t> i) {
              const shape_t src{i[0] % 2, i[1], i[2] / 2 * 2 * P + 2 * comm.rank() + i[2] % 2};
              return at(static_cast<int>(i[0] / 2), src);
            });
          }};
}

op_entry rotating_broadcast() {
  return {"seqpar::rotating_broadcast",
          "redist::seqpar::rotating_broadcast",
          "",
          9,
          {},
          [](const comm_type& comm, int) {
            const tree mine = grid(comm.rank(), {comm.rank() + 1});
            std::string problem;
            int next = 0;
            redist::seqpar::rotating_broadcast(comm, mine, [&](int k, const tree& t) {
              std::string p = k != next++ ? "out of order" : !t.is_tensor() ? "not a tensor" : "";
              if (p.empty())
                p = grid_problem(t.tensor(), {k + 1},
                                 [&](std::span<const std::int64_t> i) { return at(k, i); });
              if (problem.empty() && !p.empty()) problem = "step " + std::to_string(k) + ": " + p;
            });
            return next == comm.size() ? problem : "too few steps";
          }};
}

// shard_scatter's specs: "w" i32 [2P, 3] cut along dim 0, loaded by rank 0, and "b" i32 [4] replicated,
// loaded by the last rank; tensor i holds grid(i, shape).
std::vector<redist::shard_spec> shard_specs(int which, int P) {
  std::vector<redist::shard_spec> specs{{"w", dtype::i32, {2 * std::int64_t{P}, 3}, 0, 0},
                                        {"b", dtype::i32, {4}, std::nullopt, P - 1}};
  if (which == 0) specs[1].dtype = dtype::u8;
  if (which == 1) specs[0].owner = P - 1;
  if (which == 2) specs[0].shard_dim = std::nullopt;
  if (which == 3) specs[1].name = "bias";
  if (which == 4) specs.pop_back();
  return specs;
}

op_entry shard_scatter() {
  return {"shard_scatter",
          "redist::shard_scatter",
          "",
          10,
          {{"specs", "a dtype"},
           {"specs", "an owner"},
           {"specs", "a shard dim"},
           {"specs", "a name"},
           {"specs", "one spec fewer"},
           {"max_batch_bytes", "16"}},
          [](const comm_type& comm, int which) {
            const auto specs = shard_specs(which, comm.size());
            const auto got = redist::shard_scatter(
                comm, specs,
                [&](std::size_t i) { return grid(static_cast<int>(i), specs[i].shape, specs[i].dtype); },
                {.max_batch_bytes = which == 5 ? std::size_t{16} : std::size_t{1} << 20});
            if (got.size() != 2 || got[0].name != "w" || got[1].name != "b")
              return std::string("the results");
            const std::int64_t r = comm.rank();
            std::string p = grid_problem(got[0].tensor, {2, 3}, [&](std::span<const std::int64_t> i) {
              const shape_t src{2 * r + i[0], i[1]};
              return at(0, src);
            });
            if (p.empty())
              p = grid_problem(got[1].tensor, {4}, [](std::span<const std::int64_t> i) { return at(1, i); });
            return p;
          }};
}

op_entry dispatch() {
  return {"dispatch", "redist::dispatch", "", 11, {{"root", "1"}}, [](const comm_type& comm, int which) {
            // Every rank passes the items, read on the root only: a rank that takes itself for root has them.
            std::vector<tree> items;
            for (int s = 0; s < comm.size(); ++s) items.emplace_back(grid(s, {s + 1}));
            const tree got = redist::dispatch(comm, items, which == 0 ? 1 : 0);
            if (!got.is_tensor()) return std::string("not a tensor");
            const int r = comm.rank();
            return grid_problem(got.tensor(), {r + 1},
                                [&](std::span<const std::int64_t> i) { return at(r, i); });
          }};
}

// Every public collective op. slice_inputs is not among them: it communicates nothing (each rank cuts its own
// slice), so there is no call of the other ranks for it to be compared with.
const std::vector<op_entry>& ops() {
  static const std::vector<op_entry> table = {plan_redistribute(),
                                              one_call_redistribute(),
                                              redistribute_into(),
                                              gather_metadata(),
                                              all_to_all(),
                                              all_to_all_into(),
                                              gather_outputs(),
                                              gather_seq_scatter_heads(),
                                              gather_heads_scatter_seq(),
                                              gather_seq_scatter_heads_qkv(),
                                              rotating_broadcast(),
                                              shard_scatter(),
                                              dispatch()};
  return table;
}

// ---- the checks ----

// The fields an agreed message says differ ("... the ranks' calls differ in op, x: rank 1 passes ...").
std::vector<std::string> differing_fields(const std::string& message) {
  constexpr std::string_view lead = "the ranks' calls differ in ";
  const std::size_t from = message.find(lead);
  if (from == std::string::npos) return {};
  const std::size_t begin = from + lead.size();
  const std::string_view list = std::string_view(message).substr(begin, message.find(": ", begin) - begin);
  std::vector<std::string> out;
  for (std::size_t at_ = 0; at_ <= list.size();) {
    const std::size_t comma = std::min(list.find(", ", at_), list.size());
    out.emplace_back(list.substr(at_, comma - at_));
    at_ = comma + 2;
  }
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Whether message holds text as a whole value: followed by the end, a comma, a semicolon or a space.
bool mentions(const std::string& message, const std::string& text) {
  for (std::size_t at_ = message.find(text); at_ != std::string::npos; at_ = message.find(text, at_ + 1)) {
    const std::size_t end = at_ + text.size();
    if (end == message.size() || message[end] == ',' || message[end] == ';' || message[end] == ' ')
      return true;
  }
  return false;
}

// Collective over comm: every rank caught a redist::error, all the same, for which named(message) holds.
template <class Named>
void check_agreed(const outcome& o, const comm_type& comm, Named named) {
  redist::test::check_agreed_error(o, comm, {"the ranks' calls differ"});
  INFO("the message: " << o.message);
  CHECK_MESSAGE(all_ranks(o.redist_error && named(o.message), comm.native()),
                "the message misses what differs");
}

// Collective over comm: a's valid call on every rank, exact on every rank: nothing was left in flight.
void check_works(const comm_type& comm, const op_entry& a, const char* when) {
  std::string problem;
  const outcome o = outcome_of([&] { problem = a.call(comm, valid); });
  INFO(when << ", " << a.label << " on every rank: " << o.message << "; " << problem);
  CHECK(all_ranks(!o.redist_error && o.message == "no error" && problem.empty(), comm.native()));
}

// Rank `bad` calls b while every other rank calls a, all with valid arguments; then a on every rank.
void check_pair(const comm_type& comm, int bad, const op_entry& a, const op_entry& b) {
  INFO("rank " << bad << " calls " << b.label << ", the others " << a.label);
  std::string problem;
  const outcome o = outcome_of([&] { problem = (comm.rank() == bad ? b : a).call(comm, valid); });
  if (a.family == b.family) {  // one collective under two names
    INFO(o.message << "; " << problem);
    CHECK(all_ranks(!o.redist_error && o.message == "no error" && problem.empty(), comm.native()));
  } else {
    check_agreed(o, comm, [&](const std::string& m) {
      const auto fields = differing_fields(m);
      const std::string lead = a.op + ": the ranks' calls differ in ";  // rank 0 calls a, and speaks
      const std::string by_bad = "rank " + std::to_string(bad) + " passes ";
      if (m.rfind(lead, 0) != 0) return false;
      if (a.op != b.op)
        return has(fields, "op") && mentions(m, by_bad + "op " + b.op) && mentions(m, " op " + a.op);
      return has(fields, a.form_field) && has(fields, b.form_field) && m.find(by_bad) != std::string::npos;
    });
  }
  check_works(comm, a, "after the mismatch");
}

// Rank `bad` passes a's which-th difference, every other rank valid arguments; then a on every rank.
void check_difference(const comm_type& comm, int bad, const op_entry& a, int which) {
  const difference& d = a.differences[static_cast<std::size_t>(which)];
  INFO(a.label << ": rank " << bad << " differs in " << d.field << " (" << d.how << ")");
  const outcome o = outcome_of([&] { (void)a.call(comm, comm.rank() == bad ? which : valid); });
  check_agreed(o, comm, [&](const std::string& m) {
    return m.rfind(a.op + ": the ranks' calls differ in ", 0) == 0 && has(differing_fields(m), d.field) &&
           m.find("rank " + std::to_string(bad) + " passes " + d.field + " ") != std::string::npos;
  });
  check_works(comm, a, "after the difference");
}

// f(comm, bad) on the world with its last rank odd, and on the world numbered backwards with its rank 1 odd.
template <class F>
void on_world_and_backwards(F f) {
  const comm_type world(MPI_COMM_WORLD);
  f(world, world.size() - 1);
  const redist::test::owned_comm reversed = redist::test::reversed_world();
  f(comm_type(reversed.get()), 1);
}

}  // namespace

TEST_CASE("every op's valid call, on the world and backwards: the table's own results are exact") {
  on_world_and_backwards([](const comm_type& comm, int) {
    for (const op_entry& a : ops()) check_works(comm, a, "valid");
  });
}

TEST_CASE("every ordered pair of different ops: one rank calls the other, every rank throws the same error") {
  if (redist::test::world().size < 2) {
    MESSAGE("one rank: no other rank to call another op; only the valid calls run");
    return;
  }
  on_world_and_backwards([&](const comm_type& comm, int bad) {
    for (const op_entry& a : ops())
      for (const op_entry& b : ops())
        if (&a != &b) check_pair(comm, bad, a, b);
  });
}

TEST_CASE("each op against itself: every argument the ranks must share, differing on one rank, is named") {
  if (redist::test::world().size < 2) {
    MESSAGE("one rank: no other rank to differ from; only the valid calls run");
    return;
  }
  on_world_and_backwards([&](const comm_type& comm, int bad) {
    for (const op_entry& a : ops())
      for (std::size_t k = 0; k < a.differences.size(); ++k)
        check_difference(comm, bad, a, static_cast<int>(k));
  });
}
