// Moves a sequence batch around a ring of MPI ranks: each rank packs the samples it produced, sends them to
// the next rank, and the receiver rebuilds the batch and checks every byte against an independent
// expectation.
//
//   mpirun -np 2 ./move_batch
#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "redist/redist.hpp"

namespace {

using redist::dtype;
using batch = redist::sequence_batch<>;

// Both ends know the schema; what travels is the ids, the seqlens and the bytes.
struct key_schema {
  const char* name;
  dtype type;
};
constexpr key_schema schema[] = {{"input_ids", dtype::i64}, {"logprobs", dtype::f32}};

// Sample `id` has 1 + id % 3 sequences of lengths that vary with the id; its values are a function of
// (id, token), so any rank can compute what any sample must hold.
std::vector<std::int64_t> lengths_of(redist::sample_id id) {
  std::vector<std::int64_t> lens;
  for (redist::sample_id s = 0; s <= id % 3; ++s)
    lens.push_back(static_cast<std::int64_t>((id * 7 + s * 5) % 11));
  return lens;
}
std::int64_t token_value(redist::sample_id id, std::int64_t t) {
  return static_cast<std::int64_t>(id) * 1000 + t;
}
float logprob_value(redist::sample_id id, std::int64_t t) {
  return -0.5f * static_cast<float>(t) - static_cast<float>(id);
}

// The batch rank `r` produces: samples r*100 .. r*100 + 3 + r % 3.
batch produce(int r) {
  std::vector<redist::sample_id> ids;
  for (int i = 0; i < 3 + r % 3; ++i) ids.push_back(static_cast<redist::sample_id>(r * 100 + i));
  std::vector<std::vector<std::int64_t>> lens;
  std::vector<std::int64_t> tokens;
  std::vector<float> logprobs;
  for (auto id : ids) {
    lens.push_back(lengths_of(id));
    std::int64_t t = 0;
    for (auto l : lens.back())
      for (std::int64_t k = 0; k < l; ++k, ++t) {
        tokens.push_back(token_value(id, t));
        logprobs.push_back(logprob_value(id, t));
      }
  }
  const auto n = static_cast<std::int64_t>(tokens.size());
  redist::host_tensor tok(dtype::i64, {n}), lp(dtype::f32, {n});
  std::memcpy(tok.data(), tokens.data(), tok.nbytes());
  std::memcpy(lp.data(), logprobs.data(), lp.nbytes());
  const redist::seqlen_table table(lens);
  return batch(ids, {{"input_ids", dtype::i64, {}, table, std::move(tok)},
                     {"logprobs", dtype::f32, {}, table, std::move(lp)}});
}

// Header: [n, ids..., then per key per sample: count, lengths...].
std::vector<std::int64_t> encode(const batch& b) {
  std::vector<std::int64_t> h{static_cast<std::int64_t>(b.size())};
  for (auto id : b.ids()) h.push_back(static_cast<std::int64_t>(id));
  for (const auto& k : schema)
    for (std::size_t i = 0; i < b.size(); ++i) {
      auto lens = b.seqlens(k.name, i);
      h.push_back(static_cast<std::int64_t>(lens.size()));
      h.insert(h.end(), lens.begin(), lens.end());
    }
  return h;
}

int check(int rc) {
  if (rc != MPI_SUCCESS) MPI_Abort(MPI_COMM_WORLD, rc);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  check(MPI_Init(&argc, &argv));
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
  bool ok = true;
  std::size_t moved_bytes = 0;
  try {
    const batch mine = produce(rank);
    mine.validate();

    // 1. The header, size first.
    auto header = encode(mine);
    int out_len = static_cast<int>(header.size()), in_len = 0;
    check(MPI_Sendrecv(&out_len, 1, MPI_INT, next, 0, &in_len, 1, MPI_INT, prev, 0, MPI_COMM_WORLD,
                       MPI_STATUS_IGNORE));
    std::vector<std::int64_t> in(static_cast<std::size_t>(in_len));
    check(MPI_Sendrecv(header.data(), out_len, MPI_INT64_T, next, 1, in.data(), in_len, MPI_INT64_T, prev, 1,
                       MPI_COMM_WORLD, MPI_STATUS_IGNORE));

    // 2. Rebuild the received batch's metadata and allocate each key's tensor once.
    std::size_t at = 0;
    const auto n = static_cast<std::size_t>(in[at++]);
    std::vector<redist::sample_id> ids;
    for (std::size_t i = 0; i < n; ++i) ids.push_back(static_cast<redist::sample_id>(in[at++]));
    std::vector<batch::field> fields;
    for (const auto& k : schema) {
      redist::seqlen_table table;
      std::int64_t tokens = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const auto count = static_cast<std::size_t>(in[at++]);
        table.push_back({in.data() + at, count});
        for (std::size_t s = 0; s < count; ++s) tokens += in[at + s];
        at += count;
      }
      fields.push_back(
          {k.name, k.type, {}, std::move(table), redist::host_tensor::uninitialized(k.type, {tokens})});
    }

    // 3. The bytes, received straight into the final tensors.
    for (std::size_t k = 0; k < fields.size(); ++k) {
      const auto& src = mine.data(schema[k].name);
      auto& dst = *fields[k].data;
      check(MPI_Sendrecv(src.data(), static_cast<int>(src.nbytes()), MPI_BYTE, next, 2, dst.data(),
                         static_cast<int>(dst.nbytes()), MPI_BYTE, prev, 2, MPI_COMM_WORLD,
                         MPI_STATUS_IGNORE));
      moved_bytes += dst.nbytes();
    }
    const batch got(std::move(ids), std::move(fields));

    // 4. Verify against what rank `prev` must have produced, computed here from the ids alone.
    ok = got.size() == static_cast<std::size_t>(3 + prev % 3);
    for (std::size_t i = 0; ok && i < got.size(); ++i) {
      const auto id = got.ids()[i];
      ok = id == static_cast<redist::sample_id>(prev * 100) + i;
      const auto lens = got.seqlens("input_ids", i);
      ok = ok && std::vector<std::int64_t>(lens.begin(), lens.end()) == lengths_of(id);
      const auto tok = got.data("input_ids").values<std::int64_t>();
      const auto lp = got.data("logprobs").values<float>();
      const auto first = got.sample_bytes("input_ids", i).offset / sizeof(std::int64_t);
      for (std::int64_t t = 0; ok && t < got.tokens("input_ids", i); ++t) {
        const auto pos = first + static_cast<std::size_t>(t);
        ok = tok[pos] == token_value(id, t) && lp[pos] == logprob_value(id, t);
      }
    }
    std::printf("move_batch: rank %d received %zu samples (%zu bytes) from rank %d: %s\n", rank, got.size(),
                moved_bytes, prev, ok ? "verified" : "MISMATCH");
  } catch (const redist::error& e) {
    std::fprintf(stderr, "move_batch: rank %d: %s\n", rank, e.what());
    ok = false;
  }
  int all_ok = ok ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &all_ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
  if (rank == 0)
    std::printf("move_batch: %d ranks, %s\n", size, all_ok ? "every batch verified byte for byte" : "FAILED");
  MPI_Finalize();
  return all_ok ? 0 : 1;
}
