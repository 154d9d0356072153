#include "fm/tasks/music_model.h"

#include <algorithm>
#include <cmath>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/nn/init.h"
#include "fm/ops.h"
#include "fm/tasks/sampling.h"

namespace fm::tasks {
namespace {

std::shared_ptr<nn::Transformer> make_core(int64_t width, int64_t layers, int64_t heads, int64_t context_dim = 0) {
  nn::BlockOptions b;
  b.d_model = width;
  b.n_head = heads;
  b.cross_attention = context_dim > 0;
  b.context_dim = context_dim;
  return std::make_shared<nn::Transformer>(nn::TransformerOptions{b, layers});
}

void check_codes(const char* what, const Tensor& codes) {
  if (!codes.defined() || codes.dim() != 3)
    error(what, ": codes must be [B, K, frames], got ", codes.defined() ? codes.shape() : Shape{});
}

// [B, L] -> [B, length] padded at the end with `value`.
Tensor pad_to(const Tensor& x, int64_t length, double value) {
  return x.size(1) == length ? x : pad(x, {0, length - x.size(1)}, "constant", value);
}

// The model's inputs for the delayed steps [B, K, S]: each position reads the
// step before it, the special token before step 0.
Tensor shifted_inputs(const Tensor& steps, int64_t special) {
  const int64_t B = steps.size(0), K = steps.size(1), S = steps.size(2);
  Tensor start = full({B, K, 1}, double(special), TensorOptions(steps.dtype()).device(steps.device()));
  return cat({start, steps.narrow(2, 0, S - 1)}, 2);
}

}  // namespace

Tensor delay_valid_mask(int64_t K, int64_t F, Device device) {
  const int64_t S = F + K - 1;
  std::vector<uint8_t> v(static_cast<size_t>(K * S));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t s = 0; s < S; ++s) v[size_t(k * S + s)] = s >= k && s < F + k;
  return tensor(v, {K, S}).to(DType::b8).to(device);
}

Tensor apply_delay_pattern(const Tensor& codes, int64_t special) {
  check_codes("apply_delay_pattern", codes);
  const int64_t B = codes.size(0), K = codes.size(1), F = codes.size(2);
  std::vector<Tensor> rows;
  for (int64_t k = 0; k < K; ++k)  // codebook k: k special tokens, its frames, K - 1 - k special tokens
    rows.push_back(pad(codes.select(1, k), {k, K - 1 - k}, "constant", double(special)).unsqueeze(1));
  (void)B, (void)F;
  return cat(rows, 1);
}

Tensor revert_delay_pattern(const Tensor& steps) {
  check_codes("revert_delay_pattern", steps);
  const int64_t K = steps.size(1), F = steps.size(2) - K + 1;
  if (F < 1) error("revert_delay_pattern: ", steps.size(2), " steps hold no frame of ", K, " codebooks");
  std::vector<Tensor> rows;
  for (int64_t k = 0; k < K; ++k) rows.push_back(steps.select(1, k).narrow(1, k, F).unsqueeze(1));
  return cat(rows, 1);
}

MusicModel::MusicModel(const MusicOptions& o, Generator* gen) : options(o) {
  if (o.n_codebooks < 1 || o.codebook_size < 2) error("MusicModel: needs codebooks, got ", o.n_codebooks, " of ", o.codebook_size);
  if (o.vocab_size <= 0) error("MusicModel: vocab_size must be > 0, got ", o.vocab_size);
  code_embeddings = register_module("code_embeddings", std::make_shared<nn::ModuleList<nn::Embedding>>());
  heads = register_module("heads", std::make_shared<nn::ModuleList<nn::Linear>>());
  for (int64_t k = 0; k < o.n_codebooks; ++k) {
    code_embeddings->push_back(std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.codebook_size + 1, o.width}));
    heads->push_back(std::make_shared<nn::Linear>(nn::LinearOptions{o.width, o.codebook_size, false}));
  }
  positional_embedding = register_module("positional_embedding",
                                         std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.max_steps, o.width}));
  decoder = register_module("decoder", make_core(o.width, o.layers, o.heads, o.text_width));
  token_embedding = register_module("token_embedding",
                                    std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.vocab_size, o.text_width}));
  text_positions = register_module("text_positions",
                                   std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.text_context, o.text_width}));
  text_encoder = register_module("text_encoder", make_core(o.text_width, o.text_layers, o.text_heads));
  nn::init_gpt2(*decoder, gen);
  nn::init_gpt2(*text_encoder, gen);
  for (const auto& e : *code_embeddings) nn::init::normal_(e->weight, 0.0, 0.02, gen);
  for (const auto& h : *heads) nn::init::normal_(h->weight, 0.0, 0.02, gen);
  nn::init::normal_(positional_embedding->weight, 0.0, 0.01, gen);
  nn::init::normal_(token_embedding->weight, 0.0, 0.02, gen);
  nn::init::normal_(text_positions->weight, 0.0, 0.01, gen);
}

Tensor MusicModel::encode_text(const Tensor& ids, const Tensor& mask) const {
  if (ids.dim() != 2 || mask.shape() != ids.shape())
    error("MusicModel: caption ids [B, L] and mask [B, L] expected, got ", ids.shape(), " and ", mask.shape());
  const int64_t L = ids.size(1);
  if (L > options.text_context) error("MusicModel: ", L, " caption tokens exceed text_context ", options.text_context);
  Tensor pos = arange(0.0, double(L), 1.0, TensorOptions(DType::i64).device(ids.device()));
  nn::BlockInputs in;
  // Padding keys are hidden from every query: [B, 1, 1, L] broadcast over heads and queries.
  in.mask = mask.to(DType::b8).unsqueeze(1).unsqueeze(1);
  return text_encoder->forward(token_embedding->forward(ids) + text_positions->forward(pos), in);
}

