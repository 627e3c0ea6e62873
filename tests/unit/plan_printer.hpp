// Test helper: doctest prints a redist::plan in full when a comparison of plans fails.
#pragma once

#include <doctest/doctest.h>

#include <ostream>
#include <sstream>
#include <type_traits>
#include <variant>
#include <vector>

#include "redist/plan/steps.hpp"

namespace doctest {
template <>
struct StringMaker<redist::plan> {
  template <class T>
  static void list(std::ostream& os, const std::vector<T>& v) {
    os << '[';
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (i) os << ',';
      if constexpr (std::is_same_v<T, redist::id_list>) {
        list(os, v[i]);
      } else {
        os << v[i];
      }
    }
    os << ']';
  }
  static String convert(const redist::plan& p) {
    std::ostringstream os;
    os << "plan(ranks " << p.ranks << ")";
    for (const auto& stage : p.stages) {
      os << "\n  stage:";
      for (const auto& s : stage) {
        std::visit(
            [&](const auto& x) {
              using T = std::decay_t<decltype(x)>;
              if constexpr (std::is_same_v<T, redist::all_to_all_step>) {
                os << " all_to_all(keys ";
                list(os, x.keys);
                os << ", payloads";
                for (const auto& q : x.payloads) {
                  os << " {src " << q.src << ", key " << q.key << ", ids ";
                  list(os, q.ids);
                  os << '}';
                }
                os << ", routes";
                for (const auto& r : x.routes)
                  os << " (" << r.src << "->" << r.dst << " #" << r.payload << ')';
                os << ')';
              } else {
                os << (std::is_same_v<T, redist::gather_step>    ? " gather"
                       : std::is_same_v<T, redist::scatter_step> ? " scatter"
                                                                 : " broadcast")
                   << "(root " << x.root << ", ranks ";
                if constexpr (std::is_same_v<T, redist::gather_step>) {
                  list(os, x.srcs);
                } else {
                  list(os, x.dsts);
                }
                os << ", ids ";
                list(os, x.ids);
                os << ", keys ";
                list(os, x.keys);
                os << ')';
              }
            },
            s);
      }
    }
    return os.str().c_str();
  }
};
}  // namespace doctest
