// detail::fingerprint: the values it gives (computed apart, from the definition: FNV-1a's multiply over
// little-endian 64-bit words, a string's length after its words, a range's count after its values), and
// that the inputs an agreement check must tell apart hash apart.
#include <doctest/doctest.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "redist/detail/hash.hpp"

using redist::detail::fingerprint;

TEST_CASE("fingerprint: the values of the definition") {
  CHECK(fingerprint().value() == 0xcbf29ce484222325ull);
  CHECK(fingerprint().add("layers.12.mlp.up.weight").value() == 0x321f9dca7ae3a088ull);
  CHECK(fingerprint().add(1).add(2).add(3).value() == 0xd0aa6218672cf5abull);
  CHECK(fingerprint().add_all(std::vector<int>{-1}).value() == fingerprint().add(~0ull).add(1).value());
  CHECK(fingerprint().add(~0ull).value() == 0x509c41b379fe466eull);
  CHECK(fingerprint().add("ab").value() == fingerprint().add(std::string("ab")).value());
  static_assert(fingerprint().add("ab").add(7).value() != fingerprint().add("ab").value());  // constexpr
}

TEST_CASE("fingerprint: strings are words then a length, ranges values then a count") {
  CHECK(fingerprint().add("ab").add("c").value() != fingerprint().add("a").add("bc").value());
  CHECK(fingerprint().add("").value() != fingerprint().value());
  CHECK(fingerprint().add("a").value() != fingerprint().add(std::string("a\0", 2)).value());
  CHECK(fingerprint().add_all(std::vector<int>{1, 2}).add_all(std::vector<int>{3}).value() !=
        fingerprint().add_all(std::vector<int>{1}).add_all(std::vector<int>{2, 3}).value());
  CHECK(fingerprint().add_all(std::vector<std::string>{"x", "y"}).value() ==
        fingerprint().add("x").add("y").add(2).value());
}

TEST_CASE("fingerprint: every one-character change of a name changes it") {
  const std::string name = "model.layers.31.self_attn.q_proj.weight";
  std::set<std::uint64_t> seen{fingerprint().add(name).value()};
  for (std::size_t i = 0; i < name.size(); ++i) {
    for (const char c : {'\0', 'a', 'Z', '.', '\x80'}) {
      std::string changed = name;
      if (changed[i] == c) continue;
      changed[i] = c;
      CHECK(seen.insert(fingerprint().add(changed).value()).second);
    }
  }
  for (std::size_t n = 0; n < name.size(); ++n) {
    CHECK(seen.insert(fingerprint().add(name.substr(0, n)).value()).second);
  }
}
