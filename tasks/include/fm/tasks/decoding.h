#pragma once
// Batched autoregressive decoding for any model that extends rows of token
// sequences one token at a time (captioners now; the same search serves any
// decoder): greedy, beam search (width, length penalty, no-repeat n-grams,
// early stopping, as transformers' generate) and top-k / top-p sampling.
#include <cstdint>
#include <vector>

#include "fm/random.h"
#include "fm/tensor.h"

namespace fm::tasks {

// What the search drives: `rows` sequences, each extended by one token per call.
class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // Appends tokens[r] to row r and returns every row's next-token logits
  // [rows, vocab] (f32, any device). The first call gets the start tokens.
  virtual Tensor next(const std::vector<int32_t>& tokens) = 0;
  // Row r continues what row rows[r] held (beam search's reordering).
  virtual void select(const std::vector<int64_t>& rows) = 0;
};

struct DecodeOptions {
  int64_t beam = 1;           // beams per sequence; 1: greedy (or sampling)
  int64_t max_tokens = 32;    // tokens generated at most, the stop token included
  double length_penalty = 1.0;  // beam scores: sum of log-probs / length^length_penalty
  int64_t no_repeat_ngram = 0;  // > 0: no n-gram of this size appears twice in a sequence
  bool early_stopping = true;   // beam: stop a sequence once `beam` hypotheses have ended
  bool sample = false;          // beam 1: draw tokens instead of taking the most likely
  double temperature = 1.0;
  int64_t top_k = 0;          // 0: all tokens
  double top_p = 1.0;         // nucleus
};

struct Decoded {
  std::vector<int32_t> tokens;  // without the stop token
  double score = 0;             // beam: the length-penalised score; else the sum of log-probs
  bool stopped = false;         // ended with the stop token (not at max_tokens)
};

// Decodes `batch` sequences from a source of batch * beam rows (row
// b * beam + j is beam j of sequence b, all starting alike). Sampling draws
// from gen (required when o.sample). Errors on beam < 1 or max_tokens < 1.
std::vector<Decoded> decode(TokenSource& source, int64_t batch, int32_t start_token, int32_t stop_token,
                            const DecodeOptions& o, Generator* gen = nullptr);

}  // namespace fm::tasks
