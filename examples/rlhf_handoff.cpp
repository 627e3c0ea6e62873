// rlhf_handoff: the hand-off redist exists for. An RLHF actor laid out data x tensor x pipe has generated
// rollouts, held by its DP heads; the critic, laid out differently, wants them balanced by tokens across its
// DP ranks, every tensor/pipe replica of a DP rank the same samples in the same order. One redistribute()
// call on every rank moves them. The program prints the plan, times the one-hop exact path beside the
// reference system's path (gather to one rank, scatter, float32 staging), and checks every received byte
// and metadata value against values recomputed from the sample ids.
//
//   mpirun -np 8 ./example_rlhf_handoff                                         actor 2x2x2 -> critic 4x2
//   mpirun -np 4 ./example_rlhf_handoff --actor data=2,tensor=2 --critic data=2,pipe=2
//
// Options: --actor DIMS (data=2,tensor=2,pipe=2), --critic DIMS (data=4,pipe=2): dims slowest first, each
// spanning every rank, each with a 'data' dim; --rollouts N per actor DP rank (1024), --mean-tokens X (mean
// response length, 512), --iters N (timed calls per path, 5), --ranks-per-node R (1), --svg FILE (rank 0
// writes the plan's rank x rank traffic as an SVG heatmap), --device (GPU tensors; in the CUDA build,
// example_rlhf_handoff_cuda: NCCL where every rank has a GPU, else host-staged MPI). Exits non-zero on a
// wrong byte or an error.
#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <queue>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "redist/comm/mpi.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/describe.hpp"
#include "redist/plan/gather_scatter.hpp"
#include "redist/plan/picture.hpp"
#include "redist/redistribute.hpp"
#if defined(__CUDACC__)
#include <cuda_runtime.h>

#include "redist/comm/mpi/device.hpp"
#include "redist/comm/nccl.hpp"
#include "redist/core/cuda/space.cuh"
#include "redist/core/cuda/tensor.hpp"
#endif

namespace {

using redist::dtype;
using redist::sample_id;
using batch = redist::sequence_batch<>;

// A mistake in the command line, the same on every rank; and --device where some rank has no GPU.
struct bad_setup : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct no_device : bad_setup {
  using bad_setup::bad_setup;
};

struct config {
  std::string actor = "data=2,tensor=2,pipe=2";
  std::string critic = "data=4,pipe=2";
  std::int64_t rollouts = 1024;
  std::int64_t mean_tokens = 512;
  int iters = 5;
  int ranks_per_node = 1;
  std::string svg;
  bool device = false;
};

[[noreturn]] void usage(int me, const std::string& why) {
  if (me == 0)
    std::fprintf(stderr,
                 "rlhf_handoff: %s\nusage: rlhf_handoff [--actor DIMS] [--critic DIMS] [--rollouts N] "
                 "[--mean-tokens X] [--iters N] [--ranks-per-node R] [--svg FILE] [--device]\n",
                 why.c_str());
  MPI_Finalize();
  std::exit(2);
}

config parse(int argc, char** argv, int me) {
  config c;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(me, std::string(a) + " needs a value");
      return argv[++i];
    };
    auto number = [&](std::int64_t least) {
      const std::string v = value();
      char* end = nullptr;
      const long long n = std::strtoll(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || n < least)
        usage(me, std::string(a) + ": bad value '" + v + "'");
      return static_cast<std::int64_t>(n);
    };
    if (a == "--actor") {
      c.actor = value();
    } else if (a == "--critic") {
      c.critic = value();
    } else if (a == "--rollouts") {
      c.rollouts = number(1);
    } else if (a == "--mean-tokens") {
      c.mean_tokens = number(1);
    } else if (a == "--iters") {
      c.iters = static_cast<int>(std::min<std::int64_t>(number(1), 1000));
    } else if (a == "--ranks-per-node") {
      c.ranks_per_node = static_cast<int>(std::min<std::int64_t>(number(1), 1 << 20));
    } else if (a == "--svg") {
      c.svg = value();
    } else if (a == "--device") {
      c.device = true;
    } else {
      usage(me, "unknown option '" + std::string(a) + "'");
    }
  }
  return c;
}

