#include <cmath>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/nn/init.h"
#include "fm/ops.h"
#include "fm/tasks/clip_model.h"
#include "fm/tasks/text2image.h"

namespace fm::tasks {

Tensor caption_mask(const Tensor& eot, int64_t length) {
  Tensor pos = arange(0.0, double(length), 1.0, TensorOptions(DType::i64).device(eot.device())).unsqueeze(0);
  return le(pos, eot.to(DType::i64).unsqueeze(1));
}

namespace {

// Row b's features at position eot[b]: [B, L, D] -> [B, D].
Tensor at_end_of_text(const Tensor& h, const Tensor& eot) {
  const int64_t B = h.size(0), L = h.size(1);
  Tensor rows = arange(0.0, double(B * L), double(L), TensorOptions(DType::i64).device(h.device())) + eot.to(DType::i64);
  return index_select(h.reshape({B * L, h.size(2)}), 0, rows);
}

Tensor positions(int64_t L, Device d) { return arange(0.0, double(L), 1.0, TensorOptions(DType::i64).device(d)); }

}  // namespace

CaptionEncoder::CaptionEncoder(const CaptionEncoderOptions& o, Generator* gen) : options(o) {
  if (o.vocab_size <= 0) error("CaptionEncoder: vocab_size must be positive, got ", o.vocab_size);
  token_embedding = register_module("token_embedding", std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.vocab_size, o.width}));
  positional_embedding =
      register_module("positional_embedding", std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.context_length, o.width}));
  nn::TransformerOptions to;
  to.block.d_model = o.width;
  to.block.n_head = o.heads;
  to.n_layer = o.layers;
  core = register_module("core", std::make_shared<nn::Transformer>(to));
  nn::init_gpt2(*core, gen);
  nn::init::normal_(token_embedding->weight, 0.0, 0.02, gen);
  nn::init::normal_(positional_embedding->weight, 0.0, 0.01, gen);
}

CaptionFeatures CaptionEncoder::forward(const Tensor& ids, const Tensor& eot) const {
  if (ids.dim() != 2 || eot.dim() != 1 || eot.size(0) != ids.size(0))
    error("CaptionEncoder: ids must be [B, L] and eot [B], got ", ids.shape(), " and ", eot.shape());
  const int64_t L = ids.size(1);
  if (L > options.context_length) error("CaptionEncoder: ", L, " tokens exceed context_length ", options.context_length);
  nn::BlockInputs in;
  in.causal = true;  // as CLIP's text tower: the end-of-text token has read the whole caption
  Tensor h = core->forward(token_embedding->forward(ids) + positional_embedding->forward(positions(L, ids.device())), in);
  return {h, at_end_of_text(h, eot), caption_mask(eot, L)};
}

CaptionFeatures clip_caption_features(const CLIP& clip, const Tensor& ids, const Tensor& eot) {
  const Tensor tokens = clip.text_tokens(ids);  // the tower runs once for both
  return {tokens, clip.pool_text(tokens, eot), caption_mask(eot, ids.size(1))};
}

TextToImage::TextToImage(const DiTOptions& d, const CaptionEncoderOptions* t, Generator* gen) {
  if (t) text = register_module("text", std::make_shared<CaptionEncoder>(*t, gen));
  dit = register_module("dit", std::make_shared<DiT>(d, gen));
}

Tensor TextToImage::denoise(const Tensor& x, const Tensor& t, const CaptionFeatures& c) const {
  const bool cross = dit->options.cross_attention;
  return dit->forward(x, t, dit->options.cond_dim > 0 ? c.pooled : Tensor(), cross ? c.tokens : Tensor(),
                      cross ? c.mask : Tensor());
}

Tensor generate(const TextToImage& model, const CaptionEncoderFn& encode, const Tensor& ids, const Tensor& eot,
                const Tensor& null_ids, const Tensor& null_eot, objectives::Sampler& sampler, const GenerateOptions& o,
                Generator& gen) {
  if (o.steps < 1) error("generate: steps must be at least 1, got ", o.steps);
  if (!(o.cfg >= 0)) error("generate: the guidance scale must be >= 0, got ", o.cfg);
  NoGradGuard ng;
  const int64_t N = ids.size(0);
  const auto& d = model.dit->options;
  const bool guided = o.cfg != 1.0;
  // Conditional rows first, then as many copies of the empty caption.
  Tensor all_ids = ids, all_eot = eot;
  if (guided) {
    all_ids = cat({ids, null_ids.expand({N, null_ids.size(1)})}, 0);
    all_eot = cat({eot, null_eot.expand({N})}, 0);
  }
  const CaptionFeatures c = encode(all_ids, all_eot);
  objectives::Denoiser denoiser = [&](const Tensor& x, const Tensor& t) {
    if (!guided) return model.denoise(x, t, c);
    Tensor out = model.denoise(cat({x, x}, 0), cat({t, t}, 0), c);
    Tensor cond = out.narrow(0, 0, N), uncond = out.narrow(0, N, N);
    return uncond + (cond - uncond) * o.cfg;
  };
  Tensor noise = randn({N, d.channels, d.image_size, d.image_size}, TensorOptions(DType::f32).device(ids.device()), &gen);
  return objectives::sample(sampler, denoiser, noise, o.steps, &gen);
}

}  // namespace fm::tasks
