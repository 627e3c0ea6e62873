// Fuzz target: decode_metadata on arbitrary bytes. What it accepts must encode and decode back to the same
// batch, and its encoding must be a fixed point; what it refuses must be a redist::error.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "fuzz.hpp"
#include "redist/core/metadata_codec.hpp"

namespace {

using batch = redist::sequence_batch<redist::host_tensor>;

bool same(const batch& a, const batch& b) {
  if (!std::equal(a.ids().begin(), a.ids().end(), b.ids().begin(), b.ids().end())) return false;
  if (a.fields().size() != b.fields().size() || a.metadata() != b.metadata()) return false;
  for (std::size_t k = 0; k < a.fields().size(); ++k) {
    const auto &x = a.fields()[k], &y = b.fields()[k];
    if (x.name != y.name || x.dtype != y.dtype || x.trailing_shape != y.trailing_shape ||
        x.seqlens != y.seqlens)
      return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using redist::fuzz::check;
  const auto in = std::as_bytes(std::span(data, size));
  std::optional<batch> decoded;
  if (!redist::fuzz::accepted([&] { decoded = redist::decode_metadata(in); })) return 0;
  check(!decoded->has_data(), "a decoded batch holds no data");
  const auto once = redist::encode_metadata(*decoded);
  std::optional<batch> again;
  check(redist::fuzz::accepted([&] { again = redist::decode_metadata(once); }),
        "the encoding of a decoded batch decodes");
  check(same(*decoded, *again), "decode, encode, decode gives the same batch");
  check(redist::encode_metadata(*again) == once, "encoding a decoded encoding gives the same bytes");
  check(once.size() <= size, "the canonical encoding is no longer than the input");
  return 0;
}
