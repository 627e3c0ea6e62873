// redist::step_context: what a step policy works with on one rank (communicator, store, catalog, staging,
// options), and the streams of samples it sends and receives, cut into windows that fit the staging budget.
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

namespace redist {

// One (sample, key) in a stream: the key is a position in the catalog's keys.
struct stream_item {
  sample_id id = 0;
  std::uint32_t key = 0;
};

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

// The items one sender sends to one receiver, in wire order, with each item's wire offset.
struct stream {
  std::vector<stream_item> items;
  std::vector<std::size_t> offsets{0};  // items.size() + 1 entries
  std::size_t bytes() const noexcept { return offsets.back(); }
};

template <class Comm, class Tensor, class Staging>
class step_context {
 public:
  step_context(const Comm& comm, sample_store<Tensor>& store, const catalog& cat,
               const redistribute_options& opts)
      : comm_(comm), store_(store), cat_(cat), opts_(opts) {}

  const Comm& comm() const noexcept { return comm_; }
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

  // Window k of `rounds` of a stream of `bytes` wire bytes: [begin, end), cut on wire units. Every rank
  // computes every stream's windows alike, from lengths alone.
  static std::pair<std::size_t, std::size_t> window(std::size_t bytes, std::size_t k, std::size_t rounds) {
    const std::size_t units = bytes / Staging::wire_unit;
    auto cut = [&](std::size_t j) { return units * j / rounds * Staging::wire_unit; };
    return {cut(k), k + 1 == rounds ? bytes : cut(k + 1)};
  }

  // Rounds needed so that no window set of one rank exceeds the budget, given the largest per-rank total.
  std::size_t rounds_for(std::size_t largest_total) const {
    const std::size_t budget = std::max<std::size_t>(opts_.max_staging_bytes, Staging::wire_unit);
    return std::max<std::size_t>(1, (largest_total + budget - 1) / budget);
  }

  // Calls f(item, from, n, at) for each part of an item inside [begin, end): wire bytes [from, from + n) of
  // the item lie at window offset `at`.
  template <class F>
  static void for_parts(const stream& s, std::size_t begin, std::size_t end, F f) {
    auto i = static_cast<std::size_t>(std::upper_bound(s.offsets.begin(), s.offsets.end(), begin) -
                                      s.offsets.begin());
    for (i = i == 0 ? 0 : i - 1; i < s.items.size() && s.offsets[i] < end; ++i) {
      const std::size_t a = std::max(begin, s.offsets[i]), b = std::min(end, s.offsets[i + 1]);
      if (a < b) f(s.items[i], a - s.offsets[i], b - a, a - begin);
    }
  }

  // This rank's copy of an item, in memory format.
  const std::byte* source(stream_item it) const {
    const auto& key = cat_.keys()[it.key].name;
    const auto loc = store_.find(it.id, key);
    if (!loc && out_)
      if (const auto at = output_place(it); at != SIZE_MAX && delivered_[at]) return output_bytes(it, at);
    if (!loc)
      detail::fail("redist::redistribute: rank ", rank(), " must send id ", it.id, ", key '", key,
                   "', which it does not hold");
    const auto* base = static_cast<const std::byte*>(tensor_traits<Tensor>::data(loc->batch->data(key)));
    return base + loc->batch->sample_bytes(key, loc->position).offset;
  }

