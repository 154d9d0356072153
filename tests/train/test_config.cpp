// Experiment configs: INI sections as prefixes, overrides, typed values,
// unknown keys with suggestions, and the resolved INI round trip.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fm/error.h"
#include "fm/train/config.h"

using fm::train::Config;

namespace {

Config make() {
  Config c;
  c.add_int("model.n_layer", 6, "transformer blocks")
      .add_int("model.d_model", 384, "width")
      .add_double("train.lr", 3e-4, "peak learning rate")
      .add_string("data.train", "", "training shards")
      .add_bool("train.compile", false, "a flag");
  return c;
}

std::string write_temp(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / ("fm_config_" + name + ".ini");
  std::ofstream(path) << text;
  return path.string();
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const fm::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Config, SectionsBecomePrefixesAndOverridesWin) {
  Config c = make();
  const std::string path = write_temp("basic", "# a recipe\n[model]\nn_layer = 4\n\n[train]\nlr = 1e-3\ncompile = yes\n"
                                               "[data]\ntrain = data/shards/train_*.bin\n");
  c.parse_file(path);
  EXPECT_EQ(c.get_int("model.n_layer"), 4);
  EXPECT_EQ(c.get_int("model.d_model"), 384);  // default
  EXPECT_DOUBLE_EQ(c.get_double("train.lr"), 1e-3);
  EXPECT_TRUE(c.get_bool("train.compile"));
  EXPECT_EQ(c.get_string("data.train"), "data/shards/train_*.bin");
  c.parse_overrides({"--model.n_layer=2", "--train.lr", "0.5"});
  EXPECT_EQ(c.get_int("model.n_layer"), 2);
  EXPECT_DOUBLE_EQ(c.get_double("train.lr"), 0.5);
}

TEST(Config, ResolvedIniRoundTrips) {
  Config c = make();
  c.parse_overrides({"--model.n_layer=3", "--data.train=x y", "--train.lr=0.000123456789"});
  const std::string ini = c.to_ini();
  EXPECT_NE(ini.find("[model]\n"), std::string::npos);
  EXPECT_NE(ini.find("n_layer = 3\n"), std::string::npos);
  Config d = make();
  d.parse_file(write_temp("roundtrip", ini));
  EXPECT_EQ(d.to_ini(), ini);
  EXPECT_DOUBLE_EQ(d.get_double("train.lr"), 0.000123456789);
  EXPECT_EQ(d.get_string("data.train"), "x y");
}

TEST(Config, UnknownKeysSuggestTheNearest) {
  Config c = make();
  const std::string path = write_temp("typo", "[model]\nn_layers = 4\n");
  const std::string msg = message_of([&] { c.parse_file(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key 'model.n_layers' (did you mean 'model.n_layer'?)"), std::string::npos) << msg;
  const std::string cli = message_of([&] { c.parse_overrides({"--train.lrr=1"}); });
  EXPECT_NE(cli.find("unknown key 'train.lrr' (did you mean 'train.lr'?)"), std::string::npos) << cli;
  EXPECT_EQ(c.nearest_key("completely.different"), "");
}

TEST(Config, BadValuesNameTheKeyAndFile) {
  Config c = make();
  const std::string path = write_temp("badvalue", "[train]\nlr = fast\n");
  const std::string msg = message_of([&] { c.parse_file(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("key 'train.lr': 'fast' is not a finite number"), std::string::npos) << msg;
  EXPECT_NE(message_of([&] { c.parse_overrides({"--model.n_layer=2.5"}); }).find("is not an integer"), std::string::npos);
  EXPECT_NE(message_of([&] { c.parse_overrides({"--train.compile=maybe"}); }).find("boolean"), std::string::npos);
  EXPECT_NE(message_of([&] { c.parse_overrides({"model.n_layer=2"}); }).find("unexpected argument"), std::string::npos);
  EXPECT_NE(message_of([&] { c.parse_file("/nonexistent/recipe.ini"); }).find("cannot read '/nonexistent/recipe.ini'"),
            std::string::npos);
  // A key given twice in one file is ambiguous.
  EXPECT_FALSE(message_of([&] { c.parse_file(write_temp("twice", "[model]\nn_layer = 1\nn_layer = 2\n")); }).empty());
  // Reading a key as the wrong type is a programming error, also reported.
  EXPECT_THROW(c.get_string("model.n_layer"), fm::Error);
}

TEST(Config, HelpListsEveryKey) {
  const std::string h = make().help();
  for (const char* k : {"--model.n_layer=<int>", "--train.lr=<float>", "--data.train=<string>", "--train.compile=<bool>"})
    EXPECT_NE(h.find(k), std::string::npos) << k;
}

TEST(Config, TheLastOverrideOfAKeyWins) {
  Config c = make();
  c.parse_overrides({"--model.n_layer=2", "--model.n_layer", "5"});
  EXPECT_EQ(c.get_int("model.n_layer"), 5);
}
