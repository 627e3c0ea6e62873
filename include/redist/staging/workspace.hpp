// redist::workspace: staging memory kept between calls, which the ops that pack or unpack take (seqpar's
// exchanges, redistribute() through redistribute_options::workspace), so that repeated calls allocate none;
// redist::space_workspace, the same in a device memory space's memory.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <new>

#include "redist/core/memory_space.hpp"
#include "redist/staging/buffer.hpp"

namespace redist {

// Staging kept between calls, the owning form of the workspace idiom (ops whose staging is known before they
// run also take a caller's span, sized by their *_workspace_bytes()). An op that packs or unpacks needs
// staging as large as the data it packs; passing the same workspace to repeated calls (every layer of a model
// makes the same exchange) spares allocating, and page-faulting, a fresh one each time. Page-aligned, so that
// how its bytes fall on pages (and how copies into it perform) does not depend on where the allocator put it.
// Grows, never shrinks; not shared between threads.
class workspace {
 public:
  static constexpr std::size_t alignment = 4096;

  // At least `bytes` bytes, contents indeterminate; valid until the next call.
  std::byte* reserve(std::size_t bytes) {
    if (bytes > capacity_) {
      buffer_.reset();  // the old one goes first: the peak is the new size, not both
      buffer_.reset(static_cast<std::byte*>(::operator new[](bytes, std::align_val_t{alignment})));
      capacity_ = bytes;
    }
    return buffer_.get();
  }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  struct aligned_delete {
    void operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t{alignment}); }
  };
  std::unique_ptr<std::byte[], aligned_delete> buffer_;
  std::size_t capacity_ = 0;
};

// The workspace of a device memory space (e.g. space_workspace<cuda_space>): the same idiom in memory of that
// space, allocated on its stream. What the ops on device tensors take where host tensors take a workspace.
template <class Space>
class space_workspace {
 public:
  explicit space_workspace(const Space& space) : buffer_(space) {}

  // At least `bytes` bytes, contents indeterminate; valid until the next call.
  std::byte* reserve(std::size_t bytes) { return buffer_.resize(std::max(bytes, buffer_.size())).data(); }
  std::size_t capacity() const noexcept { return buffer_.size(); }

 private:
  detail::space_buffer<Space> buffer_;
};

namespace detail {
template <class Space>
struct workspace_of {
  using type = space_workspace<Space>;
};
template <>
struct workspace_of<host_space> {
  using type = workspace;
};
}  // namespace detail

// The workspace type of a memory space: redist::workspace for host memory.
template <class Space>
using workspace_for = typename detail::workspace_of<Space>::type;

}  // namespace redist