  // The window [begin, end) of a stream as pieces of memory to send: the sources themselves when the staging
  // works in place, else packed into `scratch` at `at`.
  void send_pieces(const stream& s, std::size_t begin, std::size_t end, std::vector<const_segment>& out,
                   std::byte* scratch) const {
    for_parts(s, begin, end, [&](stream_item it, std::size_t from, std::size_t n, std::size_t at) {
      if constexpr (Staging::in_place) {
        append(out, const_segment{source(it) + from, n});
      } else {
        Staging::pack(cat_.keys()[it.key].dtype, source(it), from, n, scratch + at);
      }
    });
    if constexpr (!Staging::in_place) out.push_back({scratch, end - begin});
  }
  void pack(const stream& s, std::size_t begin, std::size_t end, std::byte* dst) const {
    for_parts(s, begin, end, [&](stream_item it, std::size_t from, std::size_t n, std::size_t at) {
      Staging::pack(cat_.keys()[it.key].dtype, source(it), from, n, dst + at);
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
        if (const auto at = out_ ? output_place({id, k}) : SIZE_MAX; at != SIZE_MAX && !delivered_[at]) {
          delivered_[at] = true;
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
    discard_.assign(discard, std::byte{0});
    std::sort(sinks_.begin(), sinks_.end(), [](const sink_entry& a, const sink_entry& b) {
      return std::tie(a.id, a.key) < std::tie(b.id, b.key);
    });
    incoming_.clear();
  }
  void recv_pieces(const stream& s, std::size_t begin, std::size_t end, std::vector<segment>& out,
                   std::byte* scratch) {
    if constexpr (Staging::in_place) {
      for_parts(s, begin, end, [&](stream_item it, std::size_t from, std::size_t n, std::size_t) {
        append(out, segment{sink_of(it) + from, n});
      });
    } else {
      out.push_back({scratch, end - begin});
    }
  }
  void unpack(const stream& s, std::size_t begin, std::size_t end, const std::byte* src) {
    for_parts(s, begin, end, [&](stream_item it, std::size_t from, std::size_t n, std::size_t at) {
      Staging::unpack(cat_.keys()[it.key].dtype, src + at, from, n, sink_of(it));
    });
  }
  // One-call form: arriving pairs that `out` wants (and this rank lacks) land in it directly, not in the
  // store; afterwards fill_output() copies in what this rank held already. `out` has its tensors allocated.
  void deliver_into(sequence_batch<Tensor>& out) {
    out_ = &out;
    out_key_.assign(cat_.keys().size(), SIZE_MAX);
    for (std::size_t f = 0; f < out.fields().size(); ++f)
      if (const auto k = cat_.find_key(out.fields()[f].name)) out_key_[*k] = f;
    delivered_.assign(out.size() * out.fields().size(), false);
  }
  void fill_output() {
    for (std::size_t f = 0; f < out_->fields().size(); ++f) {
      const auto& key = out_->fields()[f].name;
      auto* dst = static_cast<std::byte*>(tensor_traits<Tensor>::data(out_->data(key)));
      // Runs adjacent in both the source batch and the output are copied as one piece.
      const sequence_batch<Tensor>* batch = nullptr;
      const std::byte* base = nullptr;
      const std::byte* from = nullptr;
      std::byte* to = nullptr;
      std::size_t run = 0;
      for (std::size_t i = 0; i < out_->size(); ++i) {
        if (delivered_[i * out_->fields().size() + f]) continue;
        const auto loc = store_.find(out_->ids()[i], key);
        if (!loc)
          detail::fail("redist::redistribute: rank ", rank(), " ends without id ", out_->ids()[i], ", key '",
                       key, "'");
        if (loc->batch != batch) {
          batch = loc->batch;
          base = static_cast<const std::byte*>(tensor_traits<Tensor>::data(batch->data(key)));
        }
        const std::byte* src = base + batch->sample_bytes(key, loc->position).offset;
        const auto range = out_->sample_bytes(key, i);
        if (from + run == src && to + run == dst + range.offset) {
          run += range.size;
          continue;
        }
        space_of<Tensor>::copy(to, from, run);
        from = src;
        to = dst + range.offset;
        run = range.size;
      }
      space_of<Tensor>::copy(to, from, run);
    }
  }

  void commit() {
    for (auto& c : chunks_) store_.add(std::move(c));
    chunks_.clear();
    sinks_.clear();
    discard_.clear();
  }

 private:
  // Adds a piece, merged into the last one when it continues it: samples adjacent in memory on both sides
  // then move as one block, and a peer whose pieces all merge is sent from (received into) place.
  template <class Segment>
  static void append(std::vector<Segment>& out, Segment s) {
    if (!out.empty() && out.back().data + out.back().bytes == s.data) {
      out.back().bytes += s.bytes;
    } else {
      out.push_back(s);
    }
  }

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
    if (lo->where == place::output) return output_bytes(it, lo->offset);
    auto& chunk = chunks_[chunk_of_key_[it.key]];
    return static_cast<std::byte*>(tensor_traits<Tensor>::data(chunk.data(cat_.keys()[it.key].name))) +
           lo->offset;
  }

  // Index of an item in delivered_ (position x keys + field), or SIZE_MAX when the output does not want it.
  std::size_t output_place(stream_item it) const {
    const std::size_t f = out_key_[it.key];
    if (f == SIZE_MAX) return SIZE_MAX;
    const auto i = out_->find(it.id);
    return i ? *i * out_->fields().size() + f : SIZE_MAX;
  }
  std::byte* output_bytes(stream_item it, std::size_t at) const {
    const std::size_t i = at / out_->fields().size();
    const auto& key = cat_.keys()[it.key].name;
    return static_cast<std::byte*>(tensor_traits<Tensor>::data(out_->data(key))) +
           out_->sample_bytes(key, i).offset;
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
  std::vector<std::byte> discard_;
  sequence_batch<Tensor>* out_ = nullptr;
  std::vector<std::size_t> out_key_;  // catalog key -> output field, or SIZE_MAX
  std::vector<bool> delivered_;       // per (output position, field)
};

}  // namespace redist
