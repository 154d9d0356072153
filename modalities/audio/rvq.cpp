#include "fm/audio/rvq.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <vector>

#include "fm/autocast.h"
#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/nn/init.h"
#include "fm/ops.h"

namespace fm::audio {
namespace {

// Squared distances [N, K] between rows x [N, D] and codes e [K, D], by
// audiocraft's expansion |x|^2 - 2 x.e + |e|^2 (one GEMM). Always in the
// codebook's precision: a bf16 product would blur which code is nearest.
Tensor sq_distances(const Tensor& x, const Tensor& e) {
  AutocastGuard full_precision(std::nullopt);
  const Tensor x2 = sum(x * x, {1}, true);
  const Tensor e2 = sum(e * e, {1}).unsqueeze(0);
  return x2 - 2.0 * matmul(x, e.t()) + e2;
}

Tensor nearest(const Tensor& x, const Tensor& e) { return argmin(sq_distances(x, e), 1); }

// Per code of `bins`: how many rows chose it ([bins], x's dtype) and the sum
// of those rows ([bins, D]), the one-hot products of audiocraft by scatter_add.
Tensor code_counts(const Tensor& codes, int64_t bins, TensorOptions opt) {
  return scatter_add(zeros({bins}, opt), 0, codes, ones({codes.numel()}, opt));
}
Tensor code_sums(const Tensor& x, const Tensor& codes, int64_t bins) {
  const int64_t n = x.size(0), d = x.size(1);
  return scatter_add(zeros({bins, d}, x.options()), 0, codes.unsqueeze(1).expand({n, d}), x);
}

void check_rows(const Tensor& x, int64_t dim, const char* op) {
  if (x.dim() != 2 || x.size(1) != dim || x.size(0) == 0)
    error(op, ": expects rows [N, ", dim, "] with N > 0, got ", x.shape());
}

}  // namespace

Tensor sample_vectors(const Tensor& samples, int64_t num, Generator* gen) {
  if (samples.dim() != 2 || samples.size(0) == 0)
    error("sample_vectors: expects rows [N > 0, D], got ", samples.shape());
  if (num <= 0) error("sample_vectors: needs num > 0, got ", num);
  const int64_t n = samples.size(0);
  Tensor index;
  if (n >= num) {
    // randperm(n)[:num]: the rows of the num smallest of n uniform keys, in
    // key order (f64 keys: ties have probability ~n^2 / 2^54).
    const std::vector<double> keys = rand({n}, DType::f64, gen).to_vector<double>();
    std::vector<int64_t> order(size_t(n), 0);
    std::iota(order.begin(), order.end(), int64_t(0));
    std::partial_sort(order.begin(), order.begin() + num, order.end(), [&](int64_t a, int64_t b) {
      return keys[size_t(a)] < keys[size_t(b)] || (keys[size_t(a)] == keys[size_t(b)] && a < b);
    });
    order.resize(size_t(num));
    index = tensor(order);
  } else {
    index = randint(0, n, {num}, DType::i64, gen);
  }
  return index_select(samples, 0, index.to(samples.device()));
}

KMeansResult kmeans(const Tensor& samples, int64_t num_clusters, int64_t iters, Generator* gen) {
  if (samples.dim() != 2 || samples.size(0) == 0) error("kmeans: expects rows [N > 0, D], got ", samples.shape());
  if (num_clusters <= 0 || iters <= 0)
    error("kmeans: needs num_clusters > 0 and iters > 0, got ", num_clusters, " and ", iters);
  NoGradGuard no_grad;
  const Tensor x = samples.detach();
  KMeansResult r{sample_vectors(x, num_clusters, gen), Tensor()};
  for (int64_t i = 0; i < iters; ++i) {
    const Tensor codes = nearest(x, r.means);
    r.counts = code_counts(codes, num_clusters, TensorOptions(DType::i64).device(x.device()));
    const Tensor empty = eq(r.counts, scalar_tensor(0, r.counts.options())).unsqueeze(1);
    const Tensor n = clamp_min(r.counts.to(x.dtype()), 1.0).unsqueeze(1);
    r.means = where(empty, r.means, code_sums(x, codes, num_clusters) / n);
  }
  return r;
}

// ---- EuclideanCodebook

EuclideanCodebook::EuclideanCodebook(const RVQOptions& o, Generator* gen) : options(o), gen_(gen) {
  if (o.dim <= 0 || o.codebook_size <= 0)
    error("EuclideanCodebook: needs dim > 0 and codebook_size > 0, got ", o.dim, " and ", o.codebook_size);
  if (!(o.decay >= 0 && o.decay <= 1)) error("EuclideanCodebook: decay must be in [0, 1], got ", o.decay);
  if (o.kmeans_init && o.kmeans_iters <= 0)
    error("EuclideanCodebook: kmeans_init needs kmeans_iters > 0, got ", o.kmeans_iters);
  if (o.threshold_ema_dead_code < 0)
    error("EuclideanCodebook: threshold_ema_dead_code must be >= 0, got ", o.threshold_ema_dead_code);
  Tensor e = zeros({o.codebook_size, o.dim});
  if (!o.kmeans_init) {  // torch's kaiming_uniform_: U(-b, b), b = sqrt(6 / fan_in)
    const double b = std::sqrt(6.0 / double(o.dim));
    nn::init::uniform_(e, -b, b, gen);
  }
  inited = register_buffer("inited", full({1}, o.kmeans_init ? 0.0 : 1.0));
  cluster_size = register_buffer("cluster_size", zeros({o.codebook_size}));
  embed = register_buffer("embed", e);
  embed_avg = register_buffer("embed_avg", e.clone());
}

Tensor EuclideanCodebook::encode(const Tensor& x) const {
  check_rows(x, options.dim, "EuclideanCodebook::encode");
  NoGradGuard no_grad;
  return nearest(x.detach().to(embed.dtype()), embed);
}

Tensor EuclideanCodebook::decode(const Tensor& codes) const {
  NoGradGuard no_grad;
  return embedding(codes, embed);
}

EuclideanCodebook::Output EuclideanCodebook::forward(const Tensor& x_in) {
  check_rows(x_in, options.dim, "EuclideanCodebook::forward");
  NoGradGuard no_grad;
  const Tensor x = x_in.detach().to(embed.dtype());
  if (inited.item() == 0) init_embed(x);
  Output out;
  out.codes = nearest(x, embed);
  out.quantized = embedding(out.codes, embed);
  if (is_training()) update(x, out.codes);
  return out;
}

void EuclideanCodebook::init_embed(const Tensor& x) {
  const KMeansResult k = kmeans(x, options.codebook_size, options.kmeans_iters, gen_);
  // As audiocraft: embed_avg starts at the means, not means * counts, so the
  // first EMA steps shrink the codes of large clusters until embed_avg
  // catches up (time constant 1 / (1 - decay) steps).
  embed.copy_(k.means);
  embed_avg.copy_(k.means);
  cluster_size.copy_(k.counts);
  inited.fill_(1.0);
}

void EuclideanCodebook::update(const Tensor& x, const Tensor& codes) {
  const int64_t bins = options.codebook_size;
  const double decay = options.decay, eps = options.epsilon;
  // Dead codes are chosen on the statistics before this batch, as audiocraft
  // does (a host sync, as its torch.any).
  Tensor dead, frames;
  if (options.threshold_ema_dead_code > 0) {
    const Tensor mask = lt(cluster_size, scalar_tensor(options.threshold_ema_dead_code, cluster_size.options()));
    if (sum(mask.to(DType::i64)).item() > 0) {
      dead = mask.unsqueeze(1);
      frames = sample_vectors(x, bins, gen_);
    }
  }
  cluster_size.copy_(cluster_size * decay + code_counts(codes, bins, x.options()) * (1.0 - decay));
  embed_avg.copy_(embed_avg * decay + code_sums(x, codes, bins) * (1.0 - decay));
  const Tensor total = cluster_size.sum();
  const Tensor smoothed = ((cluster_size + eps) / (total + double(bins) * eps) * total).unsqueeze(1);
  Tensor normalized = embed_avg / smoothed;
  if (dead.defined()) {  // the restart, kept (see the header)
    normalized = where(dead, frames, normalized);
    embed_avg.copy_(where(dead, frames * smoothed, embed_avg));
  }
  embed.copy_(normalized);
}

// ---- VectorQuantization

VectorQuantization::VectorQuantization(const RVQOptions& o, Generator* gen) {
  codebook = register_module("_codebook", std::make_shared<EuclideanCodebook>(o, gen));
}

namespace {
// [B, D, T] frames -> [B*T, D] rows (b-major), and back.
Tensor to_rows(const Tensor& x) { return x.permute({0, 2, 1}).reshape({x.size(0) * x.size(2), x.size(1)}); }
Tensor to_frames(const Tensor& rows, int64_t b, int64_t t) {
  return rows.view({b, t, rows.size(1)}).permute({0, 2, 1});
}
}  // namespace

Tensor VectorQuantization::encode(const Tensor& x) const {
  return codebook->encode(to_rows(x.detach())).view({x.size(0), x.size(2)});
}

Tensor VectorQuantization::decode(const Tensor& codes) const {
  return to_frames(codebook->decode(codes.reshape({codes.numel()})), codes.size(0), codes.size(1));
}

VectorQuantization::Output VectorQuantization::forward(const Tensor& x) {
  const int64_t b = x.size(0), t = x.size(2);
  const EuclideanCodebook::Output c = codebook->forward(to_rows(x.detach()));
  Output out{to_frames(c.quantized, b, t), c.codes.view({b, t}), scalar_tensor(0, x.options())};
  if (is_training()) {
    out.quantized = x + (out.quantized - x).detach();  // straight through
    const double w = codebook->options.commitment_weight;
    if (w > 0) out.commitment_loss = mse_loss(out.quantized.detach(), x) * w;
  }
  return out;
}

// ---- ResidualVQ

ResidualVQ::ResidualVQ(const RVQOptions& o, Generator* gen) : options(o) {
  if (o.n_codebooks <= 0) error("ResidualVQ: needs n_codebooks > 0, got ", o.n_codebooks);
  layers = register_module("layers", std::make_shared<nn::ModuleList<VectorQuantization>>());
  for (int64_t i = 0; i < o.n_codebooks; ++i) layers->push_back(std::make_shared<VectorQuantization>(o, gen));
}

int64_t ResidualVQ::layers_for(int64_t n_q, const char* op) const {
  if (n_q < 0 || n_q > options.n_codebooks)
    error(op, ": n_q must be in [0, ", options.n_codebooks, "] (0: all codebooks), got ", n_q);
  return n_q == 0 ? options.n_codebooks : n_q;
}

void ResidualVQ::check_frames(const Tensor& x, const char* op) const {
  if (x.dim() != 3 || x.size(1) != options.dim || x.size(0) == 0 || x.size(2) == 0)
    error(op, ": expects frames [B, ", options.dim, ", T] with B, T > 0, got ", x.shape());
}

RVQOutput ResidualVQ::forward(const Tensor& x, int64_t n_q) {
  check_frames(x, "ResidualVQ::forward");
  const int64_t k = layers_for(n_q, "ResidualVQ::forward");
  Tensor residual = x, quantized;
  std::vector<Tensor> codes, losses;
  for (int64_t i = 0; i < k; ++i) {
    VectorQuantization::Output o = (*layers)[size_t(i)].forward(residual);
    const Tensor q = o.quantized.detach();
    residual = residual - q;
    quantized = quantized.defined() ? quantized + q : q;
    codes.push_back(o.codes);
    losses.push_back(o.commitment_loss);
  }
  // One straight-through estimate for the whole stack (encodec issue #25):
  // d quantized / d x is the identity.
  if (is_training()) quantized = x + (quantized - x).detach();
  RVQOutput out;
  out.quantized = quantized;
  out.codes = stack(codes, 1);
  out.layer_losses = stack(losses);
  out.commitment_loss = out.layer_losses.mean();
  return out;
}

Tensor ResidualVQ::encode(const Tensor& x, int64_t n_q) const {
  check_frames(x, "ResidualVQ::encode");
  const int64_t k = layers_for(n_q, "ResidualVQ::encode");
  NoGradGuard no_grad;
  Tensor residual = x.detach();
  std::vector<Tensor> codes;
  for (int64_t i = 0; i < k; ++i) {
    const VectorQuantization& layer = (*layers)[size_t(i)];
    codes.push_back(layer.encode(residual));
    residual = residual - layer.decode(codes.back());
  }
  return stack(codes, 1);
}

Tensor ResidualVQ::decode(const Tensor& codes) const {
  if (codes.dim() != 3 || codes.size(1) == 0 || codes.size(1) > options.n_codebooks)
    error("ResidualVQ::decode: expects codes [B, K, T] with 0 < K <= ", options.n_codebooks, ", got ", codes.shape());
  NoGradGuard no_grad;
  Tensor out;
  for (int64_t i = 0; i < codes.size(1); ++i) {
    const Tensor q = (*layers)[size_t(i)].decode(codes.select(1, i));
    out = out.defined() ? out + q : q;
  }
  return out;
}

}  // namespace fm::audio
