#include "fm/dist/gather.h"
#include "fm/tasks/contrastive_model.h"

#include <cmath>

#include "fm/factory.h"
#include "fm/nn/init.h"
#include "fm/ops.h"

namespace fm::tasks {

Tensor l2_normalize(const Tensor& x, double eps) {
  return x / clamp_min(sqrt(sum(square(x), {-1}, true)), eps);
}

std::shared_ptr<nn::Transformer> ContrastiveModel::make_core(int64_t width, int64_t layers, int64_t heads) {
  nn::BlockOptions b;
  b.d_model = width;
  b.n_head = heads;
  return std::make_shared<nn::Transformer>(nn::TransformerOptions{b, layers});
}

void ContrastiveModel::add_text_tower(const std::string& model, const TextTowerOptions& o,
                                      std::shared_ptr<nn::Transformer> other) {
  name_ = model;
  if (o.vocab_size <= 0) error(name_, ": vocab_size must be > 0, got ", o.vocab_size);
  const nn::TransformerOptions& t = other->options;
  if (o.shared_core && (t.block.d_model != o.width || t.n_layer != o.layers || t.block.n_head != o.heads))
    error(name_, ": shared_core needs equal widths, layers and heads in both towers");
  text_options_ = o;
  token_embedding = register_module("token_embedding", std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.vocab_size, o.width}));
  positional_embedding = register_module(
      "positional_embedding", std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.context_length, o.width}));
  if (!o.shared_core) text = register_module("text", make_core(o.width, o.layers, o.heads));
  text_core_ = o.shared_core ? std::move(other) : text;
  text_proj = register_module("text_proj", std::make_shared<nn::Linear>(nn::LinearOptions{o.width, o.embed_dim, false}));
  // CLIP starts at ln(1/0.07); SigLIP at ln 10 with a bias of -10.
  const double scale = o.logit_bias ? objectives::kSiglipLogitScaleInit : objectives::kClipLogitScaleInit;
  logit_scale = register_parameter("logit_scale", full({}, scale), nn::kNoDecay);
  if (o.logit_bias) logit_bias = register_parameter("logit_bias", full({}, objectives::kSiglipLogitBiasInit), nn::kNoDecay);
}

void ContrastiveModel::init_towers(nn::Transformer& other, nn::Linear& other_proj, Generator* gen) {
  nn::init_gpt2(other, gen);
  if (text) nn::init_gpt2(*text, gen);
  nn::init::normal_(token_embedding->weight, 0.0, 0.02, gen);
  nn::init::normal_(positional_embedding->weight, 0.0, 0.01, gen);
  nn::init::normal_(other_proj.weight, 0.0, 1.0 / std::sqrt(double(other_proj.options.in_features)), gen);
  nn::init::normal_(text_proj->weight, 0.0, 1.0 / std::sqrt(double(text_options_.width)), gen);
}

void ContrastiveModel::check_pool(const std::string& model, const std::string& pool) {
  if (pool != "cls" && pool != "mean") error(model, ": pool must be 'cls' or 'mean', got '", pool, "'");
}

Tensor ContrastiveModel::pool_project(const Tensor& h, const std::string& pool, const nn::Linear& proj) {
  return l2_normalize(proj.forward(pool == "cls" ? h.select(1, 0) : mean(h, {1})));
}

Tensor ContrastiveModel::text_tokens(const Tensor& ids) const {
  if (ids.dim() != 2) error(name_, ".text_tokens: ids must be [B, L], got ", ids.shape());
  const int64_t L = ids.size(1);
  if (L > context_length()) error(name_, ": ", L, " tokens exceed context_length ", context_length());
  Tensor pos = arange(0.0, double(L), 1.0, TensorOptions(DType::i64).device(ids.device()));
  nn::BlockInputs in;
  in.causal = true;
  return text_core_->forward(token_embedding->forward(ids) + positional_embedding->forward(pos), in);
}

Tensor ContrastiveModel::pool_text(const Tensor& h, const Tensor& eot) const {
  const int64_t B = h.size(0), L = h.size(1);
  // Row b's features at position eot[b]: flat index b * L + eot[b].
  Tensor rows = arange(0.0, double(B * L), double(L), TensorOptions(DType::i64).device(h.device())) + eot.to(DType::i64);
  return l2_normalize(text_proj->forward(index_select(h.reshape({B * L, h.size(2)}), 0, rows)));
}

Tensor ContrastiveModel::encode_text(const Tensor& ids, const Tensor& eot) const {
  if (ids.dim() != 2 || eot.dim() != 1 || eot.size(0) != ids.size(0))
    error(name_, ".encode_text: ids must be [B, L] and eot [B], got ", ids.shape(), " and ", eot.shape());
  return pool_text(text_tokens(ids), eot);
}

double ContrastiveModel::flops_per_pair(int64_t other_params, int64_t other_tokens, const nn::Transformer& other) const {
  const double n = double(other_tokens), L = double(context_length());
  const double text_params = double(text_core_->num_parameters() + text_proj->num_parameters());
  const nn::TransformerOptions &a = other.options, &t = text_core_->options;
  return 6.0 * (double(other_params) * n + text_params * L) +
         12.0 * (double(a.n_layer * a.block.d_model) * n * n + double(t.n_layer * t.block.d_model) * L * L);
}

objectives::ContrastiveOutput ContrastiveModel::loss(const Tensor& features, const Tensor& text_features,
                                                     dist::Communicator* world) const {
  if (world && world->world_size() > 1)
    return loss(dist::all_gather_with_grad(*world, features), dist::all_gather_with_grad(*world, text_features));
  return logit_bias.defined() ? objectives::siglip_loss(features, text_features, logit_scale, logit_bias)
                              : objectives::clip_loss(features, text_features, logit_scale);
}

}  // namespace fm::tasks
