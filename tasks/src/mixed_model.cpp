#include "fm/tasks/mixed_model.h"

#include <algorithm>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/image/patches.h"
#include "fm/nn/init.h"
#include "fm/ops.h"

namespace fm::tasks {
namespace {

Tensor i64_tensor(const std::vector<int64_t>& v, Device d) { return tensor(v, {int64_t(v.size())}).to(d); }

}  // namespace

MixedModel::MixedModel(const MixedOptions& o, Generator* gen) : options(o) {
  if (o.vocab_size <= 0) error("MixedModel: vocab_size must be > 0, got ", o.vocab_size);
  if (o.patch_size <= 0 || o.image_size % o.patch_size != 0)
    error("MixedModel: image_size ", o.image_size, " must be a multiple of patch_size ", o.patch_size);
  if (o.width % 4 != 0) error("MixedModel: width must be a multiple of 4 (2-D sin-cos positions), got ", o.width);
  if (o.n_codebooks < 0 || (o.n_codebooks > 0 && o.codebook_size < 2))
    error("MixedModel: audio needs codebooks of at least 2 codes, got ", o.n_codebooks, " of ", o.codebook_size);
  const int64_t w = o.width, grid = o.image_size / o.patch_size, patch_dim = o.patch_size * o.patch_size * o.channels;
  token_embedding = register_module("token_embedding", std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.vocab_size + 4, w}));
  positional_embedding = register_module("positional_embedding",
                                         std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.max_positions, w}));
  patch_proj = register_module("patch_proj", std::make_shared<nn::Linear>(nn::LinearOptions{patch_dim, w, true}));
  patch_pos = register_buffer("patch_pos", image::sincos_pos_embed_2d(w, grid, grid));
  t_embed = register_module("t_embed", std::make_shared<nn::TimestepEmbedding>(nn::TimestepEmbeddingOptions{o.frequency_dim, w}));
  image_out = register_module("image_out", std::make_shared<nn::Linear>(nn::LinearOptions{w, patch_dim, true}));
  if (o.n_codebooks > 0) {
    code_embeddings = register_module("code_embeddings", std::make_shared<nn::ModuleList<nn::Embedding>>());
    audio_heads = register_module("audio_heads", std::make_shared<nn::ModuleList<nn::Linear>>());
    for (int64_t k = 0; k < o.n_codebooks; ++k) {
      code_embeddings->push_back(std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.codebook_size + 1, w}));
      audio_heads->push_back(std::make_shared<nn::Linear>(nn::LinearOptions{w, o.codebook_size, false}));
    }
  }
  nn::BlockOptions b;
  b.d_model = w;
  b.n_head = o.heads;
  core = register_module("core", std::make_shared<nn::Transformer>(nn::TransformerOptions{b, o.layers}));
  nn::init_gpt2(*core, gen);
  nn::init::normal_(token_embedding->weight, 0.0, 0.02, gen);
  nn::init::normal_(positional_embedding->weight, 0.0, 0.01, gen);
  nn::init::xavier_uniform_(patch_proj->weight, 1.0, gen);
  nn::init::zeros_(patch_proj->bias);
  nn::init::normal_(t_embed->fc1->weight, 0.0, 0.02, gen);
  nn::init::normal_(t_embed->fc2->weight, 0.0, 0.02, gen);
  nn::init::zeros_(image_out->weight);  // a fresh model predicts zero for every patch (DiT's final layer)
  nn::init::zeros_(image_out->bias);
  if (code_embeddings)
    for (int64_t k = 0; k < o.n_codebooks; ++k) {
      nn::init::normal_((*code_embeddings)[size_t(k)].weight, 0.0, 0.02, gen);
      nn::init::normal_((*audio_heads)[size_t(k)].weight, 0.0, 0.02, gen);
    }
}

int64_t MixedModel::patches() const {
  const int64_t g = options.image_size / options.patch_size;
  return g * g;
}

