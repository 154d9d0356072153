// GPT-2 in Hugging Face's layout (fm/tasks/hf_gpt2.h) and runs exported and
// imported (fm/tasks/run_export.h), against tests/fixtures/hf_gpt2*, written
// by make_hf_gpt2_fixtures.py with transformers: libfm's logits of the
// transformers-saved models equal transformers' (float64) to 1e-4; save ->
// load is exact; GPT-2's tokenizer files read and write; broken files give
// errors naming the file and the key or tensor. Where python3 has
// transformers, a libfm-written directory is also loaded by transformers
// (check_hf_export.py), which must give libfm's logits.
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "fm/io/checkpoint.h"
#include "fm/nn/init.h"
#include "fm/tasks/hf_gpt2.h"
#include "fm/tasks/run_export.h"
#include "fm/text/bpe.h"
#include "fm/train/recipe.h"
#include "helpers.h"

using namespace fm;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr double kTol = 1e-4;

fs::path fixtures_dir() {
  if (const char* src = std::getenv("FM_SOURCE_DIR")) return fs::path(src) / "tests" / "fixtures";
  return fs::path(__FILE__).parent_path().parent_path() / "fixtures";
}
std::string fixture(const std::string& name) { return (fixtures_dir() / name).string(); }

io::Safetensors expected() { return io::load_safetensors(fixture("hf_gpt2_expected.safetensors")); }

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(x[i] - y[i]));
  return worst;
}

void expect_logits(const nn::GPT& model, const Tensor& ids, const Tensor& want, const std::string& what) {
  NoGradGuard ng;
  const Tensor got = model.forward(ids);
  EXPECT_TRUE(fm::test::all_close(got, want, 0.0, kTol)) << what;
  std::cout << what << ": max |logit - transformers'| = " << max_abs_diff(got, want) << "\n";
}

std::vector<int32_t> as_ids(const Tensor& t) {
  const std::vector<int64_t> v = t.to_vector<int64_t>();
  return {v.begin(), v.end()};
}

// A libfm GPT whose every tensor is random (biases and norms included).
std::unique_ptr<nn::GPT> random_gpt(nn::GPTOptions o, uint64_t seed) {
  Generator gen(seed);
  auto model = std::make_unique<nn::GPT>(o, &gen);
  for (const auto& p : model->named_parameters()) {
    const bool norm_scale = p.name.find("norm") != std::string::npos && p.name.ends_with(".weight");
    // Large enough for O(1) logits and activations where gelu and gelu_tanh differ.
    const double std = p.tensor.dim() == 1 ? 0.2 : 2.0 / std::sqrt(double(p.tensor.size(1)));
    nn::init::normal_(p.tensor, norm_scale ? 1.0 : 0.0, std, &gen);
  }
  model->eval();
  return model;
}

nn::GPTOptions small_options(const std::string& activation, bool tied = true) {
  nn::GPTOptions o;
  o.vocab_size = 300, o.block_size = 32, o.n_layer = 2, o.n_head = 4, o.d_model = 32;
  o.activation = activation;
  o.tie_embeddings = tied;
  return o;
}

void expect_same_weights(const nn::Module& a, const nn::Module& b) {
  const nn::StateDict x = a.state_dict(), y = b.state_dict();
  ASSERT_EQ(x.size(), y.size());
  for (const auto& [name, t] : x) {
    ASSERT_TRUE(y.count(name)) << name;
    EXPECT_EQ(t.shape(), y.at(name).shape()) << name;
    EXPECT_EQ(t.to_vector<float>(), y.at(name).to_vector<float>()) << name << " differs";
  }
}

class HfGpt2Dir : public fm::test::TempDirTest {
 protected:
  HfGpt2Dir() : TempDirTest("fm_hf_gpt2_") {}
  // A copy of the fixture directory `name` to break.
  std::string copy_fixture(const std::string& name) {
    const std::string dst = path(name);
    fs::copy(fixture(name), dst, fs::copy_options::recursive);
    return dst;
  }
  void edit_config(const std::string& dir, const std::function<void(json&)>& edit) {
    const std::string file = (fs::path(dir) / "config.json").string();
    json j = json::parse(fm::test::read_file(file));
    edit(j);
    fm::test::write_file(file, j.dump());
  }
  void edit_weights(const std::string& dir, const std::function<void(io::TensorMap&)>& edit) {
    const std::string file = (fs::path(dir) / "model.safetensors").string();
    io::TensorMap t;
    for (const auto& [name, x] : io::load_safetensors(file).tensors) t[name] = x.clone();
    edit(t);
    io::save_safetensors(file, t, {{"format", "pt"}});
  }
};

}  // namespace

