// The NCCL backend's foundations: its options, the newer NCCL entry points looked up at run time, and the
// state a communicator, its views and its requests share (the comm, its scratch, polling, the abort).
#pragma once

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <nccl.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <utility>

#include "redist/core/error.hpp"
#include "redist/detail/byte_codec.hpp"

namespace redist {

// Options of an nccl_communicator, e.g. redist::nccl_options{.timeout = std::chrono::seconds(30)}.
struct nccl_options {
  // The most one blocking step may take: a wait() for a request, the enqueueing of a group a nonblocking
  // communicator reports in progress, creating or finalizing a communicator. Past it the communicator is
  // aborted and the call throws redist::error: a dead peer or a stuck kernel never hangs the caller.
  std::chrono::milliseconds timeout = std::chrono::minutes(5);
};

namespace detail {

// Entry points newer than the oldest libnccl this header supports, with their signatures written out (so
// that an older nccl.h compiles too) and never referenced by name: a program built against new headers
// still loads with an older libnccl, and then takes the older path.
using nccl_alltoall_fn = ncclResult_t (*)(const void*, void*, std::size_t, ncclDataType_t, ncclComm_t,
                                          cudaStream_t);
using nccl_revoke_fn = ncclResult_t (*)(ncclComm_t, int);
inline constexpr int nccl_alltoall_version = 22803;  // ncclAlltoAll, ncclGather, ncclScatter: 2.28.3
inline constexpr int nccl_revoke_version = 22807;    // ncclCommRevoke: 2.28.7

// The loaded libnccl's definition of `name`, or nullptr. RTLD_DEFAULT finds a libnccl the program links;
// one loaded privately (dlopen with RTLD_LOCAL, as Python extensions are) is found through the library
// that defines ncclGetVersion.
inline void* nccl_symbol(const char* name) noexcept {
  if (void* found = dlsym(RTLD_DEFAULT, name)) return found;
  Dl_info info{};
  if (dladdr(reinterpret_cast<const void*>(&ncclGetVersion), &info) == 0 || info.dli_fname == nullptr)
    return nullptr;
  void* library = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);  // only a reference, never a load
  if (library == nullptr) return nullptr;
  void* found = dlsym(library, name);
  dlclose(library);  // drops our reference; whoever loaded the library keeps it loaded
  return found;
}

// What the libnccl met at run time offers: its version (ncclGetVersion) and the newer entry points, each
// null unless the version has it AND the symbol resolves.
struct nccl_api {
  int version = 0;
  nccl_alltoall_fn alltoall = nullptr;
  nccl_revoke_fn revoke = nullptr;

  static nccl_api load() noexcept {
    nccl_api api;
    if (ncclGetVersion(&api.version) != ncclSuccess) api.version = 0;
    if (api.version >= nccl_alltoall_version)
      api.alltoall = reinterpret_cast<nccl_alltoall_fn>(nccl_symbol("ncclAlltoAll"));
    if (api.version >= nccl_revoke_version)
      api.revoke = reinterpret_cast<nccl_revoke_fn>(nccl_symbol("ncclCommRevoke"));
    return api;
  }
};

// NCCL's text for a result, with the communicator's last error when it has one.
inline std::string nccl_text(ncclResult_t rc, ncclComm_t comm) {
  std::string text = ncclGetErrorString(rc);
  const char* last = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  if (last != nullptr && *last != '\0') text.append(" (").append(last).append(")");
  return text;
}

// Makes `device` current for its lifetime (events are created, and memory allocated, on the current device).
class cuda_device_guard {
 public:
  cuda_device_guard(const char* op, int device) {
    check(op, cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(op, cudaSetDevice(device), "cudaSetDevice");
  }
  cuda_device_guard(const cuda_device_guard&) = delete;
  cuda_device_guard& operator=(const cuda_device_guard&) = delete;
  ~cuda_device_guard() {
    int now = previous_;
    if (cudaGetDevice(&now) == cudaSuccess && now != previous_) static_cast<void>(cudaSetDevice(previous_));
  }

  // Throws redist::error naming the operation, the CUDA call and CUDA's text unless rc is cudaSuccess.
  static void check(const char* op, cudaError_t rc, const char* call) {
    if (rc != cudaSuccess)
      fail(op, ": ", call, " failed: ", cudaGetErrorName(rc), ": ", cudaGetErrorString(rc));
  }

 private:
  int previous_ = 0;
};

// Backs off between polls: spins (yielding) first, since most waits are short, then sleeps a little.
inline void poll_pause(unsigned polls) noexcept {
  if (polls < 64) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(polls < 1024 ? 20 : 200));
  }
}

