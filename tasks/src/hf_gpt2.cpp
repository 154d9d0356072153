// GPT-2 in Hugging Face's layout (fm/tasks/hf_gpt2.h): weights and config.
#include "fm/tasks/hf_gpt2.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "fm/error.h"
#include "fm/io/atomic_file.h"

namespace fm::tasks {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string file_in(const std::string& dir, const char* name) { return (fs::path(dir) / name).string(); }

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) error(path, ": cannot read the file");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    error(path, ": not valid JSON: ", e.what());
  }
}

void write_text(const std::string& path, const std::string& text, const char* op) {
  io::AtomicFile f(path, op);
  f.write(text.data(), text.size());
  f.commit();
}

// The keys of config.json, with the errors naming the file and the key.
class ConfigKeys {
 public:
  ConfigKeys(json j, std::string path) : j_(std::move(j)), path_(std::move(path)) {
    if (!j_.is_object()) error(path_, ": expected a JSON object (a GPT2Config)");
  }
  // A required positive integer, under its GPT-2 name or the generic alias.
  int64_t positive(const std::string& key, const std::string& alias) const {
    const std::string& k = j_.contains(key) || !j_.contains(alias) ? key : alias;
    if (!j_.contains(k)) fail(key, "is missing");
    const json& v = j_[k];
    if (!v.is_number_integer() || v.get<int64_t>() <= 0) fail(k, "must be a positive integer, got " + v.dump());
    return v.get<int64_t>();
  }
  double number(const std::string& key, double def) const {
    if (!present(key)) return def;
    if (!j_[key].is_number()) fail(key, "must be a number, got " + j_[key].dump());
    return j_[key].get<double>();
  }
  bool boolean(const std::string& key, bool def) const {
    if (!present(key)) return def;
    if (!j_[key].is_boolean()) fail(key, "must be true or false, got " + j_[key].dump());
    return j_[key].get<bool>();
  }
  std::string string(const std::string& key, const std::string& def) const {
    if (!present(key)) return def;
    if (!j_[key].is_string()) fail(key, "must be a string, got " + j_[key].dump());
    return j_[key].get<std::string>();
  }
  bool present(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }
  const json& operator[](const std::string& key) const { return j_[key]; }
  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    error(path_, ": key '", key, "' ", why);
  }

 private:
  json j_;
  std::string path_;
};

// HF's activation names -> libfm's MLP activations (gelu_new, gelu_fast and
// gelu_pytorch_tanh are one formula: the tanh approximation).
std::string libfm_activation(const std::string& hf) {
  if (hf == "gelu_new" || hf == "gelu_fast" || hf == "gelu_pytorch_tanh") return "gelu_tanh";
  if (hf == "gelu" || hf == "gelu_python") return "gelu";
  return "";
}

// One weight in both layouts.
struct Entry {
  std::string hf, libfm;  // hf without the "transformer." prefix (but lm_head.weight)
  Shape shape;            // libfm's
  bool transposed;        // Conv1D: HF holds [in, out]
};

std::vector<Entry> entries(const nn::GPTOptions& o) {
  const int64_t d = o.d_model;
  std::vector<Entry> out = {{"wte.weight", "wte.weight", {o.vocab_size, d}, false},
                            {"wpe.weight", "wpe.weight", {o.block_size, d}, false}};
  auto affine = [&](const std::string& hf, const std::string& libfm) {
    out.push_back({hf + ".weight", libfm + ".weight", {d}, false});
    out.push_back({hf + ".bias", libfm + ".bias", {d}, false});
  };
  auto conv1d = [&](const std::string& hf, const std::string& libfm, int64_t in, int64_t outs) {
    out.push_back({hf + ".weight", libfm + ".weight", {outs, in}, true});
    out.push_back({hf + ".bias", libfm + ".bias", {outs}, false});
  };
  for (int64_t i = 0; i < o.n_layer; ++i) {
    const std::string h = "h." + std::to_string(i) + ".", b = "transformer.blocks." + std::to_string(i) + ".";
    affine(h + "ln_1", b + "norm1");
    conv1d(h + "attn.c_attn", b + "attn.qkv", d, 3 * d);
    conv1d(h + "attn.c_proj", b + "attn.proj", d, d);
    affine(h + "ln_2", b + "norm2");
    conv1d(h + "mlp.c_fc", b + "mlp.fc", d, 4 * d);
    conv1d(h + "mlp.c_proj", b + "mlp.proj", 4 * d, d);
  }
  affine("ln_f", "transformer.norm");
  if (!o.tie_embeddings) out.push_back({"lm_head.weight", "lm_head.weight", {o.vocab_size, d}, false});
  return out;
}

std::string hf_file_name(const Entry& e) { return e.hf == "lm_head.weight" ? e.hf : "transformer." + e.hf; }

