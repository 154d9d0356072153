#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace fm::text {

// Cuts `text` at occurrences of the `specials` strings (leftmost first, the
// longest where several start at one byte): calls on_text(string_view) for
// each stretch between them (possibly empty) and on_special(k) for each
// occurrence of specials[k]. Each string is searched for once per occurrence.
template <class OnText, class OnSpecial>
void split_at_specials(std::string_view text, const std::vector<std::string_view>& specials, OnText&& on_text,
                       OnSpecial&& on_special) {
  constexpr size_t npos = std::string_view::npos;
  std::vector<size_t> next;  // next occurrence of each, at or after pos
  for (const auto s : specials) next.push_back(text.find(s));
  size_t pos = 0;
  for (;;) {
    size_t best = npos, best_k = 0;
    for (size_t k = 0; k < specials.size(); ++k) {
      if (next[k] != npos && next[k] < pos) next[k] = text.find(specials[k], pos);
      const bool longer = next[k] == best && best != npos && specials[k].size() > specials[best_k].size();
      if (next[k] < best || longer) best = next[k], best_k = k;
    }
    if (best == npos) break;
    on_text(text.substr(pos, best - pos));
    on_special(best_k);
    pos = best + specials[best_k].size();
  }
  on_text(text.substr(pos));
}

}  // namespace fm::text
