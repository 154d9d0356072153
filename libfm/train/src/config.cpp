#include "fm/train/config.h"

#include <algorithm>
#include <boost/program_options.hpp>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include "fm/error.h"

namespace po = boost::program_options;

namespace fm::train {
namespace {

enum class Kind { integer, real, text, boolean };

struct Entry {
  Kind kind;
  std::string value;  // canonical text form
  std::string def;
  std::string help;
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::integer: return "int";
    case Kind::real: return "float";
    case Kind::text: return "string";
    case Kind::boolean: return "bool";
  }
  return "?";
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// The shortest text that reads back as exactly v (0.35, not 0.34999999999999998).
std::string shortest_text(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// Checks `text` against the kind and returns its canonical form.
std::string canonical(Kind kind, const std::string& raw, const std::string& key, const std::string& origin) {
  const std::string text = trim(raw);
  auto bad = [&](const char* what) -> std::string {
    error("config: ", origin, ": key '", key, "': '", text, "' is not ", what);
  };
  switch (kind) {
    case Kind::integer: {
      size_t used = 0;
      long long v = 0;
      try {
        v = std::stoll(text, &used);
      } catch (...) {
        return bad("an integer");
      }
      if (used != text.size()) return bad("an integer");
      return std::to_string(v);
    }
    case Kind::real: {
      size_t used = 0;
      double v = 0;
      try {
        v = std::stod(text, &used);
      } catch (...) {
        return bad("a finite number");
      }
      if (used != text.size() || !std::isfinite(v)) return bad("a finite number");
      return shortest_text(v);
    }
    case Kind::boolean:
      if (text == "true" || text == "1" || text == "yes" || text == "on") return "true";
      if (text == "false" || text == "0" || text == "no" || text == "off") return "false";
      return bad("a boolean (true/false)");
    case Kind::text:
      // to_ini() must read back as written (a run's config.ini): Boost's INI
      // reader cuts a line at '#' and a value cannot span lines.
      if (text.find_first_of("#\n") != std::string::npos)
        error("config: ", origin, ": key '", key, "': '", text, "' holds '#' or a line break, which an INI file cannot hold");
      return text;
  }
  return text;
}

}  // namespace

struct Config::Impl {
  std::map<std::string, Entry> entries;

  void declare(const std::string& key, Kind kind, const std::string& def, const std::string& help) {
    if (key.find('.') == std::string::npos || key.front() == '.' || key.back() == '.')
      error("config: key '", key, "' must be section.name");
    if (entries.count(key)) error("config: key '", key, "' declared twice");
    entries[key] = {kind, def, def, help};
  }

  const Entry& find(const std::string& key, Kind kind) const {
    auto it = entries.find(key);
    if (it == entries.end()) error("config: no key '", key, "' is declared");
    if (it->second.kind != kind)
      error("config: key '", key, "' is a ", kind_name(it->second.kind), ", read as ", kind_name(kind));
    return it->second;
  }

  po::options_description description() const {
    po::options_description desc;
    for (const auto& [key, e] : entries) desc.add_options()(key.c_str(), po::value<std::string>());
    return desc;
  }

  [[noreturn]] void rethrow(const po::error& e, const std::string& origin, const Config& self) const {
    if (auto* unknown = dynamic_cast<const po::unknown_option*>(&e)) {
      std::string key = unknown->get_option_name();
      key.erase(0, key.find_first_not_of('-'));
      key = key.substr(0, key.find('='));
      const std::string near = self.nearest_key(key);
      error("config: ", origin, ": unknown key '", key, "'", near.empty() ? "" : " (did you mean '" + near + "'?)");
    }
    error("config: ", origin, ": ", e.what());
  }

