// redist::dense_traffic: a plan's traffic (redist::traffic_matrix, plan/cost.hpp) as a full ranks x ranks
// table of bytes, and nccl_tests_matrix(), the text file nccl-tests' alltoallv_perf replays that pattern
// from.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/plan/cost.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace redist {

// Bytes rank src sends rank dst, every pair present: row-major, bytes[src * ranks + dst]. The diagonal is 0
// (a rank's own samples are copied, not sent), as in traffic_matrix.
struct dense_traffic {
  int ranks = 0;
  std::vector<std::uint64_t> bytes;

  std::uint64_t at(int src, int dst) const {
    return bytes.at(static_cast<std::size_t>(src) * static_cast<std::size_t>(ranks) +
                    static_cast<std::size_t>(dst));
  }
  std::uint64_t sent_by(int r) const {
    std::uint64_t n = 0;
    for (int d = 0; d < ranks; ++d) n += at(r, d);
    return n;
  }
  std::uint64_t received_by(int r) const {
    std::uint64_t n = 0;
    for (int s = 0; s < ranks; ++s) n += at(s, r);
    return n;
  }
  // The most any rank sends or receives: what alltoallv_perf's -b/-e must cover, and the bytes of its algbw.
  std::uint64_t busiest() const {
    std::uint64_t m = 0;
    for (int r = 0; r < ranks; ++r) m = std::max({m, sent_by(r), received_by(r)});
    return m;
  }
  friend bool operator==(const dense_traffic&, const dense_traffic&) = default;
};

// The entries of traffic_matrix() over `ranks` ranks; an entry naming a rank outside [0, ranks) throws.
inline dense_traffic to_dense(std::span<const traffic_entry> entries, int ranks) {
  if (ranks < 0) detail::fail("redist::to_dense: ", ranks, " ranks");
  const auto n = static_cast<std::size_t>(ranks);
  dense_traffic t{ranks, std::vector<std::uint64_t>(n * n, 0)};
  for (const auto& e : entries) {
    if (e.src < 0 || e.src >= ranks || e.dst < 0 || e.dst >= ranks)
      detail::fail("redist::to_dense: entry ", e.src, " -> ", e.dst, " is out of range for ", ranks,
                   " ranks");
    t.bytes[static_cast<std::size_t>(e.src) * n + static_cast<std::size_t>(e.dst)] += e.bytes;
  }
  return t;
}

// The plan's traffic between every pair of ranks (the cost model of estimate_cost).
inline dense_traffic dense_traffic_of(const plan& p, const storage_tracker& tracker) {
  return to_dense(traffic_matrix(p, tracker), p.ranks);
}

// The matrix file nccl-tests' alltoallv_perf reads (NCCL_TESTS_ALLTOALLV_MATRIX_FILE=<file>): one line per
// source rank, its bytes to each destination rank in decimal, separated by one space; no header or comment,
// which that reader would refuse. alltoallv_perf rounds each cell down to a multiple of 16 bytes and needs
// -b = -e >= busiest(), so it replays the pattern, not the exact byte counts, of a plan with odd sizes.
inline std::string nccl_tests_matrix(const dense_traffic& t) {
  std::string out;
  for (int s = 0; s < t.ranks; ++s) {
    for (int d = 0; d < t.ranks; ++d) {
      if (d > 0) out += ' ';
      out += std::to_string(t.at(s, d));
    }
    out += '\n';
  }
  return out;
}

}  // namespace redist
