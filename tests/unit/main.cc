// The Catch2 v2 main of the unit tests; the test cases live in the *_test.cc files beside it.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
