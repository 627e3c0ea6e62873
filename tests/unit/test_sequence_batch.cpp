// Tests of redist::sequence_batch: every validation rule with its message, and unpack / gather / select /
// update / sample_bytes checked byte for byte against a plain model of the samples built independently.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "redist/core/concat.hpp"
#include "redist/core/sequence_batch.hpp"

namespace {

using redist::dtype;
using redist::host_tensor;
using redist::sample_id;
using batch = redist::sequence_batch<host_tensor>;
using field = batch::field;

struct key_spec {
  std::string name;
  dtype type;
  std::vector<std::int64_t> trailing;
  std::size_t row_bytes() const {
    std::size_t n = redist::size_of(type);
    for (auto e : trailing) n *= static_cast<std::size_t>(e);
    return n;
  }
};

const std::vector<key_spec> specs = {{"input_ids", dtype::i64, {}},
                                     {"logprobs", dtype::f32, {}},
                                     {"hidden", dtype::bf16, {3, 2}},
                                     {"mask", dtype::boolean, {4}}};

// The plain model: per sample, per key, its sequence lengths and its bytes.
struct model_sample {
  sample_id id;
  std::map<std::string, std::vector<std::int64_t>> lens;
  std::map<std::string, std::vector<unsigned char>> bytes;
  std::string tag;
};

// Ids are drawn from [base, base + 3n) so that calls with distant bases never share an id.
std::vector<model_sample> make_samples(std::mt19937_64& rng, std::size_t n, sample_id base = 1000) {
  std::vector<model_sample> out;
  std::vector<sample_id> ids(n * 3);
  std::iota(ids.begin(), ids.end(), base);
  std::shuffle(ids.begin(), ids.end(), rng);
  for (std::size_t i = 0; i < n; ++i) {
    model_sample s{ids[i], {}, {}, "tag" + std::to_string(ids[i])};
    for (const auto& k : specs) {
      const std::size_t nseq = rng() % 4;  // samples with no sequence at all are legal
      std::int64_t tokens = 0;
      for (std::size_t q = 0; q < nseq; ++q) {
        const auto len = static_cast<std::int64_t>(rng() % 6);  // zero-length sequences too
        s.lens[k.name].push_back(len);
        tokens += len;
      }
      s.lens[k.name];  // present even when empty
      auto& b = s.bytes[k.name];
      b.resize(static_cast<std::size_t>(tokens) * k.row_bytes());
      for (auto& c : b) c = static_cast<unsigned char>(rng());
    }
    out.push_back(std::move(s));
  }
  return out;
}

// Builds a batch the obvious way: concatenate the model's bytes per key.
batch make_batch(const std::vector<model_sample>& samples, const std::vector<key_spec>& keys = specs,
                 bool with_data = true) {
  std::vector<sample_id> ids;
  for (const auto& s : samples) ids.push_back(s.id);
  std::vector<field> fields;
  for (const auto& k : keys) {
    std::vector<std::vector<std::int64_t>> lens;
    std::vector<unsigned char> bytes;
    std::int64_t tokens = 0;
    for (const auto& s : samples) {
      lens.push_back(s.lens.at(k.name));
      for (auto l : lens.back()) tokens += l;
      bytes.insert(bytes.end(), s.bytes.at(k.name).begin(), s.bytes.at(k.name).end());
    }
    field f{k.name, k.type, k.trailing, redist::seqlen_table(lens), std::nullopt};
    if (with_data) {
      std::vector<std::int64_t> shape{tokens};
      shape.insert(shape.end(), k.trailing.begin(), k.trailing.end());
      host_tensor t(k.type, shape);
      REQUIRE(t.nbytes() == bytes.size());
      if (!bytes.empty()) std::memcpy(t.data(), bytes.data(), bytes.size());
      f.data = std::move(t);
    }
    fields.push_back(std::move(f));
  }
  redist::metadata_map meta{{"tag", {}}};
  for (const auto& s : samples) meta["tag"].push_back(s.tag);
  return batch(std::move(ids), std::move(fields), std::move(meta));
}

// Compares a batch with the model, byte for byte, including key order.
void expect_matches(const batch& b, const std::vector<model_sample>& samples,
                    const std::vector<key_spec>& keys, bool with_data = true) {
  REQUIRE(b.size() == samples.size());
  for (std::size_t i = 0; i < samples.size(); ++i) CHECK(b.ids()[i] == samples[i].id);
  REQUIRE(b.keys().size() == keys.size());
  CHECK(b.has_data() == (with_data && !keys.empty()));
  for (std::size_t k = 0; k < keys.size(); ++k) {
    const auto& spec = keys[k];
    CHECK(b.keys()[k] == spec.name);
    const auto& f = b.at(spec.name);
    CHECK(f.dtype == spec.type);
    CHECK(f.trailing_shape == spec.trailing);
    std::vector<unsigned char> expected;
    for (std::size_t i = 0; i < samples.size(); ++i) {
      const auto& lens = samples[i].lens.at(spec.name);
      auto got = b.seqlens(spec.name, i);
      CHECK(std::vector<std::int64_t>(got.begin(), got.end()) == lens);
      const auto& sb = samples[i].bytes.at(spec.name);
      CHECK(b.sample_bytes(spec.name, i) == redist::byte_range{expected.size(), sb.size()});
      expected.insert(expected.end(), sb.begin(), sb.end());
    }
    if (with_data) {
      const auto& t = b.data(spec.name);
      REQUIRE(t.nbytes() == expected.size());
      CHECK((expected.empty() || std::memcmp(t.data(), expected.data(), expected.size()) == 0));
    }
  }
  std::vector<std::string> tags;
  for (const auto& s : samples) tags.push_back(s.tag);
  CHECK(b.metadata().at("tag") == tags);
}

// A small valid batch for the rule tests: ids 5 and 9, key "x" (i32, trailing [2]) with 3 + 1 tokens.
field x_field(std::optional<host_tensor> data = host_tensor(dtype::i32, {4, 2})) {
  return {"x", dtype::i32, {2}, {{1, 2}, {1}}, std::move(data)};
}

}  // namespace

