#include "fm/train/sweep.h"

#include <cctype>
#include <set>
#include <sstream>

#include "fm/error.h"

namespace fm::train {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep)) parts.push_back(part);
  if (!s.empty() && s.back() == sep) parts.push_back("");
  return parts;
}

struct Axis {
  std::vector<std::string> keys;
  std::vector<std::vector<std::string>> values;  // one row per point of the axis, a value per key
};

Axis parse_axis(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) error("sweep: grid axis '", text, "' is not KEY=V1,V2,...");
  Axis a;
  a.keys = split(text.substr(0, eq), ':');
  for (const auto& k : a.keys)
    if (k.empty()) error("sweep: grid axis '", text, "' has an empty key");
  std::set<std::string> seen;
  for (const auto& v : split(text.substr(eq + 1), ',')) {
    std::vector<std::string> row = a.keys.size() == 1 ? std::vector<std::string>{v} : split(v, ':');
    if (row.size() != a.keys.size())
      error("sweep: grid axis '", text, "': value '", v, "' has ", row.size(), " part(s) for ", a.keys.size(),
            " keys (join them with ':')");
    for (const auto& part : row)
      if (part.empty()) error("sweep: grid axis '", text, "' has an empty value");
    if (!seen.insert(v).second) error("sweep: grid axis '", text, "' lists '", v, "' twice");
    a.values.push_back(row);
  }
  return a;
}

std::string last_part(const std::string& key) {
  const size_t dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

// Keeps a value readable in a directory name: no separators or spaces.
std::string name_safe(const std::string& v) {
  std::string s;
  for (char c : v) s += std::isalnum((unsigned char)c) || c == '.' || c == '-' || c == '+' ? c : '_';
  return s;
}

}  // namespace

std::vector<std::string> SweepPoint::overrides() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : values) out.push_back("--" + k + "=" + v);
  return out;
}

std::vector<SweepPoint> expand_grid(const std::string& grid) {
  std::vector<Axis> axes;
  std::istringstream in(grid);
  for (std::string term; in >> term;) axes.push_back(parse_axis(term));
  if (axes.empty()) error("sweep: the grid is empty (e.g. --grid \"model.d_model=64,128 train.max_steps=200,400\")");
  std::set<std::string> keys, short_names, clashing;
  for (const auto& a : axes)
    for (const auto& k : a.keys) {
      if (!keys.insert(k).second) error("sweep: grid key '", k, "' is on two axes");
      if (!short_names.insert(last_part(k)).second) clashing.insert(last_part(k));
    }
  std::vector<SweepPoint> points(1);
  for (const auto& a : axes) {
    std::vector<SweepPoint> next;
    for (const auto& p : points)
      for (const auto& row : a.values) {
        SweepPoint q = p;
        for (size_t j = 0; j < a.keys.size(); ++j) {
          const std::string& k = a.keys[j];
          q.values.push_back({k, row[j]});
          q.name += (q.name.empty() ? "" : "-") + (clashing.count(last_part(k)) ? k : last_part(k)) + name_safe(row[j]);
        }
        next.push_back(std::move(q));
      }
    points = std::move(next);
  }
  std::set<std::string> names;
  for (const auto& p : points)
    if (!names.insert(p.name).second) error("sweep: two grid points would share the directory '", p.name, "'");
  return points;
}

}  // namespace fm::train
