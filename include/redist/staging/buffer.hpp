// redist::detail::space_buffer: staging memory of a memory space (host memory for the host space, device
// memory on a device space's stream), kept across the rounds of a step: it grows, never shrinks.
#pragma once

#include <cstddef>
#include <span>
#include <utility>

namespace redist::detail {

template <class Space>
class space_buffer {
 public:
  explicit space_buffer(const Space& space) : space_(space) {}
  space_buffer(const space_buffer&) = delete;
  space_buffer& operator=(const space_buffer&) = delete;
  ~space_buffer() { space_.deallocate(data_, capacity_); }

  // n bytes, contents indeterminate.
  std::span<std::byte> resize(std::size_t n) {
    if (n > capacity_) {
      space_.deallocate(std::exchange(data_, nullptr), capacity_);  // the old one first: the peak is n
      capacity_ = 0;
      data_ = space_.allocate(n);
      capacity_ = n;
    }
    size_ = n;
    return span();
  }
  // n bytes of zeros (the padding of a staging that pads).
  std::span<std::byte> zeroed(std::size_t n) {
    resize(n);
    space_.fill(data_, n);
    return span();
  }

  std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::span<std::byte> span() const noexcept { return {data_, size_}; }

 private:
  Space space_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace redist::detail