TEST(HfGpt2, LogitsEqualTransformers) {
  const auto model = tasks::load_hf_gpt2(fixture("hf_gpt2"));
  EXPECT_EQ(model->options.activation, "gelu_tanh");
  EXPECT_EQ(model->options.n_layer, 2);
  EXPECT_TRUE(model->options.tie_embeddings);
  const io::Safetensors e = expected();
  expect_logits(*model, e.tensors.at("lm.ids"), e.tensors.at("lm.logits"), "GPT2LMHeadModel (gelu_new)");
}

TEST_F(HfGpt2Dir, TheFixtureTellsGeluFlavoursApart) {
  // Read as exact GELU, the gelu_new model's logits are off by more than the
  // tolerance (the fixture's weights are drawn large enough for that).
  const std::string dir = copy_fixture("hf_gpt2");
  edit_config(dir, [](json& j) { j["activation_function"] = "gelu"; });
  const auto model = tasks::load_hf_gpt2(dir);
  const io::Safetensors e = expected();
  NoGradGuard ng;
  const double diff = max_abs_diff(model->forward(e.tensors.at("lm.ids")), e.tensors.at("lm.logits"));
  std::cout << "exact GELU in place of gelu_new: max |logit difference| = " << diff << "\n";
  EXPECT_GT(diff, 5 * kTol);
}

TEST(HfGpt2, BareModelWithoutPrefixExactGeluOtherEps) {
  const auto model = tasks::load_hf_gpt2(fixture("hf_gpt2_bare"));
  EXPECT_EQ(model->options.activation, "gelu");
  EXPECT_DOUBLE_EQ(model->options.norm_eps, 1e-6);
  const io::Safetensors e = expected();
  expect_logits(*model, e.tensors.at("bare.ids"), e.tensors.at("bare.logits"), "GPT2Model (gelu, eps 1e-6)");
}

TEST(HfGpt2, KvCachedDecodingEqualsFullForward) {
  const auto model = tasks::load_hf_gpt2(fixture("hf_gpt2"));
  const Tensor ids = expected().tensors.at("lm.ids").narrow(0, 0, 1);
  const Tensor want = expected().tensors.at("lm.logits").narrow(0, 0, 1);
  NoGradGuard ng;
  std::vector<nn::KVCache> caches;
  for (int64_t t = 0; t < ids.size(1); ++t) {
    const Tensor got = model->forward(ids.narrow(1, t, 1), &caches);
    EXPECT_TRUE(fm::test::all_close(got, want.narrow(1, t, 1), kTol, kTol)) << "position " << t;
  }
}

TEST(HfGpt2, TokenizerEncodesAsTransformers) {
  const auto tok = tasks::load_hf_gpt2_tokenizer(fixture("hf_gpt2"));
  ASSERT_TRUE(tok.has_value());
  const io::Safetensors e = expected();
  const std::string text = e.metadata.at("sample_text");
  EXPECT_EQ(tok->encode(text), as_ids(e.tensors.at("sample.ids")));
  EXPECT_EQ(tok->decode(tok->encode(text)), text);
  EXPECT_EQ(tok->vocab_size(), 300);
  EXPECT_EQ(tok->special_tokens().at("<|endoftext|>"), 299);
  EXPECT_FALSE(tasks::load_hf_gpt2_tokenizer(fixture("hf_gpt2_bare")).has_value());
  // The same tokenizer as transformers 5 saves it: tokenizer.json alone.
  const auto from_json = tasks::load_hf_gpt2_tokenizer(fixture("hf_gpt2_tokenizer"));
  ASSERT_TRUE(from_json.has_value());
  EXPECT_EQ(from_json->encode(text), as_ids(e.tensors.at("sample.ids")));
  EXPECT_EQ(from_json->special_tokens(), tok->special_tokens());
}