Tensor MixedModel::embed_image(const Tensor& x_t, const Tensor& t) const {
  if (x_t.dim() != 4 || x_t.size(1) != options.channels || x_t.size(2) != options.image_size ||
      x_t.size(3) != options.image_size)
    error("MixedModel: images must be [I, ", options.channels, ", ", options.image_size, ", ", options.image_size,
          "], got ", x_t.shape());
  if (t.dim() != 1 || t.size(0) != x_t.size(0)) error("MixedModel: image timesteps must be [", x_t.size(0), "], got ", t.shape());
  const Tensor x = patch_proj->forward(image::patchify(x_t, options.patch_size)) + patch_pos;
  return x + t_embed->forward(t.to(DType::f32)).unsqueeze(1);
}

Tensor MixedModel::embed_audio(const Tensor& codes) const {
  if (!code_embeddings) error("MixedModel: this model has no audio codebooks (model.codebooks = 0)");
  if (codes.dim() != 2 || codes.size(1) != options.n_codebooks)
    error("MixedModel: audio codes must be [A, ", options.n_codebooks, "], got ", codes.shape());
  Tensor x = (*code_embeddings)[0].forward(codes.select(1, 0));
  for (int64_t k = 1; k < options.n_codebooks; ++k) x = x + (*code_embeddings)[size_t(k)].forward(codes.select(1, k));
  return x;
}

Tensor MixedModel::embed_positions(const Tensor& positions) const {
  const int64_t top = positions.numel() ? int64_t(max(positions).item()) : 0;
  if (top >= options.max_positions)
    error("MixedModel: position ", top, " exceeds model.max_positions ", options.max_positions, " (a sample is too long)");
  return positional_embedding->forward(positions);
}

Tensor MixedModel::embed(const MixedBatch& b, const Tensor& x_t, const Tensor& t) const {
  const Device d = token_embedding->weight.device();
  const int64_t BT = b.rows * b.length, D = options.width;
  std::vector<Tensor> pool{token_embedding->forward(b.tokens.to(d)).reshape({BT, D})};
  // Which row of the pool each position reads: its token's embedding, or an
  // image patch's, or an audio step's.
  std::vector<int64_t> source(static_cast<size_t>(BT));
  for (int64_t q = 0; q < BT; ++q) source[size_t(q)] = q;
  int64_t next = BT;
  if (b.image_at.numel()) {
    pool.push_back(embed_image(x_t, t).reshape({-1, D}));
    for (int64_t q : b.image_at.to_vector<int64_t>()) source[size_t(q)] = next++;
  }
  if (b.audio_at.numel()) {
    pool.push_back(embed_audio(b.audio_codes.to(d)));
    for (int64_t q : b.audio_at.to_vector<int64_t>()) source[size_t(q)] = next++;
  }
  const Tensor x = index_select(pool.size() == 1 ? pool[0] : cat(pool, 0), 0, i64_tensor(source, d));
  return x.reshape({b.rows, b.length, D}) + embed_positions(b.positions.to(d));
}

Tensor MixedModel::run(const Tensor& x, const Tensor& key_lo, const Tensor& key_hi,
                       std::vector<nn::KVCache>* caches) const {
  if (key_lo.dim() != 2 || key_lo.shape() != key_hi.shape() || key_lo.size(1) != x.size(1))
    error("MixedModel: key ranges must be [B, ", x.size(1), "], got ", key_lo.shape(), " and ", key_hi.shape());
  nn::BlockInputs in;
  // The ranges themselves go to attention ([B, 1, T, 2] i32): no T x T mask is built.
  in.mask = stack({key_lo.to(DType::i32), key_hi.to(DType::i32)}, 2).unsqueeze(1).to(x.device());
  return core->forward(x, in, caches);
}

Tensor MixedModel::text_logits(const Tensor& h) const { return linear(h, token_embedding->weight); }

