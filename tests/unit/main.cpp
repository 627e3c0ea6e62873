// The doctest main shared by every unit test executable (tests/unit/test_*.cpp): no tests live here.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
