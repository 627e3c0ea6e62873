// redist::detail's debug output (REDIST_DEBUG): the level, read once from the environment, the one check an
// op makes when it is off, the sink lines go to (stderr, or a test's string) and how times and rates read.
#pragma once

// REDIST_DEBUG=INFO   every op prints, on rank 0 of its communicator (dispatch: on its root), what it did:
//                     redistribute its plan's summary and one line per step (time, bytes, bandwidth);
//                     seqpar, shard_scatter and dispatch one line each (layout, bytes, time, bandwidth).
// REDIST_DEBUG=TRACE  the same on every rank, each its own figures, plus what it knows of its peers.
// Unset, empty, OFF or 0: nothing, and an op pays one branch on a cached flag; any other value is off too,
// with one warning. The value is read once per process (case does not matter). Lines go to stderr, one write
// each, prefixed "redist[rank r/P] " with the ranks of the op's communicator. Times are this rank's wall
// clock (host time: device work still queued on a stream is not in them); bytes are payload bytes, as
// estimate_cost counts them (float32_staging's casts and padding not included).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "redist/detail/text.hpp"

namespace redist::detail {

enum class debug_level : unsigned char { off = 1, info = 2, trace = 3 };

// REDIST_DEBUG's value as a level; nullopt for a value that names none.
inline std::optional<debug_level> parse_debug_level(const char* value) noexcept {
  if (value == nullptr) return debug_level::off;
  auto is = [value](std::string_view word) {
    std::size_t i = 0;
    for (; value[i] != '\0'; ++i) {
      char c = value[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (i >= word.size() || c != word[i]) return false;
    }
    return i == word.size();
  };
  if (is("") || is("off") || is("0")) return debug_level::off;
  if (is("info")) return debug_level::info;
  if (is("trace")) return debug_level::trace;
  return std::nullopt;
}

// 0 until the environment is read; then a debug_level. Constant-initialized, so an op that runs during
// static initialization still finds it.
inline std::atomic<unsigned char> debug_state{0};

[[gnu::noinline, gnu::cold]] inline unsigned char read_debug_state() noexcept {
  const char* env = std::getenv("REDIST_DEBUG");
  std::optional<debug_level> level = parse_debug_level(env);
  if (!level) {
    std::fprintf(stderr, "redist: REDIST_DEBUG='%s' is none of INFO, TRACE or OFF; debug output stays off\n",
                 env);
    level = debug_level::off;
  }
  unsigned char expected = 0;  // a level a test set first is kept
  debug_state.compare_exchange_strong(expected, static_cast<unsigned char>(*level));
  return debug_state.load(std::memory_order_relaxed);
}

inline debug_level current_debug_level() noexcept {
  unsigned char s = debug_state.load(std::memory_order_relaxed);
  if (s == 0) [[unlikely]]
    s = read_debug_state();
  return static_cast<debug_level>(s);
}

// What an op asks before it measures or formats anything: whether `rank` of its communicator prints (at
// INFO only info_rank does). Off, this is one load and one branch.
inline bool debug_prints(int rank, int info_rank = 0) noexcept {
  const unsigned char s = debug_state.load(std::memory_order_relaxed);
  if (s == static_cast<unsigned char>(debug_level::off)) [[likely]]
    return false;
  const debug_level l = s == 0 ? current_debug_level() : static_cast<debug_level>(s);
  return l == debug_level::trace || (l == debug_level::info && rank == info_rank);
}
inline bool debug_traces() noexcept { return current_debug_level() == debug_level::trace; }

struct debug_sink_state {
  std::mutex mutex;
  std::string* capture = nullptr;  // a test's, instead of stderr
};
inline debug_sink_state& debug_sink() {
  static debug_sink_state sink;
  return sink;
}

// One line, prefixed with the rank, written at once: lines of ranks (or threads) sharing a stream never mix.
template <class... Parts>
void debug_print(int rank, int size, const Parts&... parts) {
  std::string line = str("redist[rank ", rank, '/', size, "] ", parts..., '\n');
  debug_sink_state& sink = debug_sink();
  const std::lock_guard lock(sink.mutex);
  if (sink.capture != nullptr) {
    *sink.capture += line;
  } else {
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
  }
}

// For tests: sets the level and collects the lines in text() for its lifetime, then puts both back.
class debug_capture_for_testing {
 public:
  explicit debug_capture_for_testing(debug_level level)
      : level_(debug_state.exchange(static_cast<unsigned char>(level))) {
    const std::lock_guard lock(debug_sink().mutex);
    previous_ = std::exchange(debug_sink().capture, &text_);
  }
  ~debug_capture_for_testing() {
    {
      const std::lock_guard lock(debug_sink().mutex);
      debug_sink().capture = previous_;
    }
    debug_state.store(level_);
  }
  debug_capture_for_testing(const debug_capture_for_testing&) = delete;
  debug_capture_for_testing& operator=(const debug_capture_for_testing&) = delete;

  // What was printed since the last take().
  std::string take() {
    const std::lock_guard lock(debug_sink().mutex);
    return std::exchange(text_, {});
  }

 private:
  unsigned char level_;
  std::string text_;
  std::string* previous_ = nullptr;
};

inline void set_debug_level_for_testing(debug_level level) noexcept {
  debug_state.store(static_cast<unsigned char>(level));
}

using debug_clock = std::chrono::steady_clock;

inline double seconds_since(debug_clock::time_point start) {
  return std::chrono::duration<double>(debug_clock::now() - start).count();
}

// "1536 B (1.50 KiB)": exact, for tools and tests, and readable.
inline std::string debug_bytes(std::uint64_t b) {
  return b < 1024 ? str(b, " B") : str(b, " B (", human_bytes(b), ')');
}

inline std::string debug_ms(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f ms", seconds * 1e3);
  return buf;
}

// Bytes over seconds as "1.20 GiB/s"; "-" when no time passed.
inline std::string debug_rate(std::uint64_t bytes, double seconds) {
  if (seconds <= 0) return "-";
  const double rate = static_cast<double>(bytes) / seconds;
  return human_bytes(rate >= 1.8e19 ? ~0ull : static_cast<std::uint64_t>(rate)) + "/s";
}

// One op's line: "<who>: <what>, <time>, sent S, received R, <rate>", timed from construction.
class debug_op_timer {
 public:
  debug_op_timer() : start_(debug_clock::now()) {}
  double seconds() const { return seconds_since(start_); }
  std::string figures(std::uint64_t sent, std::uint64_t received) const {
    const double s = seconds();
    return str(debug_ms(s), ", sent ", debug_bytes(sent), ", received ", debug_bytes(received), ", ",
               debug_rate(sent + received, s));
  }

 private:
  debug_clock::time_point start_;
};

}  // namespace redist::detail
