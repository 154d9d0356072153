// GPT-2's tokenizer files (vocab.json, merges.txt) to and from libfm's
// byte-level BPE (fm/tasks/hf_gpt2.h).
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "fm/error.h"
#include "fm/io/atomic_file.h"
#include "fm/tasks/hf_gpt2.h"

namespace fm::tasks {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// GPT-2's byte-to-unicode alphabet, as UTF-8: printable Latin-1 bytes stand
// for themselves, the other 68 bytes for U+0100 onwards, in byte order.
std::vector<std::string> gpt2_alphabet() {
  std::vector<std::string> spelt(256);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const int cp = printable ? b : 256 + extra++;
    spelt[size_t(b)] = cp < 0x80 ? std::string(1, char(cp))
                                 : std::string{char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
  }
  return spelt;
}

std::string spell(std::string_view bytes, const std::vector<std::string>& alphabet) {
  std::string out;
  for (unsigned char b : bytes) out += alphabet[b];
  return out;
}

// The two earlier tokens whose merge makes `token` (of rank `rank`): BPE on
// the token's own bytes with the merges ranked below it, as the encoder runs
// it. Empty when that does not end in exactly two parts.
std::vector<std::string> merge_pair(const std::string& token, int32_t rank,
                                    const std::unordered_map<std::string, int32_t>& rank_of) {
  std::vector<std::string> parts;
  for (char c : token) parts.emplace_back(1, c);
  for (;;) {
    size_t best = parts.size();
    int32_t best_rank = rank;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto it = rank_of.find(parts[i] + parts[i + 1]);
      if (it != rank_of.end() && it->second < best_rank) best = i, best_rank = it->second;
    }
    if (best == parts.size()) break;
    parts[best] += parts[best + 1];
    parts.erase(parts.begin() + std::ptrdiff_t(best) + 1);
  }
  return parts.size() == 2 ? parts : std::vector<std::string>{};
}

void write_text(const std::string& path, const std::string& text, const char* op = "save_hf_gpt2_tokenizer") {
  io::AtomicFile f(path, op);
  f.write(text.data(), text.size());
  f.commit();
}

// A folder under the system temp dir, removed with this object.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("fm_hf_tokenizer_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// tokenizer.json (all that transformers 5 saves) when its model is GPT-2's:
// byte-level BPE without normalisation or a prefix space. Its vocabulary,
// added tokens and merges are written out as GPT-2's two files for
// from_gpt2_files, which reads files.
text::BpeTokenizer from_tokenizer_json(const std::string& path) {
  json j;
  try {
    std::ifstream in(path);
    j = json::parse(in);
  } catch (const json::exception& e) {
    error(path, ": not valid JSON: ", e.what());
  }
  const json& model = j.contains("model") ? j["model"] : json();
  if (!model.is_object() || model.value("type", "") != "BPE" || !model.contains("vocab") ||
      !model["vocab"].is_object() || !model.contains("merges") || !model["merges"].is_array())
    error(path, ": key 'model' is not a BPE model with a vocab and merges");
  const json& pre = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json();
  if (!pre.is_object() || pre.value("type", "") != "ByteLevel" || pre.value("add_prefix_space", false) ||
      !pre.value("use_regex", true))
    error(path, ": key 'pre_tokenizer' is not GPT-2's (ByteLevel, use_regex, no add_prefix_space): ", pre.dump());
  if (j.contains("normalizer") && !j["normalizer"].is_null())
    error(path, ": key 'normalizer' is set (", j["normalizer"].dump(), "); GPT-2's tokenizer has none");
  json vocab = model["vocab"];
  if (j.contains("added_tokens") && j["added_tokens"].is_array())
    for (const json& t : j["added_tokens"])
      if (t.contains("content") && t.contains("id")) vocab[t["content"].get<std::string>()] = t["id"];
  std::string merges = "#version: 0.2\n";
  for (const json& m : model["merges"]) {
    if (m.is_string()) merges += m.get<std::string>() + "\n";
    else if (m.is_array() && m.size() == 2) merges += m[0].get<std::string>() + " " + m[1].get<std::string>() + "\n";
    else error(path, ": key 'model.merges' holds ", m.dump(), ", not a pair of tokens");
  }
  const TempDir tmp;
  write_text((tmp.path / "vocab.json").string(), vocab.dump(), "load_hf_gpt2_tokenizer");
  write_text((tmp.path / "merges.txt").string(), merges, "load_hf_gpt2_tokenizer");
  try {
    return text::BpeTokenizer::from_gpt2_files((tmp.path / "vocab.json").string(), (tmp.path / "merges.txt").string());
  } catch (const Error& e) {
    error(path, ": its vocabulary and merges, as GPT-2's files: ", e.what());
  }
}

}  // namespace