// Device scratch and a pinned host mirror of the same size. The mirror makes staging truly asynchronous: a
// cudaMemcpyAsync to or from pageable memory may block the CPU until the stream reaches it, which behind a
// hung NCCL kernel would be a hang no deadline could end. Device memory is allocated and freed on the stream
// (cudaMallocAsync, cudaFreeAsync: no device-wide synchronization); the mirror lives as long as the scratch.
class nccl_scratch {
 public:
  nccl_scratch(const char* op, std::size_t bytes, cudaStream_t stream) : bytes_(bytes), stream_(stream) {
    void* device = nullptr;
    cuda_device_guard::check(op, cudaMallocAsync(&device, bytes, stream), "cudaMallocAsync");
    device_ = static_cast<std::byte*>(device);
    void* pinned = nullptr;
    const cudaError_t rc = cudaMallocHost(&pinned, bytes);
    if (rc != cudaSuccess) static_cast<void>(cudaFreeAsync(device_, stream_));
    cuda_device_guard::check(op, rc, "cudaMallocHost");
    pinned_ = static_cast<std::byte*>(pinned);
  }
  nccl_scratch(const nccl_scratch&) = delete;
  nccl_scratch& operator=(const nccl_scratch&) = delete;
  ~nccl_scratch() {
    static_cast<void>(cudaFreeAsync(device_, stream_));
    static_cast<void>(cudaFreeHost(pinned_));
  }

  std::size_t bytes() const noexcept { return bytes_; }
  std::byte* device() const noexcept { return device_; }
  std::byte* pinned() const noexcept { return pinned_; }

 private:
  std::size_t bytes_;
  cudaStream_t stream_;
  std::byte* device_ = nullptr;
  std::byte* pinned_ = nullptr;
};

// The communicator's scratch, reused by the next operation once no pending request holds it; an operation
// that needs more, or finds it in use, gets a new one (at least twice the size), which replaces it.
class nccl_scratch_cache {
 public:
  std::shared_ptr<nccl_scratch> lease(const char* op, std::size_t bytes, cudaStream_t stream) {
    if (cached_ && cached_.use_count() == 1 && cached_->bytes() >= bytes) return cached_;
    std::size_t size = std::max<std::size_t>(bytes, 4096);
    if (cached_) size = std::max(size, 2 * cached_->bytes());
    cached_ = std::make_shared<nccl_scratch>(op, size, stream);
    return cached_;
  }

 private:
  std::shared_ptr<nccl_scratch> cached_;
};

// Rank 0's new ncclUniqueId on every rank of `host` (a host communicator), by host.broadcast(): after a
// byte saying whether rank 0 has one, so that a failure there fails every rank instead of leaving them.
template <class Host>
ncclUniqueId nccl_shared_unique_id(const char* who, const Host& host) {
  std::array<std::byte, 1 + sizeof(ncclUniqueId)> message{};
  ncclUniqueId id{};
  ncclResult_t rc = ncclSuccess;
  if (host.rank() == 0) {
    rc = ncclGetUniqueId(&id);
    message[0] = std::byte{rc == ncclSuccess ? std::uint8_t{1} : std::uint8_t{0}};
    store_bytes(message.data() + 1, id);
  }
  host.broadcast(message, 0);
  if (message[0] == std::byte{0}) {
    if (host.rank() == 0) fail(who, ": ncclGetUniqueId failed: ", nccl_text(rc, nullptr));
    fail(who, ": rank 0 could not make the ncclUniqueId (its ncclGetUniqueId failed)");
  }
  id = load_bytes<ncclUniqueId>(message.data() + 1);
  return id;
}

