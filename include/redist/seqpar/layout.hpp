// How seqpar's exchanges move bytes, computed on one process: shapes and dims as PyTorch takes them, the
// layout of an all-to-all (chunks, padding, what is sent from and received into place), and its packing.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/detail/checked.hpp"
#include "redist/detail/text.hpp"
#include "redist/staging/buffer.hpp"
#include "redist/staging/copy_list.hpp"
#include "redist/staging/space_call.hpp"
#include "redist/staging/workspace.hpp"

namespace redist::detail::seqpar {

// ---- shapes, arguments and their agreement ----------------------------------------------------------------

using shape_t = std::vector<std::int64_t>;

template <class T>
shape_t shape_of(const T& t) {
  shape_t s(tensor_traits<T>::rank(t));
  for (std::size_t d = 0; d < s.size(); ++d) s[d] = static_cast<std::int64_t>(tensor_traits<T>::extent(t, d));
  return s;
}

// The tensors of a call and the memory space it runs in: both tensor types in that space, named by the call
// when it is a device space (see require_space).
template <class In, class Out, class Space>
constexpr void require_tensors() {
  static_assert(tensor_like<In> && tensor_like<Out>,
                "redist::seqpar: the tensor type does not satisfy redist::tensor_like");
  static_assert(tensor_space<In> == tensor_space<Out>,
                "redist::seqpar: the input and the output tensor types live in different memory spaces");
  require_space<In, Space>();
}

// The tensor type an operation returns: Out when given, else the input's type if it can allocate, else
// host_tensor (a view in, an owning tensor out).
template <class Out, class In>
struct output_of {
  using type = Out;
};
template <class In>
struct output_of<void, In> {
  using type = std::conditional_t<allocatable_tensor<In>, In, host_tensor>;
};
template <class Out, class In>
using output_t = typename output_of<Out, In>::type;

template <class T>
void check_contiguous(const char* who, const char* what, const T& t) {
  if constexpr (traits_have_contiguity<T>) {
    if (!tensor_traits<T>::is_contiguous(t)) fail(who, ": ", what, " is not contiguous");
  }
}

// A dim as PyTorch takes it (negative counts from the end) as an index; throws when out of range.
inline std::size_t dim_index(const char* who, const char* name, std::int64_t dim, std::size_t rank) {
  const auto n = static_cast<std::int64_t>(rank);
  if (dim < -n || dim >= n) {
    fail(who, ": ", name, " ", dim, " is out of range for a tensor of ", rank, " dims (valid: ", -n, " to ",
         n - 1, ")");
  }
  return static_cast<std::size_t>(dim < 0 ? dim + n : dim);
}

// The dim as an index when in range, else the value passed: what a rank's call is described with.
inline std::int64_t normalized(std::int64_t dim, std::size_t rank) {
  const auto n = static_cast<std::int64_t>(rank);
  return dim < 0 && dim >= -n ? dim + n : dim;
}

// ---- byte movement ----------------------------------------------------------------------------------------

inline std::size_t product(std::span<const std::int64_t> s, std::size_t begin, std::size_t end) {
  std::size_t n = 1;
  for (std::size_t d = begin; d < end; ++d) n *= static_cast<std::size_t>(s[d]);
  return n;
}

// How one all-to-all moves bytes. Input x (shape `in`) is seen as [outer_s, rows_s, inner_s bytes] around the
// scatter dim, padded with zero rows to P * chunk_s rows; the send buffer is P blocks, block j = for each
// outer index, rows [j * chunk_s, (j + 1) * chunk_s). A received block (one chunk, shape `chunk`) is seen as
// [outer_g, chunk_g, inner_g bytes] around the gather dim; the block of rank i lands at rows
// [i * chunk_g, (i + 1) * chunk_g) of the output [outer_g, keep_g, inner_g], rows >= keep_g dropped.
struct a2a_layout {
  std::size_t ranks = 1;
  shape_t in, chunk, out;  // out: the chunk with the gather dim of P * chunk_g rows, cut to keep_g
  std::size_t outer_s = 1, rows_s = 0, chunk_s = 0, inner_s = 0;
  std::size_t outer_g = 1, chunk_g = 0, keep_g = 0, inner_g = 0;
  std::size_t block = 0;  // bytes to (from) each rank
  bool send_in_place = false, recv_in_place = false;
};

// scatter_rows: the scatter dim's extent after padding (>= in[scatter]), a multiple of P; keep_rows: rows of
// the gather dim kept (<= P * chunk[gather]). Throws on sizes that overflow.
inline a2a_layout make_layout(const char* who, std::span<const std::int64_t> in, std::size_t elem,
                              std::size_t scatter, std::size_t gather, std::size_t ranks,
                              std::int64_t scatter_rows, std::int64_t keep_rows) {
  a2a_layout l;
  l.ranks = ranks;
  l.in.assign(in.begin(), in.end());
  l.chunk = l.in;
  l.chunk[scatter] = scatter_rows / static_cast<std::int64_t>(ranks);
  l.out = l.chunk;
  l.out[gather] = keep_rows;
  l.outer_s = product(in, 0, scatter);
  l.rows_s = static_cast<std::size_t>(in[scatter]);
  l.chunk_s = static_cast<std::size_t>(l.chunk[scatter]);
  l.outer_g = product(l.chunk, 0, gather);
  l.chunk_g = static_cast<std::size_t>(l.chunk[gather]);
  l.keep_g = static_cast<std::size_t>(keep_rows);
  // The chunk and the output may be larger than x (padding): their byte sizes are checked.
  std::size_t total = 0;
  std::size_t out_bytes = 0;
  if (!checked_mul(dense_bytes(dtype::u8, l.chunk, who), elem, l.block) ||
      !checked_mul(l.block, ranks, total) || !checked_add(total, total, out_bytes) ||
      !checked_mul(dense_bytes(dtype::u8, l.out, who), elem, out_bytes)) {
    fail(who, ": the exchange's size overflows");
  }
  l.inner_s = product(in, scatter + 1, in.size()) * elem;
  l.inner_g = product(l.chunk, gather + 1, l.chunk.size()) * elem;
  // Blocks are contiguous pieces of x (and of the output) when nothing comes before the split dim.
  const bool unpadded = l.chunk_s * ranks == l.rows_s;
  const bool uncut = l.keep_g == l.chunk_g * ranks;
  l.send_in_place = unpadded && (l.outer_s == 1 || ranks == 1);
  l.recv_in_place = uncut && (l.outer_g == 1 || ranks == 1);
  return l;
}

// Lists (in a copy_list, or phase_copies) x -> the send buffer (P * block bytes), zero rows where x is
// padded: one pass, one table.
template <class List>
void pack(const a2a_layout& l, const std::byte* x, std::byte* send, List& list) {
  const std::size_t piece = l.chunk_s * l.inner_s;
  for (std::size_t a = 0; a < l.outer_s; ++a) {
    const std::byte* row = x + a * l.rows_s * l.inner_s;
    for (std::size_t j = 0; j < l.ranks; ++j) {
      const std::size_t first = j * l.chunk_s;
      const std::size_t real = first >= l.rows_s ? 0 : std::min(l.chunk_s, l.rows_s - first);
      std::byte* to = send + (j * l.outer_s + a) * piece;
      list.copy(to, row + first * l.inner_s, real * l.inner_s);
      list.zero(to + real * l.inner_s, piece - real * l.inner_s);
    }
  }
}

// Lists the receive buffer (P blocks, block i from rank i) -> the output, rows beyond keep_g dropped.
template <class List>
void unpack(const a2a_layout& l, const std::byte* recv, std::byte* out, List& list) {
  const std::size_t piece = l.chunk_g * l.inner_g;
  for (std::size_t g = 0; g < l.outer_g; ++g) {
    std::byte* row = out + g * l.keep_g * l.inner_g;
    for (std::size_t i = 0; i < l.ranks; ++i) {
      const std::size_t first = i * l.chunk_g;
      const std::size_t keep = first >= l.keep_g ? 0 : std::min(l.chunk_g, l.keep_g - first);
      list.copy(row + first * l.inner_g, recv + (i * l.outer_g + g) * piece, keep * l.inner_g);
    }
  }
}

// The staging an exchange packs into or receives into: none when x is sent and the output received in place.
inline std::size_t staging_bytes(const a2a_layout& l) noexcept {
  const std::size_t total = l.block * l.ranks;
  return (l.send_in_place ? 0 : total) + (l.recv_in_place ? 0 : total);
}

// The staging an exchange allocates for itself, in memory of its space. Host memory is one plain new[], not
// a page-aligned workspace: glibc serves a block of the size just freed from its heap, and the aligned
// request, a page larger, misses the freed blocks and lands on fresh pages (a loop of 16 MiB calls faulted
// 1.8 buffers' pages per call that way, 0.8 with new[]).
template <class Space>
class own_staging {
 public:
  explicit own_staging(const Space& space) : buffer_(space) {}
  std::byte* get(std::size_t bytes) { return buffer_.resize(bytes).data(); }