std::optional<text::BpeTokenizer> load_hf_gpt2_tokenizer(const std::string& dir) {
  const std::string vocab = (fs::path(dir) / "vocab.json").string(), merges = (fs::path(dir) / "merges.txt").string();
  const bool has_vocab = fs::exists(vocab), has_merges = fs::exists(merges);
  if (!has_vocab && !has_merges) {
    const std::string tokenizer_json = (fs::path(dir) / "tokenizer.json").string();
    if (fs::exists(tokenizer_json)) return from_tokenizer_json(tokenizer_json);
    return std::nullopt;
  }
  if (!has_vocab || !has_merges)
    error(dir, ": has ", has_vocab ? vocab : merges, " but not ", has_vocab ? merges : vocab,
          " (GPT-2's tokenizer is the two files)");
  return text::BpeTokenizer::from_gpt2_files(vocab, merges);
}

void save_hf_gpt2_tokenizer(const text::BpeTokenizer& tok, const std::string& dir, int64_t model_max_length) {
  constexpr const char* op = "save_hf_gpt2_tokenizer";
  const std::vector<std::string> alphabet = gpt2_alphabet();
  std::map<int32_t, std::string> special_by_id;
  for (const auto& [text, id] : tok.special_tokens()) special_by_id.emplace(id, text);

  // Ordinary tokens: GPT-2's files need the 256 bytes first, then one token
  // per merge, then the special tokens (what from_gpt2_files reads back).
  std::unordered_map<std::string, int32_t> rank_of;
  int32_t n_ordinary = 0;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (special_by_id.count(id)) continue;
    const std::string_view bytes = tok.token_bytes(id);
    if (bytes.empty() || id != n_ordinary || (id < 256) != (bytes.size() == 1))
      error(op, ": token ", id, " breaks GPT-2's layout (the 256 bytes, then one token per merge, then the special "
            "tokens): ", bytes.empty() ? "no token has that id" : "ids are out of that order");
    rank_of.emplace(bytes, id);
    ++n_ordinary;
  }
  if (!special_by_id.empty() && special_by_id.begin()->first < n_ordinary)
    error(op, ": special token ", special_by_id.begin()->second, " (id ", special_by_id.begin()->first,
          ") comes before ordinary tokens; GPT-2's files number special tokens last");

  json vocab = json::object();
  std::string merges = "#version: 0.2\n";
  for (int32_t id = 0; id < n_ordinary; ++id) {
    const std::string bytes(tok.token_bytes(id));
    vocab[spell(bytes, alphabet)] = id;
    if (id < 256) continue;
    const std::vector<std::string> pair = merge_pair(bytes, id, rank_of);
    if (pair.empty())
      error(op, ": token ", id, " ('", spell(bytes, alphabet), "') is not one merge of two earlier tokens");
    merges += spell(pair[0], alphabet) + " " + spell(pair[1], alphabet) + "\n";
  }
  json added = json::object();
  for (const auto& [id, text] : special_by_id) {
    if (vocab.contains(text)) error(op, ": special token ", text, " is spelt as an ordinary token too");
    vocab[text] = id;
    added[std::to_string(id)] = {{"content", text}, {"lstrip", false}, {"rstrip", false},
                                 {"normalized", false}, {"single_word", false}, {"special", true}};
  }
  const bool has_eot = tok.special_tokens().count("<|endoftext|>") > 0;
  const json eot = has_eot ? json("<|endoftext|>") : json(nullptr);
  json config = {{"tokenizer_class", "GPT2Tokenizer"}, {"add_prefix_space", false}, {"bos_token", eot},
                 {"eos_token", eot}, {"unk_token", eot}, {"added_tokens_decoder", added}};
  if (model_max_length > 0) config["model_max_length"] = model_max_length;

  fs::create_directories(dir);
  try {
    write_text((fs::path(dir) / "vocab.json").string(), vocab.dump() + "\n");
    write_text((fs::path(dir) / "tokenizer_config.json").string(), config.dump(2) + "\n");
  } catch (const json::exception& e) {  // a special token that is not valid UTF-8
    error(op, ": ", dir, ": ", e.what());
  }
  write_text((fs::path(dir) / "merges.txt").string(), merges);
}

}  // namespace fm::tasks
