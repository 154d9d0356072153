#include "fm/text/bpe.h"

#include <algorithm>
#include <set>

#include "bpe_impl.h"
#include "fm/error.h"
#include "special_split.h"

namespace fm::text {

BpeTokenizer::BpeTokenizer(std::vector<std::string> tokens_by_id, SpecialTokens special, const std::string& source) {
  auto impl = std::make_shared<Impl>();
  impl->table = TokenTable(tokens_by_id, source);
  impl->special = std::move(special);
  int32_t size = impl->table.size();
  std::set<int32_t> special_ids;
  for (const auto& [s, id] : impl->special) {
    if (s.empty()) error(source, ": a special token is empty");
    if (id < 0 || impl->table.has(id) || !special_ids.insert(id).second)
      error(source, ": special token ", s, " has id ", id, ", which is negative or already taken");
    size = std::max(size, id + 1);
  }
  impl->bytes_by_id.resize(static_cast<size_t>(size));
  for (int32_t id = 0; id < impl->table.size(); ++id) impl->bytes_by_id[static_cast<size_t>(id)] = impl->table.bytes(id);
  for (const auto& [s, id] : impl->special) impl->bytes_by_id[static_cast<size_t>(id)] = s;
  impl_ = std::move(impl);
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3);
  PieceCache cache(text.size());
  if (!allow_special || impl_->special.empty()) {
    impl_->encode_ordinary(text, cache, out);
    return out;
  }
  std::vector<std::string_view> texts;
  std::vector<int32_t> ids;
  for (const auto& [s, id] : impl_->special) texts.push_back(s), ids.push_back(id);
  split_at_specials(
      text, texts, [&](std::string_view part) { impl_->encode_ordinary(part, cache, out); },
      [&](size_t k) { out.push_back(ids[k]); });
  return out;
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids) const {
  const auto& bytes = impl_->bytes_by_id;
  size_t total = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size() || bytes[static_cast<size_t>(id)].empty())
      error("BpeTokenizer::decode: token id ", id, " at position ", i, " is not in the vocabulary (size ",
            vocab_size(), ")");
    total += bytes[static_cast<size_t>(id)].size();
  }
  std::string out;
  out.reserve(total);
  for (const int32_t id : ids) out += bytes[static_cast<size_t>(id)];
  return out;
}

int32_t BpeTokenizer::vocab_size() const { return static_cast<int32_t>(impl_->bytes_by_id.size()); }

std::string_view BpeTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size() || impl_->bytes_by_id[static_cast<size_t>(id)].empty())
    error("BpeTokenizer::token_bytes: token id ", id, " is not in the vocabulary (size ", vocab_size(), ")");
  return impl_->bytes_by_id[static_cast<size_t>(id)];
}

const BpeTokenizer::SpecialTokens& BpeTokenizer::special_tokens() const { return impl_->special; }

}  // namespace fm::text
