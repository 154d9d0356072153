// expand_braces: the braceexpand package's rules, which webdataset applies to
// shard URLs. Written out here because no C++ library does this (and it is
// ~100 lines).
#include <charconv>
#include <optional>
#include <regex>

#include "fm/data/wds.h"
#include "fm/error.h"

namespace fm::data {
namespace {

// More names than any shard list needs: a pattern such as "{0..999999999}"
// is a mistake, and would otherwise exhaust memory.
constexpr size_t kMaxNames = 1'000'000;

[[noreturn]] void too_many(const std::string& pattern) {
  error("expand_braces: '", pattern, "': expands to more than ", kMaxNames, " names");
}

// A range bound or step; ones beyond int64 are an error (not std::stoll's exception).
int64_t parse_int(const std::string& text, const std::string& pattern) {
  int64_t v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size())
    error("expand_braces: '", pattern, "': ", text, " is not a 64-bit integer");
  return v;
}

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
std::optional<std::vector<std::string>> range(const std::string& body, const std::string& pattern) {
  static const std::regex numbers(R"(^(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$)");
  static const std::regex letters(R"(^([A-Za-z])\.\.([A-Za-z])(?:\.\.(-?\d+))?$)");
  std::smatch m;
  const bool is_number = std::regex_match(body, m, numbers);
  if (!is_number && !std::regex_match(body, m, letters)) return std::nullopt;
  const int64_t signed_step = m[3].matched ? parse_int(m[3].str(), pattern) : 1;
  // |step| in unsigned arithmetic (|INT64_MIN| does not fit an int64); 0 is 1.
  const uint64_t step = signed_step == 0 ? 1 : signed_step < 0 ? 0 - uint64_t(signed_step) : uint64_t(signed_step);
  std::vector<std::string> out;
  if (is_number) {
    const std::string a = m[1].str(), b = m[2].str();
    auto padded = [](const std::string& s) { return s != "0" && s != "-0" && (s[0] == '0' || s.rfind("-0", 0) == 0); };
    const size_t width = padded(a) || padded(b) ? std::max(a.size(), b.size()) : 0;
    const int64_t from = parse_int(a, pattern), to = parse_int(b, pattern);
    // The values from + i*step (towards `to`), counted first so nothing overflows.
    const uint64_t span = from <= to ? uint64_t(to) - uint64_t(from) : uint64_t(from) - uint64_t(to);
    const uint64_t count = span / step + 1;
    if (count > kMaxNames) too_many(pattern);
    for (uint64_t i = 0; i < count; ++i) {
      const uint64_t delta = i * step;
      const int64_t v = int64_t(from <= to ? uint64_t(from) + delta : uint64_t(from) - delta);
      // Zero-padded as printf's %0*lld: the sign, then zeros to `width` characters.
      const std::string digits = v < 0 ? std::to_string(0 - uint64_t(v)) : std::to_string(v);
      const size_t sign = v < 0 ? 1 : 0;
      out.push_back(std::string(sign, '-') + std::string(width > digits.size() + sign ? width - digits.size() - sign : 0, '0') +
                    digits);
    }
  } else {
    const int from = m[1].str()[0], to = m[2].str()[0];
    const uint64_t span = uint64_t(from <= to ? to - from : from - to);
    for (uint64_t d = 0; d <= span; d += step) out.emplace_back(1, char(from <= to ? from + int(d) : from - int(d)));
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
      for (std::string& x : expand(alt, pattern)) {
        if (bodies.size() == kMaxNames) too_many(pattern);
        bodies.push_back(std::move(x));
      }
  } else if (auto r = range(body, pattern)) {
    bodies = std::move(*r);
  } else {  // "{x}" stays as written, its inside expanded
    for (const std::string& x : expand(body, pattern)) bodies.push_back("{" + x + "}");
  }
  if (bodies.size() > kMaxNames || rest.size() > kMaxNames / std::max<size_t>(bodies.size(), 1)) too_many(pattern);
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
