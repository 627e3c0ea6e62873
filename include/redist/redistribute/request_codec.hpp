// The one-call form's request: what each rank contributes to its metadata allgather (a description of its
// call, then its problem or its batch's metadata and the ids it wants), encoded and decoded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/metadata_codec.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/detail/text.hpp"
#include "redist/plan/steps.hpp"

namespace redist::detail {

// A rank's part of the allgather: a status byte (0: a request follows, 1: a problem follows), the length and
// text of its call's description, then its batch's metadata and the ids it wants, or its problem's text.
struct request {
  std::string call;
  std::string problem;                  // empty when the rank has none
  std::span<const std::byte> metadata;  // of its batch (when no problem)
  std::span<const std::byte> wanted;    // 8 bytes per id (when no problem)
};

inline std::vector<std::byte> encode_request(const std::string& call, const std::string& problem,
                                             std::span<const std::byte> metadata,
                                             std::span<const sample_id> wanted) {
  const std::size_t body = problem.empty() ? 8 + metadata.size() + 8 * wanted.size() : problem.size();
  std::vector<std::byte> blob(1 + 8 + call.size() + body);
  std::byte* at = blob.data();
  const auto put = [&](const void* from, std::size_t n) {
    if (n != 0) std::memcpy(at, from, n);
    at += n;
  };
  const std::uint8_t status = problem.empty() ? 0 : 1;
  const std::uint64_t call_bytes = call.size(), meta_bytes = metadata.size();
  put(&status, 1);
  put(&call_bytes, 8);
  put(call.data(), call.size());
  if (!problem.empty()) {
    put(problem.data(), problem.size());
  } else {
    put(&meta_bytes, 8);
    put(metadata.data(), metadata.size());
    put(wanted.data(), 8 * wanted.size());
  }
  return blob;
}

// Rank `rank`'s request within the allgathered bytes; views into blob.
inline request decode_request(std::span<const std::byte> blob, std::size_t rank) {
  const auto malformed = [&] {
    fail("redist::redistribute: rank ", rank, "'s request of ", blob.size(), " bytes is malformed");
  };
  std::uint64_t call_bytes = 0, meta_bytes = 0;
  if (blob.size() < 9) malformed();
  std::memcpy(&call_bytes, blob.data() + 1, 8);
  if (call_bytes > blob.size() - 9) malformed();
  request r;
  r.call.assign(reinterpret_cast<const char*>(blob.data() + 9), call_bytes);
  const auto rest = blob.subspan(9 + call_bytes);
  if (blob[0] != std::byte{0}) {
    r.problem.assign(reinterpret_cast<const char*>(rest.data()), rest.size());
    if (r.problem.empty()) r.problem = str("redist::redistribute: rank ", rank, " failed");
    return r;
  }
  if (rest.size() >= 8) std::memcpy(&meta_bytes, rest.data(), 8);
  if (rest.size() < 8 || meta_bytes > rest.size() - 8 || (rest.size() - 8 - meta_bytes) % 8 != 0) malformed();
  r.metadata = rest.subspan(8, meta_bytes);
  r.wanted = rest.subspan(8 + meta_bytes);
  return r;
}

inline id_list wanted_ids(const request& r) {
  id_list ids(r.wanted.size() / 8);
  if (!ids.empty()) std::memcpy(ids.data(), r.wanted.data(), r.wanted.size());
  return ids;
}

}  // namespace redist::detail
