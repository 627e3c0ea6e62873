// Unit tests of the one agreement (comm/agree.hpp) on a scripted communicator: no error when every rank
// passes the same call, else the lowest failing rank's problem or the fields whose values differ, by rank.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "error_of.hpp"
#include "redist/comm/agree.hpp"
#include "redist/core/memory_space.hpp"
#include "redist/detail/hash.hpp"
#include "redist/detail/text.hpp"

namespace {

using redist::detail::call_description;

// A communicator stand-in for the agreement alone: P ranks' (problem, call) pairs, seen from one rank.
struct scripted_agreement {
  std::vector<std::pair<std::string, call_description>> ranks;  // problem, call
  std::uint64_t key(std::size_t r) const {
    return ranks[r].first.empty() ? (redist::detail::fingerprint().add(ranks[r].second.text()).value() | 1u)
                                  : 0;
  }
  int size() const { return static_cast<int>(ranks.size()); }
  std::string text(std::size_t r) const {
    return (ranks[r].first.empty() ? "0" : "1") + ranks[r].second.text() + '\n' + ranks[r].first;
  }
  // The opening: every rank's (key, text size, 0).
  void allgather(std::span<const std::byte>, std::span<std::byte> out) const {
    std::vector<std::uint64_t> words;
    for (std::size_t r = 0; r < ranks.size(); ++r) words.insert(words.end(), {key(r), text(r).size(), 0});
    REQUIRE(out.size() == words.size() * 8);
    redist::host_space::copy(out.data(), std::as_bytes(std::span(words)).data(), out.size());
  }
  std::vector<std::byte> allgatherv(std::span<const std::byte>, std::span<const std::uint64_t> sizes) const {
    std::vector<std::byte> all;
    for (std::size_t r = 0; r < ranks.size(); ++r) {
      REQUIRE(sizes[r] == text(r).size());
      for (char c : text(r)) all.push_back(static_cast<std::byte>(c));
    }
    return all;
  }
};

std::string agreement_of(const scripted_agreement& comm) {
  return redist::test::error_of(
      [&] { redist::detail::agree(comm, "redist::seqpar::f", "", comm.ranks[0].second); });
}

call_description x(const char* shape) {
  return call_description().add("op", "redist::seqpar::f").add("x", shape);
}

}  // namespace

TEST_CASE("agreement: which ranks passed what in the fields that differ, or the lowest rank's problem") {
  CHECK(agreement_of({{{"", x("f32 [4]")}, {"", x("f32 [4]")}}}) == "no error");
  CHECK(
      agreement_of({{{"", x("f32 [4]")}, {"", x("f32 [4]")}, {"", x("f32 [5]")}, {"", x("f32 [4]")}}}) ==
      "redist::seqpar::f: the ranks' calls differ in x: ranks 0-1, 3 pass x f32 [4]; rank 2 passes x f32 [5] "
      "(every rank must pass the same arguments)");
  CHECK(agreement_of({{{"", x("a")}, {"p1", x("b")}, {"p2", x("a")}}}) ==
        "p1 (on rank 1) (and the ranks' calls differ in x: ranks 0, 2 pass x a; rank 1 passes x b)");
  CHECK(agreement_of({{{"", x("a")}, {"", x("a")}, {"p2", x("a")}}}) == "p2 (on rank 2)");
  // A problem every rank has, or one whose text names its rank already, gets no rank added.
  CHECK(agreement_of({{{"p", x("a")}, {"p", x("a")}}}) == "p");
  CHECK(agreement_of({{{"", x("a")}, {"rank 1 is out of memory", x("a")}}}) == "rank 1 is out of memory");
  CHECK(agreement_of({{{"", x("a")}, {"rank 10 is out of memory", x("a")}}}) ==
        "rank 10 is out of memory (on rank 1)");
  // Only the fields that differ are named; a field one rank lacks reads (none).
  const auto d = [](int budget, bool lossy) {
    return call_description()
        .add("op", "redist::seqpar::f")
        .add("budget", budget)
        .add("lossy", lossy)
        .add("keys", "[a, b]");
  };
  CHECK(agreement_of({{{"", d(8, false)}, {"", d(8, true)}, {"", d(7, false)}}}) ==
        "redist::seqpar::f: the ranks' calls differ in budget, lossy: rank 0 passes budget 8, lossy false; "
        "rank 1 passes budget 8, lossy true; rank 2 passes budget 7, lossy false (every rank must pass the "
        "same "
        "arguments)");
  CHECK(agreement_of({{{"", call_description().add("op", "redist::seqpar::f")},
                       {"", call_description().add("op", "redist::seqpar::f").add("k", 1)}}}) ==
        "redist::seqpar::f: the ranks' calls differ in k: rank 0 passes k (none); rank 1 passes k 1 (every "
        "rank "
        "must pass the same arguments)");
  // Ranks in different ops: the lowest rank's op names the error, the same on every rank.
  CHECK(agreement_of({{{"", call_description().add("op", "redist::a")},
                       {"", call_description().add("op", "redist::b")}}}) ==
        "redist::a: the ranks' calls differ in op: rank 0 passes op redist::a; rank 1 passes op redist::b "
        "(every rank "
        "must pass the same arguments)");
  CHECK(redist::detail::rank_ranges({0, 1, 2, 4, 6, 7}) == "0-2, 4, 6-7");
}
