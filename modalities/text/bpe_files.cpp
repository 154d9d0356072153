// BpeTokenizer's file formats: tiktoken rank files, GPT-2's encoder.json +
// vocab.bpe, and libfm's own (tiktoken's plus special token lines).
#include <charconv>
#include <nlohmann/json.hpp>

#include "base64.h"
#include "bpe_impl.h"
#include "fm/error.h"
#include "fm/io/atomic_file.h"
#include "read_file.h"

namespace fm::text {
namespace {

constexpr std::string_view kMagic = "libfm-bpe 1";

// Calls on_line(line, line_number) for each non-blank line (tiktoken skips
// blank lines too).
template <class OnLine>
void for_each_line(std::string_view text, OnLine&& on_line) {
  size_t number = 0;
  while (!text.empty()) {
    const size_t end = std::min(text.find('\n'), text.size());
    ++number;
    if (end > 0) on_line(text.substr(0, end), number);
    text.remove_prefix(std::min(end + 1, text.size()));
  }
}

struct Where {  // "op: path:line: " for error messages
  const char* op;
  const std::string& path;
  size_t line;
};
std::ostream& operator<<(std::ostream& os, const Where& w) { return os << w.op << ": " << w.path << ":" << w.line << ": "; }

// Far above any BPE vocabulary; bounds what a malformed file can allocate.
constexpr int64_t kMaxId = (1 << 24) - 1;

// Ids are about dense (ranks 0..n-1, special tokens just after): a lone huge
// id would otherwise size the tables for 2^24 tokens (over 500 MB).
void check_dense(int64_t max_id, int64_t count, const std::string& source) {
  if (max_id >= 2 * count + 1024)
    error(source, ": id ", max_id, " is far past the ", count, " tokens the file holds (ids must be about dense)");
}

int32_t parse_id(std::string_view text, const Where& where) {
  int64_t id = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size() || id < 0 || id > kMaxId)
    error(where, "'", text, "' is not a token id (0 to ", kMaxId, ")");
  return static_cast<int32_t>(id);
}

std::string parse_base64(std::string_view text, const Where& where) {
  auto bytes = base64_decode(text);
  if (!bytes || bytes->empty()) error(where, "'", text, "' is not base64 of a non-empty token");
  return std::move(*bytes);
}

// The tokens of a rank file, ordinary and special, with their lines.
class Records {
 public:
  void add(std::string bytes, int32_t id, bool special, const Where& where) {
    const auto [it, inserted] = line_of_id_.emplace(id, where.line);
    if (!inserted) error(where, "id ", id, " appears twice (also on line ", it->second, ")");
    max_id_ = std::max(max_id_, id);
    if (special) {
      if (!special_.emplace(std::move(bytes), id).second) error(where, "special token appears twice");
    } else {
      ordinary_.emplace_back(id, std::move(bytes));
    }
  }
  // "<base64 bytes> <id>", tiktoken's line.
  void add_rank_line(std::string_view line, const Where& where) {
    const size_t space = line.find(' ');
    if (space == std::string_view::npos) error(where, "expected '<base64 token> <id>', got '", line, "'");
    add(parse_base64(line.substr(0, space), where), parse_id(line.substr(space + 1), where), false, where);
  }
  // The ordinary tokens by id (empty where none), once the ids are known dense.
  std::vector<std::string> tokens_by_id(const std::string& source) {
    check_dense(max_id_, int64_t(line_of_id_.size()), source);
    size_t size = 0;
    for (const auto& [id, bytes] : ordinary_) size = std::max(size, static_cast<size_t>(id) + 1);
    std::vector<std::string> out(size);
    for (auto& [id, bytes] : ordinary_) out[static_cast<size_t>(id)] = std::move(bytes);
    return out;
  }
  BpeTokenizer::SpecialTokens& special() { return special_; }

 private:
  std::map<int32_t, size_t> line_of_id_;
  std::vector<std::pair<int32_t, std::string>> ordinary_;
  int32_t max_id_ = -1;
  BpeTokenizer::SpecialTokens special_;
};

// GPT-2's byte-to-unicode alphabet: printable Latin-1 bytes stand for
// themselves, the other 68 bytes for U+0100 onwards, in byte order.
std::vector<int> gpt2_code_point_to_byte() {
  std::vector<int> byte_of(324, -1);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    byte_of[static_cast<size_t>(printable ? b : 256 + extra++)] = b;
  }
  return byte_of;
}

// A GPT-2 token spelt in that alphabet -> its bytes; nullopt if not so spelt.
std::optional<std::string> gpt2_token_bytes(std::string_view spelt, const std::vector<int>& byte_of) {
  std::string bytes;
  for (size_t i = 0; i < spelt.size();) {
    // The alphabet is U+0021..U+0143: one or two UTF-8 bytes per character.
    const auto c0 = static_cast<unsigned char>(spelt[i]);
    int cp = -1;
    if (c0 < 0x80) {
      cp = c0, i += 1;
    } else if ((c0 & 0xE0) == 0xC0 && i + 1 < spelt.size()) {
      cp = (c0 & 0x1F) << 6 | (static_cast<unsigned char>(spelt[i + 1]) & 0x3F), i += 2;
    } else {
      return std::nullopt;
    }
    if (cp >= static_cast<int>(byte_of.size()) || byte_of[static_cast<size_t>(cp)] < 0) return std::nullopt;
    bytes += static_cast<char>(byte_of[static_cast<size_t>(cp)]);
  }
  return bytes;
}

}  // namespace

