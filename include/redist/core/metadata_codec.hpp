// redist::encode_metadata / redist::decode_metadata: a batch's metadata (ids, keys, seqlens, per-sample
// metadata strings; never tensor data) as a compact byte string, the payload of the metadata allgather.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/sequence_batch.hpp"
#include "redist/detail/byte_codec.hpp"

// Format, version 1. Integers are unsigned LEB128 varints unless said otherwise.
//   u8 version (1)
//   n_ids, then each id as the zigzag-encoded difference from the previous id (the first from 0), mod 2^64:
//     consecutive ids cost a byte each, in either direction
//   n_keys, then per key: name (length, bytes), u8 dtype code, trailing rank, each extent, u8 layout, seqlens
//     layout 0: per sample, its sequence count then each length
//     layout 1: every sample has exactly one sequence: per sample, its length
//   n_metadata, then per entry: name (length, bytes), then one string (length, bytes) per id
// Every element of the decoded batch costs at least one input byte, so a corrupt count cannot make the
// decoder allocate more than a small multiple of the input's size.
namespace redist {

namespace detail {

inline constexpr std::uint8_t metadata_format_version = 1;

}  // namespace detail

// The metadata of `batch` (with or without data): everything decode_metadata needs to rebuild it exactly.
template <class Tensor>
std::vector<std::byte> encode_metadata(const sequence_batch<Tensor>& batch) {
  const auto& fields = batch.fields();
  std::vector<std::byte> out;
  out.reserve(16 + batch.size() * (2 + 3 * fields.size()));
  detail::metadata_writer w(out);
  w.u8(detail::metadata_format_version);
  w.varint(batch.size());
  sample_id previous = 0;
  for (sample_id id : batch.ids()) {
    const auto delta = static_cast<std::int64_t>(id - previous);  // mod 2^64, two's complement
    w.varint((static_cast<std::uint64_t>(delta) << 1) ^ static_cast<std::uint64_t>(delta >> 63));
    previous = id;
  }
  w.varint(fields.size());
  for (const auto& f : fields) {
    w.string(f.name);
    w.u8(static_cast<std::uint8_t>(f.dtype));
    w.varint(f.trailing_shape.size());
    for (std::int64_t e : f.trailing_shape) w.varint(static_cast<std::uint64_t>(e));
    bool single = batch.size() > 0;
    for (std::size_t i = 0; i < batch.size() && single; ++i) single = f.seqlens[i].size() == 1;
    w.u8(single ? 1 : 0);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const auto lens = f.seqlens[i];
      if (!single) w.varint(lens.size());
      for (std::int64_t l : lens) w.varint(static_cast<std::uint64_t>(l));
    }
  }
  w.varint(batch.metadata().size());
  for (const auto& [name, values] : batch.metadata()) {
    w.string(name);
    for (const auto& v : values) w.string(v);
  }
  return out;
}

// A metadata-only batch (no key has data) equal to the encoded one in ids and their order, keys and their
// order, dtypes, trailing shapes, seqlens and metadata. Throws redist::error "redist::decode_metadata: ..."
// on input that is truncated, malformed, has bytes left over, or describes an invalid batch; never reads out
// of bounds.
inline sequence_batch<host_tensor> decode_metadata(std::span<const std::byte> bytes) {
  using field = key_field<host_tensor>;
  detail::metadata_reader r(bytes);
  const std::uint8_t version = r.u8("the version");
  if (version != detail::metadata_format_version)
    detail::fail("redist::decode_metadata: format version ", static_cast<int>(version), ", expected ",
                 static_cast<int>(detail::metadata_format_version));

  const std::size_t n = r.count("the id count", 1);
  std::vector<sample_id> ids(n);
  sample_id previous = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t z = r.varint("an id");
    previous += (z >> 1) ^ (std::uint64_t{0} - (z & 1));  // undoes the zigzag, mod 2^64
    ids[i] = previous;
  }

  // A key takes at least four bytes: name length, dtype, rank and layout.
  const std::size_t nkeys = r.count("the key count", 4);
  std::vector<field> fields(nkeys);
  std::vector<std::int64_t> lens;
  for (auto& f : fields) {
    f.name = r.string("a key name");
    const std::size_t at = r.position();
    const std::uint8_t code = r.u8("a dtype");
    if (code >= dtype_count)
      detail::fail("redist::decode_metadata: key '", f.name, "': dtype code ", static_cast<int>(code),
                   " at byte ", at, " is not a dtype");
    f.dtype = static_cast<dtype>(code);
    f.trailing_shape.resize(r.count("a trailing rank", 1));
    for (auto& e : f.trailing_shape) e = r.length("a trailing extent");
    const std::size_t layout_at = r.position();
    const std::uint8_t layout = r.u8("a seqlens layout");
    if (layout > 1)
      detail::fail("redist::decode_metadata: key '", f.name, "': seqlens layout ", static_cast<int>(layout),
                   " at byte ", layout_at, " is not 0 or 1");
    // Every sample takes at least one byte either way.
    if (n > r.remaining())
      detail::fail("redist::decode_metadata: key '", f.name, "': seqlens of ", n, " ids cannot fit in the ",
                   r.remaining(), " bytes left");
    f.seqlens.reserve(n, n);
    for (std::size_t i = 0; i < n; ++i) {
      lens.resize(layout == 1 ? 1 : r.count("a sequence count", 1));
      for (auto& l : lens) l = r.length("a sequence length");
      f.seqlens.push_back(lens);
    }
  }

  // An entry takes at least one byte for its name and one per id.
  const std::size_t nmeta = r.count("the metadata count", n + 1);
  metadata_map metadata;
  for (std::size_t m = 0; m < nmeta; ++m) {
    std::string name = r.string("a metadata name");
    std::vector<std::string> values(n);
    for (auto& v : values) v = r.string("a metadata value");
    if (!metadata.try_emplace(name, std::move(values)).second)
      detail::fail("redist::decode_metadata: metadata '", name, "' appears twice");
  }
  if (r.remaining() != 0)
    detail::fail("redist::decode_metadata: ", r.remaining(),
                 " bytes left over after the batch ended at byte ", r.position());

  try {
    return sequence_batch<host_tensor>(std::move(ids), std::move(fields), std::move(metadata));
  } catch (const error& e) {
    detail::fail("redist::decode_metadata: invalid batch: ", e.what());
  }
}

}  // namespace redist
