#pragma once
// Byte pair merging of one pre-token, tiktoken's rule: repeatedly merge the
// adjacent pair whose concatenated bytes form the token of lowest id
// (leftmost on ties) until no adjacent pair forms a token.
#include <cstdint>
#include <string_view>
#include <vector>

#include "token_table.h"

namespace fm::text {

// Appends the ids of `piece` (non-empty) to `out`.
void bpe_merge(std::string_view piece, const TokenTable& table, std::vector<int32_t>& out);

}  // namespace fm::text