// Buffers that older HF files hold beside the weights (the causal mask).
bool is_mask_buffer(const std::string& name) {
  const auto ends = [&](const std::string& s) {
    return name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return name.rfind("h.", 0) == 0 && (ends(".attn.bias") || ends(".attn.masked_bias"));
}

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& i : items) s += (s.empty() ? "" : ", ") + i;
  return s;
}

// A sharded checkpoint (model.safetensors.index.json + its files) as one map.
io::TensorMap load_weights(const std::string& dir, std::string* source) {
  const std::string single = file_in(dir, "model.safetensors"), index = file_in(dir, "model.safetensors.index.json");
  if (fs::exists(single)) {
    *source = single;
    return io::load_safetensors(single).tensors;
  }
  if (fs::exists(index)) {
    *source = index;
    const json j = read_json(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object()) error(index, ": key 'weight_map' is missing");
    std::set<std::string> shards;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) error(index, ": key 'weight_map': '", name, "' names no file");
      shards.insert(file.get<std::string>());
    }
    io::TensorMap all;
    for (const auto& shard : shards)
      for (auto& [name, t] : io::load_safetensors(file_in(dir, shard.c_str())).tensors)
        if (!all.emplace(name, t).second) error(index, ": tensor '", name, "' is in two shards");
    return all;
  }
  if (fs::exists(file_in(dir, "pytorch_model.bin")))
    error(dir, " holds pytorch_model.bin (a pickle, which libfm does not read), not model.safetensors: save it with "
          "transformers' save_pretrained(dir, safe_serialization=True)");
  error(dir, ": no model.safetensors");
}

}  // namespace

nn::GPTOptions read_hf_gpt2_config(const std::string& dir) {
  const std::string path = file_in(dir, "config.json");
  const ConfigKeys c(read_json(path), path);
  if (c.present("model_type") && c.string("model_type", "") != "gpt2")
    c.fail("model_type", "is '" + c.string("model_type", "") + "': only gpt2 is read");
  nn::GPTOptions o;
  o.n_layer = c.positive("n_layer", "num_hidden_layers");
  o.n_head = c.positive("n_head", "num_attention_heads");
  o.d_model = c.positive("n_embd", "hidden_size");
  o.block_size = c.positive("n_positions", "max_position_embeddings");
  o.vocab_size = c.positive("vocab_size", "vocab_size");
  if (o.d_model % o.n_head) c.fail("n_head", "must divide n_embd " + std::to_string(o.d_model));
  o.norm_eps = c.number("layer_norm_epsilon", 1e-5);
  if (!(o.norm_eps > 0)) c.fail("layer_norm_epsilon", "must be positive");
  const std::string act = c.string("activation_function", "gelu_new");
  o.activation = libfm_activation(act);
  if (o.activation.empty())
    c.fail("activation_function", "is '" + act + "': libfm's GPT has gelu and gelu_new (gelu_tanh)");
  if (c.present("n_inner") && (!c["n_inner"].is_number_integer() || c["n_inner"].get<int64_t>() != 4 * o.d_model))
    c.fail("n_inner", "is " + c["n_inner"].dump() + ": libfm's GPT has an MLP of 4 * n_embd = " +
                           std::to_string(4 * o.d_model));
  if (!c.boolean("scale_attn_weights", true))
    c.fail("scale_attn_weights", "is false: libfm scales by 1/sqrt(head_dim)");
  if (c.boolean("scale_attn_by_inverse_layer_idx", false))
    c.fail("scale_attn_by_inverse_layer_idx", "is true, which libfm's attention does not do");
  if (c.boolean("add_cross_attention", false)) c.fail("add_cross_attention", "is true: libfm reads decoder-only GPT-2");
  o.tie_embeddings = c.boolean("tie_word_embeddings", true);
  o.dropout = c.number("resid_pdrop", 0.1);  // libfm's dropout sites are HF's residual ones
  // reorder_and_upcast_attn changes only where a mixed-precision product rounds: f32 is the same.
  return o;
}