 private:
  space_buffer<Space> buffer_;
};
template <>
class own_staging<host_space> {
 public:
  explicit own_staging(const host_space&) {}
  std::byte* get(std::size_t bytes) {
    buffer_.reset(new std::byte[bytes]);
    return buffer_.get();
  }

 private:
  std::unique_ptr<std::byte[]> buffer_;
};

// The staging for layout l: from ws when given (kept between calls), else from `own`, for the call.
template <class Space>
std::byte* reserve_staging(const a2a_layout& l, workspace_for<Space>* ws, own_staging<Space>& own) {
  const std::size_t bytes = staging_bytes(l);
  if (bytes == 0) return nullptr;
  if (ws != nullptr) return ws->reserve(bytes);
  return own.get(bytes);
}

// Lists rank `rank` of `ranks`'s slice of x (shape `in`) along dim, zero-padded: see slice_inputs.
template <class List>
void slice_rows(std::span<const std::int64_t> in, std::size_t elem, std::size_t dim, std::size_t rank,
                std::size_t ranks, const std::byte* x, std::byte* out, List& list) {
  const std::size_t outer = product(in, 0, dim);
  const auto rows = static_cast<std::size_t>(in[dim]);
  const std::size_t unit = (rows + ranks - 1) / ranks;
  const std::size_t inner = product(in, dim + 1, in.size()) * elem;
  const std::size_t first = rank * unit;
  const std::size_t real = first >= rows ? 0 : std::min(unit, rows - first);
  for (std::size_t a = 0; a < outer; ++a) {
    std::byte* to = out + a * unit * inner;
    list.copy(to, x + (a * rows + first) * inner, real * inner);
    list.zero(to + real * inner, (unit - real) * inner);
  }
}

inline std::int64_t round_up(std::int64_t n, std::int64_t m) { return (n + m - 1) / m * m; }

// Throws unless `gathered` rows are `unpadded` rounded up to a multiple of `ranks`.
inline void check_unpadded(const char* who, const char* name, std::int64_t unpadded, std::int64_t gathered,
                           std::int64_t ranks) {
  if (unpadded < 0 || unpadded > gathered || gathered - unpadded >= ranks || gathered % ranks != 0) {
    fail(who, ": ", name, " ", unpadded, " does not fit the ", gathered, " gathered rows: with ", ranks,
         " ranks they must be ", name, " rounded up to a multiple of ", ranks,
         " (slice_inputs' padding), or the full count when nothing is padded");
  }
}

template <class Out>
Out allocate(dtype t, const shape_t& shape) {
  return tensor_traits<Out>::allocate(t, std::span<const std::int64_t>(shape));
}

template <class T>
const std::byte* bytes_of(const T& t) {
  return static_cast<const std::byte*>(tensor_traits<T>::data(t));
}
template <class T>
std::byte* bytes_of(T& t) {
  return static_cast<std::byte*>(tensor_traits<T>::data(t));
}

}  // namespace redist::detail::seqpar
