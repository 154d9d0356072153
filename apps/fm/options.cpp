#include "options.h"

#include <cstdio>

#include "fm/error.h"

namespace fm::app {

Flags& Flags::option(const std::string& name, const std::string& def, const std::string& help) {
  order_.push_back(name);
  values_[name] = {def, help};
  return *this;
}

bool Flags::parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::printf("%s", help().c_str());
      return false;
    }
    if (a.rfind("--", 0) != 0) {
      positional_.push_back(a);
      continue;
    }
    const size_t eq = a.find('=');
    const std::string name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    auto it = values_.find(name);
    if (it == values_.end()) error("unknown option --", name, " (see --help)");
    if (eq != std::string::npos) it->second.first = a.substr(eq + 1);
    else if (i + 1 < args.size()) it->second.first = args[++i];
    else error("option --", name, " needs a value");
  }
  return true;
}

const std::string& Flags::get(const std::string& name) const { return values_.at(name).first; }

int64_t Flags::get_int(const std::string& name) const {
  const std::string& v = get(name);
  size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (...) {
    used = 0;
  }
  if (used == 0 || used != v.size()) error("option --", name, ": '", v, "' is not an integer");
  return x;
}

double Flags::get_double(const std::string& name) const {
  const std::string& v = get(name);
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (...) {
    used = 0;
  }
  if (used == 0 || used != v.size()) error("option --", name, ": '", v, "' is not a number");
  return x;
}

std::string Flags::help() const {
  std::string s = usage_ + "\n\noptions:\n";
  for (const auto& n : order_) {
    const auto& [def, help] = values_.at(n);
    std::string head = "  --" + n;
    s += head + std::string(head.size() < 24 ? 24 - head.size() : 1, ' ') + help +
         (def.empty() ? "" : " (default: " + def + ")") + "\n";
  }
  return s;
}

}  // namespace fm::app