TEST_F(HfGpt2Dir, TokenizerJsonThatIsNotGpt2sIsRefused) {
  const std::string dir = copy_fixture("hf_gpt2_tokenizer");
  const std::string file = dir + "/tokenizer.json";
  const std::string original = fm::test::read_file(file);
  json j = json::parse(original);
  j["pre_tokenizer"]["add_prefix_space"] = true;
  fm::test::write_file(file, j.dump());
  fm::test::expect_error([&] { tasks::load_hf_gpt2_tokenizer(dir); }, file + ": key 'pre_tokenizer' is not GPT-2's");
  j = json::parse(original);
  j["model"]["type"] = "WordPiece";
  fm::test::write_file(file, j.dump());
  fm::test::expect_error([&] { tasks::load_hf_gpt2_tokenizer(dir); }, file + ": key 'model' is not a BPE model");
  j = json::parse(original);
  j["model"]["merges"][0] = {"x", "y"};  // makes no token 256
  fm::test::write_file(file, j.dump());
  fm::test::expect_error([&] { tasks::load_hf_gpt2_tokenizer(dir); }, file + ": its vocabulary and merges");
}

TEST_F(HfGpt2Dir, SaveLoadRoundTripIsExact) {
  const auto model = tasks::load_hf_gpt2(fixture("hf_gpt2"));
  const auto tok = tasks::load_hf_gpt2_tokenizer(fixture("hf_gpt2"));
  tasks::save_hf_gpt2(*model, path("out"), &*tok);
  const auto again = tasks::load_hf_gpt2(path("out"));
  expect_same_weights(*model, *again);
  // The same tensors, names and layout as transformers' own file, bit for bit.
  const io::Safetensors ours = io::load_safetensors(path("out/model.safetensors"));
  const io::Safetensors theirs = io::load_safetensors(fixture("hf_gpt2/model.safetensors"));
  EXPECT_EQ(ours.metadata, theirs.metadata);
  ASSERT_EQ(ours.tensors.size(), theirs.tensors.size());
  for (const auto& [name, t] : theirs.tensors) {
    ASSERT_TRUE(ours.tensors.count(name)) << name;
    EXPECT_EQ(ours.tensors.at(name).shape(), t.shape()) << name;
    EXPECT_EQ(ours.tensors.at(name).to_vector<float>(), t.to_vector<float>()) << name;
  }
  const json config = json::parse(fm::test::read_file(path("out/config.json")));
  EXPECT_EQ(config["activation_function"], "gelu_new");
  EXPECT_EQ(config["n_embd"], 64);
  EXPECT_EQ(config["eos_token_id"], 299);
  // The tokenizer: merges derived from the ranks are the ones the tokenizers library learnt.
  EXPECT_EQ(fm::test::read_file(path("out/merges.txt")), fm::test::read_file(fixture("hf_gpt2/merges.txt")));
  EXPECT_EQ(json::parse(fm::test::read_file(path("out/vocab.json"))),
            json::parse(fm::test::read_file(fixture("hf_gpt2/vocab.json"))));
  const auto tok2 = tasks::load_hf_gpt2_tokenizer(path("out"));
  const std::string text = expected().metadata.at("sample_text");
  EXPECT_EQ(tok2->encode(text), tok->encode(text));
}

TEST_F(HfGpt2Dir, LibfmModelsRoundTrip) {
  for (const auto& [activation, tied] : {std::pair{"gelu", true}, {"gelu_tanh", true}, {"gelu", false}}) {
    SCOPED_TRACE(std::string(activation) + (tied ? " tied" : " untied"));
    const auto model = random_gpt(small_options(activation, tied), 7);
    const std::string dir = path(std::string(activation) + (tied ? "_tied" : "_untied"));
    tasks::save_hf_gpt2(*model, dir);
    EXPECT_EQ(io::load_safetensors(dir + "/model.safetensors").tensors.count("lm_head.weight"), tied ? 0u : 1u);
    const auto again = tasks::load_hf_gpt2(dir);
    expect_same_weights(*model, *again);
    NoGradGuard ng;
    const Tensor ids = randint(0, 300, {2, 9});
    EXPECT_EQ(model->forward(ids).to_vector<float>(), again->forward(ids).to_vector<float>());
  }
}

