// expect: T is not one of redist's ten element types
// A C++ type with no redist dtype: the diagnostic says so in a sentence.
#include "redist/core/dtype.hpp"

int main() { return static_cast<int>(redist::dtype_of<long long>); }