// A new nonblocking comm (ncclConfig_t::blocking = 0) of rank `rank` of `size` on `device`: one
// ncclCommInitRankConfig, polled to completion against the deadline; aborted on failure or past it.
inline ncclComm_t nccl_init_rank(const char* who, int size, int rank, const ncclUniqueId& id, int device,
                                 const nccl_options& options) {
  const cuda_device_guard guard(who, device);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  ncclResult_t rc = ncclCommInitRankConfig(&comm, size, id, rank, &config);
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  for (unsigned polls = 0; rc == ncclInProgress && comm != nullptr; ++polls) {
    if (std::chrono::steady_clock::now() >= deadline) {
      static_cast<void>(ncclCommAbort(comm));
      fail(who, ": ncclCommInitRankConfig did not complete within the deadline of ", options.timeout.count(),
           " ms (nccl_options::timeout; did every rank call create?); the new communicator was aborted");
    }
    poll_pause(polls);
    ncclResult_t async = ncclSuccess;
    const ncclResult_t query = ncclCommGetAsyncError(comm, &async);
    rc = query != ncclSuccess ? query : async;
  }
  if (rc != ncclSuccess) {
    const std::string text = nccl_text(rc, comm);
    if (comm != nullptr) static_cast<void>(ncclCommAbort(comm));
    fail(who, ": ncclCommInitRankConfig failed: ", text);
  }
  return comm;
}

// One ncclComm_t and the stream every operation on it is ordered on, shared (std::shared_ptr) by the
// communicator, its group views and its requests, so a pending request keeps it alive. Owns the comm only
// when redist created it. The first failure aborts it; from then on every call is refused with the reason.
class nccl_state {
 public:
  using clock = std::chrono::steady_clock;

  nccl_state(ncclComm_t comm, cudaStream_t stream, bool owned, nccl_options options)
      : comm_(comm), stream_(stream), owned_(owned), options_(options), api_(nccl_api::load()) {
    constexpr const char* who = "redist::nccl_communicator";
    if (comm == nullptr) fail(who, ": the ncclComm_t is null");
    // Failures here leave the comm as it was: nothing has been started on it.
    for (const auto& [call, rc] : {std::pair{"ncclCommCount", ncclCommCount(comm, &size_)},
                                   std::pair{"ncclCommUserRank", ncclCommUserRank(comm, &rank_)},
                                   std::pair{"ncclCommCuDevice", ncclCommCuDevice(comm, &device_)}}) {
      if (rc != ncclSuccess) fail(who, ": ", call, " failed: ", nccl_text(rc, comm));
    }
  }
  nccl_state(const nccl_state&) = delete;
  nccl_state& operator=(const nccl_state&) = delete;

  // An owned comm is finalized (flushing its work, polled against the deadline) and destroyed, or aborted
  // when that fails; after a revoke it is destroyed at once (finalizing a revoked comm is invalid). A
  // wrapped comm is left to its owner.
  ~nccl_state() {
    if (!owned_ || comm_ == nullptr) return;
    if (!revoked_) {
      const ncclResult_t rc = ncclCommFinalize(comm_);
      if ((rc != ncclSuccess && rc != ncclInProgress) || !quiesce()) {
        static_cast<void>(ncclCommAbort(comm_));
        return;
      }
    }
    static_cast<void>(ncclCommDestroy(comm_));
  }

  ncclComm_t comm() const noexcept { return comm_; }
  cudaStream_t stream() const noexcept { return stream_; }
  int device() const noexcept { return device_; }
  int size() const noexcept { return size_; }
  int rank() const noexcept { return rank_; }
  const nccl_options& options() const noexcept { return options_; }
  const nccl_api& api() const noexcept { return api_; }
  nccl_scratch_cache& scratch() noexcept { return scratch_; }
  bool aborted() const noexcept { return !aborted_.empty(); }

  // Throws, naming `op`, once the communicator has been aborted.
  void check_usable(const char* op) const {
    if (aborted()) {
      fail(op, ": the communicator was aborted by an earlier failure and refuses every call (", aborted_,
           ")");
    }
  }

