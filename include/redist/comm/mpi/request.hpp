// The MPI backend's nonblocking operations: mpi_request (one or more MPI requests completed together, owning
// what MPI reads until then) and mpi_p2p_group (a group of point-to-point transfers finished into one).
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "redist/comm/mpi/core.hpp"
#include "redist/core/memory_space.hpp"

namespace redist {

// A nonblocking operation in flight: one MPI request per chunk of at most INT_MAX bytes (one in all for a
// nonblocking all-to-all, which also owns the arguments MPI reads until completion; one per chunk of every
// transfer of a point-to-point group). Move-only. wait() completes every chunk, then throws redist::error if
// one failed (a receive also when a message of another size arrived). Destroying a pending request waits for
// it and ignores errors (destructors never throw): MPI is never left reading or writing a buffer, array or
// datatype its owner believes free.
//
// Chunks are completed one MPI_Wait at a time, never by MPI_Waitall: all of them are already started, so the
// order costs nothing, and Open MPI 4.1's MPI_Waitall can spin forever on a request that failed (a truncated
// message) where MPI_Wait returns the error.
class mpi_request {
 public:
  mpi_request() = default;
  mpi_request(mpi_request&& other) noexcept { *this = std::move(other); }
  mpi_request& operator=(mpi_request&& other) noexcept {
    if (this != &other) {
      finish();
      requests_ = std::exchange(other.requests_, {});
      expected_ = std::exchange(other.expected_, {});
      args_ = std::move(other.args_);
    }
    return *this;
  }
  mpi_request(const mpi_request&) = delete;
  mpi_request& operator=(const mpi_request&) = delete;
  ~mpi_request() { finish(); }

  bool pending() const noexcept { return !requests_.empty(); }

  void wait() {
    std::exception_ptr failure;
    for (std::size_t k = 0; k < requests_.size(); ++k) {
      MPI_Status status;
      const int rc = complete(requests_[k], &status);
      if (failure) continue;
      try {
        detail::mpi_check(rc, "MPI_Wait");
        if (expected_[k] != not_a_recv) detail::check_received(status, expected_[k], "irecv");
      } catch (...) {
        failure = std::current_exception();
      }
    }
    requests_.clear();
    expected_.clear();
    args_.reset();
    if (failure) std::rethrow_exception(failure);
  }

 private:
  friend class mpi_communicator;
  friend class mpi_p2p_group;
  static constexpr int not_a_recv = -1;

  // Starts one chunk: begin(&handle) returns MPI's code; a receive's chunk names the bytes it expects.
  template <class Begin>
  void add(const char* what, int expected, Begin begin) {
    MPI_Request& handle = requests_.emplace_back(MPI_REQUEST_NULL);
    expected_.push_back(expected);
    const int rc = begin(&handle);
    if (rc != MPI_SUCCESS) handle = MPI_REQUEST_NULL;
    detail::mpi_check(rc, what);
  }

  // Waits for one chunk and releases it, also when it failed (Open MPI keeps a failed request allocated).
  static int complete(MPI_Request& handle, MPI_Status* status) noexcept {
    const int rc = MPI_Wait(&handle, status);
    if (handle != MPI_REQUEST_NULL) MPI_Request_free(&handle);
    return rc;
  }

  void finish() noexcept {
    if (requests_.empty()) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized == 0) {
      for (MPI_Request& handle : requests_) complete(handle, MPI_STATUS_IGNORE);
      args_.reset();
    } else {
      static_cast<void>(args_.release());  // its datatypes may not be freed after MPI_Finalize: leaked
    }
    requests_.clear();
    expected_.clear();
  }

  std::vector<MPI_Request> requests_;                  // empty once complete
  std::vector<int> expected_;                          // per request: a receive's bytes, or not_a_recv
  std::unique_ptr<detail::mpi_collective_args> args_;  // a nonblocking collective's, freed once complete
};

// A group of point-to-point transfers, the shape NCCL offers (group start, sends and receives, group end):
// send() and recv() start them at once (MPI_Isend, MPI_Irecv, chunked at INT_MAX bytes) on a tag of their
// own, and finish() hands back the request that completes them all. Between two ranks, the transfers of
// every group match in the order they were posted (MPI never reorders messages of one tag), so several
// groups may be in flight. Each side names the exact size; a zero-byte transfer is not posted.
class mpi_p2p_group {
 public:
  static constexpr int tag = 0x6770;