nn::StateDict from_hf_gpt2_tensors(const io::TensorMap& hf, const nn::GPTOptions& o, const std::string& source) {
  // Names without the "transformer." prefix, which GPT2Model's files lack.
  std::map<std::string, std::pair<std::string, Tensor>> by_base;  // base -> (name in the file, tensor)
  for (const auto& [name, t] : hf) {
    const std::string base = name.rfind("transformer.", 0) == 0 ? name.substr(12) : name;
    if (!by_base.emplace(base, std::make_pair(name, t)).second)
      error(source, ": tensor '", name, "' is there both with and without the 'transformer.' prefix");
  }
  nn::StateDict out;
  std::vector<std::string> missing, wrong;
  for (const Entry& e : entries(o)) {
    auto it = by_base.find(e.hf);
    if (it == by_base.end()) {
      missing.push_back(hf_file_name(e));
      continue;
    }
    const auto [name, t] = it->second;
    by_base.erase(it);
    const Shape want = e.transposed ? Shape{e.shape[1], e.shape[0]} : e.shape;
    if (!is_floating(t.dtype())) {
      wrong.push_back(name + " (dtype " + fm::name(t.dtype()) + ", not floating point)");
    } else if (t.shape() != want) {
      std::ostringstream os;
      os << name << " " << t.shape() << " (config.json makes it " << want << ")";
      wrong.push_back(os.str());
    } else {
      out[e.libfm] = e.transposed ? t.t().contiguous() : t;
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& [base, entry] : by_base) {
    const auto& [name, t] = entry;
    if (is_mask_buffer(base)) continue;
    if (base == "lm_head.weight" && o.tie_embeddings && out.count("wte.weight")) {
      // Tied files written by torch.save hold the head too: it must be the embedding.
      if (t.shape() != out["wte.weight"].shape() ||
          t.to(DType::f32).to_vector<float>() != out["wte.weight"].to(DType::f32).to_vector<float>())
        error(source, ": lm_head.weight differs from transformer.wte.weight, but config.json says "
              "tie_word_embeddings (the default)");
      continue;
    }
    unexpected.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty() || !wrong.empty())
    error(source, ": not the GPT-2 that config.json describes:",
          missing.empty() ? "" : " missing tensors: " + join(missing) + ";",
          unexpected.empty() ? "" : " unexpected tensors: " + join(unexpected) + ";",
          wrong.empty() ? "" : " wrong tensors: " + join(wrong) + ";");
  return out;
}

std::unique_ptr<nn::GPT> load_hf_gpt2(const std::string& dir) {
  const nn::GPTOptions o = read_hf_gpt2_config(dir);
  std::string source;
  const io::TensorMap hf = load_weights(dir, &source);
  const nn::StateDict sd = from_hf_gpt2_tensors(hf, o, source);
  Generator init(0);  // overwritten at once; a local generator keeps the default stream untouched
  auto model = std::make_unique<nn::GPT>(o, &init);
  model->load_state_dict(sd);
  model->eval();
  return model;
}

io::TensorMap to_hf_gpt2_tensors(const nn::GPT& model) {
  const nn::GPTOptions& o = model.options;
  if (!o.bias) error("save_hf_gpt2: the model has no biases, which HF's GPT-2 always has");
  if (o.activation != "gelu" && o.activation != "gelu_tanh")
    error("save_hf_gpt2: activation '", o.activation, "' has no GPT-2 equivalent (gelu or gelu_tanh)");
  nn::StateDict sd = model.state_dict();
  io::TensorMap out;
  for (const Entry& e : entries(o)) {
    auto it = sd.find(e.libfm);
    if (it == sd.end()) error("save_hf_gpt2: the model has no parameter '", e.libfm, "'");
    out[hf_file_name(e)] = e.transposed ? it->second.t().contiguous() : it->second;
    sd.erase(it);
  }
  if (!sd.empty()) {
    std::vector<std::string> extra;
    for (const auto& [name, t] : sd) extra.push_back(name);
    error("save_hf_gpt2: tensors with no place in HF's GPT-2: ", join(extra));
  }
  return out;
}

void save_hf_gpt2(const nn::GPT& model, const std::string& dir, const text::BpeTokenizer* tokenizer) {
  const io::TensorMap tensors = to_hf_gpt2_tensors(model);
  const nn::GPTOptions& o = model.options;
  fs::create_directories(dir);
  io::save_safetensors(file_in(dir, "model.safetensors"), tensors, {{"format", "pt"}});

  json eot = nullptr;
  if (tokenizer) {
    auto it = tokenizer->special_tokens().find("<|endoftext|>");
    if (it != tokenizer->special_tokens().end()) eot = it->second;
  }
  const json config = {
      {"architectures", {"GPT2LMHeadModel"}},
      {"model_type", "gpt2"},
      {"vocab_size", o.vocab_size},
      {"n_positions", o.block_size},
      {"n_embd", o.d_model},
      {"n_layer", o.n_layer},
      {"n_head", o.n_head},
      {"n_inner", nullptr},
      {"activation_function", o.activation == "gelu_tanh" ? "gelu_new" : "gelu"},
      {"layer_norm_epsilon", o.norm_eps},
      {"resid_pdrop", o.dropout},  // libfm's dropout sites: attention and MLP outputs
      {"embd_pdrop", 0.0},
      {"attn_pdrop", 0.0},
      {"initializer_range", 0.02},
      {"scale_attn_weights", true},
      {"scale_attn_by_inverse_layer_idx", false},
      {"reorder_and_upcast_attn", false},
      {"add_cross_attention", false},
      {"tie_word_embeddings", o.tie_embeddings},
      {"use_cache", true},
      {"bos_token_id", eot},
      {"eos_token_id", eot},
      {"dtype", "float32"},
  };
  write_text(file_in(dir, "config.json"), config.dump(2) + "\n", "save_hf_gpt2");
  if (tokenizer) save_hf_gpt2_tokenizer(*tokenizer, dir, o.block_size);
}

}  // namespace fm::tasks