Tensor MixedModel::image_output(const Tensor& h) const {
  const int64_t N = patches();
  if (h.dim() != 2 || h.size(0) % N != 0) error("MixedModel: image rows must be [I * ", N, ", width], got ", h.shape());
  const Tensor p = image_out->forward(h.reshape({h.size(0) / N, N, options.width}));
  return image::unpatchify(p, options.patch_size, options.channels, options.image_size, options.image_size);
}

Tensor MixedModel::audio_logits(const Tensor& h) const {
  if (!audio_heads) error("MixedModel: this model has no audio codebooks (model.codebooks = 0)");
  std::vector<Tensor> per;
  for (const auto& head : *audio_heads) per.push_back(head->forward(h).unsqueeze(1));
  return cat(per, 1);
}

MixedLosses mixed_losses(const MixedModel& m, const MixedBatch& b, const objectives::Diffusion& diffusion,
                         Generator& gen, const Tensor& fixed_t, const Tensor& fixed_noise) {
  const Device d = m.token_embedding->weight.device();
  MixedLosses out;
  Tensor x_t, t;
  objectives::Noised n;
  std::vector<int64_t> noised;
  const int64_t I = b.images.defined() ? b.images.size(0) : 0;
  if (I) {
    for (int64_t i = 0; i < I; ++i)
      if (b.noised[size_t(i)]) noised.push_back(i);
    const Tensor x0 = b.images.to(d);
    x_t = x0;
    t = zeros({I}, TensorOptions(DType::f32).device(d));
    if (!noised.empty()) {
      const Tensor idx = i64_tensor(noised, d);
      const Tensor x0n = index_select(x0, 0, idx);
      n = fixed_t.defined() ? diffusion.add_noise(x0n, fixed_t.to(d), fixed_noise.to(d)) : diffusion.add_noise(x0n, gen);
      // Clean images first, then the noised ones: gather each image's row.
      std::vector<int64_t> from(static_cast<size_t>(I));
      for (int64_t i = 0; i < I; ++i) from[size_t(i)] = i;
      for (size_t j = 0; j < noised.size(); ++j) from[size_t(noised[j])] = I + int64_t(j);
      const Tensor src = i64_tensor(from, d);
      x_t = index_select(cat({x0, n.x_t}, 0), 0, src);
      t = index_select(cat({t, n.timesteps.to(DType::f32)}, 0), 0, src);
    }
  }
  const Tensor h = m.run(m.embed(b, x_t, t), b.key_lo.to(d), b.key_hi.to(d)).reshape({b.rows * b.length, m.options.width});
  if (b.text_at.numel()) {
    out.text = cross_entropy(m.text_logits(index_select(h, 0, b.text_at.to(d))), b.text_targets.to(d));
    out.text_n = b.text_at.numel();
  }
  if (!noised.empty()) {
    const Tensor pred = m.image_output(index_select(h, 0, b.image_at.to(d)));
    out.image = diffusion.loss(index_select(pred, 0, i64_tensor(noised, d)), n);
    out.image_n = int64_t(noised.size());
  }
  if (b.audio_from.numel()) {
    const Tensor logits = m.audio_logits(index_select(h, 0, b.audio_from.to(d)));
    const Tensor targets = b.audio_targets.to(d).reshape({-1});
    out.audio = cross_entropy(logits.reshape({-1, m.options.codebook_size}), targets);
    for (int64_t v : b.audio_targets.to_vector<int64_t>()) out.audio_n += v != -100;
  }
  return out;
}

// ---------------------------------------------------------------- decoding

MixedDecoder::MixedDecoder(const MixedModel& model) : model_(model) {}

