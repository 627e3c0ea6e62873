// redist::step_context: what a step policy works with on one rank (communicator, store, catalog, staging,
// options): the streams of samples it sends and receives (staging/windows.hpp), their pieces in memory, and
// where what arrives lands.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "redist/comm/communicator.hpp"
#include "redist/core/catalog.hpp"
#include "redist/core/error.hpp"
#include "redist/core/sample_store.hpp"
#include "redist/core/tensor_traits.hpp"
#include "redist/options.hpp"
#include "redist/staging/buffer.hpp"
#include "redist/staging/copy_list.hpp"
#include "redist/staging/windows.hpp"
#include "redist/staging/workspace.hpp"
#include "redist/steps/output.hpp"

namespace redist {

// The ranks of a step's sub-group: `members` and `root`, ascending, once each; a rank's group rank is its
// position here.
struct step_group {
  std::vector<int> ranks;
  step_group(std::span<const int> members, int root) : ranks(members.begin(), members.end()) {
    ranks.push_back(root);
    std::sort(ranks.begin(), ranks.end());
    ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  }
  bool contains(int rank) const { return std::binary_search(ranks.begin(), ranks.end(), rank); }
  std::size_t index(int rank) const {
    return static_cast<std::size_t>(std::lower_bound(ranks.begin(), ranks.end(), rank) - ranks.begin());
  }
};

// Every byte copy and cast a step makes is listed (pack(), unpack(), the packing of scattered pieces) and
// made by the tensors' memory space at flush(): one table per phase, one kernel launch on a device. Staging
// and discard buffers are memory of that space.
template <class Comm, class Tensor, class Staging>
class step_context {
 public:
  using space_type = space_of<Tensor>;

  // With `out`, arriving pairs it wants land there instead of in the store (the one-call form).
  step_context(const Comm& comm, sample_store<Tensor>& store, const catalog& cat,
               const redistribute_options& opts, detail::output_sink<Tensor>* out = nullptr,
               const space_type& space = {})
      : comm_(comm), store_(store), cat_(cat), opts_(opts), out_(out), space_(space), discard_(space) {}

  const Comm& comm() const noexcept { return comm_; }
  const space_type& space() const noexcept { return space_; }
  // Makes the copies and casts listed since the last flush.
  void flush() { list_.run(space_); }
  // Staging memory of at least `bytes` bytes for a step's packing: the caller's kept workspace for host
  // tensors when it gave one, else `own`, the step's.
  std::byte* scratch(std::size_t bytes, detail::space_buffer<space_type>& own) {
    if constexpr (space_type::space == memory_space::host)
      if (opts_.staging != nullptr) return opts_.staging->reserve(bytes);
    return own.resize(bytes).data();
  }
  // A buffer of the memory space, for a policy's staging.
  detail::space_buffer<space_type> buffer() const { return detail::space_buffer<space_type>(space_); }
  const catalog& meta() const noexcept { return cat_; }
  const redistribute_options& options() const noexcept { return opts_; }
  int rank() const { return comm_.rank(); }

  std::size_t wire_size(stream_item it) const {
    const auto& k = cat_.keys()[it.key];
    const std::size_t elements = cat_.bytes(it.id, it.key) / size_of(k.dtype);
    return Staging::wire_bytes(k.dtype, elements);
  }

  // ids x keys, id-major (the reference system's order), as a stream.
  stream make_stream(std::span<const sample_id> ids, std::span<const std::string> keys) const {
    std::vector<std::uint32_t> positions;
    for (const auto& k : keys) positions.push_back(key_position(k));
    stream s;
    s.items.reserve(ids.size() * keys.size());
    s.offsets.reserve(ids.size() * keys.size() + 1);
    for (sample_id id : ids)
      for (auto k : positions) push(s, {id, k});
    return s;
  }
  void push(stream& s, stream_item it) const {
    s.items.push_back(it);
    s.offsets.push_back(s.offsets.back() + wire_size(it));
  }

  // This rank's copy of an item, in memory format.
  const std::byte* source(stream_item it) const {
    const auto& key = cat_.keys()[it.key].name;
    const auto loc = store_.find(it.id, key);
    if (!loc && out_)
      if (const auto* delivered = out_->delivered(it)) return delivered;
    if (!loc)
      detail::fail("redist::redistribute: rank ", rank(), " must send id ", it.id, ", key '", key,
                   "', which it does not hold");
    const auto* base = static_cast<const std::byte*>(tensor_traits<Tensor>::data(loc->batch->data(key)));
    return base + loc->batch->sample_bytes(key, loc->position).offset;
  }

  // With a staging that works in place: the window [begin, end) of a stream as the pieces of memory to send,
  // the sources themselves.
  void send_pieces(const stream& s, std::size_t begin, std::size_t end,
                   std::vector<const_segment>& out) const {
    static_assert(Staging::in_place);
    for_parts(s, begin, end, [&](stream_item it, std::size_t from, std::size_t n, std::size_t) {
      detail::append_piece(out, const_segment{source(it) + from, n});
    });
  }
  // Lists the packing of the window [begin, end) of a stream into `dst`, made at flush().
  void pack(const stream& s, std::size_t begin, std::size_t end, std::byte* dst) {
    for_parts(s, begin, end, [&](stream_item it, std::size_t from, std::size_t n, std::size_t at) {
      Staging::pack(cat_.keys()[it.key].dtype, source(it), from, n, dst + at, list_);
    });
  }