// "data=2,tensor=2,pipe=2" -> topology({{"data", 2}, {"tensor", 2}, {"pipe", 2}}).
redist::topology parse_topology(const std::string& text) {
  std::vector<std::string> names;
  std::vector<int> extents;
  for (std::size_t at = 0; at <= text.size();) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    const std::size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) throw bad_setup("'" + text + "': expected name=extent,...");
    names.push_back(item.substr(0, eq));
    extents.push_back(std::atoi(item.c_str() + eq + 1));
    at = comma + 1;
  }
  std::vector<redist::topology::dim_value> dims;
  for (std::size_t d = 0; d < names.size(); ++d) dims.emplace_back(names[d], extents[d]);
  return redist::topology(dims);
}

// ---- the rollouts: every value a function of (id, token), so any rank can recompute any sample ----------

constexpr std::int64_t vocab = 151936;
constexpr std::int64_t value_heads = 4;  // values: bf16 [tokens, value_heads]

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finalizer: lengths that look random but are reproducible
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
// Sequences of one rollout: its prompt and its response; one in 16 responses runs four times longer.
std::vector<std::int64_t> lengths_of(sample_id id, const config& c) {
  const std::uint64_t h = mix(id);
  const auto prompt = static_cast<std::int64_t>(16 + h % 241);
  const auto spread = static_cast<std::uint64_t>(std::max<std::int64_t>(c.mean_tokens * 3 / 2, 1));
  std::int64_t response = c.mean_tokens / 4 + static_cast<std::int64_t>((h >> 16) % spread);
  if ((h >> 40) % 16 == 0) response *= 4;
  return {prompt, response};
}
std::int64_t token_of(sample_id id, std::int64_t t) {
  return static_cast<std::int64_t>((id * 2654435761u + static_cast<std::uint64_t>(t) * 40503u) % vocab);
}
float logprob_of(sample_id id, std::int64_t t) {
  return -static_cast<float>((id * 13 + static_cast<std::uint64_t>(t)) % 4096) / 256.0f;
}
redist::bf16 value_of(sample_id id, std::int64_t t, std::int64_t head) {
  const auto v = (id + static_cast<std::uint64_t>(3 * t + head)) % 256;  // exact in bf16
  return redist::f32_to_bf16(static_cast<float>(v) / 16.0f - 8.0f);
}
std::string prompt_name(sample_id id) { return "task" + std::to_string(id % 97) + "/" + std::to_string(id); }
std::string reward_of(sample_id id) {
  char text[16];
  std::snprintf(text, sizeof text, "%.3f", static_cast<double>(mix(id * 31) % 2001) / 1000.0 - 1.0);
  return text;
}

struct key_schema {
  const char* name;
  dtype type;
  std::int64_t per_token;  // elements per token
};
constexpr key_schema schema[] = {
    {"logprobs", dtype::f32, 1}, {"tokens", dtype::i64, 1}, {"values", dtype::bf16, value_heads}};

// The bytes sample `id` holds for schema[k], token after token.
void expected_bytes(sample_id id, std::size_t k, std::int64_t tokens, std::byte* out) {
  for (std::int64_t t = 0; t < tokens; ++t) {
    if (k == 0) {
      const float v = logprob_of(id, t);
      std::memcpy(out + t * 4, &v, 4);
    } else if (k == 1) {
      const std::int64_t v = token_of(id, t);
      std::memcpy(out + t * 8, &v, 8);
    } else {
      for (std::int64_t h = 0; h < value_heads; ++h) {
        const redist::bf16 v = value_of(id, t, h);
        std::memcpy(out + (t * value_heads + h) * 2, &v, 2);
      }
    }
  }
}