  // The result of an NCCL call made for `op`: success returns; ncclInProgress (a nonblocking comm still
  // enqueueing) is polled until enqueued, since NCCL takes no further call on the comm before that; an
  // error aborts the communicator and throws.
  void check_call(const char* op, const char* call, ncclResult_t rc) {
    if (rc == ncclSuccess) return;
    if (rc == ncclInProgress) {
      poll(op, [] { return true; });
      return;
    }
    fail_aborting(op, std::string(call) + " failed: " + nccl_text(rc, comm_));
  }

  // Polls until the comm reports no asynchronous error and nothing in progress and done() is true. An NCCL
  // error, a throwing done() or the deadline (options().timeout from now) aborts the communicator and throws.
  template <class Done>
  void poll(const char* op, Done done) {
    const auto deadline = clock::now() + options_.timeout;
    for (unsigned polls = 0;; ++polls) {
      check_usable(op);
      ncclResult_t async = ncclSuccess;
      const ncclResult_t rc = ncclCommGetAsyncError(comm_, &async);
      if (rc != ncclSuccess) fail_aborting(op, "ncclCommGetAsyncError failed: " + nccl_text(rc, comm_));
      if (async != ncclSuccess && async != ncclInProgress)
        fail_aborting(op, "NCCL reported an asynchronous error: " + nccl_text(async, comm_));
      if (async == ncclSuccess) {
        bool finished = false;
        try {
          finished = done();
        } catch (const std::exception& e) {
          fail_aborting(op, e.what());
        }
        if (finished) return;
      }
      if (clock::now() >= deadline) {
        fail_aborting(op, "did not complete within the deadline of " +
                              std::to_string(options_.timeout.count()) +
                              " ms (nccl_options::timeout; a peer that never joined, a dead peer or a stuck "
                              "kernel earlier on the stream)");
      }
      poll_pause(polls);
    }
  }

  // Aborts the communicator, remembers why (every later call is refused with it) and throws redist::error
  // naming `op`, what failed and what became of the ncclComm_t.
  [[noreturn]] void fail_aborting(const char* op, const std::string& what) {
    std::string message = std::string(op) + ": " + what;
    if (!aborted()) {
      message += abort();
      aborted_ = message;
    }
    throw error(message);
  }

 private:
  // Stops the comm's work: ncclCommRevoke where the library has it (the comm stays valid until destroyed),
  // else, or when the revoke does not settle within the deadline, ncclCommAbort (which frees it). Returns
  // what happened, for the error message.
  std::string abort() noexcept {
    const ncclResult_t revoked = api_.revoke != nullptr ? api_.revoke(comm_, 0) : ncclInvalidUsage;
    if ((revoked == ncclSuccess || revoked == ncclInProgress) && quiesce(false)) {
      revoked_ = true;
      return owned_ ? "; the communicator was revoked (ncclCommRevoke)"
                    : "; your ncclComm_t was revoked (ncclCommRevoke): it can only be destroyed or shrunk";
    }
    static_cast<void>(ncclCommAbort(comm_));
    comm_ = nullptr;
    return owned_ ? "; the communicator was aborted (ncclCommAbort)"
                  : "; your ncclComm_t was aborted and freed (ncclCommAbort): do not use or destroy it";
  }

  // Polls until the comm leaves ncclInProgress, at most the deadline. Whether it did (after a revoke: in
  // any state, since nothing runs any more), and without an error (after a finalize, which must succeed).
  bool quiesce(bool need_success = true) const noexcept {
    const auto deadline = clock::now() + options_.timeout;
    for (unsigned polls = 0;; ++polls) {
      ncclResult_t async = ncclSuccess;
      if (ncclCommGetAsyncError(comm_, &async) != ncclSuccess) return false;
      if (async != ncclInProgress) return async == ncclSuccess || !need_success;
      if (clock::now() >= deadline) return false;
      poll_pause(polls);
    }
  }

  ncclComm_t comm_;  // null once aborted with ncclCommAbort (freed)
  cudaStream_t stream_;
  bool owned_;
  bool revoked_ = false;
  nccl_options options_;
  nccl_api api_;
  int size_ = 0;
  int rank_ = 0;
  int device_ = 0;
  std::string aborted_;  // why the communicator was aborted; empty while it is usable
  nccl_scratch_cache scratch_;
};

}  // namespace detail
}  // namespace redist
