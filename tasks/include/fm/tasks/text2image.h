#pragma once
// Text-to-image diffusion (`[task] kind = diffusion`): a DiT denoiser
// conditioned on a caption encoder's features, and the pipeline that turns
// prompts into images with any sampler of fm/objectives/diffusion.h and
// classifier-free guidance (diffusers' pipeline, in C++).
//
// The caption encoder is trained with the DiT (CaptionEncoder: token and
// position embeddings and a causal Transformer, as CLIP's text tower), or is
// the frozen text tower of a CLIP run (model.text_encoder = RUN_DIR). Either
// gives token features for cross-attention and a pooled vector that joins
// the timestep embedding.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fm/nn/transformer.h"
#include "fm/objectives/diffusion.h"
#include "fm/tasks/dit_model.h"

namespace fm::tasks {

class CLIP;

// A caption batch as the denoiser reads it.
struct CaptionFeatures {
  Tensor tokens;  // [B, L, D] per-token features (cross-attention keys and values)
  Tensor pooled;  // [B, P] the end-of-text features
  Tensor mask;    // [B, L] bool: true up to and including end-of-text
};

struct CaptionEncoderOptions {
  int64_t vocab_size = 0, context_length = 32;
  int64_t width = 128, layers = 2, heads = 4;
};

class CaptionEncoder : public nn::Module {
 public:
  explicit CaptionEncoder(const CaptionEncoderOptions& o, Generator* init_gen = nullptr);
  // ids [B, L] integer, eot [B] integer (end-of-text positions).
  CaptionFeatures forward(const Tensor& ids, const Tensor& eot) const;
  CaptionEncoderOptions options;
  std::shared_ptr<nn::Embedding> token_embedding, positional_embedding;
  std::shared_ptr<nn::Transformer> core;
};

// The frozen text tower of a CLIP model as a caption encoder: its final
// features per token, and the projected, normalised text embedding pooled.
CaptionFeatures clip_caption_features(const CLIP& clip, const Tensor& ids, const Tensor& eot);

// [B] bool key mask up to each row's end-of-text: [B, L].
Tensor caption_mask(const Tensor& eot, int64_t length);

// The trained model: the DiT and, unless the captions come from a frozen
// CLIP run, its caption encoder (then `text` is null).
class TextToImage : public nn::Module {
 public:
  TextToImage(const DiTOptions& dit, const CaptionEncoderOptions* text, Generator* init_gen = nullptr);
  Tensor denoise(const Tensor& x, const Tensor& t, const CaptionFeatures& c) const;
  std::shared_ptr<DiT> dit;
  std::shared_ptr<CaptionEncoder> text;
};

using CaptionEncoderFn = std::function<CaptionFeatures(const Tensor& ids, const Tensor& eot)>;

struct GenerateOptions {
  std::string sampler;  // a name make_sampler knows
  int64_t steps = 50;
  double cfg = 4.0;     // guidance scale: 1 = conditional only, 0 = unconditional only
  uint64_t seed = 1;
};

// Generates one image per caption row from N(0, 1) noise drawn from `gen`:
// ids [N, L] / eot [N] the prompts, null_ids / null_eot [1, L] / [1] the
// empty caption of condition dropout. With cfg != 1 each model call runs the
// conditional and unconditional halves in one batch and mixes their outputs
// u + cfg (c - u). Returns [N, C, H, W] in the model's data range.
Tensor generate(const TextToImage& model, const CaptionEncoderFn& encode, const Tensor& ids, const Tensor& eot,
                const Tensor& null_ids, const Tensor& null_eot, objectives::Sampler& sampler,
                const GenerateOptions& o, Generator& gen);

}  // namespace fm::tasks