// What actor DP rank `dp` generated: rollouts dp * n .. dp * n + n - 1.
batch generate(int dp, const config& c) {
  std::vector<sample_id> ids;
  redist::seqlen_table lens;
  std::int64_t total = 0;
  redist::metadata_map meta;
  for (std::int64_t i = 0; i < c.rollouts; ++i) {
    const auto id = static_cast<sample_id>(dp * c.rollouts + i);
    const auto l = lengths_of(id, c);
    ids.push_back(id);
    lens.push_back(l);
    total += l[0] + l[1];
    meta["prompt"].push_back(prompt_name(id));
    meta["reward"].push_back(reward_of(id));
  }
  std::vector<batch::field> fields;
  for (std::size_t k = 0; k < std::size(schema); ++k) {
    std::vector<std::int64_t> shape{total}, trailing;
    if (schema[k].per_token > 1) trailing.push_back(schema[k].per_token);
    shape.insert(shape.end(), trailing.begin(), trailing.end());
    auto t = redist::host_tensor::uninitialized(schema[k].type, shape);
    auto* at = static_cast<std::byte*>(t.data());
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const std::int64_t n = lens[i][0] + lens[i][1];
      expected_bytes(ids[i], k, n, at);
      at += n * schema[k].per_token * static_cast<std::int64_t>(redist::size_of(schema[k].type));
    }
    fields.push_back({schema[k].name, schema[k].type, trailing, lens, std::move(t)});
  }
  return batch(std::move(ids), std::move(fields), std::move(meta));
}

// ---- the critic's wants: longest rollout first, each to the critic DP rank with the fewest tokens so far
// ----

std::vector<std::vector<sample_id>> balance(const redist::world_metadata& world, int dp_ranks,
                                            std::vector<std::int64_t>& load) {
  std::vector<std::pair<std::int64_t, sample_id>> by_tokens;  // (-tokens, id): longest first, ties by id
  for (const auto& b : world.batches)
    for (std::size_t i = 0; i < b.size(); ++i) by_tokens.emplace_back(-b.tokens("tokens", i), b.ids()[i]);
  std::sort(by_tokens.begin(), by_tokens.end());
  std::vector<std::vector<sample_id>> per_dp(static_cast<std::size_t>(dp_ranks));
  load.assign(per_dp.size(), 0);
  using slot = std::pair<std::int64_t, int>;  // (tokens so far, dp rank)
  std::priority_queue<slot, std::vector<slot>, std::greater<>> lightest;
  for (int d = 0; d < dp_ranks; ++d) lightest.emplace(0, d);
  for (const auto& [neg_tokens, id] : by_tokens) {
    auto [tokens, d] = lightest.top();
    lightest.pop();
    per_dp[static_cast<std::size_t>(d)].push_back(id);
    load[static_cast<std::size_t>(d)] = tokens - neg_tokens;
    lightest.emplace(tokens - neg_tokens, d);
  }
  return per_dp;
}

// ---- verification: wrong values in `got`, which must hold `wanted` in that order
// ---------------------------

std::size_t wrong_in(const batch& got, const std::vector<sample_id>& wanted, const config& c) {
  if (!std::equal(got.ids().begin(), got.ids().end(), wanted.begin(), wanted.end())) return 1;
  std::size_t wrong = 0;
  std::vector<std::byte> expected;
  for (std::size_t k = 0; k < std::size(schema); ++k) {
    const auto& f = got.at(schema[k].name);
    const auto* base = static_cast<const std::byte*>(got.data(schema[k].name).data());
    if (f.dtype != schema[k].type) ++wrong;
    for (std::size_t i = 0; i < got.size(); ++i) {
      const auto lens = got.seqlens(schema[k].name, i);
      const auto want = lengths_of(wanted[i], c);
      if (!std::equal(lens.begin(), lens.end(), want.begin(), want.end())) {
        ++wrong;
        continue;
      }
      const auto range = got.sample_bytes(schema[k].name, i);
      expected.resize(range.size);
      expected_bytes(wanted[i], k, want[0] + want[1], expected.data());
      wrong += std::memcmp(base + range.offset, expected.data(), range.size) != 0;
    }
  }
  const auto& meta = got.metadata();
  if (!meta.contains("prompt") || !meta.contains("reward")) return wrong + 1;
  for (std::size_t i = 0; i < got.size(); ++i)
    wrong += meta.at("prompt")[i] != prompt_name(wanted[i]) || meta.at("reward")[i] != reward_of(wanted[i]);
  return wrong;
}

