#pragma once
// Captioning models on the shared core: an image in, a caption's next-token
// logits out. Two layouts (DESIGN.md):
//   cross   a ViT encoder (patch embedding, bidirectional Transformer) and a
//           causal text decoder whose blocks cross-attend to the encoder's
//           tokens (as BLIP, GIT's decoder, CoCa's multimodal layers);
//   single  one Transformer over [image patches][caption], bidirectional
//           inside the image segment and causal over the caption (the prefix
//           mask of PaLI / Transfusion), next-token loss on the caption only.
// CoCa (cross layout): the decoder's first `unimodal_layers` blocks read text
// alone; their output at the last caption token, projected, is the caption's
// embedding for a CLIP loss against the pooled image tokens.
//
// Parameter names of the image tower (patch_embed.*, visual.*) are CLIP's, so
// a CLIP run's image tower loads into it.
#include <memory>
#include <string>
#include <vector>

#include "fm/audio/spectrogram_embedding.h"
#include "fm/image/patch_embedding.h"
#include "fm/nn/transformer.h"

namespace fm::tasks {

struct CaptionOptions {
  std::string layout = "cross";  // "cross" or "single"
  std::string modality = "image";  // "image" (ViT patches) or "audio" (AST patches of a log-mel)
  // image tower
  int64_t image_size = 32, patch_size = 4, channels = 3;
  // audio (modality = audio): waveforms of clip_samples samples at sample_rate
  // become log-mel features (hop, n_fft, n_mels; the frames cut to a multiple
  // of patch_time) cut into patch_freq x patch_time patches
  int64_t sample_rate = 16000, clip_samples = 64000;
  int64_t n_fft = 512, hop = 256, n_mels = 64, patch_freq = 16, patch_time = 16;
  int64_t vision_width = 128, vision_layers = 4, vision_heads = 4;
  bool cls_token = false;  // a class token before the patches (CLIP towers with pool = cls have one)
  bool freeze_image_tower = false;  // cross layout: the image tower runs without gradient (a CLIP run's, kept as is)
  // text decoder (single layout: the one Transformer has text_layers blocks of text_width = vision_width)
  int64_t vocab_size = 0, context_length = 32;
  int64_t text_width = 128, text_layers = 4, text_heads = 4;
  // CoCa (cross layout): the first unimodal_layers decoder blocks have no cross-attention
  bool coca = false;
  int64_t unimodal_layers = 0;
  int64_t embed_dim = 128;  // CoCa's joint embedding
};

// What a training step reads: the caption logits and, for CoCa, both embeddings.
struct CaptionForward {
  Tensor logits;               // [B, T, vocab]
  Tensor image_emb, text_emb;  // [B, embed_dim], L2-normalised (CoCa only)
};

class CaptionModel : public nn::Module {
 public:
  explicit CaptionModel(const CaptionOptions& o, Generator* init_gen = nullptr);

  // images [B, C, H, W] (or waveforms [B, 1, T] for audio), decoder input ids [B, T] (a start token, then the
  // caption); last [B]: each row's last caption position in ids (CoCa only).
  CaptionForward forward(const Tensor& images, const Tensor& ids, const Tensor& last = Tensor()) const;

  // For decoding. encode_image: images -> what logits() reads (cross: the
  // encoder's tokens [B, N, vision_width]; single: the image segment's
  // embeddings). logits: ids [B, T] -> [B, T, vocab]; with caches, ids
  // continue the cached positions, the first call (empty caches) takes in the
  // image (cross: its keys and values, once; single: the image segment) and
  // later calls may pass an undefined image.
  Tensor encode_image(const Tensor& images) const;
  Tensor logits(const Tensor& image, const Tensor& ids, std::vector<nn::KVCache>* caches = nullptr) const;
  int64_t image_tokens() const;

  CaptionOptions options;
  std::shared_ptr<image::PatchEmbedding> patch_embed;     // modality image
  std::shared_ptr<audio::SpectrogramEmbedding> spec_embed;  // modality audio (its input is a waveform [B, 1, T])
  audio::ClipFeatures features;                            // modality audio
  std::shared_ptr<nn::Transformer> visual;         // cross: the image encoder
  std::shared_ptr<nn::Transformer> core;           // single: the one Transformer
  std::shared_ptr<nn::Embedding> token_embedding;  // also the output head (tied)
  std::shared_ptr<nn::Embedding> positional_embedding;
  std::shared_ptr<nn::Transformer> unimodal;           // CoCa: text-only blocks
  std::shared_ptr<nn::Transformer> decoder;            // cross: causal blocks with cross-attention
  std::shared_ptr<nn::Linear> visual_proj, text_proj;  // CoCa
  Tensor logit_scale;                                  // CoCa: 0-dim, log of the scale

 private:
  Tensor embed_text(const Tensor& ids, int64_t start) const;
  Tensor head(const Tensor& h) const;
};

// The single layout's attention mask over [N image tokens][T caption tokens]:
// [N + T, N + T] bool, true where a query may attend a key (every image key;
// caption keys up to the query's own position).
Tensor prefix_causal_mask(int64_t n_image, int64_t n_text, Device device = Device());

}  // namespace fm::tasks
