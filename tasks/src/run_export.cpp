// `fm export` and `fm import hf-gpt2` (fm/tasks/run_export.h).
#include "fm/tasks/run_export.h"

#include <filesystem>
#include <charconv>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fm/error.h"
#include "fm/io/atomic_file.h"
#include "fm/io/checkpoint.h"
#include "fm/tasks/hf_gpt2.h"
#include "fm/train/recipe.h"
#include "fm/train/task.h"
#include "fm/train/trainer.h"

namespace fm::tasks {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // keys in the order written: kind and step before the tensors

namespace {

// What the components of libfm's parameter names are, across the kinds.
const std::map<std::string, std::string>& component_phrases() {
  static const std::map<std::string, std::string> phrases = {
      {"wte", "token embedding"},
      {"wpe", "learned position embedding"},
      {"token_embedding", "token embedding"},
      {"positional_embedding", "position embedding"},
      {"lm_head", "LM head (hidden -> vocabulary logits)"},
      {"norm1", "norm before self-attention"},
      {"norm2", "norm before the MLP"},
      {"norm_cross", "norm before cross-attention"},
      {"norm", "final norm"},
      {"attn", "self-attention"},
      {"cross", "cross-attention"},
      {"qkv", "q | k | v projection (rows q, then k, then v)"},
      {"q", "query projection"},
      {"kv", "key | value projection (rows k, then v)"},
      {"mlp", "MLP"},
      {"fc", "input projection"},
      {"gate", "SwiGLU gate projection"},
      {"up", "SwiGLU up projection"},
      {"ada", "adaLN-Zero modulation (shift, scale, gate of attention and MLP)"},
      {"lora_A", "LoRA down-projection A"},
      {"lora_B", "LoRA up-projection B"},
      {"patch_embed", "patch embedding"},
      {"pos", "position embedding"},
      {"cls", "class token"},
      {"proj", "projection"},
      {"visual", "image tower"},
      {"text", "text tower"},
      {"visual_proj", "image feature projection"},
      {"text_proj", "text feature projection"},
      {"logit_scale", "contrastive logit scale (log)"},
      {"logit_bias", "SigLIP logit bias"},
      {"t_embed", "timestep embedding"},
      {"encoder", "encoder"},
      {"decoder", "decoder"},
  };
  return phrases;
}

bool all_digits(const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; }

// A key's value with its type: the Config knows it, and says so by refusing
// the other getters.
json typed_value(const train::Config& c, const std::string& key) {
  try {
    return c.get_int(key);
  } catch (const Error&) {
  }
  try {
    return c.get_double(key);
  } catch (const Error&) {
  }
  try {
    return c.get_bool(key);
  } catch (const Error&) {
  }
  return c.get_string(key);
}

// Every key of the config ("section.name" -> value), read off to_ini().
json config_keys(const train::Config& c) {
  json out = json::object();
  std::istringstream in(c.to_ini());
  std::string line, section;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.front() == '[') {
      section = line.substr(1, line.find(']') - 1);
      continue;
    }
    const std::string key = section + "." + line.substr(0, line.find(" = "));
    out[key] = typed_value(c, key);
  }
  return out;
}

std::string safetensors_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
    case DType::b8: return "BOOL";
  }
  return "?";
}

void write_json(const std::string& path, const json& j, const char* op) {
  const std::string text = j.dump(2) + "\n";
  io::AtomicFile f(path, op);
  f.write(text.data(), text.size());
  f.commit();
}

// The shortest text that reads back as v (0.1, not 0.10000000000000001).
std::string exact(double v) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

}  // namespace

std::string describe_parameter(const std::string& name) {
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t dot = name.find('.', start);
    parts.push_back(name.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  const auto& phrases = component_phrases();
  std::string out, parent;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    const bool last = i + 1 == parts.size();
    std::string phrase;
    if (last && p == "weight") {
      const bool embedding = parent == "wte" || parent == "wpe" || parent == "token_embedding";
      const bool norm = parent.rfind("norm", 0) == 0;
      phrase = embedding ? "weight [rows, dim]" : norm ? "scale" : "weight [out, in]";
    } else if (last && p == "bias") {
      phrase = "bias";
    } else if (p == "proj" && (parent == "attn" || parent == "cross" || parent == "mlp")) {
      phrase = "output projection";
    } else if (p != "transformer" && p != "core") {  // the shared core holds every block: no word of its own
      auto it = phrases.find(p);
      phrase = it == phrases.end() ? p : it->second;
      if (i + 1 < parts.size() && all_digits(parts[i + 1]))  // a module list: "blocks.3" -> "block 3"
        phrase = (p == "blocks" ? std::string("block") : phrase) + " " + parts[++i];
    }
    if (!phrase.empty()) out += (out.empty() ? "" : ", ") + phrase;
    parent = p;
  }
  return out;
}