// ---- one path, timed: median over iterations of the slowest rank's time -----------------------------------

template <class Call>
double timed_ms(MPI_Comm comm, int iters, Call&& call) {
  std::vector<double> times;
  call();  // warm-up: first-touch of buffers and MPI's connections
  for (int i = 0; i < iters; ++i) {
    MPI_Barrier(comm);
    const double t0 = MPI_Wtime();
    call();
    double t = MPI_Wtime() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm);
    times.push_back(t);
  }
  std::nth_element(times.begin(), times.begin() + iters / 2, times.end());
  return times[static_cast<std::size_t>(iters / 2)] * 1e3;
}

void say(int me, const std::string& text) {
  if (me == 0) std::fputs(text.c_str(), stdout);
}
std::string fmt(const char* format, double a, double b = 0, double c = 0) {
  char text[256];
  std::snprintf(text, sizeof text, format, a, b, c);
  return text;
}
std::string list_of(const std::vector<int>& ranks) {
  std::string text;
  for (int r : ranks) text += " " + std::to_string(r);
  return text;
}
std::string mib(std::uint64_t bytes) { return fmt("%.2f MiB", static_cast<double>(bytes) / (1 << 20)); }

// The same hand-off, once per path: the exact one-hop result is what the critic keeps, the reference path's
// result is checked too. `run(opts, float32)` makes one call and returns the result as a host batch (device
// results are read back only for the check, outside the timed calls).
template <class Run, class Time>
std::size_t compare_paths(int me, const config& c, const std::vector<sample_id>& wanted,
                          std::uint64_t must_move, Run&& run, Time&& time) {
  const redist::redistribute_options exact{.ranks_per_node = c.ranks_per_node};
  const redist::redistribute_options reference{.pattern = redist::plan_pattern::gather_scatter,
                                               .ranks_per_node = c.ranks_per_node};
  std::size_t wrong = wrong_in(run(exact, false), wanted, c);
  wrong += wrong_in(run(reference, true), wanted, c);
  const double one_hop = time(exact, false);
  const double gather_scatter = time(reference, true);
  const double gb = static_cast<double>(must_move) / 1e9;
  say(me,
      fmt("\none-hop, exact bytes (byte_staging)     %9.2f ms  %6.2f GB/s\n", one_hop, gb / one_hop * 1e3));
  say(me, fmt("gather-scatter, float32 (the reference) %9.2f ms  %6.2f GB/s  %.2fx the one-hop time\n",
              gather_scatter, gb / gather_scatter * 1e3, gather_scatter / one_hop));
  say(me, fmt("(median of %.0f calls after one warm-up, each the slowest rank's time; GB/s of the %.1f MB "
              "that must "
              "move)\n",
              c.iters, static_cast<double>(must_move) / 1e6));
  return wrong;
}

std::size_t host_paths(MPI_Comm world, const redist::mpi_communicator& comm, int me, const config& c,
                       const batch& mine, const std::vector<sample_id>& wanted, std::uint64_t must_move) {
  auto run = [&](const redist::redistribute_options& o, bool f32) {
    return f32 ? redist::redistribute<redist::float32_staging>(comm, mine, wanted, o)
               : redist::redistribute(comm, mine, wanted, o);
  };
  auto time = [&](const redist::redistribute_options& o, bool f32) {
    return timed_ms(world, c.iters, [&] { run(o, f32); });
  };
  return compare_paths(me, c, wanted, must_move, run, time);
}