Tensor MusicModel::logits(const Tensor& inputs, const Tensor& text, const Tensor& text_mask,
                          std::vector<nn::KVCache>* caches) const {
  check_codes("MusicModel.logits", inputs);
  const int64_t K = options.n_codebooks, T = inputs.size(2);
  if (inputs.size(1) != K) error("MusicModel: inputs hold ", inputs.size(1), " codebooks, the model ", K);
  if (caches && caches->empty()) caches->resize(decoder->blocks->size());
  const int64_t start = caches ? (*caches)[0].length() : 0;
  if (start + T > options.max_steps)
    error("MusicModel: ", start + T, " steps exceed max_steps ", options.max_steps, " (frames + codebooks - 1)");
  Tensor x = positional_embedding->forward(
      arange(double(start), double(start + T), 1.0, TensorOptions(DType::i64).device(inputs.device())));
  for (int64_t k = 0; k < K; ++k) x = x + (*code_embeddings)[size_t(k)].forward(inputs.select(1, k));
  nn::BlockInputs in;
  in.causal = true;
  in.context = text;
  in.context_mask = text_mask.defined() ? text_mask.to(DType::b8) : Tensor();
  Tensor h = decoder->forward(x, in, caches);  // [B, T, width]
  std::vector<Tensor> out;
  for (int64_t k = 0; k < K; ++k) out.push_back((*heads)[size_t(k)].forward(h).unsqueeze(1));
  return cat(out, 1);
}

Tensor MusicModel::loss(const Tensor& codes, const Tensor& text, const Tensor& text_mask) const {
  check_codes("MusicModel.loss", codes);
  const int64_t special = options.codebook_size, K = codes.size(1), F = codes.size(2);
  const Tensor steps = apply_delay_pattern(codes.to(DType::i64), special);
  const Tensor logit = logits(shifted_inputs(steps, special), text, text_mask);  // [B, K, S, card]
  // Steps without a frame are not predicted.
  const Tensor target = where(delay_valid_mask(K, F, codes.device()).unsqueeze(0), steps,
                              full_like(steps, -100.0));
  return cross_entropy(logit.reshape({-1, options.codebook_size}), target.reshape({-1}));
}

Tensor generate_codes(const MusicModel& model, const Tensor& ids, const Tensor& mask, const Tensor& uncond_ids,
                      const Tensor& uncond_mask, const MusicSampling& s, Generator& gen) {
  const auto& o = model.options;
  const int64_t B = ids.size(0), K = o.n_codebooks, special = o.codebook_size, S = s.frames + K - 1;
  if (s.frames < 1) error("generate_codes: frames must be >= 1, got ", s.frames);
  if (S > o.max_steps)
    error("generate_codes: ", s.frames, " frames need ", S, " steps; the model has ", o.max_steps);
  const bool guided = s.guidance != 1.0;
  NoGradGuard no_grad;
  Tensor text_ids = ids, text_mask = mask;
  if (guided) {  // one batch: the captions, then the unconditional ones
    if (uncond_ids.size(0) != B) error("generate_codes: ", uncond_ids.size(0), " unconditional captions for ", B);
    const int64_t L = std::max(ids.size(1), uncond_ids.size(1));
    text_ids = cat({pad_to(ids, L, 0), pad_to(uncond_ids, L, 0)}, 0);
    text_mask = cat({pad_to(mask.to(DType::b8), L, 0), pad_to(uncond_mask.to(DType::b8), L, 0)}, 0);
  }
  const Tensor text = model.encode_text(text_ids, text_mask);
  const int64_t rows = text_ids.size(0);
  SamplingOptions so;
  so.temperature = s.temperature;
  so.top_k = s.top_p > 0 ? 0 : s.top_k;
  so.top_p = s.top_p > 0 ? s.top_p : 1.0;
  std::vector<nn::KVCache> caches;
  std::vector<int64_t> steps(size_t(B * K * S), special);  // [B, K, S]
  std::vector<int64_t> prev(size_t(rows * K), special);    // the inputs of the next step
  const Device device = ids.device();
  for (int64_t t = 0; t < S; ++t) {
    const Tensor in = tensor(prev, {rows, K, 1}).to(device);
    Tensor logit = model.logits(in, text, text_mask, &caches).select(2, 0).to(DType::f32);  // [rows, K, card]
    if (guided) {
      const Tensor cond = logit.narrow(0, 0, B), uncond = logit.narrow(0, B, B);
      logit = uncond + (cond - uncond) * s.guidance;
    }
    const std::vector<float> host = logit.to(Device::cpu()).contiguous().to_vector<float>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < K; ++k) {
        int64_t token = special;
        if (t >= k && t < s.frames + k) {
          const auto first = host.begin() + (b * K + k) * special;
          token = pick_token(std::vector<float>(first, first + special), so, gen);
        }
        steps[size_t((b * K + k) * S + t)] = token;
        prev[size_t(b * K + k)] = token;
        if (guided) prev[size_t((B + b) * K + k)] = token;
      }
  }
  return revert_delay_pattern(tensor(steps, {B, K, S})).to(device);
}

}  // namespace fm::tasks
