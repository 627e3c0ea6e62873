// Tests of redist::catalog (schemas, seqlens, lookups and every error with its message, against a plain
// model) and of the metadata codec: a hand-encoded byte string, random round trips, truncations, byte flips,
// size.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <map>
#include <new>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "redist/core/catalog.hpp"
#include "redist/core/dtype.hpp"
#include "redist/core/error.hpp"
#include "redist/core/host_tensor.hpp"
#include "redist/core/metadata_codec.hpp"
#include "redist/core/sequence_batch.hpp"

#include "failing_allocations.hpp"

namespace {

using redist::catalog;
using redist::dtype;
using redist::host_tensor;
using redist::key_schema;
using redist::sample_id;
using batch = redist::sequence_batch<host_tensor>;
using field = batch::field;
using lens_list = std::vector<std::vector<std::int64_t>>;

// A metadata-only field.
field key(std::string name, dtype t, std::vector<std::int64_t> trailing, const lens_list& lens) {
  return field{std::move(name), t, std::move(trailing), redist::seqlen_table(lens), std::nullopt};
}

std::vector<std::int64_t> to_vector(std::span<const std::int64_t> s) { return {s.begin(), s.end()}; }

std::uint64_t seed_for(const char* test) {
  const std::uint64_t seed = std::random_device{}();
  std::cout << test << ": seed " << seed << "\n";
  return seed;
}

// ---- catalog ----

TEST_CASE("catalog: keys ascending by name, lookups by position, entries from several ranks") {
  catalog c;
  CHECK(c.size() == 0);
  CHECK(c.keys().empty());
  CHECK_FALSE(c.find_key("x").has_value());
  CHECK_FALSE(c.has(1, 0));

  // Rank 0: ids 5 and 3; "y" is i32[2], "x" is f32[]; id 3 of "x" has two sequences, id 5 of "y" none.
  c.add(batch({5, 3}, {key("y", dtype::i32, {2}, {{}, {4}}), key("x", dtype::f32, {}, {{7}, {3, 2}})}), 0);
  // Rank 2 repeats (3, "x") with the same seqlens, adds (9, "x") and a new key "a" (bf16[3, 2]).
  c.add(batch({3, 9},
              {key("x", dtype::f32, {}, {{3, 2}, {0, 0, 1}}), key("a", dtype::bf16, {3, 2}, {{1}, {}})}),
        2);

  REQUIRE(c.keys().size() == 3);
  CHECK(c.keys()[0] == key_schema{"a", dtype::bf16, {3, 2}});
  CHECK(c.keys()[1] == key_schema{"x", dtype::f32, {}});
  CHECK(c.keys()[2] == key_schema{"y", dtype::i32, {2}});
  CHECK(c.keys()[0].row_bytes() == 12);
  CHECK(c.keys()[1].row_bytes() == 4);
  CHECK(c.keys()[2].row_bytes() == 8);
  CHECK(c.find_key("a") == std::optional<std::size_t>(0));
  CHECK(c.find_key("x") == std::optional<std::size_t>(1));
  CHECK(c.find_key("y") == std::optional<std::size_t>(2));
  CHECK_FALSE(c.find_key("b").has_value());
  CHECK_FALSE(c.find_key("").has_value());
  CHECK(c.size() == 7);  // a: 3, 9; x: 5, 3, 9; y: 5, 3

  struct expect {
    sample_id id;
    std::size_t key;
    std::vector<std::int64_t> lens;
    std::int64_t tokens;
    std::uint64_t bytes;
  };
  for (const auto& e : std::vector<expect>{{3, 0, {1}, 1, 12},
                                           {9, 0, {}, 0, 0},
                                           {5, 1, {7}, 7, 28},
                                           {3, 1, {3, 2}, 5, 20},
                                           {9, 1, {0, 0, 1}, 1, 4},
                                           {5, 2, {}, 0, 0},
                                           {3, 2, {4}, 4, 32}}) {
    CAPTURE(e.id);
    CAPTURE(e.key);
    CHECK(c.has(e.id, e.key));
    CHECK(to_vector(c.seqlens(e.id, e.key)) == e.lens);
    CHECK(c.tokens(e.id, e.key) == e.tokens);
    CHECK(c.bytes(e.id, e.key) == e.bytes);
  }
  CHECK_FALSE(c.has(5, 0));
  CHECK_FALSE(c.has(9, 2));
  CHECK_FALSE(c.has(4, 1));
  CHECK_FALSE(c.has(3, 3));  // key position out of range
}

TEST_CASE("catalog: lookup errors") {
  catalog c;
  c.add(batch({5}, {key("x", dtype::f32, {}, {{2}})}), 0);
  CHECK_THROWS_WITH_AS(c.seqlens(6, 0), "redist::catalog::seqlens: id 6 has no key 'x'", redist::error);
  CHECK_THROWS_WITH_AS(c.tokens(6, 0), "redist::catalog::tokens: id 6 has no key 'x'", redist::error);
  CHECK_THROWS_WITH_AS(c.bytes(6, 0), "redist::catalog::bytes: id 6 has no key 'x'", redist::error);
  CHECK_THROWS_WITH_AS(c.seqlens(5, 1), "redist::catalog::seqlens: key position 1 is out of range for 1 keys",
                       redist::error);
  CHECK_THROWS_WITH_AS(c.bytes(5, 7), "redist::catalog::bytes: key position 7 is out of range for 1 keys",
                       redist::error);
}

// Everything observable about a catalog, for checking that a failed add() changed nothing.
std::string dump(const catalog& c) {
  std::string s = std::to_string(c.size()) + ";";
  for (std::size_t k = 0; k < c.keys().size(); ++k) {
    s += c.keys()[k].name + ":";
    for (sample_id id = 0; id < 200; ++id)
      if (c.has(id, k)) s += std::to_string(id) + redist::detail::shape_text(c.seqlens(id, k));
    s += ";";
  }
  return s;
}

TEST_CASE("catalog: conflicts name both ranks in the order they were added, and change nothing") {
  catalog c;
  c.add(batch({1, 7}, {key("x", dtype::bf16, {4}, {{3, 2}, {1}}), key("s", dtype::i64, {}, {{1}, {}})}), 1);
  c.add(batch({8}, {key("x", dtype::bf16, {4}, {{2}})}), 4);
  const std::string before = dump(c);

  SUBCASE("dtype") {
    CHECK_THROWS_WITH_AS(c.add(batch({2}, {key("x", dtype::f32, {4}, {{1}})}), 3),
                         "redist::catalog: key 'x' is bf16[4] on rank 1 but f32[4] on rank 3", redist::error);
  }
  SUBCASE("trailing shape, and a scalar row") {
    CHECK_THROWS_WITH_AS(c.add(batch({2}, {key("x", dtype::bf16, {4, 1}, {{1}})}), 3),
                         "redist::catalog: key 'x' is bf16[4] on rank 1 but bf16[4, 1] on rank 3",
                         redist::error);
    CHECK_THROWS_WITH_AS(c.add(batch({2}, {key("s", dtype::i64, {2}, {{1}})}), 0),
                         "redist::catalog: key 's' is i64[] on rank 1 but i64[2] on rank 0", redist::error);
  }
  SUBCASE("seqlens, first rank to report the pair first") {
    CHECK_THROWS_WITH_AS(c.add(batch({7, 1}, {key("x", dtype::bf16, {4}, {{1}, {5}})}), 2),
                         "redist::catalog: id 1, key 'x': seqlens [3, 2] on rank 1 but [5] on rank 2",
                         redist::error);
    CHECK_THROWS_WITH_AS(c.add(batch({8}, {key("x", dtype::bf16, {4}, {{2, 0}})}), 0),
                         "redist::catalog: id 8, key 'x': seqlens [2] on rank 4 but [2, 0] on rank 0",
                         redist::error);
    CHECK_THROWS_WITH_AS(c.add(batch({7}, {key("s", dtype::i64, {}, {{0}})}), 9),
                         "redist::catalog: id 7, key 's': seqlens [] on rank 1 but [0] on rank 9",
                         redist::error);
  }
  SUBCASE("schemas are checked before seqlens; the batch's key order, then its id order") {
    // Key "s" has a seqlens conflict and comes first, but key "x" has a schema conflict.
    CHECK_THROWS_WITH_AS(
        c.add(batch({1}, {key("s", dtype::i64, {}, {{9}}), key("x", dtype::f16, {4}, {{3, 2}})}), 5),
        "redist::catalog: key 'x' is bf16[4] on rank 1 but f16[4] on rank 5", redist::error);
    CHECK_THROWS_WITH_AS(
        c.add(batch({7, 1}, {key("x", dtype::bf16, {4}, {{2}, {3}}), key("s", dtype::i64, {}, {{2}, {1}})}),
              5),
        "redist::catalog: id 7, key 'x': seqlens [1] on rank 1 but [2] on rank 5", redist::error);
    CHECK_THROWS_WITH_AS(
        c.add(batch({7, 1}, {key("s", dtype::i64, {}, {{2}, {1}}), key("x", dtype::bf16, {4}, {{2}, {3}})}),
              5),
        "redist::catalog: id 7, key 's': seqlens [] on rank 1 but [2] on rank 5", redist::error);
  }
  SUBCASE("a failing batch that also brings new keys and new ids leaves no trace") {
    CHECK_THROWS_AS(c.add(batch({3, 4, 1}, {key("new", dtype::u8, {}, {{1}, {2}, {3}}),
                                            key("x", dtype::bf16, {4}, {{1}, {2, 2}, {3, 3}})}),
                          6),
                    redist::error);
  }
  CHECK(dump(c) == before);
  CHECK(c.keys().size() == 2);
  // And a later good batch still goes in.
  c.add(batch({3}, {key("new", dtype::u8, {}, {{1}}), key("x", dtype::bf16, {4}, {{6}})}), 6);
  CHECK(c.size() == 7);
  CHECK(c.keys()[0].name == "new");
  CHECK(to_vector(c.seqlens(3, 2)) == std::vector<std::int64_t>{6});
}

TEST_CASE("catalog: add is all or nothing when an allocation fails part way") {
  catalog c;
  c.add(batch({1, 7}, {key("x", dtype::bf16, {4}, {{3, 2}, {1}}), key("s", dtype::i64, {}, {{1}, {}})}), 1);
  // New ids for an existing key (with a rehash: 40 ids), a new key before and after the others.
  std::vector<sample_id> ids{1};
  lens_list xs{{3, 2}}, as{{1}}, zs{{}};
  for (sample_id id = 100; id < 140; ++id) {
    ids.push_back(id);
    xs.push_back({static_cast<std::int64_t>(id), 1});
    as.push_back({2});
    zs.push_back({});
  }
  const batch b(ids,
                {key("z", dtype::u8, {}, zs), key("x", dtype::bf16, {4}, xs), key("a", dtype::f64, {}, as)});
  const std::string before = dump(c);
  bool done = false;
  for (long n = 0; !done; ++n) {
    CAPTURE(n);
    try {
      const failing_allocations armed(n);
      c.add(b, 2);
      done = true;
    } catch (const std::bad_alloc&) {
    }
    if (!done) CHECK(dump(c) == before);
    REQUIRE(n < 1000);
  }
  CHECK(c.size() == 4 + 41 + 40 + 41);
  REQUIRE(c.keys().size() == 4);
  CHECK(c.keys()[0].name == "a");
  CHECK(c.keys()[3].name == "z");
  CHECK(to_vector(c.seqlens(1, 2)) == std::vector<std::int64_t>{3, 2});
  CHECK(to_vector(c.seqlens(139, 2)) == std::vector<std::int64_t>{139, 1});
  CHECK(c.bytes(139, 2) == 140 * 8);
  CHECK(to_vector(c.seqlens(120, 0)) == std::vector<std::int64_t>{2});
  CHECK(c.tokens(120, 3) == 0);
}

TEST_CASE("catalog: random batches from many ranks against a plain model") {
  const std::uint64_t seed = seed_for("catalog random");
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  const std::vector<std::string> names = {"k0", "k1", "k2", "k3"};
  for (int round = 0; round < 20; ++round) {
    CAPTURE(round);
    // The truth: per (id, key), its seqlens; ids spread over the whole 64-bit range or packed together.
    const bool spread = round % 2 == 0;
    std::map<std::pair<sample_id, std::string>, std::vector<std::int64_t>> truth;
    std::vector<sample_id> universe;
    const std::size_t n = 1 + rng() % (round < 4 ? 20000 : 300);
    for (std::size_t i = 0; i < n; ++i) universe.push_back(spread ? rng() : 1000 + 2 * i);
    std::sort(universe.begin(), universe.end());
    universe.erase(std::unique(universe.begin(), universe.end()), universe.end());
    for (sample_id id : universe)
      for (const auto& k : names) {
        std::vector<std::int64_t> lens(rng() % 4);
        for (auto& l : lens) l = static_cast<std::int64_t>(rng() % 50);
        truth[{id, k}] = lens;
      }
    const dtype types[] = {dtype::f32, dtype::i64, dtype::bf16, dtype::boolean};
    const std::vector<std::int64_t> shapes[] = {{}, {3}, {2, 5}, {0}};

    catalog c;
    std::map<std::pair<sample_id, std::string>, std::vector<std::int64_t>> added;
    const int ranks = 1 + static_cast<int>(rng() % 6);
    for (int r = 0; r < ranks; ++r) {
      std::vector<sample_id> ids;
      for (sample_id id : universe)
        if (rng() % 3 == 0) ids.push_back(id);
      std::shuffle(ids.begin(), ids.end(), rng);
      std::vector<field> fields;
      for (std::size_t k = 0; k < names.size(); ++k) {
        if (rng() % 3 == 0) continue;
        lens_list lens;
        for (sample_id id : ids) {
          lens.push_back(truth.at({id, names[k]}));
          added[{id, names[k]}] = lens.back();
        }
        fields.push_back(key(names[k], types[k], shapes[k], lens));
      }
      std::shuffle(fields.begin(), fields.end(), rng);
      c.add(batch(ids, std::move(fields)), r);
    }
    REQUIRE(c.size() == added.size());
    std::size_t present = 0;
    for (std::size_t k = 0; k < names.size(); ++k) {
      const auto pos = c.find_key(names[k]);
      if (!pos) continue;
      ++present;
      CHECK(c.keys()[*pos] == key_schema{names[k], types[k], shapes[k]});
      const std::size_t row = c.keys()[*pos].row_bytes();
      for (sample_id id : universe) {
        auto it = added.find({id, names[k]});
        REQUIRE(c.has(id, *pos) == (it != added.end()));
        if (it == added.end()) continue;
        std::int64_t tokens = 0;
        for (auto l : it->second) tokens += l;
        CHECK(to_vector(c.seqlens(id, *pos)) == it->second);
        CHECK(c.tokens(id, *pos) == tokens);
        CHECK(c.bytes(id, *pos) == static_cast<std::uint64_t>(tokens) * row);
      }
      // Ids never added are absent.
      for (int probe = 0; probe < 100; ++probe) {
        const sample_id id = spread ? rng() : 1001 + 2 * (rng() % (n + 5));
        CHECK(c.has(id, *pos) == (added.count({id, names[k]}) != 0));
      }
    }
    CHECK(c.keys().size() == present);
    CHECK(std::is_sorted(c.keys().begin(), c.keys().end(),
                         [](const key_schema& a, const key_schema& b) { return a.name < b.name; }));
  }
}

// ---- metadata codec ----

std::vector<std::byte> bytes_of(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

// Checks that two batches agree in everything the codec carries; `b` must have no data.
void check_same_metadata(const batch& a, const batch& b) {
  CHECK(std::vector<sample_id>(a.ids().begin(), a.ids().end()) ==
        std::vector<sample_id>(b.ids().begin(), b.ids().end()));
  REQUIRE(a.fields().size() == b.fields().size());
  for (std::size_t k = 0; k < a.fields().size(); ++k) {
    const auto& x = a.fields()[k];
    const auto& y = b.fields()[k];
    CAPTURE(x.name);
    CHECK(x.name == y.name);
    CHECK(x.dtype == y.dtype);
    CHECK(x.trailing_shape == y.trailing_shape);
    CHECK(x.seqlens == y.seqlens);
    CHECK_FALSE(y.data.has_value());
  }
  CHECK(a.metadata() == b.metadata());
}

// A batch of the hand-encoded example below.
batch example_batch() {
  return batch(
      {5, 3, 300},
      {key("x", dtype::i32, {2}, {{1}, {300}, {0}}), key("m", dtype::boolean, {}, {{}, {2, 0}, {1}})},
      {{"tag", {"a", "", std::string("\xff\0z", 3)}}});
}

const std::vector<std::byte> example_bytes = bytes_of({
    0x01,                                      // version
    0x03, 0x0a, 0x03, 0xd2, 0x04,              // 3 ids: +5 -> 10, -2 -> 3, +297 -> 594 = 0x52 | 0x80, 0x04
    0x02,                                      // 2 keys
    0x01, 'x',  0x06, 0x01, 0x02,              // "x", i32, rank 1, extent 2
    0x01, 0x01, 0xac, 0x02, 0x00,              // one sequence each: 1, 300 = 0x2c | 0x80, 0x02, 0
    0x01, 'm',  0x09, 0x00,                    // "m", bool, rank 0
    0x00, 0x00, 0x02, 0x02, 0x00, 0x01, 0x01,  // general: [], [2, 0], [1]
    0x01, 0x03, 't',  'a',  'g',               // 1 metadata entry, "tag"
    0x01, 'a',  0x00, 0x03, 0xff, 0x00, 'z',   // "a", "", "\xff\0z"
});

TEST_CASE("metadata codec: a batch encodes to the bytes worked out by hand, and back") {
  const batch b = example_batch();
  CHECK(redist::encode_metadata(b) == example_bytes);
  const batch d = redist::decode_metadata(example_bytes);
  check_same_metadata(b, d);
  CHECK_FALSE(d.has_data());
  CHECK(d.metadata().at("tag")[2] == std::string("\xff\0z", 3));

  // Data is not encoded: the same batch with tensors gives the same bytes.
  std::vector<field> with;
  for (const auto& f : b.fields()) {
    field g = f;
    std::vector<std::int64_t> shape{b.total_tokens(f.name)};
    shape.insert(shape.end(), f.trailing_shape.begin(), f.trailing_shape.end());
    g.data = host_tensor(f.dtype, shape);
    with.push_back(std::move(g));
  }
  const batch bd({5, 3, 300}, std::move(with), b.metadata());
  REQUIRE(bd.has_data());
  CHECK(redist::encode_metadata(bd) == example_bytes);

  // The empty batch.
  CHECK(redist::encode_metadata(batch{}) == bytes_of({0x01, 0x00, 0x00, 0x00}));
  const batch e = redist::decode_metadata(bytes_of({0x01, 0x00, 0x00, 0x00}));
  CHECK(e.empty());
  CHECK(e.fields().empty());
  CHECK(e.metadata().empty());
}

TEST_CASE("metadata codec: ids at the ends of the range, either direction, wrap exactly") {
  constexpr sample_id max = std::numeric_limits<sample_id>::max();
  const std::vector<std::vector<sample_id>> cases = {{max, 0, max - 1, 1ull << 63, (1ull << 63) - 1, 2, 1},
                                                     {0},
                                                     {max},
                                                     {10, 9, 8, 7},
                                                     {1ull << 40, 0, (1ull << 40) + 1}};
  for (const auto& ids : cases) {
    lens_list lens(ids.size(), std::vector<std::int64_t>{1});
    const batch b(ids, {key("k", dtype::u8, {}, lens)});
    const batch d = redist::decode_metadata(redist::encode_metadata(b));
    check_same_metadata(b, d);
  }
  // 0 then max is a delta of -1 mod 2^64: one byte (zigzag 1).
  CHECK(redist::encode_metadata(batch({0, max}, {})) == bytes_of({0x01, 0x02, 0x00, 0x01, 0x00, 0x00}));
}

// A random batch: every dtype, trailing shapes with zero extents, samples with no sequence, zero-length and
// multi-byte lengths, ids anywhere in the range, metadata strings of any bytes. Data on request.
batch random_batch(std::mt19937_64& rng, bool with_data) {
  const std::size_t n = rng() % 40;
  std::vector<sample_id> ids;
  const int style = static_cast<int>(rng() % 4);
  const sample_id base = rng();
  for (std::size_t i = 0; ids.size() < n; ++i) {
    sample_id id = style == 0 ? base + i : style == 1 ? base - 3 * i : style == 2 ? rng() : rng() % 64;
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  std::vector<field> fields;
  const std::size_t nkeys = rng() % 5;
  for (std::size_t k = 0; k < nkeys; ++k) {
    const auto t = static_cast<dtype>(rng() % redist::dtype_count);
    std::vector<std::int64_t> trailing(rng() % 3);
    for (auto& e : trailing) e = static_cast<std::int64_t>(rng() % 4);
    const int lens_style = static_cast<int>(rng() % 3);  // one sequence each, few, or none at all
    lens_list lens;
    for (std::size_t i = 0; i < n; ++i) {
      std::vector<std::int64_t> l(lens_style == 0 ? 1 : lens_style == 1 ? rng() % 4 : 0);
      for (auto& x : l) x = static_cast<std::int64_t>(rng() % 3 == 0 ? rng() % 300 : rng() % 5);
      lens.push_back(l);
    }
    std::string name = "key" + std::to_string(k);
    if (k == 3) name = "\xc3\xa9t\xe2\x82\xac";  // non-ASCII names travel too
    field f = key(name, t, trailing, lens);
    if (with_data) {
      std::int64_t tokens = 0;
      for (const auto& l : lens)
        for (auto x : l) tokens += x;
      std::vector<std::int64_t> shape{tokens};
      shape.insert(shape.end(), trailing.begin(), trailing.end());
      f.data = host_tensor(t, shape);
    }
    fields.push_back(std::move(f));
  }
  redist::metadata_map meta;
  const std::size_t nmeta = rng() % 3;
  for (std::size_t m = 0; m < nmeta; ++m) {
    std::vector<std::string> values;
    for (std::size_t i = 0; i < n; ++i) {
      std::string v(rng() % 6, '\0');
      for (auto& ch : v) ch = static_cast<char>(rng());
      values.push_back(v);
    }
    meta[m == 0 ? std::string() : "meta\xf0\x9f\x99\x82" + std::to_string(m)] = values;
  }
  return batch(std::move(ids), std::move(fields), std::move(meta));
}

TEST_CASE("metadata codec: random batches round trip exactly") {
  const std::uint64_t seed = seed_for("codec round trip");
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 500; ++round) {
    CAPTURE(round);
    const batch b = random_batch(rng, round % 3 == 0);
    const auto bytes = redist::encode_metadata(b);
    const batch d = redist::decode_metadata(bytes);
    check_same_metadata(b, d);
    CHECK(redist::encode_metadata(d) == bytes);
  }
  // All ten dtypes in one batch, with big lengths and extents.
  std::vector<field> fields;
  for (std::size_t t = 0; t < redist::dtype_count; ++t)
    fields.push_back(key("t" + std::to_string(t), static_cast<dtype>(t), {std::int64_t{1} << 20},
                         {{std::int64_t{1} << 30, 0}, {}, {(std::int64_t{1} << 21) + 3}}));
  const batch b({1, 2, 3}, std::move(fields));
  check_same_metadata(b, redist::decode_metadata(redist::encode_metadata(b)));
}

// Decodes, expecting either a redist::error from the decoder or a valid batch that round trips.
void decode_or_reject(std::span<const std::byte> bytes) {
  std::optional<batch> d;
  try {
    d = redist::decode_metadata(bytes);
  } catch (const redist::error& e) {
    CHECK(std::string(e.what()).rfind("redist::decode_metadata: ", 0) == 0);
    return;
  }
  d->validate();
  const auto again = redist::encode_metadata(*d);
  check_same_metadata(*d, redist::decode_metadata(again));
}

TEST_CASE("metadata codec: every truncation is rejected, byte flips never crash") {
  const std::uint64_t seed = seed_for("codec corruption");
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  std::vector<std::vector<std::byte>> encodings{example_bytes};
  for (int i = 0; i < 60; ++i) encodings.push_back(redist::encode_metadata(random_batch(rng, false)));
  for (const auto& bytes : encodings) {
    for (std::size_t len = 0; len < bytes.size(); ++len) {
      CAPTURE(len);
      CHECK_THROWS_AS(redist::decode_metadata(std::span(bytes).first(len)), redist::error);
    }
    for (int flip = 0; flip < 200; ++flip) {
      auto bad = bytes;
      const std::size_t changes = 1 + rng() % 3;
      for (std::size_t c = 0; c < changes; ++c) {
        const std::size_t at = rng() % bad.size();
        bad[at] =
            rng() % 2 ? static_cast<std::byte>(rng()) : bad[at] ^ static_cast<std::byte>(1u << (rng() % 8));
      }
      if (rng() % 4 == 0)
        bad.insert(bad.begin() + static_cast<std::ptrdiff_t>(rng() % bad.size()), std::byte{0xff});
      decode_or_reject(bad);
    }
  }
}

TEST_CASE("metadata codec: malformed input, each with its message") {
  auto rejects = [](std::initializer_list<int> bytes, const std::string& message) {
    CAPTURE(message);
    CHECK_THROWS_WITH_AS(redist::decode_metadata(bytes_of(bytes)), message.c_str(), redist::error);
  };
  rejects({}, "redist::decode_metadata: truncated input: the version at byte 0 is missing");
  rejects({0x02, 0x00, 0x00, 0x00}, "redist::decode_metadata: format version 2, expected 1");
  rejects({0x01, 0x05, 0x00},
          "redist::decode_metadata: the id count 5 at byte 1 cannot fit in the 1 bytes left");
  rejects({0x01, 0x80, 0x80, 0x80, 0x80, 0x01},
          "redist::decode_metadata: the id count 268435456 at byte 1 cannot fit in the 0 bytes left");
  rejects({0x01, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00},
          "redist::decode_metadata: an id at byte 2 overflows 64 bits");
  rejects({0x01, 0x01, 0x80}, "redist::decode_metadata: truncated input: an id at byte 3 is missing");
  rejects({0x01, 0x00, 0x02, 0x01, 'x', 0x00, 0x00, 0x00, 0x00},
          "redist::decode_metadata: the key count 2 at byte 2 cannot fit in the 6 bytes left");
  rejects({0x01, 0x00, 0x01, 0x01, 'x', 0x0a, 0x00, 0x00, 0x00},
          "redist::decode_metadata: key 'x': dtype code 10 at byte 5 is not a dtype");
  rejects({0x01, 0x00, 0x01, 0x01, 'x', 0x00, 0x00, 0x02, 0x00},
          "redist::decode_metadata: key 'x': seqlens layout 2 at byte 7 is not 0 or 1");
  rejects({0x01, 0x00, 0x01, 0x01, 'x', 0x00, 0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
           0x01, 0x00, 0x00},
          "redist::decode_metadata: a trailing extent 9223372036854775808 at byte 7 exceeds the int64 range");
  rejects({0x01, 0x02, 0x00, 0x02, 0x01, 0x01, 'x', 0x00, 0x00, 0x01, 0x00},
          "redist::decode_metadata: key 'x': seqlens of 2 ids cannot fit in the 1 bytes left");
  rejects({0x01, 0x00, 0x00, 0x00, 0x00},
          "redist::decode_metadata: 1 bytes left over after the batch ended at byte 4");
  rejects({0x01, 0x00, 0x00, 0x02, 0x01, 'a', 0x01, 'a'},
          "redist::decode_metadata: metadata 'a' appears twice");
  rejects({0x01, 0x02, 0x0a, 0x00, 0x00, 0x00},
          "redist::decode_metadata: invalid batch: redist::sequence_batch: id 5 appears twice (positions 0 "
          "and 1)");
  rejects({0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00},
          "redist::decode_metadata: invalid batch: redist::sequence_batch: key 0 has an empty name");
  rejects({0x01, 0x01, 0x00, 0x01, 0x01, 'x', 0x00, 0x00, 0x00, 0x05, 0x80, 0x01, 0x00},
          "redist::decode_metadata: a sequence count 5 at byte 9 cannot fit in the 3 bytes left");
}

// LEB128 length of v, computed by counting, independently of the encoder.
std::size_t varint_size(std::uint64_t v) {
  std::size_t n = 1;
  while (v >= 128) {
    v /= 128;
    ++n;
  }
  return n;
}

TEST_CASE("metadata codec: 10,000 samples with two keys and one sequence each take under 3 bytes a pair") {
  const std::uint64_t seed = seed_for("codec size");
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (bool descending : {false, true}) {
    CAPTURE(descending);
    const std::size_t n = 10000;
    std::vector<sample_id> ids(n);
    for (std::size_t i = 0; i < n; ++i) ids[i] = descending ? 50000 - i : 123 + i;
    lens_list a, b;
    std::size_t expected =
        1 + varint_size(n) + varint_size(ids[0] << 1) + (n - 1) + 1;  // ids: 1 byte per step
    for (std::string name : {"input_ids", "logprobs"})
      expected += 1 + name.size() + 1 + 1 + 1;  // +dtype, rank, layout
    for (std::size_t i = 0; i < n; ++i) {
      a.push_back({static_cast<std::int64_t>(1 + rng() % 4096)});
      b.push_back({static_cast<std::int64_t>(rng() % 100)});
      expected += varint_size(static_cast<std::uint64_t>(a.back()[0])) +
                  varint_size(static_cast<std::uint64_t>(b.back()[0]));
    }
    expected += 1;  // no metadata
    const batch big(ids, {key("input_ids", dtype::i64, {}, a), key("logprobs", dtype::f32, {}, b)});
    const auto bytes = redist::encode_metadata(big);
    CHECK(bytes.size() == expected);
    CHECK(bytes.size() < 3 * 2 * n);
    MESSAGE("bytes per (sample, key): " << static_cast<double>(bytes.size()) / (2.0 * n));
    check_same_metadata(big, redist::decode_metadata(bytes));
  }
}

}  // namespace