TEST_F(HfGpt2Dir, LibfmExportLoadsInTransformers) {
  if (std::system("python3 -c 'import transformers, torch' > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3 with transformers and torch is not installed";
  const auto tok = tasks::load_hf_gpt2_tokenizer(fixture("hf_gpt2"));
  const std::string text = expected().metadata.at("sample_text");
  std::string cmd = "python3 -B '" + fixture("check_hf_export.py") + "' --tolerance=1e-4";
  for (const std::string activation : {"gelu", "gelu_tanh"}) {
    const auto model = random_gpt(small_options(activation), 11);
    const std::string dir = path(activation);
    tasks::save_hf_gpt2(*model, dir, &*tok);
    const Tensor ids = randint(0, 300, {2, 17});
    NoGradGuard ng;
    const std::vector<int32_t> sample = tok->encode(text);
    io::save_safetensors(path(activation + ".expected.safetensors"),
                         {{"ids", ids}, {"logits", model->forward(ids)},
                          {"sample.ids", tensor(std::vector<int64_t>(sample.begin(), sample.end()))}},
                         {{"sample_text", text}});
    cmd += " '" + dir + "' '" + path(activation + ".expected.safetensors") + "'";
  }
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

TEST_F(HfGpt2Dir, RealGpt2TokenizerRoundTrips) {
  // GPT-2's own 50257 tokens (tiktoken ranks): merges derived, written and read back.
  const auto gpt2 = text::BpeTokenizer::from_tiktoken(fixture("gpt2.tiktoken"), {{"<|endoftext|>", 50256}});
  tasks::save_hf_gpt2_tokenizer(gpt2, path("gpt2"), 1024);
  const auto again = tasks::load_hf_gpt2_tokenizer(path("gpt2"));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->vocab_size(), 50257);
  const std::string text = expected().metadata.at("sample_text") + " <|endoftext|> Hello world, 1234567 ©∑ 🙂";
  EXPECT_EQ(again->encode(text), gpt2.encode(text));
  EXPECT_EQ(again->encode(text, true), gpt2.encode(text, true));
  for (int32_t id : {0, 255, 256, 1000, 50255}) EXPECT_EQ(again->token_bytes(id), gpt2.token_bytes(id)) << id;
  // GPT-2's first merge is "Ġ t" (" t", 256).
  const std::string merges = fm::test::read_file(path("gpt2/merges.txt"));
  EXPECT_EQ(merges.substr(0, merges.find('\n', merges.find('\n') + 1)), "#version: 0.2\n\xC4\xA0 t");
}

TEST_F(HfGpt2Dir, TrainedLibfmTokenizerRoundTrips) {
  text::BpeTrainOptions o;
  o.vocab_size = 400;
  o.special_tokens = {"<|endoftext|>", "<|pad|>"};
  std::string corpus;
  for (int i = 0; i < 40; ++i)
    corpus += "the cat sat on the mat; don't stop " + std::to_string(i * 37) + " naïve ☃\n";
  const auto tok = text::BpeTokenizer::train(corpus, o);
  tasks::save_hf_gpt2_tokenizer(tok, path("tok"));
  const auto again = tasks::load_hf_gpt2_tokenizer(path("tok"));
  EXPECT_EQ(again->encode(corpus), tok.encode(corpus));
  EXPECT_EQ(again->special_tokens(), tok.special_tokens());
  const json config = json::parse(fm::test::read_file(path("tok/tokenizer_config.json")));
  EXPECT_EQ(config["eos_token"], "<|endoftext|>");
  EXPECT_EQ(config["added_tokens_decoder"][std::to_string(tok.special_tokens().at("<|pad|>"))]["content"], "<|pad|>");
}

TEST_F(HfGpt2Dir, MissingUnexpectedAndMisshapenTensorsAreNamed) {
  const std::string dir = copy_fixture("hf_gpt2");
  const std::string file = (fs::path(dir) / "model.safetensors").string();
  edit_weights(dir, [](io::TensorMap& t) {
    t.erase("transformer.h.1.mlp.c_fc.weight");
    t.erase("transformer.ln_f.bias");
    t["transformer.h.0.attn.rotary"] = zeros({4});
    t["transformer.h.0.attn.c_proj.weight"] = zeros({64, 65});
  });
  const std::string msg = fm::test::error_of([&] { tasks::load_hf_gpt2(dir); });
  for (const char* part : {"model.safetensors", "missing tensors: ", "transformer.h.1.mlp.c_fc.weight",
                           "transformer.ln_f.bias", "unexpected tensors: transformer.h.0.attn.rotary",
                           "transformer.h.0.attn.c_proj.weight [64,65]"})
    EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
  EXPECT_NE(msg.find(file), std::string::npos) << msg;
}

TEST_F(HfGpt2Dir, OldMaskBuffersAndTiedHeadAreAccepted) {
  const std::string dir = copy_fixture("hf_gpt2");
  edit_weights(dir, [](io::TensorMap& t) {
    t["transformer.h.0.attn.bias"] = ones({1, 1, 64, 64});  // the causal mask older files hold
    t["transformer.h.0.attn.masked_bias"] = full({}, -1e4);
    t["lm_head.weight"] = t.at("transformer.wte.weight").clone();
  });
  const auto model = tasks::load_hf_gpt2(dir);
  const io::Safetensors e = expected();
  expect_logits(*model, e.tensors.at("lm.ids"), e.tensors.at("lm.logits"), "with mask buffers and a tied head");
  edit_weights(dir, [](io::TensorMap& t) { t["lm_head.weight"] = zeros(t.at("lm_head.weight").shape()); });
  fm::test::expect_error([&] { tasks::load_hf_gpt2(dir); }, "lm_head.weight differs from transformer.wte.weight");
}

TEST_F(HfGpt2Dir, BadConfigsNameTheFileAndKey) {
  const std::string dir = copy_fixture("hf_gpt2");
  const std::string config = (fs::path(dir) / "config.json").string();
  const std::string original = fm::test::read_file(config);
  struct Case {
    std::function<void(json&)> edit;
    std::string key;
  };
  const std::vector<Case> cases = {
      {[](json& j) { j.erase("n_embd"); }, "key 'n_embd' is missing"},
      {[](json& j) { j["n_head"] = 0; }, "key 'n_head' must be a positive integer"},
      {[](json& j) { j["n_head"] = 5; }, "key 'n_head' must divide n_embd"},
      {[](json& j) { j["activation_function"] = "relu"; }, "key 'activation_function' is 'relu'"},
      {[](json& j) { j["n_inner"] = 100; }, "key 'n_inner' is 100"},
      {[](json& j) { j["scale_attn_by_inverse_layer_idx"] = true; }, "key 'scale_attn_by_inverse_layer_idx'"},
      {[](json& j) { j["add_cross_attention"] = true; }, "key 'add_cross_attention'"},
      {[](json& j) { j["layer_norm_epsilon"] = "small"; }, "key 'layer_norm_epsilon' must be a number"},
      {[](json& j) { j["model_type"] = "gpt_neox"; }, "key 'model_type' is 'gpt_neox'"},
      {[](json& j) { j["vocab_size"] = 301; }, "transformer.wte.weight [300,64] (config.json makes it [301,64])"},
  };
  for (const Case& c : cases) {
    fm::test::write_file(config, original);
    edit_config(dir, c.edit);
    const std::string msg = fm::test::error_of([&] { tasks::load_hf_gpt2(dir); });
    EXPECT_NE(msg.find(c.key), std::string::npos) << "'" << c.key << "' not in: " << msg;
    EXPECT_NE(msg.find(dir), std::string::npos) << msg;
  }
  fm::test::write_file(config, "{\"n_layer\": 2,");
  fm::test::expect_error([&] { tasks::load_hf_gpt2(dir); }, config + ": not valid JSON");
  fs::remove(config);
  fm::test::expect_error([&] { tasks::load_hf_gpt2(dir); }, config + ": cannot read");
}

TEST_F(HfGpt2Dir, MissingWeightsAndTokenizerFilesAreNamed) {
  const std::string dir = copy_fixture("hf_gpt2");
  fs::remove(fs::path(dir) / "merges.txt");
  fm::test::expect_error([&] { tasks::load_hf_gpt2_tokenizer(dir); }, "merges.txt");
  fs::rename(fs::path(dir) / "model.safetensors", fs::path(dir) / "pytorch_model.bin");
  fm::test::expect_error([&] { tasks::load_hf_gpt2(dir); }, "pytorch_model.bin (a pickle");
  fs::remove(fs::path(dir) / "pytorch_model.bin");
  fm::test::expect_error([&] { tasks::load_hf_gpt2(dir); }, "no model.safetensors");
}

TEST_F(HfGpt2Dir, ShardedCheckpointsLoad) {
  const std::string dir = copy_fixture("hf_gpt2");
  const io::TensorMap all = io::load_safetensors(dir + "/model.safetensors").tensors;
  io::TensorMap a, b;
  json map = json::object();
  for (const auto& [name, t] : all) {
    const bool first = name.find(".h.0.") != std::string::npos;
    (first ? a : b)[name] = t.clone();
    map[name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  io::save_safetensors(dir + "/model-00001-of-00002.safetensors", a, {{"format", "pt"}});
  io::save_safetensors(dir + "/model-00002-of-00002.safetensors", b, {{"format", "pt"}});
  fm::test::write_file(dir + "/model.safetensors.index.json", json{{"weight_map", map}}.dump());
  fs::remove(dir + "/model.safetensors");
  const auto model = tasks::load_hf_gpt2(dir);
  const io::Safetensors e = expected();
  expect_logits(*model, e.tensors.at("lm.ids"), e.tensors.at("lm.logits"), "two shards");
}

TEST_F(HfGpt2Dir, ImportThenExportRoundTrips) {
  const std::string run = path("run");
  tasks::import_hf_gpt2_run(fixture("hf_gpt2"), run);
  const train::Config config = train::load_run_config(run);
  EXPECT_EQ(config.get_string("task.kind"), "lm");
  EXPECT_EQ(config.get_string("model.activation"), "gelu_tanh");
  EXPECT_EQ(config.get_int("model.d_model"), 64);
  EXPECT_EQ(config.get_int("model.vocab_size"), 300);
  EXPECT_NE(fm::test::read_file(run + "/config.ini").find("dropout = 0.1\n"), std::string::npos);  // resid_pdrop
  fm::test::expect_error([&] { tasks::import_hf_gpt2_run(fixture("hf_gpt2"), run); }, "already holds a run");

  // hf: the same model and tokenizer as the fixture.
  const tasks::ExportResult r = tasks::export_run(run, path("hf"), "hf");
  EXPECT_EQ(r.step, 0);
  EXPECT_TRUE(r.tokenizer);
  const auto model = tasks::load_hf_gpt2(path("hf"));
  const io::Safetensors e = expected();
  expect_logits(*model, e.tensors.at("lm.ids"), e.tensors.at("lm.logits"), "imported, then exported");
  EXPECT_EQ(fm::test::read_file(path("hf/merges.txt")), fm::test::read_file(fixture("hf_gpt2/merges.txt")));

  // libfm: parameter names, every tensor documented, the config's keys typed.
  tasks::export_run(run, path("libfm"), "libfm");
  const json doc = json::parse(fm::test::read_file(path("libfm/config.json")));
  EXPECT_EQ(doc["kind"], "lm");
  EXPECT_EQ(doc["weights"], "model");
  EXPECT_EQ(doc["config"]["model.n_layer"], 2);
  EXPECT_EQ(doc["config"]["model.activation"], "gelu_tanh");
  EXPECT_EQ(doc["config"]["model.norm_eps"], 1e-5);
  const io::Safetensors st = io::load_safetensors(path("libfm/model.safetensors"));
  ASSERT_EQ(doc["tensors"].size(), st.tensors.size());
  for (const auto& t : doc["tensors"]) {
    const std::string name = t["name"];
    ASSERT_TRUE(st.tensors.count(name)) << name;
    EXPECT_EQ(t["shape"].get<std::vector<int64_t>>(), st.tensors.at(name).shape().vec()) << name;
    EXPECT_EQ(t["dtype"], "F32") << name;
    EXPECT_FALSE(t["description"].get<std::string>().empty()) << name;
  }
  nn::GPT gpt(model->options);
  gpt.load_state_dict(nn::StateDict(st.tensors.begin(), st.tensors.end()));
  gpt.eval();
  expect_logits(gpt, e.tensors.at("lm.ids"), e.tensors.at("lm.logits"), "imported, then exported as libfm");
  fm::test::expect_error([&] { tasks::export_run(run, path("x"), "onnx"); }, "--format must be libfm or hf");
}

TEST(HfGpt2, ParameterDescriptions) {
  EXPECT_EQ(tasks::describe_parameter("transformer.blocks.3.attn.qkv.weight"),
            "block 3, self-attention, q | k | v projection (rows q, then k, then v), weight [out, in]");
  EXPECT_EQ(tasks::describe_parameter("transformer.blocks.0.mlp.proj.bias"), "block 0, MLP, output projection, bias");
  EXPECT_EQ(tasks::describe_parameter("transformer.norm.weight"), "final norm, scale");
  EXPECT_EQ(tasks::describe_parameter("wte.weight"), "token embedding, weight [rows, dim]");
  EXPECT_EQ(tasks::describe_parameter("visual.widget.3.weight"), "image tower, widget 3, weight [out, in]");
}
