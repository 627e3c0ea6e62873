// expect: redist::redistribute: the one-call form creates the result's tensors; tensor_traits<T> lacks
// The one-call form given a batch of a tensor type that cannot allocate (a view): one assertion says why.
#include "redist/comm/self.hpp"
#include "redist/redistribute.hpp"

int main() {
  const redist::self_communicator comm;
  const redist::sequence_batch<redist::host_tensor_view> local;
  return static_cast<int>(redist::redistribute(comm, local, {}).size());
}
