// The parts of a sequence_batch's key: each sample's sequence lengths (seqlen_table), the key itself
// (key_field), where a sample's bytes sit in its tensor (byte_range), and the per-sample metadata.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "redist/core/dtype.hpp"

namespace redist {

// For each sample, the list of its sequence lengths, stored flat: one allocation however many samples.
class seqlen_table {
 public:
  seqlen_table() = default;
  seqlen_table(std::initializer_list<std::initializer_list<std::int64_t>> lists) {
    for (const auto& l : lists) push_back({l.begin(), l.size()});
  }
  explicit seqlen_table(const std::vector<std::vector<std::int64_t>>& lists) {
    for (const auto& l : lists) push_back(l);
  }

  void push_back(std::span<const std::int64_t> lengths) {
    lengths_.insert(lengths_.end(), lengths.begin(), lengths.end());
    begin_.push_back(lengths_.size());
  }
  void reserve(std::size_t samples, std::size_t sequences) {
    begin_.reserve(samples + 1);
    lengths_.reserve(sequences);
  }

  std::size_t size() const noexcept { return begin_.size() - 1; }
  std::span<const std::int64_t> operator[](std::size_t sample) const noexcept {
    return {lengths_.data() + begin_[sample], begin_[sample + 1] - begin_[sample]};
  }
  friend bool operator==(const seqlen_table&, const seqlen_table&) = default;

 private:
  std::vector<std::int64_t> lengths_;
  std::vector<std::size_t> begin_{0};
};

// One key of a batch. `data` is absent in a metadata-only batch; when present its shape is
// (sum of all seqlens, trailing_shape...).
template <class Tensor>
struct key_field {
  std::string name;
  redist::dtype dtype = redist::dtype::f32;
  std::vector<std::int64_t> trailing_shape;
  seqlen_table seqlens;
  std::optional<Tensor> data;
};

// Where one sample's bytes sit inside a key's tensor.
struct byte_range {
  std::size_t offset = 0;
  std::size_t size = 0;
  friend bool operator==(const byte_range&, const byte_range&) = default;
};

// Named per-sample values that travel with the samples: one string per id.
using metadata_map = std::map<std::string, std::vector<std::string>, std::less<>>;

namespace detail {

// What validation derives for one key: token offsets of each sample and the bytes of one token row.
struct key_layout {
  std::vector<std::int64_t> offsets;  // size() + 1 entries, offsets[i] = first token of sample i
  std::size_t row_bytes = 0;
};

}  // namespace detail

}  // namespace redist
