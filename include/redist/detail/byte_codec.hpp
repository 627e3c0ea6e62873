// The byte writer and bounds-checked reader of redist's compact encodings (batch metadata, nested schemas):
// unsigned LEB128 varints, single bytes and length-prefixed strings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "redist/core/error.hpp"

namespace redist::detail {

// A trivially copyable value's bytes at `to`, and the value back from them: fixed-layout headers.
template <class T>
void store_bytes(std::byte* to, const T& value) noexcept {
  std::memcpy(to, &value, sizeof value);
}
template <class T>
T load_bytes(const std::byte* from) noexcept {
  T value;
  std::memcpy(&value, from, sizeof value);
  return value;
}

class metadata_writer {
 public:
  explicit metadata_writer(std::vector<std::byte>& out) : out_(out) {}

  void u8(std::uint8_t v) { out_.push_back(static_cast<std::byte>(v)); }
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<std::byte>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<std::byte>(v));
  }
  void string(std::string_view s) {
    varint(s.size());
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    out_.insert(out_.end(), p, p + s.size());
  }

 private:
  std::vector<std::byte>& out_;
};

class metadata_reader {
 public:
  // `who` starts every error message: the decoder that reads.
  explicit metadata_reader(std::span<const std::byte> bytes, const char* who = "redist::decode_metadata")
      : bytes_(bytes), who_(who) {}

  std::size_t position() const noexcept { return pos_; }
  std::size_t remaining() const noexcept { return bytes_.size() - pos_; }

  std::uint8_t u8(std::string_view what) {
    if (remaining() == 0) truncated(what);
    return static_cast<std::uint8_t>(bytes_[pos_++]);
  }
  std::uint64_t varint(std::string_view what) {
    const std::size_t start = pos_;
    std::uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      if (remaining() == 0) truncated(what);
      const auto b = static_cast<std::uint64_t>(bytes_[pos_++]);
      // The tenth byte holds bit 63 only.
      if (shift == 63 && b > 1) fail(who_, ": ", what, " at byte ", start, " overflows 64 bits");
      v |= (b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
  }
  // A length or extent: must fit std::int64_t.
  std::int64_t length(std::string_view what) {
    const std::size_t start = pos_;
    const std::uint64_t v = varint(what);
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      fail(who_, ": ", what, " ", v, " at byte ", start, " exceeds the int64 range");
    return static_cast<std::int64_t>(v);
  }
  // A count of things that take at least `min_bytes` each: bounded by the bytes left.
  std::size_t count(std::string_view what, std::size_t min_bytes) {
    const std::size_t start = pos_;
    const std::uint64_t v = varint(what);
    if (v > remaining() / min_bytes)
      fail(who_, ": ", what, " ", v, " at byte ", start, " cannot fit in the ", remaining(), " bytes left");
    return static_cast<std::size_t>(v);
  }
  std::string string(std::string_view what) {
    const auto b = bytes(what);
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  }
  // Length-prefixed bytes, viewed where they lie.
  std::span<const std::byte> bytes(std::string_view what) {
    const std::size_t n = count(what, 1);
    pos_ += n;
    return bytes_.subspan(pos_ - n, n);
  }

 private:
  [[noreturn]] void truncated(std::string_view what) const {
    fail(who_, ": truncated input: ", what, " at byte ", pos_, " is missing");
  }

  std::span<const std::byte> bytes_;
  const char* who_;
  std::size_t pos_ = 0;
};

}  // namespace redist::detail