BpeTokenizer BpeTokenizer::from_tiktoken(const std::string& path, const SpecialTokens& special) {
  constexpr const char* op = "from_tiktoken";
  Records records;
  for_each_line(read_file(path, op), [&](std::string_view line, size_t number) {
    records.add_rank_line(line, Where{op, path, number});
  });
  const std::string source = std::string(op) + ": " + path;
  return BpeTokenizer(records.tokens_by_id(source), special, source);
}

BpeTokenizer BpeTokenizer::from_gpt2_files(const std::string& encoder_json, const std::string& vocab_bpe) {
  constexpr const char* op = "from_gpt2_files";
  nlohmann::json encoder;
  try {
    encoder = nlohmann::json::parse(read_file(encoder_json, op));
  } catch (const nlohmann::json::exception& e) {
    error(op, ": ", encoder_json, ": not valid JSON: ", e.what());
  }
  if (!encoder.is_object()) error(op, ": ", encoder_json, ": expected an object of token -> id");
  const std::vector<int> byte_of = gpt2_code_point_to_byte();
  std::map<std::string, int32_t> id_of;  // token bytes -> id, of the tokens spelt in GPT-2's alphabet
  SpecialTokens special;                 // the others, and those that no merge makes
  int32_t size = 0;
  for (const auto& [spelt, value] : encoder.items()) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > kMaxId)
      error(op, ": ", encoder_json, ": token '", spelt, "' has id ", value.dump(), " (ids are 0 to ", kMaxId, ")");
    const auto id = value.get<int32_t>();
    size = std::max(size, id + 1);
    if (auto bytes = gpt2_token_bytes(spelt, byte_of)) {
      id_of.emplace(std::move(*bytes), id);
    } else {
      special.emplace(spelt, id);
    }
  }

  check_dense(int64_t(size) - 1, int64_t(encoder.size()), std::string(op) + ": " + encoder_json);
  std::vector<std::string> tokens_by_id(static_cast<size_t>(size));
  auto take = [&](std::map<std::string, int32_t>::iterator it) {  // moves a token from id_of to tokens_by_id
    if (!tokens_by_id[static_cast<size_t>(it->second)].empty())
      error(op, ": ", encoder_json, ": id ", it->second, " is used twice");
    tokens_by_id[static_cast<size_t>(it->second)] = it->first;
    id_of.erase(it);
  };
  for (int b = 0; b < 256; ++b) {
    const auto it = id_of.find(std::string(1, static_cast<char>(b)));
    if (it == id_of.end()) error(op, ": ", encoder_json, ": no token for the byte ", b);
    take(it);
  }
  int32_t n_merges = 0;
  for_each_line(read_file(vocab_bpe, op), [&](std::string_view line, size_t number) {
    const Where where{op, vocab_bpe, number};
    if (number == 1 && line.starts_with("#version")) return;
    const size_t space = line.find(' ');
    const auto a = gpt2_token_bytes(line.substr(0, std::min(space, line.size())), byte_of);
    const auto b = space == std::string_view::npos ? std::nullopt : gpt2_token_bytes(line.substr(space + 1), byte_of);
    if (!a || !b || a->empty() || b->empty()) error(where, "expected two tokens in GPT-2's alphabet, got '", line, "'");
    const auto it = id_of.find(*a + *b);
    const int32_t expected = 256 + n_merges++;
    if (it == id_of.end() || it->second != expected)
      error(where, "merge '", line, "' must give token ", expected, " of ", encoder_json,
            it == id_of.end() ? std::string(", which lacks it") : ", which gives it id " + std::to_string(it->second));
    take(it);
  });
  for (const auto& [bytes, id] : id_of) special.emplace(bytes, id);
  return BpeTokenizer(std::move(tokens_by_id), std::move(special), std::string(op) + ": " + encoder_json);
}

BpeTokenizer BpeTokenizer::load(const std::string& path) {
  constexpr const char* op = "BpeTokenizer::load";
  const std::string text = read_file(path, op);
  if (std::string_view(text).substr(0, text.find('\n')) != kMagic)
    error(op, ": ", path, ":1: expected '", kMagic, "' (a libfm BPE file)");
  Records records;
  for_each_line(text, [&](std::string_view line, size_t number) {
    const Where where{op, path, number};
    if (number == 1) return;  // kMagic
    if (line.starts_with("special ")) {
      line.remove_prefix(8);
      const size_t space = line.find(' ');
      if (space == std::string_view::npos) error(where, "expected 'special <id> <base64 token>'");
      records.add(parse_base64(line.substr(space + 1), where), parse_id(line.substr(0, space), where), true, where);
    } else {
      records.add_rank_line(line, where);
    }
  });
  const std::string source = std::string(op) + ": " + path;
  return BpeTokenizer(records.tokens_by_id(source), std::move(records.special()), source);
}

void BpeTokenizer::save(const std::string& path) const {
  std::string out = std::string(kMagic) + "\n";
  std::map<int32_t, const std::string*> special_by_id;
  for (const auto& [text, id] : impl_->special) special_by_id.emplace(id, &text);
  for (const auto& [id, text] : special_by_id) out += "special " + std::to_string(id) + " " + base64_encode(*text) + "\n";
  const TokenTable& table = impl_->table;
  for (int32_t id = 0; id < table.size(); ++id)
    if (table.has(id)) out += base64_encode(table.bytes(id)) + " " + std::to_string(id) + "\n";
  io::AtomicFile file(path, "BpeTokenizer::save");
  file.write(out.data(), out.size());
  file.commit();
}

}  // namespace fm::text