#if defined(__CUDACC__)
void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// A host batch's tensors copied to the device, and back.
template <class To, class From, class Make>
redist::sequence_batch<To> copy_batch(const redist::sequence_batch<From>& b, cudaStream_t s,
                                      cudaMemcpyKind kind, Make&& make) {
  std::vector<typename redist::sequence_batch<To>::field> fields;
  for (const auto& f : b.fields()) {
    To t = make(*f.data);
    cuda_ok(cudaMemcpyAsync(t.data(), f.data->data(), f.data->nbytes(), kind, s), "cudaMemcpyAsync");
    fields.push_back({f.name, f.dtype, f.trailing_shape, f.seqlens, std::move(t)});
  }
  cuda_ok(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  return {{b.ids().begin(), b.ids().end()}, std::move(fields), b.metadata()};
}

template <class Comm>
std::size_t device_paths(MPI_Comm world, const Comm& comm, cudaStream_t s, int me, const config& c,
                         const batch& host_mine, const std::vector<sample_id>& wanted,
                         std::uint64_t must_move) {
  using device_batch = redist::sequence_batch<redist::cuda_tensor>;
  const redist::cuda_space space(s);
  const device_batch mine =
      copy_batch<redist::cuda_tensor>(host_mine, s, cudaMemcpyHostToDevice, [&](const auto& h) {
        return redist::cuda_tensor(h.dtype(), {h.shape().begin(), h.shape().end()}, {s, nullptr});
      });
  auto call = [&](const redist::redistribute_options& o, bool f32) {
    auto got = f32 ? redist::redistribute<redist::float32_staging>(comm, mine, wanted, o, space)
                   : redist::redistribute(comm, mine, wanted, o, space);
    cuda_ok(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    return got;
  };
  auto run = [&](const redist::redistribute_options& o, bool f32) {
    return copy_batch<redist::host_tensor>(call(o, f32), s, cudaMemcpyDeviceToHost, [](const auto& d) {
      return redist::host_tensor::uninitialized(d.dtype(), {d.shape().begin(), d.shape().end()});
    });
  };
  auto time = [&](const redist::redistribute_options& o, bool f32) {
    return timed_ms(world, c.iters, [&] { call(o, f32); });
  };
  return compare_paths(me, c, wanted, must_move, run, time);
}

std::size_t on_device(MPI_Comm world, const redist::mpi_communicator& host, int me, const config& c,
                      const batch& mine, const std::vector<sample_id>& wanted, std::uint64_t must_move) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
  int fewest = devices, local = 0, local_ranks = 1;
  MPI_Allreduce(MPI_IN_PLACE, &fewest, 1, MPI_INT, MPI_MIN, world);
  if (fewest == 0) throw no_device("--device: skipped, no CUDA device on some rank");
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, me, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &local);
  MPI_Comm_size(node, &local_ranks);
  MPI_Comm_free(&node);
  int own_gpu = local_ranks <= devices;
  MPI_Allreduce(MPI_IN_PLACE, &own_gpu, 1, MPI_INT, MPI_LAND, world);
  cuda_ok(cudaSetDevice(local % devices), "cudaSetDevice");
  cudaStream_t s = nullptr;
  cuda_ok(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  say(me, own_gpu ? "device tensors over NCCL, one GPU per rank\n"
                  : "device tensors over MPI staged through pinned host memory (ranks share GPUs)\n");
  std::size_t wrong = 0;
  if (own_gpu) {
    const auto comm = redist::nccl_communicator::create(host, local % devices, s);
    wrong = device_paths(world, comm, s, me, c, mine, wanted, must_move);
  } else {
    const redist::mpi_device_communicator comm(host, s);
    wrong = device_paths(world, comm, s, me, c, mine, wanted, must_move);
  }
  cudaStreamDestroy(s);
  return wrong;
}
#endif

int run(MPI_Comm world, int me, int ranks, const config& c) {
  const redist::mpi_communicator comm(world);
  const redist::topology actor = parse_topology(c.actor), critic = parse_topology(c.critic);
  for (const auto* t : {&actor, &critic})
    if (t->size() != ranks || !t->has_dim("data"))
      throw bad_setup("--actor and --critic must each span all " + std::to_string(ranks) +
                      " ranks and have a 'data' dim ('" + c.actor + "', '" + c.critic + "')");

  // The actor's DP heads hold the rollouts: tensor rank 0 of the last pipeline stage, where logprobs and
  // values come out. Every other rank passes an empty batch.
  std::vector<redist::topology::dim_value> head{{"tensor", 0}, {"pipe", -1}};
  std::erase_if(head, [&](const auto& d) { return !actor.has_dim(d.first); });
  const std::vector<int> heads = actor.ranks_where(head);
  const bool is_head = std::find(heads.begin(), heads.end(), me) != heads.end();
  const batch mine = is_head ? generate(actor.coord(me, "data"), c) : batch{};

  // Every rank learns every rank's metadata (no tensor bytes) and makes the same balance and the same plan.
  const redist::world_metadata world_meta = redist::gather_metadata(comm, mine);
  std::vector<std::int64_t> load;
  const auto per_dp = balance(world_meta, critic.extent("data"), load);
  std::vector<redist::id_list> wants(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    const auto& ids = per_dp[static_cast<std::size_t>(critic.coord(r, "data"))];
    wants[static_cast<std::size_t>(r)] = redist::id_list(ids.begin(), ids.end());
  }
  const std::vector<sample_id>& wanted = per_dp[static_cast<std::size_t>(critic.coord(me, "data"))];
  const std::vector<std::string> keys{"logprobs", "tokens", "values"};
  const redist::plan_options po{.ranks_per_node = c.ranks_per_node};
  const redist::plan one_hop = redist::plan_all_to_all(world_meta.tracker, wants, keys, po);
  const redist::plan reference = redist::plan_gather_scatter(world_meta.tracker, wants, keys, po);
  const redist::plan_cost cost = redist::estimate_cost(one_hop, world_meta.tracker);
  const redist::plan_cost ref_cost = redist::estimate_cost(reference, world_meta.tracker);

  std::int64_t samples = 0, tokens = 0;
  std::uint64_t payload = 0;
  for (const auto& b : world_meta.batches) {
    samples += static_cast<std::int64_t>(b.size());
    if (!b.empty()) tokens += b.total_tokens("tokens");
  }
  for (const auto& k : schema)
    payload += static_cast<std::uint64_t>(tokens * k.per_token) * redist::size_of(k.type);
  say(me, "rlhf_handoff: " + std::to_string(ranks) + " ranks; actor " + c.actor + " -> critic " + c.critic +
              "\n");
  say(me,
      fmt("rollouts: %.0f samples, %.0f tokens, %.1f MB", static_cast<double>(samples),
          static_cast<double>(tokens), static_cast<double>(payload) / 1e6) +
          " (tokens i64, logprobs f32, values bf16[4], metadata prompt and reward), held by the actor's " +
          std::to_string(heads.size()) + " DP heads (ranks" + list_of(heads) + ")\n");
  std::string balanced = "critic DP ranks' tokens (balanced by tokens, replicas want the same ids):";
  for (auto l : load) balanced += " " + std::to_string(l);
  say(me, balanced + "\n\n");
  say(me, "one-hop " + redist::describe(one_hop, world_meta.tracker));
  say(me, "bytes per rank (sent + received):");
  for (int r = 0; r < ranks; ++r) {
    const auto u = static_cast<std::size_t>(r);
    say(me, (r % 4 == 0 ? "\n  " : "   ") + fmt("rank %.0f ", r) + mib(cost.sent[u] + cost.received[u]));
  }
  say(me, "\n" +
              fmt("the reference gather-scatter: %.0f steps, %.0f hops, wire ",
                  static_cast<double>(reference.step_count()), static_cast<double>(ref_cost.hops)) +
              mib(ref_cost.wire_bytes) + ", bottleneck rank " + std::to_string(ref_cost.bottleneck_rank) +
              " " + mib(ref_cost.bottleneck_bytes) +
              fmt(" (%.2fx the one-hop bottleneck)\n",
                  static_cast<double>(ref_cost.bottleneck_bytes) /
                      static_cast<double>(std::max<std::uint64_t>(cost.bottleneck_bytes, 1))));
  if (me == 0 &&
      !c.svg.empty()) {  // before any data moves; a path that cannot be written is reported, not fatal
    std::ofstream out(c.svg);
    out << redist::traffic_svg(one_hop, world_meta.tracker,
                               {.title = "rlhf_handoff: actor " + c.actor + " -> critic " + c.critic,
                                .producer = &actor,
                                .consumer = &critic});
    say(me, out.flush() ? "wrote " + c.svg + "\n" : "could not write " + c.svg + "\n");
  }

  std::size_t wrong = 0;
  if (c.device) {
#if defined(__CUDACC__)
    wrong = on_device(world, comm, me, c, mine, wanted, cost.wire_bytes);
#else
    throw bad_setup("--device: this build has no CUDA; run example_rlhf_handoff_cuda");
#endif
  } else {
    wrong = host_paths(world, comm, me, c, mine, wanted, cost.wire_bytes);
  }
  // Ranks that share cores make the timings CPU-bound: say so beside them.
  MPI_Comm node = MPI_COMM_NULL;
  int on_node = 1;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, me, MPI_INFO_NULL, &node);
  MPI_Comm_size(node, &on_node);
  MPI_Comm_free(&node);
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (static_cast<unsigned>(on_node) > cores)
    say(me, fmt("(%.0f ranks on a node of %.0f cores: oversubscribed, the times are CPU-bound and noisy)\n",
                on_node, cores));
  unsigned long long all_wrong = wrong;
  MPI_Allreduce(MPI_IN_PLACE, &all_wrong, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, world);
  if (all_wrong != 0) {
    say(me, fmt("FAILED: %.0f wrong samples or values across ranks\n", static_cast<double>(all_wrong)));
    return 1;
  }
  say(me,
      "verified: on every rank both paths return exactly the ids of its critic DP rank, in order, and "
      "every byte, seqlen and metadata value as generated\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int me = 0, ranks = 1;
  MPI_Comm world = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(world, &me);
  MPI_Comm_size(world, &ranks);
  const config c = parse(argc, argv, me);
  int rc = 1;
  try {
    rc = run(world, me, ranks, c);
  } catch (const no_device& e) {
    if (me == 0) std::fprintf(stderr, "rlhf_handoff: %s\n", e.what());
    rc = 77;  // what CTest counts as skipped
  } catch (const bad_setup& e) {
    if (me == 0) std::fprintf(stderr, "rlhf_handoff: %s\n", e.what());
  } catch (const redist::error& e) {  // the same on every rank, by the library's agreement
    if (me == 0) std::fprintf(stderr, "rlhf_handoff: %s\n", e.what());
  } catch (const std::exception& e) {  // this rank's alone: its peers may be waiting for it
    std::fprintf(stderr, "rlhf_handoff: rank %d: %s\n", me, e.what());
    MPI_Abort(world, 1);
  }
  std::fflush(stdout);
  MPI_Comm_free(&world);
  MPI_Finalize();
  return rc;
}
