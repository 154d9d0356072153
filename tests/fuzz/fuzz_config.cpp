// Configs: an INI file and command-line overrides (input: the file, a NUL
// byte, then one override per line) read into the trainer's keys plus a few
// of each type, as a task kind declares them. A config it accepts must
// survive its own round trip: to_ini() read back by parse_file() gives the
// same text (DESIGN: the run directory's config.ini reproduces the run).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "fm/error.h"
#include "fm/train/config.h"
#include "fm/train/recipe.h"
#include "fuzz_util.h"

namespace {

fm::train::Config declared() {
  fm::train::Config c;
  fm::train::declare_trainer_keys(c);
  c.add_int("model.n_layer", 2, "layers")
      .add_double("model.dropout", 0.1, "dropout")
      .add_bool("model.tied", true, "tied embeddings")
      .add_string("data.train", "data/train_*.bin", "shards");
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [ini, rest] = fm::fuzz::split_at_nul(data, size);
  std::vector<std::string> overrides;
  for (size_t pos = 0; pos < rest.size();) {
    const size_t nl = std::min(rest.find('\n', pos), rest.size());
    overrides.emplace_back(rest.substr(pos, nl - pos));
    pos = nl + 1;
  }
  try {
    fm::train::Config c = declared();
    c.parse_file(fm::fuzz::write_file("recipe.ini", ini));
    c.parse_overrides(overrides);
    const std::string text = c.to_ini();
    fm::train::Config again = declared();
    again.parse_file(fm::fuzz::write_file("config.ini", text));
    if (again.to_ini() != text) __builtin_trap();
    volatile size_t sink = c.help().size() + c.nearest_key("model.n_layr").size();
    (void)sink;
    try {
      (void)fm::train::parse_target(c.get_string("train.target"));
      (void)fm::train::lr_schedule(c);
    } catch (const fm::Error& e) {
      fm::fuzz::note(e);
    }
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}