  void send(std::span<const std::byte> buf, int peer) {
    if (buf.empty()) return;
    detail::for_each_chunk(buf.size(), [&](std::size_t offset, int n) {
      r_.add("MPI_Isend", mpi_request::not_a_recv, [&](MPI_Request* h) {
        return MPI_Isend(buf.data() + offset, n, MPI_BYTE, peer, tag, comm_, h);
      });
    });
  }
  void recv(std::span<std::byte> buf, int peer) {
    if (buf.empty()) return;
    detail::for_each_chunk(buf.size(), [&](std::size_t offset, int n) {
      r_.add("MPI_Irecv", n, [&](MPI_Request* h) {
        return MPI_Irecv(buf.data() + offset, n, MPI_BYTE, peer, tag, comm_, h);
      });
    });
  }
  // One message to `peer` gathered from `pieces` in order (recv_pieces' counterpart, chunked alike): each
  // chunk one MPI_Isend, through a hindexed datatype owned by the group's request where it spans pieces.
  void send_pieces(std::span<const const_segment> pieces, int peer) {
    if (!r_.args_) r_.args_ = std::make_unique<detail::mpi_collective_args>();
    std::size_t total = 0, piece = 0, offset = 0;  // offset: within pieces[piece]
    for (const const_segment& s : pieces) total += s.bytes;
    std::vector<const_segment> chunk;
    detail::for_each_chunk(total, [&](std::size_t, int n) {
      for (auto left = static_cast<std::size_t>(n); left != 0; offset = 0, ++piece) {
        const std::size_t take = std::min(left, pieces[piece].bytes - offset);
        chunk.push_back({pieces[piece].data + offset, take});
        left -= take;
        if ((offset += take) != pieces[piece].bytes) break;  // the next chunk goes on in this piece
      }
      int count = 0, at = 0;
      MPI_Datatype type = MPI_BYTE;
      const auto* low = static_cast<const std::byte*>(detail::describe_side(
          1, [&](int) { return std::span<const const_segment>(chunk); }, &count, &at, &type,
          r_.args_->owned));
      chunk.clear();
      if (low == nullptr) return;
      r_.add("MPI_Isend", mpi_request::not_a_recv,
             [&](MPI_Request* h) { return MPI_Isend(low + at, count, type, peer, tag, comm_, h); });
    });
  }

  // One message from `peer` spread over several pieces in order, placed by MPI through a derived datatype
  // (the sender sends their total as one block): no landing buffer and no copy after, but Open MPI 4.1 moves
  // a datatype through its copy-in/copy-out pipeline, so it pays only for large pieces. Chunked like send():
  // chunk k's datatype covers bytes [k * max_count(), ...) of the pieces' stream.
  void recv_pieces(std::span<const segment> pieces, int peer) {
    std::size_t total = 0, nonempty = 0;
    for (const segment& s : pieces) {
      total += s.bytes;
      nonempty += s.bytes != 0 ? 1 : 0;
    }
    if (nonempty <= 1) {
      for (const segment& s : pieces) recv({s.data, s.bytes}, peer);
      return;
    }
    if (!r_.args_) r_.args_ = std::make_unique<detail::mpi_collective_args>();
    std::size_t piece = 0, offset = 0;  // within pieces[piece]
    std::vector<std::pair<std::byte*, std::size_t>> blocks;
    std::vector<int> lengths;
    std::vector<MPI_Aint> displs;
    detail::for_each_chunk(total, [&](std::size_t, int n) {
      blocks.clear();
      for (auto left = static_cast<std::size_t>(n); left != 0;) {
        const std::size_t take = std::min(left, pieces[piece].bytes - offset);
        if (take != 0) blocks.emplace_back(pieces[piece].data + offset, take);
        left -= take;
        offset += take;
        if (offset == pieces[piece].bytes) {
          ++piece;
          offset = 0;
        }
      }
      std::byte* low = blocks.front().first;
      for (const auto& b : blocks) low = std::min(low, b.first, std::less<>{});
      lengths.clear();
      displs.clear();
      for (const auto& [at, bytes] : blocks) detail::append_blocks(at - low, bytes, lengths, displs);
      const MPI_Datatype type = r_.args_->owned.hindexed(lengths, displs);
      r_.add("MPI_Irecv", n, [&](MPI_Request* h) { return MPI_Irecv(low, 1, type, peer, tag, comm_, h); });
    });
  }

  [[nodiscard]] mpi_request finish() && { return std::move(r_); }

 private:
  friend class mpi_communicator;
  explicit mpi_p2p_group(MPI_Comm comm) noexcept : comm_(comm) {}
  MPI_Comm comm_;
  mpi_request r_;  // destroyed pending (an exception between sends): waits for what was started
};

}  // namespace redist
