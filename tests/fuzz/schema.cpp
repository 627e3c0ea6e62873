// Fuzz target: dispatch's schema decoder on arbitrary bytes, its tensors' bytes bounded as a receiver bounds
// them by its header. What it accepts re-encodes to a schema that decodes to the same tree, within the bound;
// what it refuses must be a redist::error, and nothing it allocates may exceed the bound.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "fuzz.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/nested.hpp"

namespace {

using tree = redist::nested<redist::host_tensor>;

// The largest allocation a fuzzed schema may cause: far below the run's 2 GiB malloc limit.
constexpr std::size_t tensor_limit = std::size_t{16} << 20;

std::size_t tensor_bytes(const tree& t) {
  std::size_t n = 0;
  t.for_each_tensor([&](const redist::host_tensor& x) { n += x.nbytes(); });
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using redist::fuzz::check;
  const auto in = std::as_bytes(std::span(data, size));
  std::optional<tree> decoded;
  if (!redist::fuzz::accepted(
          [&] { decoded = redist::decode_schema<redist::host_tensor>(in, tensor_limit); }))
    return 0;
  const std::size_t bytes = tensor_bytes(*decoded);
  check(bytes <= tensor_limit, "the decoded tensors stay within the bound");
  const std::vector<std::byte> once = redist::encode_schema(*decoded);
  check(once.size() <= size, "the canonical encoding is no longer than the input");
  std::optional<tree> again;
  check(redist::fuzz::accepted([&] { again = redist::decode_schema<redist::host_tensor>(once, bytes); }),
        "the encoding of a decoded schema decodes within its own tensors' bytes");
  check(redist::encode_schema(*again) == once, "encoding a decoded encoding gives the same bytes");
  return 0;
}