TEST_CASE("sequence_batch: valid batches and accessors") {
  batch b({5, 9}, {});
  b.add_key(x_field());
  CHECK(b.size() == 2);
  CHECK(b.find(9) == std::optional<std::size_t>{1});
  CHECK_FALSE(b.contains(6));
  CHECK(b.tokens("x", 0) == 3);
  CHECK(b.total_tokens("x") == 4);
  CHECK(b.sample_bytes("x", 1) == redist::byte_range{24, 8});
  CHECK_THROWS_WITH_AS(b.tokens("y", 0), "redist::sequence_batch::tokens: unknown key 'y' (keys: 'x')",
                       redist::error);
  CHECK_THROWS_WITH_AS(b.sample_bytes("x", 2),
                       "redist::sequence_batch::sample_bytes: sample position 2 is out of range for 2 ids",
                       redist::error);
  CHECK(batch().empty());
}

TEST_CASE("sequence_batch: each validation rule names the key, the id and the rule") {
  using V = std::vector<sample_id>;
  SUBCASE("ids are unique") {
    CHECK_THROWS_WITH_AS(batch(V{4, 7, 4}, {}),
                         "redist::sequence_batch: id 4 appears twice (positions 0 and 2)", redist::error);
  }
  SUBCASE("key names are unique and non-empty") {
    CHECK_THROWS_WITH_AS(batch(V{5, 9}, {x_field(), x_field()}),
                         "redist::sequence_batch: key 'x' appears twice", redist::error);
    auto f = x_field();
    f.name.clear();
    CHECK_THROWS_WITH_AS(batch(V{5, 9}, {std::move(f)}), "redist::sequence_batch: key 0 has an empty name",
                         redist::error);
  }
  SUBCASE("key sets are consistent: data for all keys or none") {
    field y{"y", dtype::f32, {}, {{1}, {2}}, std::nullopt};
    CHECK_THROWS_WITH_AS(
        batch(V{5, 9}, {x_field(), y}),
        "redist::sequence_batch: key 'y' has no data but key 'x' has: a batch holds data for all "
        "its keys or for none",
        redist::error);
    batch b(V{5, 9}, {x_field()});
    CHECK_THROWS_WITH_AS(
        b.add_key(y),
        "redist::sequence_batch::add_key: key 'y' has no data but the batch is not metadata only",
        redist::error);
    CHECK_THROWS_WITH_AS(b.add_key(x_field()), "redist::sequence_batch::add_key: key 'x' already exists",
                         redist::error);
    CHECK(b.keys().size() == 1);  // unchanged
  }
  SUBCASE("one seqlens entry per id") {
    field f{"x", dtype::i32, {2}, {{1, 2}}, std::nullopt};
    CHECK_THROWS_WITH_AS(batch(V{5, 9}, {f}),
                         "redist::sequence_batch: key 'x': seqlens has 1 entries for 2 ids", redist::error);
  }
  SUBCASE("lengths are non-negative") {
    field f{"x", dtype::i32, {2}, {{1, 2}, {3, -1}}, std::nullopt};
    CHECK_THROWS_WITH_AS(batch(V{5, 9}, {f}),
                         "redist::sequence_batch: key 'x', id 9: sequence 1 has negative length -1",
                         redist::error);
  }
  SUBCASE("dim 0 equals the sum of the lengths") {
    CHECK_THROWS_WITH_AS(batch(V{5, 9}, {x_field(host_tensor(dtype::i32, {5, 2}))}),
                         "redist::sequence_batch: key 'x': data has 5 rows but its seqlens sum to 4 tokens",
                         redist::error);
  }
  SUBCASE("trailing shape matches") {
    CHECK_THROWS_WITH_AS(
        batch(V{5, 9}, {x_field(host_tensor(dtype::i32, {4, 3}))}),
        "redist::sequence_batch: key 'x': data has shape [4, 3] but the key declares trailing "
        "shape [2]",
        redist::error);
    CHECK_THROWS_WITH_AS(
        batch(V{5, 9}, {x_field(host_tensor(dtype::i32, {4}))}),
        "redist::sequence_batch: key 'x': data has shape [4] but the key declares trailing shape [2]",
        redist::error);
    CHECK_THROWS_WITH_AS(batch(V{5, 9}, {x_field(host_tensor(dtype::i32, {}))}),
                         "redist::sequence_batch: key 'x': data is a scalar; dim 0 must count the tokens",
                         redist::error);
    field f{"x", dtype::i32, {2, -3}, {{1}, {1}}, std::nullopt};
    CHECK_THROWS_WITH_AS(batch(V{5, 9}, {f}),
                         "redist::sequence_batch: key 'x': trailing shape [2, -3] has a negative extent",
                         redist::error);
  }
  SUBCASE("dtype matches") {
    CHECK_THROWS_WITH_AS(batch(V{5, 9}, {x_field(host_tensor(dtype::bf16, {4, 2}))}),
                         "redist::sequence_batch: key 'x': data has dtype bf16 but the key declares i32",
                         redist::error);
  }
  SUBCASE("sizes do not overflow") {
    constexpr auto big = std::numeric_limits<std::int64_t>::max() / 2 + 1;
    field tokens{"x", dtype::u8, {}, {{1}, {big, big}}, std::nullopt};
    CHECK_THROWS_WITH_AS(batch(V{5, 9}, {tokens}),
                         "redist::sequence_batch: key 'x', id 9: token count overflows", redist::error);
    field bytes{"x", dtype::f64, {}, {{big / 2}, {1}}, std::nullopt};
    CHECK_THROWS_WITH_AS(batch(V{5, 9}, {bytes}),
                         doctest::Contains("tokens of shape [] overflow the size type"), redist::error);
    field rows{"x", dtype::f64, {big, 4}, {{1}, {1}}, std::nullopt};
    CHECK_THROWS_WITH_AS(batch(V{5, 9}, {rows}),
                         "redist::sequence_batch: key 'x': trailing shape [4611686018427387904, 4] overflows",
                         redist::error);
    // A zero trailing extent makes every row empty, but the tensor's size, taken dim by dim from its tokens
    // as its allocation takes it, overflows first: refused, as host_tensor would refuse the shape.
    field zero_after{"x", dtype::f64, {0, 2}, {{big / 2}, {1}}, std::nullopt};
    CHECK_THROWS_WITH_AS(
        batch(V{5, 9}, {zero_after}),
        "redist::sequence_batch: key 'x': 2305843009213693953 tokens of shape [0, 2] overflow "
        "the size type",
        redist::error);
  }
  SUBCASE("the dtype is a redist::dtype") {
    field odd{"x", static_cast<dtype>(10), {}, {{1}, {1}}, std::nullopt};
    CHECK_THROWS_WITH_AS(batch(V{5, 9}, {odd}),
                         "redist::sequence_batch: key 'x': dtype code 10 is not a redist::dtype",
                         redist::error);
  }
  SUBCASE("metadata has one value per id") {
    CHECK_THROWS_WITH_AS(batch(V{5, 9}, {x_field()}, {{"version", {"1"}}}),
                         "redist::sequence_batch: metadata 'version' has 1 values for 2 ids", redist::error);
    batch b(V{5, 9}, {x_field()});
    CHECK_THROWS_WITH_AS(b.set_metadata("v", {"a", "b", "c"}),
                         "redist::sequence_batch: metadata 'v' has 3 values for 2 ids", redist::error);
    CHECK(b.metadata().empty());
  }
  SUBCASE("validate() re-checks a tensor changed through data()") {
    batch b(V{5, 9}, {x_field()});
    CHECK_NOTHROW(b.validate());
    b.data("x") = host_tensor(dtype::i32, {3, 2});
    CHECK_THROWS_WITH_AS(b.validate(),
                         "redist::sequence_batch: key 'x': data has 3 rows but its seqlens sum to 4 tokens",
                         redist::error);
  }
  SUBCASE("metadata-only batches have no tensors to hand out") {
    batch b(V{5, 9}, {x_field(std::nullopt)});
    CHECK_FALSE(b.has_data());
    CHECK_THROWS_WITH_AS(b.data("x"),
                         "redist::sequence_batch::data: key 'x' has no data (metadata-only batch)",
                         redist::error);
  }
}