  // Receiving. declare() every item arriving in the step, then open_inbox() allocates one tensor per key for
  // them; recv_pieces()/unpack() put the bytes there and commit() hands the samples to the store. Items the
  // rank already holds land in a discard buffer. (redistribute() has checked that no item arrives twice.)
  void declare(const stream& s) {
    for (const auto& it : s.items) incoming_.push_back(it);
  }
  void open_inbox() {
    using field = typename sequence_batch<Tensor>::field;
    chunks_.clear();
    sinks_.clear();
    std::size_t discard = 0;
    chunk_of_key_.assign(cat_.keys().size(), SIZE_MAX);
    for (std::uint32_t k = 0; k < cat_.keys().size(); ++k) {
      std::vector<sample_id> ids;
      for (const auto& it : incoming_)
        if (it.key == k) ids.push_back(it.id);
      if (ids.empty()) continue;
      const auto& schema = cat_.keys()[k];
      std::vector<sample_id> fresh;
      seqlen_table lens;
      std::int64_t tokens = 0;
      for (sample_id id : ids) {
        if (store_.holds(id, schema.name)) {
          sinks_.push_back({id, k, discard, place::discard});
          discard += cat_.bytes(id, k);
          continue;
        }
        if (const auto at = out_ ? out_->claim({id, k}) : SIZE_MAX; at != SIZE_MAX) {
          sinks_.push_back({id, k, at, place::output});
          continue;
        }
        sinks_.push_back({id, k, static_cast<std::size_t>(tokens) * schema.row_bytes(), place::chunk});
        fresh.push_back(id);
        lens.push_back(cat_.seqlens(id, k));
        tokens += cat_.tokens(id, k);
      }
      if (fresh.empty()) continue;
      std::vector<std::int64_t> shape{tokens};
      shape.insert(shape.end(), schema.trailing_shape.begin(), schema.trailing_shape.end());
      std::vector<field> fields;
      fields.push_back({schema.name, schema.dtype, schema.trailing_shape, std::move(lens),
                        tensor_traits<Tensor>::allocate(schema.dtype, shape)});
      chunks_.emplace_back(std::move(fresh), std::move(fields));
      chunk_of_key_[k] = chunks_.size() - 1;
    }
    discard_.zeroed(discard);  // written, never read; touched before MPI writes it
    std::sort(sinks_.begin(), sinks_.end(), [](const sink_entry& a, const sink_entry& b) {
      return std::tie(a.id, a.key) < std::tie(b.id, b.key);
    });
    incoming_.clear();
  }
  // With a staging that works in place: the window [begin, end) of a stream as the pieces of memory it lands
  // in, its sinks themselves.
  void recv_pieces(const stream& s, std::size_t begin, std::size_t end, std::vector<segment>& out) {
    static_assert(Staging::in_place);
    for_parts(s, begin, end, [&](stream_item it, std::size_t from, std::size_t n, std::size_t) {
      detail::append_piece(out, segment{sink_of(it) + from, n});
    });
  }
  // Lists the unpacking of the window [begin, end) of a stream from `src`, made at flush().
  void unpack(const stream& s, std::size_t begin, std::size_t end, const std::byte* src) {
    for_parts(s, begin, end, [&](stream_item it, std::size_t from, std::size_t n, std::size_t at) {
      Staging::unpack(cat_.keys()[it.key].dtype, src + at, from, n, sink_of(it), list_);
    });
  }
  void commit() {
    for (auto& c : chunks_) store_.add(std::move(c));
    chunks_.clear();
    sinks_.clear();
  }

 private:
  enum class place : std::uint8_t { chunk, discard, output };
  struct sink_entry {
    sample_id id;
    std::uint32_t key;
    std::size_t offset;
    place where;
  };
  struct sink_less {
    bool operator()(const sink_entry& a, stream_item b) const {
      return std::tie(a.id, a.key) < std::tie(b.id, b.key);
    }
  };

  std::byte* sink_of(stream_item it) {
    const auto lo = std::lower_bound(sinks_.begin(), sinks_.end(), it, sink_less{});
    if (lo == sinks_.end() || lo->id != it.id || lo->key != it.key)
      detail::fail("redist::redistribute: rank ", rank(), " receives id ", it.id, " which no step declared");
    if (lo->where == place::discard) return discard_.data() + lo->offset;
    if (lo->where == place::output) return out_->bytes(it, lo->offset);
    auto& chunk = chunks_[chunk_of_key_[it.key]];
    return static_cast<std::byte*>(tensor_traits<Tensor>::data(chunk.data(cat_.keys()[it.key].name))) +
           lo->offset;
  }

  std::uint32_t key_position(const std::string& key) const {
    const auto k = cat_.find_key(key);
    if (!k) detail::fail("redist::redistribute: the plan names key '", key, "', which the metadata lacks");
    return static_cast<std::uint32_t>(*k);
  }

  const Comm& comm_;
  sample_store<Tensor>& store_;
  const catalog& cat_;
  const redistribute_options& opts_;
  std::vector<stream_item> incoming_;
  std::vector<sequence_batch<Tensor>> chunks_;
  std::vector<std::size_t> chunk_of_key_;
  std::vector<sink_entry> sinks_;
  detail::output_sink<Tensor>* out_;
  space_type space_;
  detail::space_buffer<space_type> discard_;
  detail::copy_list list_;
};

}  // namespace redist