  void apply(const po::parsed_options& parsed, const std::string& origin) {
    po::variables_map vm;
    po::store(parsed, vm);
    for (const auto& [key, value] : vm) {
      Entry& e = entries.at(key);
      e.value = canonical(e.kind, value.as<std::string>(), key, origin);
    }
  }
};

Config::Config() : impl_(std::make_unique<Impl>()) {}
Config::~Config() = default;
Config::Config(Config&&) noexcept = default;
Config& Config::operator=(Config&&) noexcept = default;

Config& Config::add_int(const std::string& key, int64_t def, const std::string& help) {
  impl_->declare(key, Kind::integer, std::to_string(def), help);
  return *this;
}
Config& Config::add_double(const std::string& key, double def, const std::string& help) {
  impl_->declare(key, Kind::real, canonical(Kind::real, std::to_string(def), key, "default"), help);
  impl_->entries[key].value = impl_->entries[key].def = shortest_text(def);
  return *this;
}
Config& Config::add_string(const std::string& key, const std::string& def, const std::string& help) {
  impl_->declare(key, Kind::text, def, help);
  return *this;
}
Config& Config::add_bool(const std::string& key, bool def, const std::string& help) {
  impl_->declare(key, Kind::boolean, def ? "true" : "false", help);
  return *this;
}

void Config::parse_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) error("config: cannot read '", path, "'");
  try {
    const po::options_description desc = impl_->description();
    impl_->apply(po::parse_config_file(in, desc, false), path);
  } catch (const po::error& e) {
    impl_->rethrow(e, path, *this);
  }
}

void Config::parse_overrides(const std::vector<std::string>& args) {
  // Normalise to --key=value, the last occurrence of a key winning.
  std::map<std::string, std::string> last;
  std::vector<std::string> order;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) error("config: unexpected argument '", a, "' (overrides look like --section.key=value)");
    std::string key = a, value;
    if (const size_t eq = a.find('='); eq != std::string::npos) {
      key = a.substr(0, eq);
      value = a.substr(eq + 1);
    } else if (i + 1 < args.size()) {
      value = args[++i];  // "--key value"
    } else {
      error("config: command line: ", a, " needs a value");
    }
    // Boost would take "--=5" as an option without a name and drop it unseen.
    if (key.size() <= 2) error("config: command line: '", a, "' names no key");
    if (!last.count(key)) order.push_back(key);
    last[key] = value;
  }
  std::vector<std::string> normalised;
  for (const auto& k : order) normalised.push_back(k + "=" + last[k]);
  try {
    const po::options_description desc = impl_->description();  // the parser keeps a pointer to it
    po::command_line_parser parser(normalised);
    parser.options(desc).style(po::command_line_style::default_style &
                                               ~po::command_line_style::allow_guessing);
    impl_->apply(parser.run(), "command line");
  } catch (const po::error& e) {
    impl_->rethrow(e, "command line", *this);
  }
}

int64_t Config::get_int(const std::string& key) const { return std::stoll(impl_->find(key, Kind::integer).value); }
double Config::get_double(const std::string& key) const { return std::stod(impl_->find(key, Kind::real).value); }
const std::string& Config::get_string(const std::string& key) const { return impl_->find(key, Kind::text).value; }
bool Config::get_bool(const std::string& key) const { return impl_->find(key, Kind::boolean).value == "true"; }
bool Config::has(const std::string& key) const { return impl_->entries.count(key) > 0; }
const std::string& Config::text(const std::string& key) const {
  auto it = impl_->entries.find(key);
  if (it == impl_->entries.end()) error("config: no key '", key, "' is declared");
  return it->second.value;
}

void Config::set(const std::string& key, const std::string& value, const std::string& origin) {
  auto it = impl_->entries.find(key);
  if (it == impl_->entries.end()) {
    const std::string near = nearest_key(key);
    error("config: ", origin, ": unknown key '", key, "'", near.empty() ? "" : " (did you mean '" + near + "'?)");
  }
  it->second.value = canonical(it->second.kind, value, key, origin);
}

std::string Config::to_ini() const {
  std::ostringstream os;
  std::string section;
  for (const auto& [key, e] : impl_->entries) {
    const std::string sec = key.substr(0, key.find('.'));
    if (sec != section) {
      os << (section.empty() ? "" : "\n") << "[" << sec << "]\n";
      section = sec;
    }
    os << key.substr(sec.size() + 1) << " = " << e.value << "\n";
  }
  return os.str();
}

std::string Config::help() const {
  std::ostringstream os;
  for (const auto& [key, e] : impl_->entries) {
    std::string head = "  --" + key + "=<" + kind_name(e.kind) + ">";
    os << head << std::string(head.size() < 36 ? 36 - head.size() : 1, ' ') << e.help << " (default: "
       << (e.def.empty() ? "\"\"" : e.def) << ")\n";
  }
  return os.str();
}

std::string Config::nearest_key(const std::string& key) const {
  std::string best;
  size_t best_d = std::max<size_t>(3, key.size() / 3) + 1;
  for (const auto& [k, e] : impl_->entries) {
    const size_t d = edit_distance(key, k);
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  return best;
}

}  // namespace fm::train
