// redist::redistribute_options: what a caller may tune in redistribute(), with defaults that need no tuning.
// Designated initializers read well: redistribute(comm, batch, ids, {.max_staging_bytes = 64 << 20}).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace redist {

class workspace;
class plan_cache;

enum class plan_pattern { one_hop, gather_scatter, broadcast };

struct redistribute_options {
  // Staging memory a rank may use per step and direction; a larger step runs in several rounds.
  std::size_t max_staging_bytes = std::size_t{256} << 20;
  // float32_staging refuses values that do not survive the cast unless this is set.
  bool allow_lossy = false;
  // End-to-end checksums (host memory, exact staging): before any byte moves, every rank takes the CRC-32C of
  // each (id, key) payload it gives (sends, or keeps for its own result) and the ranks allgather them, so
  // that copies of one payload given by several ranks must carry equal bytes; after the transfer, every
  // payload that arrived is checked against its sender's. A mismatch becomes the same redist::error on every
  // rank, naming the id, the key and the ranks (found after the transfer, it leaves a reused result as it
  // was, but a store holds what arrived). Costs two allgathers more, and a pass over the
  // bytes given and received.
  bool checksums = false;
  // One-call form only: how to plan, where ranks sit (rank r on node r / ranks_per_node), and which keys to
  // move and return, in that order (empty: every key, ascending by name).
  plan_pattern pattern = plan_pattern::one_hop;
  int ranks_per_node = 1;
  std::vector<std::string> keys = {};
  // Staging kept between calls (this rank's own; not compared between ranks): the packing of the exchanges
  // lands there instead of in memory allocated for the call. With redistribute_into and a reused output,
  // repeated calls then allocate no tensor-sized memory.
  workspace* staging = nullptr;
  // One-call form only: the last call's plan, kept between calls (this rank's own; not compared between
  // ranks). When every rank's request is the last call's, byte for byte, the catalog and the plan are taken
  // from it instead of being made again.
  plan_cache* plans = nullptr;
};

}  // namespace redist