TEST_CASE("sequence_batch: select, unpack, gather and update match the model byte for byte") {
  const auto seed = std::random_device{}();
  INFO("seed=" << seed);
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 40; ++round) {
    const auto samples = make_samples(rng, rng() % 12);
    const batch b = make_batch(samples);
    expect_matches(b, samples, specs);

    // select: a random subset of ids in random order, and a random subset of keys in random order.
    auto pick = samples;
    std::shuffle(pick.begin(), pick.end(), rng);
    pick.resize(pick.empty() ? 0 : rng() % (pick.size() + 1));
    auto keys = specs;
    std::shuffle(keys.begin(), keys.end(), rng);
    keys.resize(1 + rng() % keys.size());
    std::vector<sample_id> ids;
    for (const auto& s : pick) ids.push_back(s.id);
    std::vector<std::string> names;
    for (const auto& k : keys) names.push_back(k.name);
    expect_matches(b.select(ids, names), pick, keys);
    expect_matches(b.select(ids), pick, specs);

    // unpack then gather gives the batch back; gather of a random split gives the concatenation.
    const auto parts = b.unpack();
    REQUIRE(parts.size() == samples.size());
    for (std::size_t i = 0; i < parts.size(); ++i) expect_matches(parts[i], {samples[i]}, specs);
    if (!samples.empty()) expect_matches(redist::concat(parts), samples, specs);  // concat({}) has no keys
    const std::size_t cut = samples.empty() ? 0 : rng() % (samples.size() + 1);
    std::vector<model_sample> head(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(cut));
    std::vector<model_sample> tail(samples.begin() + static_cast<std::ptrdiff_t>(cut), samples.end());
    std::vector<batch> split;
    split.push_back(make_batch(tail));
    split.push_back(make_batch(head));
    auto swapped = tail;
    swapped.insert(swapped.end(), head.begin(), head.end());
    expect_matches(redist::concat(split), swapped, specs);

    // update: two keys arrive for the same ids in another order; a third replaces an existing key.
    const std::vector<key_spec> first{specs[0], specs[1]}, second{specs[2], specs[3]};
    batch merged = make_batch(samples, first);
    auto reordered = samples;
    std::shuffle(reordered.begin(), reordered.end(), rng);
    merged.update(make_batch(reordered, second));
    expect_matches(merged, samples, specs);
    const auto other = make_samples(rng, samples.size(), 5000);
    auto replacement = samples;  // same ids, new contents for "input_ids"
    for (std::size_t i = 0; i < samples.size(); ++i) {
      replacement[i].lens["input_ids"] = other[i].lens.at("input_ids");
      replacement[i].bytes["input_ids"] = other[i].bytes.at("input_ids");
    }
    merged.update(make_batch(replacement, {specs[0]}));  // rvalue in the same order: moved, not copied
    expect_matches(merged, replacement, specs);
  }
}

