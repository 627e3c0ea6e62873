// The one agreement of every collective entry point: each rank brings its problem (empty when it has none)
// and a description of its call (the op, its options, its layout or plan); one allgather compares them, and a
// problem anywhere or calls that differ become the same redist::error on every rank before any byte moves.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/detail/hash.hpp"
#include "redist/detail/text.hpp"

namespace redist::detail {

// What a call must have in common with every other rank's: named fields in order ("op", "max_staging_bytes",
// ...), each with its value as text. Only its fingerprint travels unless the ranks disagree.
class call_description {
 public:
  template <class Value>
  call_description& add(std::string_view field, const Value& value) {
    text_ += field;
    text_ += unit;
    append(text_, value);
    text_ += record;
    return *this;
  }
  call_description& add(const call_description& more) {
    text_ += more.text_;
    return *this;
  }
  const std::string& text() const noexcept { return text_; }

  // The (field, value) pairs of a description's text.
  static std::vector<std::pair<std::string_view, std::string_view>> fields(std::string_view text) {
    std::vector<std::pair<std::string_view, std::string_view>> out;
    while (!text.empty()) {
      const std::size_t end = text.find(record);
      const std::string_view f = text.substr(0, end);
      const std::size_t mid = f.find(unit);
      out.emplace_back(f.substr(0, mid), mid == std::string_view::npos ? "" : f.substr(mid + 1));
      text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    }
    return out;
  }

