// Tests of redist::nested and its schema codec: the tree's accessors and tensor order, round trips of deep,
// wide, empty and random trees with every dtype and zero-size tensors, the exact bytes of a hand-worked tree,
// and every way a malformed schema is refused.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <new>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "redist/core/host_tensor.hpp"
#include "redist/core/nested.hpp"

namespace user {

// A shape-only tensor, to check that the codec works for a user's type and to make a negative extent.
struct shape_only {
  redist::dtype type;
  std::vector<std::int64_t> shape;
};

}  // namespace user

template <>
struct redist::tensor_traits<user::shape_only> {
  static constexpr memory_space space = memory_space::host;
  static void* data(user::shape_only&) { return nullptr; }
  static const void* data(const user::shape_only&) { return nullptr; }
  static redist::dtype dtype(const user::shape_only& t) { return t.type; }
  static std::size_t rank(const user::shape_only& t) { return t.shape.size(); }
  static std::int64_t extent(const user::shape_only& t, std::size_t d) { return t.shape[d]; }
  static user::shape_only allocate(redist::dtype type, std::span<const std::int64_t> shape) {
    return {type, {shape.begin(), shape.end()}};
  }
};

namespace {

using redist::dtype;
using tree = redist::nested<redist::host_tensor>;
using bytes = std::vector<std::byte>;

bytes b(std::initializer_list<unsigned> values) {
  bytes out;
  for (unsigned v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

bytes cat(bytes a, const bytes& more) {
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

tree t(dtype type, std::vector<std::int64_t> shape) { return redist::host_tensor(type, std::move(shape)); }

// The tree as text, written by the test: kinds, names (with their length, so that odd bytes are visible),
// dtypes and shapes. Two trees have the same schema iff their descriptions are equal.
template <class Tensor>
void describe(const redist::nested<Tensor>& n, std::string& out) {
  using traits = redist::tensor_traits<Tensor>;
  if (n.is_tensor()) {
    out += std::string(redist::name(traits::dtype(n.tensor()))) + "[";
    for (std::size_t d = 0; d < traits::rank(n.tensor()); ++d)
      out += (d ? "," : "") + std::to_string(traits::extent(n.tensor(), d));
    out += "]";
  } else if (n.is_list()) {
    out += "(";
    for (const auto& c : n.items()) {
      describe(c, out);
      out += ";";
    }
    out += ")";
  } else {
    out += "{";
    for (const auto& f : n.named()) {
      out += std::to_string(f.name.size()) + ":" + f.name + "=";
      describe(f.value, out);
      out += ";";
    }
    out += "}";
  }
}
template <class Tensor>
std::string describe(const redist::nested<Tensor>& n) {
  std::string s;
  describe(n, s);
  return s;
}

// Encode, decode, and check that the schema and the bytes survive.
void check_round_trip(const tree& x) {
  const bytes enc = redist::encode_schema(x);
  const tree y = redist::decode_schema<redist::host_tensor>(enc);
  CHECK(describe(y) == describe(x));
  CHECK(redist::encode_schema(y) == enc);
}

// A chain of `depth` wrappers (alternating a one-item list and a one-field record) around a tensor, so the
// tensor sits at depth `depth`.
tree chain(int depth) {
  tree n = t(dtype::u8, {1});
  for (int d = 0; d < depth; ++d) {
    if (d % 2 == 0) {
      n = tree(tree::list{std::move(n)});
    } else {
      tree::fields f;
      f.push_back({"f" + std::to_string(d), std::move(n)});
      n = tree(std::move(f));
    }
  }
  return n;
}

// Seeded random trees: lists and records up to `depth` deep, every dtype, shapes of rank 0-3 with zeros.
tree random_tree(std::mt19937_64& rng, int depth) {
  const auto pick = [&](std::uint64_t n) { return rng() % n; };
  const std::uint64_t kind = depth == 0 ? 0 : pick(3);
  if (kind == 0) {
    std::vector<std::int64_t> shape(pick(4));
    for (auto& e : shape) e = static_cast<std::int64_t>(pick(4));
    return t(static_cast<dtype>(pick(redist::dtype_count)), shape);
  }
  const std::uint64_t n = pick(5);
  if (kind == 1) {
    tree::list l;
    for (std::uint64_t i = 0; i < n; ++i) l.push_back(random_tree(rng, depth - 1));
    return l;
  }
  tree::fields f;
  for (std::uint64_t i = 0; i < n; ++i)
    f.push_back({std::string(pick(4), 'a' + static_cast<char>(i)), random_tree(rng, depth - 1)});
  return f;
}

std::string decode_error(const bytes& in) {
  try {
    (void)redist::decode_schema<redist::host_tensor>(in);
  } catch (const redist::error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("a nested tree: kinds, accessors and the order of its tensors") {
  tree empty;
  CHECK(empty.is_list());
  CHECK(empty.items().empty());
  CHECK_THROWS_WITH_AS(empty.tensor(), "redist::nested: this node is not a tensor", redist::error);
  CHECK_THROWS_WITH_AS(empty.named(), "redist::nested: this node is not named fields", redist::error);
  const tree leaf = t(dtype::f32, {2});
  CHECK(leaf.is_tensor());
  CHECK_THROWS_WITH_AS(leaf.items(), "redist::nested: this node is not a list", redist::error);

  // Depth first, fields and list items in order: the order in which tensor bytes travel.
  tree::fields inner;
  inner.push_back({"x", t(dtype::i8, {1})});
  inner.push_back({"y", tree::list{t(dtype::i16, {1}), t(dtype::i32, {1})}});
  tree::fields top;
  top.push_back({"a", t(dtype::f64, {1})});
  top.push_back({"b", std::move(inner)});
  top.push_back({"c", tree::list{}});
  top.push_back({"d", t(dtype::u8, {1})});
  const tree x(std::move(top));
  std::vector<dtype> order;
  x.for_each_tensor([&](const redist::host_tensor& h) { order.push_back(h.dtype()); });
  CHECK(order == std::vector<dtype>{dtype::f64, dtype::i8, dtype::i16, dtype::i32, dtype::u8});
  tree y = x;
  int count = 0;
  y.for_each_tensor([&](redist::host_tensor&) { ++count; });
  CHECK(count == 5);
}

TEST_CASE("encode_schema: the exact bytes of a hand-worked tree") {
  // {"a": i32[300, 0], "b": [bool scalar, []]}
  tree::fields f;
  f.push_back({"a", t(dtype::i32, {300, 0})});
  f.push_back({"b", tree::list{t(dtype::boolean, {}), tree::list{}}});
  const tree x(std::move(f));
  // fields, 2 | "a" | tensor, i32 = 6, rank 2, 300 = 0xAC 0x02, 0 | "b" | list, 2 | tensor, bool = 9, rank 0
  // | list, 0
  const bytes expect = b({0x01, 0x02, 0x01, 'a', 0x02, 0x06, 0x02, 0xAC, 0x02, 0x00, 0x01, 'b', 0x00, 0x02,
                          0x02, 0x09, 0x00, 0x00, 0x00});
  CHECK(redist::encode_schema(x) == expect);
  const tree y = redist::decode_schema<redist::host_tensor>(expect);
  CHECK(describe(y) == "{1:a=i32[300,0];1:b=(bool[];(););}");
  CHECK(y.named()[0].value.tensor().nbytes() == 0);
  CHECK(y.named()[1].value.items()[0].tensor().nbytes() == 1);

  // Leaves and empty containers at the top.
  CHECK(redist::encode_schema(tree()) == b({0x00, 0x00}));
  CHECK(redist::encode_schema(tree(tree::fields{})) == b({0x01, 0x00}));
  CHECK(redist::encode_schema(t(dtype::bf16, {1, 128})) == b({0x02, 0x03, 0x02, 0x01, 0x80, 0x01}));
  // A 200-byte name: its length is a two-byte varint.
  tree::fields long_name;
  long_name.push_back({std::string(200, 'n'), tree()});
  const bytes enc = redist::encode_schema(tree(std::move(long_name)));
  REQUIRE(enc.size() == 2 + 2 + 200 + 2);
  CHECK(enc[2] == std::byte{0xC8});
  CHECK(enc[3] == std::byte{0x01});
}

TEST_CASE("schema round trips: every dtype, zero-size and scalar tensors, empty lists and fields") {
  for (std::size_t d = 0; d < redist::dtype_count; ++d) {
    const auto type = static_cast<dtype>(d);
    CAPTURE(redist::name(type));
    for (const auto& shape : std::vector<std::vector<std::int64_t>>{{}, {0}, {5}, {3, 0, 2}, {1, 1, 1, 1}}) {
      check_round_trip(t(type, shape));
    }
    // The dtype code is the enum's value.
    CHECK(redist::encode_schema(t(type, {}))[1] == static_cast<std::byte>(d));
  }
  check_round_trip(tree());
  check_round_trip(tree(tree::fields{}));
  tree::fields odd;
  odd.push_back({"", tree()});                                             // an empty name
  odd.push_back({"dup", t(dtype::i64, {2})});                              // names may repeat
  odd.push_back({"dup", tree(tree::fields{})});                            //
  odd.push_back({std::string("nul\0byte", 8), t(dtype::f16, {0})});        // any bytes
  odd.push_back({"\xC3\xA9t\xC3\xA9", tree::list{tree(), tree::list{}}});  // UTF-8
  check_round_trip(tree(std::move(odd)));
  // Large extents take several varint bytes; the tensor is never allocated here.
  const redist::nested<user::shape_only> big =
      user::shape_only{dtype::u8, {std::int64_t{1} << 40, 0, std::int64_t{1} << 62}};
  const auto enc = redist::encode_schema(big);
  CHECK(describe(redist::decode_schema<user::shape_only>(enc)) == describe(big));
}

TEST_CASE("schema round trips: deep and wide trees") {
  // The deepest tree allowed: its tensor at depth max_nested_depth.
  check_round_trip(chain(redist::detail::max_nested_depth));
  tree::fields wide;
  tree::list many;
  for (int i = 0; i < 5000; ++i) {
    wide.push_back({"field" + std::to_string(i), t(static_cast<dtype>(i % 10), {i % 7})});
    many.push_back(i % 3 == 0 ? tree() : t(dtype::i32, {i % 5, 2}));
  }
  tree::fields top;
  top.push_back({"wide", std::move(wide)});
  top.push_back({"many", std::move(many)});
  check_round_trip(tree(std::move(top)));
}

TEST_CASE("schema round trips: seeded random trees") {
  const std::uint64_t seed = 0x6e65737465640001ull;
  INFO("seed=" << seed);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 300; ++i) {
    CAPTURE(i);
    check_round_trip(random_tree(rng, 1 + i % 6));
  }
}

TEST_CASE("encode_schema refuses what decode_schema would") {
  CHECK_THROWS_WITH_AS(redist::encode_schema(chain(redist::detail::max_nested_depth + 1)),
                       "redist::encode_schema: nesting deeper than 256 levels", redist::error);
  tree::list l;
  l.push_back(tree());
  l.push_back(chain(redist::detail::max_nested_depth));  // its tensor one level deeper than allowed
  CHECK_THROWS_WITH_AS(redist::encode_schema(tree(std::move(l))),
                       "redist::encode_schema: nesting deeper than 256 levels", redist::error);
  const redist::nested<user::shape_only> negative = user::shape_only{dtype::f32, {4, -1}};
  CHECK_THROWS_WITH_AS(redist::encode_schema(negative),
                       "redist::encode_schema: extent -1 of dim 1 is negative", redist::error);
}

TEST_CASE("decode_schema: malformed input") {
  const bytes good = b({0x01, 0x02, 0x01, 'a', 0x02, 0x06, 0x02, 0xAC, 0x02, 0x00, 0x01, 'b', 0x00, 0x02,
                        0x02, 0x09, 0x00, 0x00, 0x00});
  REQUIRE(decode_error(good) == "(no error)");

  SUBCASE("every truncation") {
    for (std::size_t n = 0; n < good.size(); ++n) {
      CAPTURE(n);
      const std::string e = decode_error(bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)));
      CHECK(e.rfind("redist::decode_schema: ", 0) == 0);
    }
    CHECK(decode_error({}) == "redist::decode_schema: truncated input: node kind at byte 0 is missing");
    CHECK(decode_error(b({0x02})) == "redist::decode_schema: truncated input: dtype at byte 1 is missing");
    CHECK(decode_error(b({0x02, 0x06})) ==
          "redist::decode_schema: truncated input: tensor rank at byte 2 is missing");
    CHECK(decode_error(b({0x02, 0x06, 0x01, 0xAC})) ==
          "redist::decode_schema: truncated input: extent at byte 4 is missing");
    CHECK(decode_error(b({0x01, 0x01, 0x80, 0x80})) ==
          "redist::decode_schema: truncated input: field name at byte 4 is missing");
    CHECK(decode_error(b({0x01, 0x01, 0x01, 'a'})) ==
          "redist::decode_schema: truncated input: node kind at byte 4 is missing");
  }
  SUBCASE("a node kind that is none of the three") {
    CHECK(decode_error(b({0x03})) == "redist::decode_schema: node kind 3 is not a list, fields or tensor");
    CHECK(decode_error(b({0x00, 0x01, 0xFF})) ==
          "redist::decode_schema: node kind 255 is not a list, fields or tensor");
  }
  SUBCASE("a dtype code that is not a dtype") {
    CHECK(decode_error(b({0x02, 0x0A, 0x00})) ==
          "redist::decode_schema: dtype code 10 is not a redist::dtype");
    CHECK(decode_error(b({0x02, 0xFF, 0x00})) ==
          "redist::decode_schema: dtype code 255 is not a redist::dtype");
  }
  SUBCASE("bytes after the schema") {
    CHECK(decode_error(cat(good, b({0x00}))) == "redist::decode_schema: 1 bytes left over after the schema");
    CHECK(decode_error(b({0x00, 0x00, 0x00, 0x00, 0x00})) ==
          "redist::decode_schema: 3 bytes left over after the schema");
  }
  SUBCASE("nesting deeper than allowed") {
    // 256 one-item lists around an empty list: the empty list at depth 256, allowed.
    bytes ok;
    for (int d = 0; d < 256; ++d) ok = cat(ok, b({0x00, 0x01}));
    ok = cat(ok, b({0x00, 0x00}));
    CHECK(decode_error(ok) == "(no error)");
    CHECK(decode_error(cat(b({0x00, 0x01}), ok)) == "redist::decode_schema: nesting deeper than 256 levels");
    // Far deeper input stops at the limit instead of recursing through it.
    bytes deep;
    for (int d = 0; d < 100000; ++d)
      deep.insert(deep.end(), {std::byte{0x01}, std::byte{0x01}, std::byte{0x00}});
    CHECK(decode_error(deep) == "redist::decode_schema: nesting deeper than 256 levels");
  }
  SUBCASE("counts larger than the input") {
    CHECK(decode_error(b({0x00, 0x05, 0x00, 0x00})) ==
          "redist::decode_schema: list length 5 at byte 1 cannot fit in the 2 bytes left");
    CHECK(decode_error(b({0x01, 0x03, 0x01, 'a', 0x00, 0x00})) ==
          "redist::decode_schema: field count 3 at byte 1 cannot fit in the 4 bytes left");
    CHECK(decode_error(b({0x01, 0x01, 0x09, 'a', 0x00, 0x00})) ==
          "redist::decode_schema: field name 9 at byte 2 cannot fit in the 3 bytes left");
    CHECK(decode_error(b({0x02, 0x00, 0x05, 0x01, 0x01})) ==
          "redist::decode_schema: tensor rank 5 at byte 2 cannot fit in the 2 bytes left");
    // A count near 2^64 is refused before anything is allocated for it.
    CHECK(decode_error(b({0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01})) ==
          "redist::decode_schema: list length 18446744073709551615 at byte 1 cannot fit in the 0 bytes left");
  }
  SUBCASE("varints out of range and sizes that overflow") {
    CHECK(decode_error(b({0x02, 0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F})) ==
          "redist::decode_schema: extent at byte 3 overflows 64 bits");
    CHECK(decode_error(b({0x02, 0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01})) ==
          "redist::decode_schema: extent 18446744073709551615 at byte 3 exceeds the int64 range");
    // i64 [2^62, 4]: 2^65 bytes.
    const bytes two62 = b({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40});
    CHECK(decode_error(cat(cat(b({0x02, 0x07, 0x02}), two62), b({0x04}))) ==
          "redist::decode_schema: the i64 tensor [4611686018427387904, 4] at byte 1 has more bytes than a "
          "std::size_t holds");
    // The product is taken dim by dim, as every reader of the shape takes it: one that overflows before a
    // zero extent is refused too (else a reader multiplying in another order would get a wrapped size).
    CHECK(decode_error(cat(cat(b({0x02, 0x07, 0x03}), two62), b({0x04, 0x00}))) ==
          "redist::decode_schema: the i64 tensor [4611686018427387904, 4, 0] at byte 1 has more bytes than a "
          "std::size_t holds");
    // A zero extent before the large ones: no product overflows, the tensor is empty.
    const redist::nested<user::shape_only> empty =
        redist::decode_schema<user::shape_only>(cat(cat(b({0x02, 0x07, 0x03, 0x00}), two62), b({0x04})));
    CHECK(describe(empty) == "i64[0,4611686018427387904,4]");
  }
}

// Allocates one tensor of the schema; throws std::bad_alloc for a tensor of more than 1 MiB, as a
// full machine would, without asking for the memory.
struct tight_tensor {
  redist::host_tensor t;
};

template <>
struct redist::tensor_traits<tight_tensor> {
  static constexpr memory_space space = memory_space::host;
  static void* data(tight_tensor& x) { return x.t.data(); }
  static const void* data(const tight_tensor& x) { return x.t.data(); }
  static redist::dtype dtype(const tight_tensor& x) { return x.t.dtype(); }
  static std::size_t rank(const tight_tensor& x) { return x.t.shape().size(); }
  static std::int64_t extent(const tight_tensor& x, std::size_t d) { return x.t.shape()[d]; }
  static tight_tensor allocate(redist::dtype type, std::span<const std::int64_t> shape) {
    if (redist::detail::dense_bytes(type, shape, "tight_tensor") > (std::size_t{1} << 20))
      throw std::bad_alloc();
    return {redist::host_tensor(type, {shape.begin(), shape.end()})};
  }
};

TEST_CASE("decode_schema allocates no more than it may, and a failed allocation is a redist::error") {
  // A few bytes declaring a 7.5 TiB f32 tensor.
  const redist::nested<user::shape_only> huge = user::shape_only{dtype::f32, {std::int64_t{15} << 37}};
  const bytes enc = redist::encode_schema(huge);
  CHECK(enc.size() < 10);
  CHECK_THROWS_WITH_AS(redist::decode_schema<tight_tensor>(enc),
                       "redist::decode_schema: could not allocate the f32 tensor [2061584302080] at byte 1 "
                       "(8246337208320 bytes): std::bad_alloc",
                       redist::error);
  // With a limit, the tensor is refused before any allocation is tried.
  CHECK_THROWS_WITH_AS(redist::decode_schema<tight_tensor>(enc, std::size_t{1} << 30),
                       "redist::decode_schema: the f32 tensor [2061584302080] at byte 1 takes 8246337208320 "
                       "bytes, more than the 1073741824 bytes the schema may still declare",
                       redist::error);
  // The limit holds for the tensors together: 3 x 400 bytes fit in 1200, not in 1199.
  tree::list three;
  for (int i = 0; i < 3; ++i) three.push_back(t(dtype::i32, {10, 10}));
  const bytes enc3 = redist::encode_schema(tree(std::move(three)));
  CHECK(describe(redist::decode_schema<redist::host_tensor>(enc3, 1200)) ==
        "(i32[10,10];i32[10,10];i32[10,10];)");
  CHECK_THROWS_WITH_AS(
      redist::decode_schema<redist::host_tensor>(enc3, 1199),
      "redist::decode_schema: the i32 tensor [10, 10] at byte 13 takes 400 bytes, more than the "
      "399 bytes the schema may still declare",
      redist::error);
}
