#pragma once
// A MusicGen-style text-to-music model (Copet et al. 2023) on the shared
// core: a causal Transformer over the K parallel token streams of a neural
// codec, laid out by the delay pattern, cross-attending to the tokens of a
// caption encoder (a bidirectional Transformer trained jointly).
//
// Delay pattern (audiocraft's DelayedPatternProvider with delays 0..K-1):
// codebook k of frame f sits at step f + k, so step s holds codebook 0 of
// frame s, codebook 1 of frame s - 1, ...; the K - 1 steps a stream has no
// frame for hold the special token `codebook_size`. A model step reads the
// previous step (all K tokens' embeddings summed; step 0 reads the special
// token) and predicts the current one with K heads, so codebook k of a frame
// is predicted after codebooks < k of the same frame are known.
#include <cstdint>
#include <memory>
#include <vector>

#include "fm/nn/layers.h"
#include "fm/nn/transformer.h"
#include "fm/random.h"

namespace fm::tasks {

// codes [B, K, F] -> [B, K, F + K - 1] with `special` where a stream has no frame.
Tensor apply_delay_pattern(const Tensor& codes, int64_t special);
// The inverse: [B, K, S] -> [B, K, S - K + 1] (frame f of codebook k from step f + k).
Tensor revert_delay_pattern(const Tensor& steps);
// [K, S] bool: true where step s of codebook k holds a frame (k <= s < F + k, S = F + K - 1).
Tensor delay_valid_mask(int64_t n_codebooks, int64_t frames, Device device = Device::cpu());

struct MusicOptions {
  int64_t n_codebooks = 4, codebook_size = 1024;
  int64_t max_steps = 256;  // learned positions: frames + K - 1 at most
  int64_t width = 256, layers = 6, heads = 8;
  // the caption encoder
  int64_t vocab_size = 0, text_context = 32;
  int64_t text_width = 256, text_layers = 2, text_heads = 4;
};

class MusicModel : public nn::Module {
 public:
  explicit MusicModel(const MusicOptions& o, Generator* init_gen = nullptr);

  // Caption ids [B, L] (padding after the end-of-text) and their mask [B, L]
  // (bool, true = a real token) -> [B, L, text_width].
  Tensor encode_text(const Tensor& ids, const Tensor& mask) const;
  // Inputs [B, K, T] (steps `start`..start+T-1 of the delayed streams,
  // shifted: position t holds step start + t - 1, the special token at step
  // -1) -> logits [B, K, T, codebook_size]. caches: one per layer for
  // incremental decoding (filled on the first call), or null.
  Tensor logits(const Tensor& inputs, const Tensor& text, const Tensor& text_mask,
                std::vector<nn::KVCache>* caches = nullptr) const;
  // Next-token cross-entropy of codes [B, K, F] given the caption, over the
  // steps where a codebook holds a frame.
  Tensor loss(const Tensor& codes, const Tensor& text, const Tensor& text_mask) const;

  MusicOptions options;
  std::shared_ptr<nn::ModuleList<nn::Embedding>> code_embeddings;  // K x [codebook_size + 1, width]
  std::shared_ptr<nn::Embedding> positional_embedding;            // [max_steps, width]
  std::shared_ptr<nn::Transformer> decoder;                       // causal, cross-attending
  std::shared_ptr<nn::ModuleList<nn::Linear>> heads;              // K x [codebook_size, width]
  std::shared_ptr<nn::Embedding> token_embedding, text_positions; // the caption encoder's
  std::shared_ptr<nn::Transformer> text_encoder;
};

struct MusicSampling {
  int64_t frames = 200;
  double guidance = 3.0;  // classifier-free guidance scale (1: conditional only, no unconditional pass)
  double temperature = 1.0;
  int64_t top_k = 250;    // MusicGen's default
  double top_p = 0.0;     // > 0: nucleus sampling instead of top-k
};

// Codes [B, K, frames] for captions (ids, mask as encode_text), with
// classifier-free guidance against the unconditional captions (uncond_ids,
// uncond_mask: the empty caption, [B, L']) when guidance != 1.
Tensor generate_codes(const MusicModel& model, const Tensor& ids, const Tensor& mask, const Tensor& uncond_ids,
                      const Tensor& uncond_mask, const MusicSampling& s, Generator& gen);

}  // namespace fm::tasks
