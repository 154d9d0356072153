#pragma once
// BpeTokenizer's state, shared by its source files.
#include "bpe_merge.h"
#include "fm/text/bpe.h"
#include "piece_cache.h"
#include "pretokenizer.h"
#include "token_table.h"

namespace fm::text {

struct BpeTokenizer::Impl {
  TokenTable table;  // ordinary tokens
  SpecialTokens special;
  std::vector<std::string_view> bytes_by_id;  // every id, special ones included; empty for gaps
  Pretokenizer pretokenizer;

  void encode_ordinary(std::string_view text, PieceCache& cache, std::vector<int32_t>& out) const {
    pretokenizer.split(text, [&](std::string_view piece) {
      const uint64_t hash = TokenTable::hash(piece);
      const int32_t whole = table.find(piece, hash);  // most pieces are one token
      if (whole != TokenTable::kNone) {
        out.push_back(whole);
      } else if (const auto ids = cache.find(piece, hash); !ids.empty()) {
        out.insert(out.end(), ids.begin(), ids.end());
      } else {
        const size_t first = out.size();
        bpe_merge(piece, table, out);
        cache.insert(piece, hash, std::span<const int32_t>(out).subspan(first));
      }
    });
  }
};

}  // namespace fm::text
