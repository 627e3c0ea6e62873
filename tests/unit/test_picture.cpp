// Unit tests of redist::traffic_svg: on small plans whose traffic is computed by hand, every nonzero (src,
// dst) is one cell titled with its exact bytes, nothing else is; the bottleneck, labels, escaping,
// determinism, a plan with no traffic and the size limit. tests/render checks the SVG parses and draws in a
// browser.
#include "redist/plan/picture.hpp"

#include <doctest/doctest.h>

#include <cstddef>
#include <string>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/core/topology.hpp"
#include "redist/plan/all_to_all.hpp"
#include "redist/plan/gather_scatter.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace {

const std::vector<std::string> only_x{"x"};

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// Rank 0 holds id 1 (32 bytes of "x"), rank 1 holds id 2 (16 bytes); rank 1 wants id 1, rank 2 wants both.
// By hand: 0 -> 1 32 B, 0 -> 2 32 B, 1 -> 2 16 B; rank 0 moves 64 B, ranks 1 and 2 48 B each.
struct three_ranks {
  redist::storage_tracker tracker = [] {
    redist::storage_tracker::builder b(3);
    b.own(0, 1, "x", 32).own(1, 2, "x", 16);
    return std::move(b).build();
  }();
  std::vector<redist::id_list> wants{{}, {1}, {1, 2}};
  std::vector<std::string> keys{"x"};
};

}  // namespace

TEST_CASE("traffic_svg: one titled cell per nonzero (src, dst), the bottleneck outlined and named") {
  const three_ranks l;
  const auto p = redist::plan_all_to_all(l.tracker, l.wants, l.keys, {});
  const std::string svg = redist::traffic_svg(p, l.tracker);
  CHECK(svg.rfind("<?xml version=\"1.0\"", 0) == 0);
  CHECK(count(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"") == 1);
  CHECK(svg.ends_with("</svg>\n"));
  CHECK(count(svg, "<title>") == 3);
  CHECK(count(svg, "<title>rank 0 to rank 1: 32 bytes (32 B)</title>") == 1);
  CHECK(count(svg, "<title>rank 0 to rank 2: 32 bytes (32 B)</title>") == 1);
  CHECK(count(svg, "<title>rank 1 to rank 2: 16 bytes (16 B)</title>") == 1);
  CHECK(count(svg, "bottleneck (outlined in red): rank 0, 64 B sent + received") == 1);
  CHECK(count(svg, "stroke=\"#d62728\"") == 2);  // its row and its column
  // Its labels on both axes, and no other rank's, are red.
  CHECK(count(svg, "<text fill=\"#d62728\" font-weight=\"bold\" ") == 2);
  CHECK(
      count(svg,
            "<text fill=\"#d62728\" font-weight=\"bold\" x=\"42\" y=\"104\" text-anchor=\"end\">r0</text>") ==
      1);
  CHECK(count(svg,
              "font-weight=\"bold\" transform=\"translate(66 80) rotate(-90)\" "
              "text-anchor=\"start\">r0</text>") == 1);
  CHECK(count(svg, "wire 80 B (80 B)") == 1);
  CHECK(count(svg, "linear, from 0") == 1);  // 16 B to 32 B: within a factor of 16
  // The same plan gives the same bytes.
  CHECK(redist::traffic_svg(p, l.tracker) == svg);
}

TEST_CASE("traffic_svg: cells are placed at (column dst, row src) and coloured by bytes") {
  const three_ranks l;
  const auto p = redist::plan_all_to_all(l.tracker, l.wants, l.keys, {});
  const std::string svg = redist::traffic_svg(p, l.tracker);
  // 3 ranks: 28-pixel cells from (left, top) = (48, 86) (24-pixel labels); the two 32-byte cells are the
  // ramp's dark end, the 16-byte cell half way along a linear ramp.
  CHECK(
      count(svg,
            "<rect x=\"76\" y=\"86\" width=\"28\" height=\"28\" fill=\"#440154\"><title>rank 0 to rank 1") ==
      1);
  CHECK(
      count(svg,
            "<rect x=\"104\" y=\"86\" width=\"28\" height=\"28\" fill=\"#440154\"><title>rank 0 to rank 2") ==
      1);
  CHECK(
      count(
          svg,
          "<rect x=\"104\" y=\"114\" width=\"28\" height=\"28\" fill=\"#21918c\"><title>rank 1 to rank 2") ==
      1);
  // The 3 x 3 grid with its "no traffic" shade under the cells.
  CHECK(count(svg, "<rect x=\"48\" y=\"86\" width=\"84\" height=\"84\" fill=\"#f7f7f7\"") == 1);
}

TEST_CASE("traffic_svg: the gather-scatter root's traffic spans a log scale") {
  // Rank 0 holds 4096 bytes, rank 1 holds 16: rank 2 wants both through the gather root.
  redist::storage_tracker::builder b(3);
  b.own(0, 1, "x", 4096).own(1, 2, "x", 16);
  const auto tracker = std::move(b).build();
  const std::vector<redist::id_list> wants{{}, {}, {1, 2}};
  const auto p = redist::plan_gather_scatter(tracker, wants, only_x, {});
  const std::string svg = redist::traffic_svg(p, tracker);
  CHECK(count(svg, "log scale") == 1);
  CHECK(count(svg, "<title>") >= 2);
}

