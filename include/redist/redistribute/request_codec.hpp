// The one-call form's request: what each rank contributes to its metadata allgather (its batch's metadata
// and the ids it wants, as runs of consecutive ids), encoded and decoded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/detail/byte_codec.hpp"
#include "redist/detail/text.hpp"
#include "redist/plan/steps.hpp"

// Format, varints as in metadata_codec.hpp: the metadata's length and its bytes (encode_metadata), then the
// wanted ids as runs of consecutive ids: the run count, then per run the zigzag-encoded difference of its
// first id from the end of the run before (the first from 0), mod 2^64, and its length. The ids a rank of a
// data-parallel group wants are a range or a few: a few bytes for any count, where 8 bytes an id made the
// wanted lists 94% of a 65,536-rank call's metadata. The call's description and a rank's problem are not
// part of it: the agreement before the allgather compared every rank's call, and a problem anywhere made
// every rank throw there.
namespace redist::detail {

struct request {
  std::span<const std::byte> metadata;  // of its batch
  std::span<const std::byte> wanted;    // the runs
};

inline std::vector<std::byte> encode_request(std::span<const std::byte> metadata,
                                             std::span<const sample_id> wanted) {
  std::vector<std::byte> blob;
  blob.reserve(metadata.size() + 16);
  metadata_writer w(blob);
  w.varint(metadata.size());
  blob.insert(blob.end(), metadata.begin(), metadata.end());
  std::vector<std::uint64_t> runs;  // first, length
  for (const sample_id id : wanted) {
    if (!runs.empty() && runs[runs.size() - 2] + runs.back() == id)
      ++runs.back();
    else
      runs.insert(runs.end(), {id, 1});
  }
  w.varint(runs.size() / 2);
  sample_id end = 0;
  for (std::size_t i = 0; i < runs.size(); i += 2) {
    const auto delta = static_cast<std::int64_t>(runs[i] - end);  // mod 2^64, two's complement
    w.varint((static_cast<std::uint64_t>(delta) << 1) ^ static_cast<std::uint64_t>(delta >> 63));
    w.varint(runs[i + 1]);
    end = runs[i] + runs[i + 1];
  }
  return blob;
}

// Rank `rank`'s request within the allgathered bytes; views into blob. The runs are read by wanted_ids.
inline request decode_request(std::span<const std::byte> blob, std::size_t rank) {
  metadata_reader r(blob, "redist::redistribute");
  request q;
  q.metadata = r.bytes(str("rank ", rank, "'s metadata"));
  q.wanted = blob.subspan(r.position());
  return q;
}

// The ids of a request's runs, at most held + 1 of them, `held` the ids the ranks hold: a rank that wants
// more wants one twice or one that no rank holds, and among its first held + 1 ids is the first such one,
// which the planner names; a corrupt run of 2^64 ids cannot make it allocate them.
inline id_list wanted_ids(const request& q, std::size_t rank, std::size_t held) {
  metadata_reader r(q.wanted, "redist::redistribute");
  const std::string what = str("rank ", rank, "'s wanted ids");
  const std::size_t runs = r.count(what, 2);
  id_list ids;
  sample_id end = 0;
  for (std::size_t i = 0; i < runs; ++i) {
    const std::uint64_t z = r.varint(what), length = r.varint(what);
    const sample_id first = end + ((z >> 1) ^ (std::uint64_t{0} - (z & 1)));  // undoes the zigzag
    for (std::uint64_t k = 0; k < length && ids.size() <= held; ++k) ids.push_back(first + k);
    end = first + length;
  }
  if (r.remaining() != 0)
    fail("redist::redistribute: rank ", rank, "'s request has ", r.remaining(), " bytes left over");
  return ids;
}

}  // namespace redist::detail
