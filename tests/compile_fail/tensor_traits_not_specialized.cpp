// expect: redist::tensor_traits<T> is not specialized for this type
// A type nobody wrote traits for: the diagnostic says so instead of listing every member.
#include <vector>

#include "redist/core/sequence_batch.hpp"

int main() { return static_cast<int>(redist::sequence_batch<std::vector<float>>().size()); }
