#pragma once
// Experiment configs (DESIGN.md): INI files whose sections become key
// prefixes (`[model] n_layer = 6` is `model.n_layer`), overridden from the
// command line (`--model.n_layer=4`). Every key is declared with a type, a
// default and a help line; an unknown key is an error that suggests the
// nearest declared one. Parsing is Boost.Program_options.
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace fm::train {

class Config {
 public:
  Config();
  ~Config();
  Config(Config&&) noexcept;
  Config& operator=(Config&&) noexcept;

  // Declarations. Keys are "section.name".
  Config& add_int(const std::string& key, int64_t def, const std::string& help);
  Config& add_double(const std::string& key, double def, const std::string& help);
  Config& add_string(const std::string& key, const std::string& def, const std::string& help);
  Config& add_bool(const std::string& key, bool def, const std::string& help);

  // Reads an INI file; later calls and parse_overrides win over earlier ones.
  void parse_file(const std::string& path);
  // Reads `--key=value` (or `--key value`) arguments; anything else is an error.
  void parse_overrides(const std::vector<std::string>& args);

  int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  bool has(const std::string& key) const;
  // Any key's value in its canonical text form (as to_ini() writes it).
  const std::string& text(const std::string& key) const;
  // Sets a declared key from its text form, checking the type.
  void set(const std::string& key, const std::string& value, const std::string& origin = "set");

  // The resolved config as INI text (every key, grouped by section), as
  // written into a run directory; parse_file() of it reproduces the config.
  std::string to_ini() const;
  // "--key=<type> (default ...)  help" lines for --help.
  std::string help() const;

  // The declared key closest to `key` by edit distance ("" if none is close).
  std::string nearest_key(const std::string& key) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fm::train