Tensor MixedDecoder::start(const std::vector<MixedSample>& prompts) {
  NoGradGuard ng;
  const Device d = model_.token_embedding->weight.device();
  int64_t longest = 0;
  for (const MixedSample& s : prompts) longest = std::max(longest, sample_length(s, model_.patches()));
  PackOptions po;
  po.length = longest;
  po.patches = model_.patches();
  po.special = model_.audio_special();
  po.pack = false;
  po.align_right = true;
  const MixedBatch b = pack_mixed(prompts, po);
  for (const bool noised : b.noised)
    if (noised) error("MixedDecoder: prompt images must be clean (they condition, they are not denoised)");
  const int64_t I = b.images.defined() ? b.images.size(0) : 0;
  const Tensor x0 = I ? b.images.to(d) : Tensor();
  const Tensor t0 = I ? zeros({I}, TensorOptions(DType::f32).device(d)) : Tensor();
  caches_.clear();
  const Tensor h = model_.run(model_.embed(b, x0, t0), b.key_lo.to(d), b.key_hi.to(d), &caches_);
  const std::vector<int32_t> lo = b.key_lo.to_vector<int32_t>();
  first_.assign(size_t(b.rows), 0);
  for (int64_t r = 0; r < b.rows; ++r) first_[size_t(r)] = lo[size_t(r * longest + longest - 1)];
  columns_ = longest;
  return h.select(1, longest - 1);
}

// Runs n new positions per row (x [R, n, width] without positions) after
// the cached columns: causal among themselves, or one block.
Tensor MixedDecoder::append(const Tensor& x, int64_t n, bool block, std::vector<nn::KVCache>& caches) const {
  const int64_t R = rows();
  std::vector<int64_t> pos(static_cast<size_t>(R * n));
  std::vector<int32_t> lo(static_cast<size_t>(R * n)), hi(static_cast<size_t>(R * n));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < n; ++j) {
      const size_t q = size_t(r * n + j);
      pos[q] = columns_ + j - first_[size_t(r)];
      lo[q] = int32_t(first_[size_t(r)]);
      hi[q] = int32_t(block ? columns_ + n : columns_ + j + 1);
    }
  const Device d = x.device();
  const Tensor xp = x + model_.embed_positions(tensor(pos, {R, n}).to(d));
  return model_.run(xp, tensor(lo, {R, n}), tensor(hi, {R, n}), &caches);
}

Tensor MixedDecoder::append_text(const std::vector<int64_t>& tokens) {
  NoGradGuard ng;
  if (int64_t(tokens.size()) != rows()) error("MixedDecoder: ", tokens.size(), " tokens for ", rows(), " rows");
  const Device d = model_.token_embedding->weight.device();
  const Tensor x = model_.token_embedding->forward(tensor(tokens, {rows(), 1}).to(d));
  const Tensor h = append(x, 1, false, caches_);
  ++columns_;
  return h.select(1, 0);
}

Tensor MixedDecoder::append_audio(const Tensor& codes) {
  NoGradGuard ng;
  if (codes.dim() != 2 || codes.size(0) != rows()) error("MixedDecoder: audio codes must be [", rows(), ", K], got ", codes.shape());
  const Tensor x = model_.embed_audio(codes.to(model_.token_embedding->weight.device())).unsqueeze(1);
  const Tensor h = append(x, 1, false, caches_);
  ++columns_;
  return h.select(1, 0);
}

Tensor MixedDecoder::image(const Tensor& x_t, const Tensor& t) const {
  NoGradGuard ng;
  if (x_t.dim() != 4 || x_t.size(0) != rows()) error("MixedDecoder: images must be [", rows(), ", C, H, W], got ", x_t.shape());
  std::vector<nn::KVCache> scratch = caches_;  // appending makes new tensors: the kept caches do not change
  const int64_t N = model_.patches();
  const Tensor h = append(model_.embed_image(x_t, t), N, true, scratch);
  return model_.image_output(h.reshape({rows() * N, model_.options.width}));
}

void MixedDecoder::select(const std::vector<int64_t>& rows) {
  std::vector<int64_t> first;
  for (int64_t r : rows) first.push_back(first_.at(size_t(r)));
  first_ = std::move(first);
  nn::select_cache_rows(caches_, tensor(rows, {int64_t(rows.size())}).to(model_.token_embedding->weight.device()));
}

}  // namespace fm::tasks