ExportResult export_run(const std::string& run_dir, const std::string& out_dir, const std::string& format) {
  if (format != "libfm" && format != "hf") error("export: --format must be libfm or hf, got '", format, "'");
  const train::Config config = train::load_run_config(run_dir);
  const std::string kind = config.get_string("task.kind");
  std::unique_ptr<train::Task> task = train::find_task(kind).make(config);
  train::RunContext ctx;
  ctx.config = &config;
  ctx.open_data = false;  // the model only
  task->build(ctx);
  nn::Module& model = task->model();
  ExportResult r;
  r.step = train::load_run_weights(run_dir, model);
  r.ema = config.get_double("train.ema_decay") > 0;

  if (format == "hf") {
    const auto* gpt = dynamic_cast<const nn::GPT*>(&model);
    if (kind != "lm" || !gpt) error("export: --format hf writes GPT-2 (lm runs); ", run_dir, " is a '", kind, "' run");
    std::optional<text::BpeTokenizer> tok;
    if (const std::string path = config.get_string("data.tokenizer"); !path.empty())
      tok = text::BpeTokenizer::load(path);
    save_hf_gpt2(*gpt, out_dir, tok ? &*tok : nullptr);
    r.tensors = int64_t(to_hf_gpt2_tensors(*gpt).size());
    r.tokenizer = tok.has_value();
    return r;
  }

  const nn::StateDict sd = model.state_dict();
  fs::create_directories(out_dir);
  io::save_safetensors((fs::path(out_dir) / "model.safetensors").string(), io::TensorMap(sd.begin(), sd.end()),
                       {{"format", "pt"}, {"libfm.kind", kind}, {"libfm.step", std::to_string(r.step)}});
  json tensors = json::array();
  auto add = [&](const nn::NamedTensor& t, bool parameter) {
    tensors.push_back({{"name", t.name},
                       {"kind", parameter ? "parameter" : "buffer"},
                       {"dtype", safetensors_dtype(t.tensor.dtype())},
                       {"shape", t.tensor.shape().vec()},
                       {"description", describe_parameter(t.name)}});
  };
  for (const auto& p : model.named_parameters()) add(p, true);
  for (const auto& b : model.named_buffers()) add(b, false);
  const json doc = {{"format", "libfm"},
                    {"kind", kind},
                    {"step", r.step},
                    {"weights", r.ema ? "ema" : "model"},
                    {"parameters", model.num_parameters()},
                    {"config", config_keys(config)},
                    {"tensors", tensors}};
  write_json((fs::path(out_dir) / "config.json").string(), doc, "export");
  r.tensors = int64_t(sd.size());
  return r;
}

void import_hf_gpt2_run(const std::string& hf_dir, const std::string& run_dir) {
  if (fs::exists(fs::path(run_dir) / "config.ini"))
    error("import: ", run_dir, " already holds a run (config.ini); choose another --out");
  const std::unique_ptr<nn::GPT> model = load_hf_gpt2(hf_dir);
  const nn::GPTOptions& o = model->options;
  if (!o.tie_embeddings)
    error("import: ", (fs::path(hf_dir) / "config.json").string(),
          ": key 'tie_word_embeddings' is false, and libfm's lm runs tie the head to the embedding");
  const std::optional<text::BpeTokenizer> tok = load_hf_gpt2_tokenizer(hf_dir);
  if (tok && tok->vocab_size() > o.vocab_size)
    error("import: ", hf_dir, ": the tokenizer has ", tok->vocab_size(), " tokens, the model's vocab_size is only ",
          o.vocab_size);

  train::Config c = train::recipe_config("lm");
  const std::string origin = "import from " + hf_dir;
  c.set("model.vocab_size", std::to_string(o.vocab_size), origin);
  c.set("model.block_size", std::to_string(o.block_size), origin);
  c.set("model.n_layer", std::to_string(o.n_layer), origin);
  c.set("model.n_head", std::to_string(o.n_head), origin);
  c.set("model.d_model", std::to_string(o.d_model), origin);
  c.set("model.dropout", exact(o.dropout), origin);
  c.set("model.activation", o.activation, origin);
  c.set("model.norm_eps", exact(o.norm_eps), origin);
  c.set("run.dir", run_dir, origin);
  fs::create_directories(run_dir);
  if (tok) {
    const std::string path = fs::absolute(fs::path(run_dir) / "tokenizer.tok").lexically_normal().string();
    tok->save(path);
    c.set("data.tokenizer", path, origin);
  }
  const std::string ini = c.to_ini();
  io::TrainState state;
  state.config = ini;
  io::save_checkpoint((fs::path(run_dir) / "checkpoints").string(), *model, state);
  io::AtomicFile f((fs::path(run_dir) / "config.ini").string(), "import");  // last: the run exists once complete
  f.write(ini.data(), ini.size());
  f.commit();
}

}  // namespace fm::tasks