 private:
  static constexpr char unit = '\x1f', record = '\x1e';
  std::string text_;
};

// The message for ranks whose descriptions (texts[r] of rank r) are not all the same: which fields differ,
// and which ranks passed what for them, e.g. "in max_staging_bytes: rank 1 passes max_staging_bytes 1024;
// ranks 0, 2-3 pass max_staging_bytes 268435456". A field a rank lacks reads "(none)". Empty when all agree.
inline std::string describe_difference(std::span<const std::string> texts) {
  std::vector<std::vector<std::pair<std::string_view, std::string_view>>> calls;
  std::vector<std::string_view> names;  // every field, in order of first appearance
  for (const auto& t : texts) {
    calls.push_back(call_description::fields(t));
    for (const auto& [f, v] : calls.back()) {
      bool known = false;
      for (const auto n : names) known = known || n == f;
      if (!known) names.push_back(f);
    }
  }
  const auto value = [&](std::size_t r, std::string_view f) -> std::string_view {
    for (const auto& [g, v] : calls[r])
      if (g == f) return v;
    return "(none)";
  };
  std::vector<std::string_view> differ;
  for (const auto f : names)
    for (std::size_t r = 1; r < calls.size(); ++r)
      if (value(r, f) != value(0, f)) {
        differ.push_back(f);
        break;
      }
  if (differ.empty()) return {};
  std::vector<std::string> passed;   // per distinct choice, in order of first appearance
  std::vector<std::vector<int>> by;  // the ranks that made it
  for (std::size_t r = 0; r < calls.size(); ++r) {
    std::string mine;
    for (const auto f : differ) mine += str(mine.empty() ? "" : ", ", f, ' ', value(r, f));
    std::size_t i = 0;
    while (i < passed.size() && passed[i] != mine) ++i;
    if (i == passed.size()) {
      passed.push_back(std::move(mine));
      by.emplace_back();
    }
    by[i].push_back(static_cast<int>(r));
  }
  std::string out = "in ";
  for (std::size_t i = 0; i < differ.size(); ++i) out += str(i == 0 ? "" : ", ", differ[i]);
  out += ": ";
  for (std::size_t i = 0; i < passed.size(); ++i) {
    const bool many = by[i].size() > 1;
    out += str(i == 0 ? "" : "; ", many ? "ranks " : "rank ", rank_ranges(by[i]),
               many ? " pass " : " passes ", passed[i]);
  }
  return out;
}

// Whether text names rank r ("rank 3", not followed by another digit).
inline bool names_rank(std::string_view text, std::size_t r) {
  const std::string name = str("rank ", r);
  for (std::size_t at = text.find(name); at != std::string_view::npos; at = text.find(name, at + 1)) {
    const std::size_t end = at + name.size();
    if (end == text.size() || text[end] < '0' || text[end] > '9') return true;
  }
  return false;
}

// What every rank throws when the ranks' (problem, description) pairs, per rank, are not all "no problem,
// same call": the lowest failing rank's problem, naming that rank unless every rank had the same problem or
// the text names it already, with how the calls differ, if they do; else whose calls differ and how. Every
// rank computes it from the same texts, so every rank throws the same.
inline std::string agreed_message(const char* who, std::span<const std::string> problems,
                                  std::span<const std::string> calls) {
  const std::string differ = describe_difference(calls);
  for (std::size_t r = 0; r < problems.size(); ++r) {
    const std::string& p = problems[r];
    if (p.empty()) continue;
    bool everywhere = true;
    for (const auto& q : problems) everywhere = everywhere && q == p;
    std::string out = p;
    if (!everywhere && !names_rank(p, r)) out += str(" (on rank ", r, ')');
    if (!differ.empty()) out += str(" (and the ranks' calls differ ", differ, ')');
    return out;
  }
  // Ranks that call different ops each know their own name: the lowest rank's op speaks for every rank.
  std::string_view op = who;
  for (const auto& [f, v] : call_description::fields(calls.empty() ? std::string_view() : calls.front()))
    if (f == "op") op = v;
  return str(op, ": the ranks' calls differ ", differ, " (every rank must pass the same arguments)");
}

// Every rank passes its own problem (empty when it has none), a description of its call and `size`, the
// bytes it gives to what the op gathers next (0 when it gathers nothing). One allgather of three words per
// rank (a fingerprint of the call, 0 for a problem; the size of its text; `size`): every op opens with it,
// so ranks that call different ops meet in the same collective. When no rank has a problem and every
// fingerprint is the same it returns every rank's `size`, so that the op's allgatherv needs no exchange of
// sizes of its own. Otherwise every rank throws the same redist::error (agreed_message) after one allgatherv
// of the ranks' texts.
template <class Comm>
std::vector<std::uint64_t> agree(const Comm& comm, const char* who, const std::string& problem,
                                 const call_description& call = {}, std::uint64_t size = 0) {
  const std::uint64_t key = problem.empty() ? (fingerprint().add(call.text()).value() | 1u) : 0;
  const std::uint64_t mine[3] = {key, call.text().size() + problem.size() + 2, size};
  const auto n = static_cast<std::size_t>(comm.size());
  std::vector<std::uint64_t> all(3 * n);
  comm.allgather(std::as_bytes(std::span(mine)), std::as_writable_bytes(std::span(all)));
  std::vector<std::uint64_t> sizes(n);
  bool same = all[0] != 0;
  for (std::size_t r = 0; r < n; ++r) {
    same = same && all[3 * r] == all[0];
    sizes[r] = all[3 * r + 2];
  }
  if (same) return sizes;
  for (std::size_t r = 0; r < n; ++r) sizes[r] = all[3 * r + 1];  // now the texts'
  const std::string text = str(problem.empty() ? '0' : '1', call.text(), '\n', problem);
  const std::vector<std::byte> texts = comm.allgatherv(std::as_bytes(std::span(text.data(), text.size())),
                                                       std::span<const std::uint64_t>(sizes));
  std::vector<std::string> problems, calls;
  std::size_t at = 0;
  for (const std::uint64_t count : sizes) {
    const std::string_view t(reinterpret_cast<const char*>(texts.data() + at), count);
    at += count;
    const std::size_t newline = t.find('\n');
    calls.emplace_back(t.substr(1, newline - 1));
    problems.emplace_back(t[0] == '1' ? t.substr(newline + 1) : std::string_view());
  }
  throw error(agreed_message(who, problems, calls));
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
    throw error(str(who, ": rank ", rank, " could not allocate ", what, ": ", e.what()));
  }
}

}  // namespace redist::detail
