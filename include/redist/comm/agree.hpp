// Agreement on failure: every rank reports its own problem, and if any rank has one, every rank throws the
// same redist::error, so no rank goes on into a collective the others have left.
#pragma once

#include <cstdint>
#include <exception>
#include <span>
#include <string>

#include "redist/comm/communicator.hpp"
#include "redist/core/error.hpp"

namespace redist::detail {

// Every rank passes its own problem (empty when it has none). If any rank has one, every rank throws the
// same redist::error: the lowest failing rank's message. Costs one allreduce, plus two broadcasts on failure.
template <class Comm>
void agree(const Comm& comm, const std::string& problem) {
  const auto size = static_cast<std::uint64_t>(comm.size());
  const auto first = comm.allreduce_min(problem.empty() ? size : static_cast<std::uint64_t>(comm.rank()));
  if (first == size) return;
  const int root = static_cast<int>(first);
  std::uint64_t length = problem.size();
  comm.broadcast(std::as_writable_bytes(std::span(&length, 1)), root);
  std::string text(comm.rank() == root ? problem : std::string(length, '\0'));
  comm.broadcast(std::as_writable_bytes(std::span(text.data(), text.size())), root);
  throw error(text);
}

// Runs f, turning a redist::error into a problem string for agree().
template <class F>
std::string problem_of(F&& f) {
  try {
    f();
  } catch (const error& e) {
    return e.what();
  }
  return {};
}

// Runs allocate (what a call returns, and its staging) before the agreement, so that a rank that cannot
// allocate makes every rank throw instead of leaving the others waiting in a collective: what allocate
// throws (std::bad_alloc, or whatever a tensor type's allocate throws) becomes a redist::error saying that
// rank `rank` could not allocate `what`.
template <class F>
void allocating(const char* who, int rank, const char* what, F&& allocate) {
  try {
    allocate();
  } catch (const error&) {
    throw;
  } catch (const std::exception& e) {
    throw error(std::string(who) + ": rank " + std::to_string(rank) + " could not allocate " + what + ": " +
                e.what());
  }
}

}  // namespace redist::detail
