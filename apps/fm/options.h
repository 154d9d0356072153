#pragma once
// A small flag parser for the subcommands that take no recipe: --name value
// or --name=value options, declared with help, and positional arguments.
#include <map>
#include <string>
#include <vector>

namespace fm::app {

class Flags {
 public:
  Flags(std::string usage) : usage_(std::move(usage)) {}
  Flags& option(const std::string& name, const std::string& def, const std::string& help);
  // Parses args; returns false when --help was asked for (help() was printed).
  bool parse(const std::vector<std::string>& args);
  const std::string& get(const std::string& name) const;
  int64_t get_int(const std::string& name) const;
  double get_double(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }
  std::string help() const;

 private:
  std::string usage_;
  std::vector<std::string> order_;
  std::map<std::string, std::pair<std::string, std::string>> values_;  // name -> (value, help)
  std::vector<std::string> positional_;
};

}  // namespace fm::app