TEST_CASE("traffic_svg: axes labelled with the topologies' coordinates, text escaped") {
  const three_ranks l;
  const auto p = redist::plan_all_to_all(l.tracker, l.wants, l.keys, {});
  const redist::topology producer({{"data", 3}}), consumer({{"pipe", 1}, {"tensor", 3}});
  const std::string svg = redist::traffic_svg(
      p, l.tracker, {.title = "a<b & \"c\"", .producer = &producer, .consumer = &consumer});
  CHECK(count(svg, "a&lt;b &amp; &quot;c&quot;") == 1);
  CHECK(count(svg, "a<b") == 0);
  CHECK(count(svg, ">r2 d2</text>") == 1);     // row label
  CHECK(count(svg, ">r2 p0 t2</text>") == 1);  // column label
  CHECK(count(svg, "(producer coordinates)") == 1);
  CHECK(count(svg, "(consumer coordinates)") == 1);

  // A consumer that starts at rank 1 of the plan (disjoint topologies) labels only the ranks it covers.
  const redist::topology two({{"data", 2}});
  const std::string offset = redist::traffic_svg(p, l.tracker, {.consumer = &two, .consumer_first = 1});
  CHECK(count(offset, ">r0</text>") == 2);  // no coordinates on either axis for rank 0
  CHECK(count(offset, ">r1 d0</text>") == 1);
  CHECK(count(offset, ">r2 d1</text>") == 1);
  // A producer smaller than the plan, from rank 0: rank 2 is past its end.
  const std::string short_rows = redist::traffic_svg(p, l.tracker, {.producer = &two});
  CHECK(count(short_rows, ">r0 d0</text>") == 1);
  CHECK(count(short_rows, ">r1 d1</text>") == 1);
  CHECK(count(short_rows, ">r2</text>") == 2);
}

TEST_CASE("traffic_svg: 64 ranks label every other rank, and always the bottleneck") {
  // Ranks 0 and 1 own 64 bytes each, rank 37 wants both: by hand 0 -> 37 and 1 -> 37, 64 B each; rank 37
  // moves 128 B, the most.
  redist::storage_tracker::builder b(64);
  b.own(0, 1, "x", 64).own(1, 2, "x", 64);
  const auto tracker = std::move(b).build();
  std::vector<redist::id_list> wants(64);
  wants[37] = {1, 2};
  const auto p = redist::plan_all_to_all(tracker, wants, only_x, {});
  const std::string svg = redist::traffic_svg(p, tracker);
  CHECK(count(svg, "<title>") == 2);
  CHECK(count(svg, "<title>rank 0 to rank 37: 64 bytes (64 B)</title>") == 1);
  CHECK(count(svg, "<title>rank 1 to rank 37: 64 bytes (64 B)</title>") == 1);
  CHECK(count(svg, "bottleneck (outlined in red): rank 37, 128 B sent + received") == 1);
  // 8-pixel cells from (49, 87) (labels of 3 characters: 25 pixels): even ranks are labelled, odd ones not,
  // but 37 is, in red, crowding out 36 and 38.
  CHECK(count(svg, ">r34</text>") == 2);
  CHECK(count(svg, ">r35</text>") == 0);
  CHECK(count(svg, ">r36</text>") == 0);
  CHECK(count(svg, "font-weight=\"bold\" x=\"43\" y=\"391\" text-anchor=\"end\">r37</text>") == 1);
  CHECK(count(svg, ">r37</text>") == 2);
  CHECK(count(svg, ">r38</text>") == 0);
  CHECK(count(svg, ">r40</text>") == 2);
  CHECK(count(svg, "width=\"8\" height=\"8\"") == 2);  // the cells
  CHECK(count(svg, "stroke=\"#d62728\"") == 2);
}

TEST_CASE("traffic_svg: a plan that moves nothing, one rank, and too many ranks") {
  redist::storage_tracker::builder b(1);
  b.own(0, 7, "x", 8);
  const auto tracker = std::move(b).build();
  const std::vector<redist::id_list> wants{{7}};
  const auto p = redist::plan_all_to_all(tracker, wants, only_x, {});
  const std::string svg = redist::traffic_svg(p, tracker);
  CHECK(count(svg, "<title>") == 0);
  CHECK(count(svg, "no bytes cross ranks") == 1);
  CHECK(svg.ends_with("</svg>\n"));

  redist::storage_tracker::builder big(513);
  big.own(0, 1, "x", 8);
  const auto wide = std::move(big).build();
  const std::vector<redist::id_list> none(513);
  const auto q = redist::plan_all_to_all(wide, none, only_x, {});
  CHECK_THROWS_WITH_AS(redist::traffic_svg(q, wide),
                       doctest::Contains("a plan over 513 ranks cannot be drawn (1 to 512 ranks)"),
                       redist::error);
}
