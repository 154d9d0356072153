// expand_braces: the braceexpand package's rules, which webdataset applies to
// shard URLs. Written out here because no C++ library does this (and it is
// ~100 lines).
#include <optional>
#include <regex>

#include "fm/data/wds.h"
#include "fm/error.h"

namespace fm::data {
namespace {

// Position of the brace closing the one at `open`, skipping escapes and
// nested pairs; npos when unbalanced.
size_t matching_brace(const std::string& s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '\\') ++i;
    else if (s[i] == '{') ++depth;
    else if (s[i] == '}' && --depth == 0) return i;
  }
  return std::string::npos;
}

// The parts of a brace body split at top-level commas.
std::vector<std::string> split_alternatives(const std::string& body) {
  std::vector<std::string> parts(1);
  int depth = 0;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c == '\\' && i + 1 < body.size()) {
      parts.back() += body.substr(i, 2);
      ++i;
      continue;
    }
    if (c == '{') ++depth;
    if (c == '}') --depth;
    if (c == ',' && depth == 0) parts.emplace_back();
    else parts.back() += c;
  }
  return parts;
}

// "a..b" or "a..b..step", numbers or single letters, as braceexpand: numbers
// are zero-padded to the longer bound when a bound (other than "0") starts
// with 0; the step's sign is ignored and the range runs from a to b.
std::optional<std::vector<std::string>> range(const std::string& body) {
  static const std::regex numbers(R"(^(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$)");
  static const std::regex letters(R"(^([A-Za-z])\.\.([A-Za-z])(?:\.\.(-?\d+))?$)");
  std::smatch m;
  const bool is_number = std::regex_match(body, m, numbers);
  if (!is_number && !std::regex_match(body, m, letters)) return std::nullopt;
  int64_t step = m[3].matched ? std::llabs(std::stoll(m[3].str())) : 1;
  if (step == 0) step = 1;
  std::vector<std::string> out;
  if (is_number) {
    const std::string a = m[1].str(), b = m[2].str();
    auto padded = [](const std::string& s) { return s != "0" && s != "-0" && (s[0] == '0' || s.rfind("-0", 0) == 0); };
    const size_t width = padded(a) || padded(b) ? std::max(a.size(), b.size()) : 0;
    const int64_t from = std::stoll(a), to = std::stoll(b);
    for (int64_t v = from; from <= to ? v <= to : v >= to; v += from <= to ? step : -step) {
      char text[32];
      std::snprintf(text, sizeof text, "%0*lld", int(width), (long long)v);
      out.emplace_back(text);
    }
  } else {
    const int from = m[1].str()[0], to = m[2].str()[0];
    for (int v = from; from <= to ? v <= to : v >= to; v += int(from <= to ? step : -step)) out.emplace_back(1, char(v));
  }
  return out;
}

// Expansions that still hold escapes (removed once, at the end).
std::vector<std::string> expand(const std::string& s, const std::string& pattern) {
  size_t open = 0;
  for (; open < s.size(); ++open) {
    if (s[open] == '\\') ++open;
    else if (s[open] == '}') error("expand_braces: '", pattern, "': unbalanced braces ('}' without '{')");
    else if (s[open] == '{') break;
  }
  if (open >= s.size()) return {s};
  const size_t close = matching_brace(s, open);
  if (close == std::string::npos) error("expand_braces: '", pattern, "': unbalanced braces ('{' without '}')");
  const std::string prefix = s.substr(0, open), body = s.substr(open + 1, close - open - 1);
  const std::vector<std::string> rest = expand(s.substr(close + 1), pattern);

  std::vector<std::string> bodies;
  const std::vector<std::string> alternatives = split_alternatives(body);
  if (alternatives.size() > 1) {
    for (const std::string& alt : alternatives)
      for (std::string& x : expand(alt, pattern)) bodies.push_back(std::move(x));
  } else if (auto r = range(body)) {
    bodies = std::move(*r);
  } else {  // "{x}" stays as written, its inside expanded
    for (const std::string& x : expand(body, pattern)) bodies.push_back("{" + x + "}");
  }
  std::vector<std::string> out;
  for (const std::string& x : bodies)
    for (const std::string& y : rest) out.push_back(prefix + x + y);
  return out;
}

std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) ++i;
    out += s[i];
  }
  return out;
}

}  // namespace

std::vector<std::string> expand_braces(const std::string& pattern) {
  std::vector<std::string> out = expand(pattern, pattern);
  for (std::string& s : out) s = unescape(s);
  return out;
}

}  // namespace fm::data