TEST_CASE("sequence_batch: metadata-only batches support the same operations") {
  std::mt19937_64 rng(7);
  const auto samples = make_samples(rng, 6);
  const batch b = make_batch(samples, specs, false);
  expect_matches(b, samples, specs, false);
  std::vector<model_sample> pick{samples[4], samples[1]};
  expect_matches(b.select({samples[4].id, samples[1].id}, {"mask"}), pick, {specs[3]}, false);
  expect_matches(redist::concat(b.unpack()), samples, specs, false);
}

TEST_CASE("sequence_batch: operations reject bad requests and leave the batch unchanged") {
  std::mt19937_64 rng(11);
  const auto samples = make_samples(rng, 4);
  batch b = make_batch(samples);
  const auto id0 = samples[0].id, id1 = samples[1].id;
  SUBCASE("select") {
    CHECK_THROWS_WITH_AS(b.select({id0, 1}), "redist::sequence_batch::select: id 1 is not in the batch",
                         redist::error);
    CHECK_THROWS_WITH_AS(b.select({id0, id1, id0}),
                         doctest::Contains(("redist::sequence_batch::select: requested id " +
                                            std::to_string(id0) + " appears twice")
                                               .c_str()),
                         redist::error);
    CHECK_THROWS_WITH_AS(b.select({id0}, {"mask", "nope"}), doctest::Contains("select: unknown key 'nope'"),
                         redist::error);
    CHECK_THROWS_WITH_AS(b.select({id0}, {"mask", "mask"}),
                         "redist::sequence_batch::select: key 'mask' requested twice", redist::error);
  }
  SUBCASE("update") {
    std::vector<model_sample> fewer(samples.begin(), samples.begin() + 3);
    CHECK_THROWS_WITH_AS(b.update(make_batch(fewer)),
                         "redist::sequence_batch::update: the update has 3 ids, the batch 4", redist::error);
    auto other = make_samples(rng, 4, 5000);
    CHECK_THROWS_WITH_AS(
        b.update(make_batch(other)),
        ("redist::sequence_batch::update: id " + std::to_string(id0) + " is not in the update").c_str(),
        redist::error);
    CHECK_THROWS_WITH_AS(b.update(make_batch(samples, {specs[0]}, false)),
                         "redist::sequence_batch::update: the batch holds data but the update lacks it",
                         redist::error);
    expect_matches(b, samples, specs);
  }
  SUBCASE("gather") {
    auto other = make_samples(rng, 3, 5000);
    std::vector<batch> two;
    two.push_back(make_batch(samples));
    two.push_back(make_batch(other, {specs[0], specs[2], specs[1], specs[3]}));
    CHECK_NOTHROW(redist::concat(two));  // key order may differ; the first batch's order wins
    two[1] = make_batch(other, {specs[0], specs[1]});
    CHECK_THROWS_WITH_AS(redist::concat(two), "redist::concat: batch 1 has 2 keys, batch 0 has 4",
                         redist::error);
    const batch plain = make_batch(other);
    auto renamed = plain.fields();
    renamed[3].name = "attention";
    two[1] = batch({plain.ids().begin(), plain.ids().end()}, renamed, plain.metadata());
    CHECK_THROWS_WITH_AS(redist::concat(two), "redist::concat: batch 1 lacks key 'mask'", redist::error);
    auto retyped = plain.fields();
    retyped[1].dtype = dtype::f16;
    retyped[1].data = host_tensor(dtype::f16, {plain.total_tokens("logprobs")});
    two[1] = batch({plain.ids().begin(), plain.ids().end()}, retyped, plain.metadata());
    CHECK_THROWS_WITH_AS(redist::concat(two),
                         "redist::concat: key 'logprobs' is f16[] in batch 1 but f32[] in batch 0",
                         redist::error);
    two[1] = make_batch(other, specs, false);
    CHECK_THROWS_WITH_AS(redist::concat(two), "redist::concat: batch 1 has 4 keys (no data), batch 0 has 4",
                         redist::error);
    two[1] = make_batch({samples[2]});
    CHECK_THROWS_WITH_AS(
        redist::concat(two),
        doctest::Contains(("id " + std::to_string(samples[2].id) + " appears twice").c_str()), redist::error);
    two[1] = make_batch(other);
    two[1].set_metadata("extra", {"a", "b", "c"});
    CHECK_THROWS_WITH_AS(redist::concat(two), "redist::concat: batch 1 has other metadata names than batch 0",
                         redist::error);
  }
}

TEST_CASE("sequence_batch over host_tensor_view: validation and byte ranges without copies") {
  std::vector<std::int32_t> storage(8);
  std::iota(storage.begin(), storage.end(), 0);
  using view_batch = redist::sequence_batch<redist::host_tensor_view>;
  view_batch b(
      {5, 9},
      {{"x", dtype::i32, {2}, {{1, 2}, {1}}, redist::host_tensor_view(storage.data(), dtype::i32, {4, 2})}});
  CHECK(b.sample_bytes("x", 1) == redist::byte_range{24, 8});
  CHECK(b.data("x").data() == storage.data());
  CHECK_THROWS_WITH_AS(view_batch({5, 9}, {{"x",
                                            dtype::i32,
                                            {2},
                                            {{1, 2}, {2}},
                                            redist::host_tensor_view(storage.data(), dtype::i32, {4, 2})}}),
                       "redist::sequence_batch: key 'x': data has 4 rows but its seqlens sum to 5 tokens",
                       redist::error);
}
