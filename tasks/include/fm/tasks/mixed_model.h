#pragma once
// One transformer for every modality (Transfusion, Zhou et al. 2024, with
// MusicGen's codec streams as a third kind of segment): a single shared core
// reads packed mixed-modal rows (fm/tasks/mixed_layout.h) and three small
// heads read its output:
//   text   tied to the token embedding (the tokenizer's vocabulary and four
//          markers after it: begin/end of image, begin/end of audio);
//   image  a Linear from each patch position to that patch's diffusion
//          prediction (zero-initialised, as DiT's final layer);
//   audio  K Linears, one per codebook (MusicGen's heads over delayed steps).
// Inputs: text ids through the token embedding; image patches (x_t,
// patchified (py, px, c)) through a Linear, plus fixed 2-D sin-cos patch
// positions and the embedding of the image's own timestep (each image its
// own noise level; 0 for a clean image given as a condition); an audio step
// as the sum of its K code embeddings. Every position then adds a learned
// embedding of its position inside its sample.
#include <cstdint>
#include <memory>
#include <vector>

#include "fm/nn/transformer.h"
#include "fm/objectives/diffusion.h"
#include "fm/random.h"
#include "fm/tasks/mixed_layout.h"

namespace fm::tasks {

struct MixedOptions {
  int64_t vocab_size = 0;  // the tokenizer's; the markers take ids vocab_size .. vocab_size + 3
  int64_t width = 256, layers = 6, heads = 4;
  int64_t max_positions = 256;  // positions inside one sample
  int64_t image_size = 32, patch_size = 4, channels = 3;
  int64_t n_codebooks = 0, codebook_size = 0;  // audio codec tokens (0 codebooks: no audio)
  int64_t frequency_dim = 256;                 // timestep sinusoids
};

enum class Marker : int64_t { begin_image = 0, end_image = 1, begin_audio = 2, end_audio = 3 };

class MixedModel : public nn::Module {
 public:
  explicit MixedModel(const MixedOptions& o, Generator* init_gen = nullptr);

  int64_t marker(Marker m) const { return options.vocab_size + int64_t(m); }
  int64_t text_vocab() const { return options.vocab_size + 4; }
  int64_t patches() const;          // positions per image
  int64_t audio_special() const { return options.codebook_size; }  // the delay pattern's filler

  // Input embeddings [B, T, width] of a packed batch whose images are x_t
  // [I, C, H, W] at network timesteps t [I] (undefined when I = 0).
  Tensor embed(const MixedBatch& b, const Tensor& x_t, const Tensor& t) const;
  // Pieces of embed, without the sequence positions:
  Tensor embed_image(const Tensor& x_t, const Tensor& t) const;  // [I, N, width]
  Tensor embed_audio(const Tensor& codes) const;                 // [A, K] -> [A, width]
  Tensor embed_positions(const Tensor& positions) const;         // i64 any shape -> [..., width]

  // The core over x [B, T, width]; query t sees keys [lo, hi) ([B, T] i32,
  // columns counted from the first cached position). caches: one per layer.
  Tensor run(const Tensor& x, const Tensor& key_lo, const Tensor& key_hi,
             std::vector<nn::KVCache>* caches = nullptr) const;

  // Heads on rows [n, width] of the core's output.
  Tensor text_logits(const Tensor& h) const;   // [n, vocab_size + 4]
  Tensor image_output(const Tensor& h) const;  // n = I * N consecutive patch rows -> [I, C, H, W]
  Tensor audio_logits(const Tensor& h) const;  // [n, K, codebook_size]

  MixedOptions options;
  std::shared_ptr<nn::Embedding> token_embedding, positional_embedding;
  std::shared_ptr<nn::Linear> patch_proj, image_out;
  Tensor patch_pos;  // buffer [N, width], fixed
  std::shared_ptr<nn::TimestepEmbedding> t_embed;
  std::shared_ptr<nn::ModuleList<nn::Embedding>> code_embeddings;  // K x [codebook_size + 1, width]
  std::shared_ptr<nn::ModuleList<nn::Linear>> audio_heads;         // K x [codebook_size, width]
  std::shared_ptr<nn::Transformer> core;
};

// One batch's losses, each the mean over its own targets (undefined when
// the batch has none of that kind), and how many targets each had.
struct MixedLosses {
  Tensor text, image, audio;
  int64_t text_n = 0, image_n = 0, audio_n = 0;
};
// Noised images draw their times and noise from `gen` (or take `t` [I'] and
// `noise` [I', C, H, W] for the I' noised images when given: fixed
// validation draws). Clean images enter at t = 0 and take no loss.
MixedLosses mixed_losses(const MixedModel& model, const MixedBatch& b, const objectives::Diffusion& diffusion,
                         Generator& gen, const Tensor& t = Tensor(), const Tensor& noise = Tensor());

// Incremental generation from one model: prompts (sample prefixes, one per
// row, left-padded so that every row ends at the same column) run once into
// KV caches; then rows grow a text token or an audio step at a time, and an
// image segment is denoised as a block against the cached prefix (each call
// leaves the caches as they were). Runs under no_grad.
class MixedDecoder {
 public:
  explicit MixedDecoder(const MixedModel& model);
  // Hidden state [R, width] at each prompt's last position.
  Tensor start(const std::vector<MixedSample>& prompts);
  Tensor append_text(const std::vector<int64_t>& tokens);  // one per row
  Tensor append_audio(const Tensor& codes);                // [R, K] i64
  // The image head's output [R, C, H, W] for images x_t [R, C, H, W] at
  // network timesteps t [R] as each row's next segment.
  Tensor image(const Tensor& x_t, const Tensor& t) const;
  // Row r continues what row rows[r] held (beam search).
  void select(const std::vector<int64_t>& rows);
  int64_t rows() const { return int64_t(first_.size()); }

 private:
  Tensor append(const Tensor& x, int64_t n, bool block, std::vector<nn::KVCache>& caches) const;
  const MixedModel& model_;
  std::vector<nn::KVCache> caches_;
  std::vector<int64_t> first_;  // each row's first real column (left padding before it)
  int64_t columns_ = 0;
};

}  // namespace fm::tasks
