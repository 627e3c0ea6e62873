// redist::traffic_svg: a plan's rank x rank traffic as a standalone SVG heatmap, rows the senders and columns
// the receivers, labelled with producer and consumer coordinates, the bottleneck rank outlined.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "redist/core/error.hpp"
#include "redist/core/topology.hpp"
#include "redist/detail/text.hpp"
#include "redist/plan/cost.hpp"
#include "redist/plan/steps.hpp"
#include "redist/plan/storage_tracker.hpp"

namespace redist {

struct traffic_picture_options {
  std::string title{};                 // drawn above the matrix
  const topology* producer = nullptr;  // labels the rows (senders) with coordinates, e.g. "d1 t0 p1"
  const topology* consumer = nullptr;  // labels the columns (receivers)
  int producer_first = 0;              // the plan's rank that is the producer's rank 0
  int consumer_first = 0;              // likewise the consumer's (disjoint topologies: the producer's size)
};

namespace detail {

inline constexpr int picture_max_ranks = 512;  // 4-pixel cells: a 2,048-pixel matrix

inline std::string xml_escaped(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// "r5 d1 t0 p1": the plan's rank, then each dim's first letter and the rank's coordinate in it, for the ranks
// [first, first + size) that t covers.
inline std::string rank_label(int rank, const topology* t, int first) {
  std::string label = str('r', rank);
  if (t == nullptr || rank < first || rank - first >= t->size()) return label;
  const std::vector<int> coords = t->coords_of(rank - first);
  for (std::size_t d = 0; d < coords.size(); ++d)
    label += str(' ', t->dim_names()[d].substr(0, 1), coords[d]);
  return label;
}

// A colour from the viridis ramp (five stops, linear between them); 0 is yellow, 1 dark purple, so that the
// heaviest traffic reads darkest on a white page.
inline std::string heat_colour(double t) {
  constexpr unsigned char stops[5][3] = {
      {253, 231, 37}, {94, 201, 98}, {33, 145, 140}, {59, 82, 139}, {68, 1, 84}};
  t = std::clamp(t, 0.0, 1.0) * 4.0;
  const auto i = std::min<std::size_t>(static_cast<std::size_t>(t), 3);
  const double f = t - static_cast<double>(i);
  char hex[8];
  unsigned rgb[3];
  for (std::size_t c = 0; c < 3; ++c)
    rgb[c] = static_cast<unsigned>(std::lround(stops[i][c] + f * (stops[i + 1][c] - stops[i][c])));
  std::snprintf(hex, sizeof hex, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
  return hex;
}

// Where bytes fall on the colour ramp: linear from 0 when the cells are within a factor of 16 of each other
// (a log scale would make near-equal cells look unequal), else logarithmic between the smallest and the
// largest cell (traffic that spans orders of magnitude, a replica's share beside a gather root's).
struct heat_scale {
  double low = 0, high = 1;
  bool log = false;
  heat_scale(double smallest, double largest) : high(largest) {
    log = smallest > 0 && largest / smallest >= 16;
    if (log) low = smallest;
  }
  double at(std::uint64_t bytes) const {
    const auto b = static_cast<double>(bytes);
    if (!log) return high > 0 ? b / high : 1.0;
    return std::log(b / low) / std::log(high / low);
  }
};

}  // namespace detail

// The picture of `p` (over the ranks of its communicator) as SVG 1.1 text, the same bytes for the same plan:
// row r is what rank r sends, column r what it receives. Each nonzero cell carries a <title> with its exact
// byte count, which a browser shows on hover; cells with no traffic are left blank. The legend says the
// colour scale (heat_scale) and its ends. The bottleneck rank of estimate_cost (most bytes sent + received)
// has its row and column outlined in red, its labels in red, and a caption. Cells are 28 pixels down to 4;
// below 10 pixels only every k-th rank is labelled. Plans over 512 ranks are refused with redist::error:
// cells would be under 4 pixels.
inline std::string traffic_svg(const plan& p, const storage_tracker& tracker,
                               const traffic_picture_options& opts = {}) {
  using detail::str;
  constexpr const char* who = "redist::traffic_svg";
  const int n = p.ranks;
  if (n < 1 || n > detail::picture_max_ranks)
    detail::fail(who, ": a plan over ", n, " ranks cannot be drawn (1 to ", detail::picture_max_ranks,
                 " ranks)");
  const std::vector<traffic_entry> cells = traffic_matrix(p, tracker);
  const plan_cost cost = estimate_cost(p, tracker);

  std::uint64_t smallest = cells.empty() ? 0 : cells.front().bytes, largest = 0;
  for (const auto& e : cells) {
    smallest = std::min(smallest, e.bytes);
    largest = std::max(largest, e.bytes);
  }
  const detail::heat_scale scale(static_cast<double>(smallest), static_cast<double>(largest));

  // Text widths are estimated (6 pixels a character at 11 pixels, 8.5 for the bold title) so that nothing
  // is clipped: a browser's fonts are unknown here, and the estimate errs wide.
  auto text_width = [](const std::string& s, double per_char) {
    return static_cast<int>(static_cast<double>(s.size()) * per_char) + 1;
  };
  const int cell = std::clamp(560 / n, 4, 28);
  const int b = cost.bottleneck_rank;
  std::vector<std::string> row_labels, column_labels;
  int label_width = 24;
  for (int r = 0; r < n; ++r) {
    row_labels.push_back(detail::rank_label(r, opts.producer, opts.producer_first));
    column_labels.push_back(detail::rank_label(r, opts.consumer, opts.consumer_first));
    label_width = std::max(
        {label_width, text_width(row_labels.back(), 6) + 6, text_width(column_labels.back(), 6) + 6});
  }
  const int left = 24 + label_width, top = 62 + label_width, side = n * cell;
  // The legend: a 160-pixel ramp and the "no traffic" swatch under it; the captions go below the taller of
  // the matrix and the legend.
  const int legend_x = left + side + 24, body = std::max(side, 190);
  const std::string title = opts.title.empty() ? std::string("traffic of a plan") : opts.title;
  const std::string totals = str(p.step_count(), p.step_count() == 1 ? " step" : " steps", ", ", cost.hops,
                                 cost.hops == 1 ? " hop" : " hops", ", wire ",
                                 detail::human_bytes(cost.wire_bytes), " (", cost.wire_bytes, " B)");
  const std::string bottleneck = b >= 0 ? str("bottleneck (outlined in red): rank ", b, ", ",
                                              detail::human_bytes(cost.bottleneck_bytes), " sent + received")
                                        : std::string("no bytes cross ranks");
  const int width = std::max({legend_x + 150, left + text_width(totals, 6) + 12,
                              left + text_width(bottleneck, 6) + 12, 24 + text_width(title, 8.5)});
  const int height = top + body + 58;

  std::string svg =
      str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
          "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"", width, "\" height=\"", height,
          "\" viewBox=\"0 0 ", width, ' ', height, "\" font-family=\"sans-serif\" font-size=\"11\">\n",
          "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n");
  svg += str("<text x=\"12\" y=\"22\" font-size=\"15\" font-weight=\"bold\">", detail::xml_escaped(title),
             "</text>\n");
  svg += str("<text x=\"", left, "\" y=\"50\">receiving rank", opts.consumer ? " (consumer coordinates)" : "",
             "</text>\n");
  // Centred on the rows, but never so high that a short matrix pushes it off the top.
  svg += str("<text transform=\"translate(16 ", std::max(top + side / 2, 120),
             ") rotate(-90)\" text-anchor=\"middle\">", "sending rank",
             opts.producer ? " (producer coordinates)" : "", "</text>\n");

  // The grid, then the cells over it, then the bottleneck's outline over both.
  svg += str("<rect x=\"", left, "\" y=\"", top, "\" width=\"", side, "\" height=\"", side,
             "\" fill=\"#f7f7f7\" stroke=\"#bbbbbb\"/>\n");
  for (const auto& e : cells) {
    const std::string colour = detail::heat_colour(scale.at(e.bytes));
    svg += str("<rect x=\"", left + e.dst * cell, "\" y=\"", top + e.src * cell, "\" width=\"", cell,
               "\" height=\"", cell, "\" fill=\"", colour, "\"><title>rank ", e.src, " to rank ", e.dst, ": ",
               e.bytes, " bytes (", detail::human_bytes(e.bytes), ")</title></rect>\n");
  }
  // One label per rank where rows are at least 10 pixels apart, else every k-th; the bottleneck's labels
  // are always drawn (in red, bold) and crowd out the neighbours they would overlap.
  constexpr int gap = 10;
  const int every = (gap + cell - 1) / cell;
  const std::string red = "fill=\"#d62728\" font-weight=\"bold\" ";
  for (int r = 0; r < n; ++r) {
    const bool is_b = r == b;
    if (!is_b && (r % every != 0 || (b >= 0 && std::abs(r - b) * cell < gap))) continue;
    const int mid = r * cell + cell / 2;
    const auto u = static_cast<std::size_t>(r);
    svg += str("<text ", is_b ? red : "", "x=\"", left - 6, "\" y=\"", top + mid + 4,
               "\" text-anchor=\"end\">", detail::xml_escaped(row_labels[u]), "</text>\n");
    svg += str("<text ", is_b ? red : "", "transform=\"translate(", left + mid + 4, ' ', top - 6,
               ") rotate(-90)\" text-anchor=\"start\">", detail::xml_escaped(column_labels[u]), "</text>\n");
  }
  if (b >= 0) {
    const std::string outline = "fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\"";
    svg += str("<rect x=\"", left, "\" y=\"", top + b * cell, "\" width=\"", side, "\" height=\"", cell,
               "\" ", outline, "/>\n<rect x=\"", left + b * cell, "\" y=\"", top, "\" width=\"", cell,
               "\" height=\"", side, "\" ", outline, "/>\n");
  }

  // The legend: the ramp from the smallest to the largest cell.
  svg += str("<text x=\"", legend_x, "\" y=\"", top - 8, "\">bytes (",
             scale.log ? "log scale" : "linear, from 0", ")</text>\n");
  constexpr int ramp = 10;
  for (int i = 0; i < ramp; ++i)
    svg += str("<rect x=\"", legend_x, "\" y=\"", top + i * 16, "\" width=\"18\" height=\"16\" fill=\"",
               detail::heat_colour(1.0 - static_cast<double>(i) / (ramp - 1)), "\"/>\n");
  svg += str("<text x=\"", legend_x + 24, "\" y=\"", top + 12, "\">", detail::human_bytes(largest),
             "</text>\n<text x=\"", legend_x + 24, "\" y=\"", top + ramp * 16 - 4, "\">",
             detail::human_bytes(scale.log ? smallest : 0), "</text>\n");
  svg += str("<rect x=\"", legend_x, "\" y=\"", top + ramp * 16 + 12, "\" width=\"18\" height=\"16\" ",
             "fill=\"#f7f7f7\" stroke=\"#bbbbbb\"/><text x=\"", legend_x + 24, "\" y=\"",
             top + ramp * 16 + 24, "\">no traffic</text>\n");

  // The captions: what the plan costs, and who carries the most.
  svg += str("<text x=\"", left, "\" y=\"", top + body + 24, "\">", totals, "</text>\n<text x=\"", left,
             "\" y=\"", top + body + 42, "\" fill=\"#d62728\">", bottleneck, "</text>\n</svg>\n");
  return svg;
}

}  // namespace redist
