#pragma once
// Residual vector quantisation (RVQ) of a neural audio codec, with
// audiocraft's semantics (audiocraft/quantization/core_vq.py and the codec's
// ResidualVectorQuantizer): K codebooks quantise the encoder's frames
// [B, D, T] in turn, each the residual the previous ones left, into K
// streams of codes [B, K, T].
//
// Each codebook is learnt without gradients, by exponential moving averages
// (EMA) of its clusters: the first forward call initialises it by k-means on
// its batch; each training forward then updates cluster_size, embed_avg and
// embed = embed_avg / laplace_smoothed(cluster_size). The one place where
// that differs from audiocraft, dead-code restarts, is described at
// EuclideanCodebook::forward. Buffers carry audiocraft's names
// (layers.<i>._codebook.{inited, cluster_size, embed, embed_avg}), so its
// state dicts load as they are.
//
// Distributed training: audiocraft broadcasts the buffers from rank 0 after
// the k-means initialisation and after each dead-code restart; here that is
// the caller's job.
#include <cstdint>
#include <memory>

#include "fm/nn/module.h"
#include "fm/random.h"

namespace fm::audio {

struct RVQOptions {
  int64_t dim = 128;             // D, the channels of the frames
  int64_t n_codebooks = 8;       // audiocraft's n_q
  int64_t codebook_size = 1024;  // audiocraft's bins
  double decay = 0.99;           // of the EMA statistics
  double epsilon = 1e-5;         // Laplace smoothing of the cluster sizes
  bool kmeans_init = true;       // false: embed starts kaiming-uniform and inited = 1
  int64_t kmeans_iters = 10;     // Lloyd iterations (audiocraft 10, encodec 50)
  // Codes whose EMA cluster size falls below it are restarted from random
  // frames of the batch; 0 never restarts.
  double threshold_ema_dead_code = 2.0;
  double commitment_weight = 1.0;  // 0 leaves the commitment loss 0
};

// `num` random rows of samples [N, D]: distinct rows in random order when
// N >= num (torch.randperm(N)[:num]), else num independent draws.
Tensor sample_vectors(const Tensor& samples, int64_t num, Generator* gen = nullptr);

struct KMeansResult {
  Tensor means;   // [num_clusters, D]
  Tensor counts;  // [num_clusters] i64: the points of each cluster at the last assignment
};
// Lloyd's k-means from sample_vectors(samples, num_clusters) (audiocraft's
// kmeans): `iters` rounds of assigning each point to its nearest mean and
// moving each mean to its points' average; a cluster left empty keeps its mean.
KMeansResult kmeans(const Tensor& samples, int64_t num_clusters, int64_t iters, Generator* gen = nullptr);

// One codebook on rows x [N, D] (audiocraft's EuclideanCodebook).
class EuclideanCodebook : public nn::Module {
 public:
  // `gen` (the default generator when null) draws the initial embedding,
  // k-means' starting points and restarts; it must outlive the codebook.
  explicit EuclideanCodebook(const RVQOptions& o, Generator* gen = nullptr);

  // Nearest code by squared Euclidean distance (ties: the lowest index).
  Tensor encode(const Tensor& x) const;      // [N, D] -> [N] i64
  Tensor decode(const Tensor& codes) const;  // [...] -> [..., D]

  struct Output {
    Tensor quantized;  // [N, D], from the embedding before this call's update
    Tensor codes;      // [N] i64
  };
  // Initialises by k-means when not inited (in eval mode too, as audiocraft:
  // embed = embed_avg = the means, cluster_size = their counts), quantises,
  // and in training mode updates the EMA statistics and restarts dead codes.
  // No gradient flows through it.
  //
  // One deviation: audiocraft picks the dead codes (cluster_size below the
  // threshold, before the EMA step) and writes batch frames into embed, but
  // the EMA step then overwrites all of embed from embed_avg, so its restarts
  // never take effect (encodec issue #61). Here the same codes, chosen at the
  // same point, get their frames after the EMA step: embed = frame and
  // embed_avg = frame * smoothed cluster size, so the code stays there until
  // frames are assigned to it. With no dead codes the two agree exactly.
  Output forward(const Tensor& x);

  RVQOptions options;
  Tensor inited;        // [1]: 0 until the k-means initialisation has run
  Tensor cluster_size;  // [bins]
  Tensor embed;         // [bins, D]
  Tensor embed_avg;     // [bins, D]

 private:
  void init_embed(const Tensor& x);
  void update(const Tensor& x, const Tensor& codes);
  Generator* gen_;
};

// One layer of the residual stack on frames [B, D, T] (audiocraft's
// VectorQuantization without projections).
class VectorQuantization : public nn::Module {
 public:
  explicit VectorQuantization(const RVQOptions& o, Generator* gen = nullptr);

  Tensor encode(const Tensor& x) const;      // [B, D, T] -> [B, T] i64
  Tensor decode(const Tensor& codes) const;  // [B, T] -> [B, D, T]

  struct Output {
    Tensor quantized;        // [B, D, T]; training: x + (q - x).detach()
    Tensor codes;            // [B, T] i64
    Tensor commitment_loss;  // scalar: mse(q, x) * commitment_weight in training, else 0
  };
  Output forward(const Tensor& x);

  std::shared_ptr<EuclideanCodebook> codebook;  // registered as "_codebook"
};

struct RVQOutput {
  Tensor quantized;        // [B, D, T]; training: x + (sum of q - x).detach()
  Tensor codes;            // [B, K, T] i64
  Tensor commitment_loss;  // scalar: the mean of layer_losses (the codec's penalty)
  Tensor layer_losses;     // [K]: each layer's commitment loss (0 in eval mode)
};

// The residual stack (audiocraft's ResidualVectorQuantization; codes laid
// out [B, K, T] as its ResidualVectorQuantizer returns them). n_q picks the
// first n_q codebooks (0: all of them).
class ResidualVQ : public nn::Module {
 public:
  explicit ResidualVQ(const RVQOptions& o, Generator* gen = nullptr);

  // Training mode updates the codebooks; gradients reach x straight
  // through the quantisation and from the commitment losses.
  RVQOutput forward(const Tensor& x, int64_t n_q = 0);
  Tensor encode(const Tensor& x, int64_t n_q = 0) const;  // [B, D, T] -> [B, n_q, T], never updates
  Tensor decode(const Tensor& codes) const;               // [B, K, T], K <= n_codebooks -> [B, D, T]

  RVQOptions options;
  std::shared_ptr<nn::ModuleList<VectorQuantization>> layers;

 private:
  int64_t layers_for(int64_t n_q, const char* op) const;
  void check_frames(const Tensor& x, const char* op) const;
};

}  // namespace fm::audio
