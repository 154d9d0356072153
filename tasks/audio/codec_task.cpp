// [task] kind = codec: a neural audio codec (fm/tasks/codec_model.h: SEANet
// encoder and decoder around residual vector quantisation, as EnCodec
// without its adversarial losses) trained on random crops of an audio
// folder's clips (fm/tasks/audio_data.h; captions are ignored) with
//   loss = l1_weight * L1(waveform) + mel_weight * multi-scale log-mel L1
//          + commitment_weight * the RVQ's commitment loss
// (fm/tasks/codec_losses.h). Evaluated on the first train.eval_samples
// held-out clips (fixed crops from their start): mel_distance, si_snr,
// val_l1, and how the codebooks are used. Samples: reconstructed clips as
// WAV files in the run's samples/ folder.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>

#include "fm/audio/audio.h"
#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/ops.h"
#include "fm/tasks/audio_data.h"
#include "fm/tasks/codec.h"
#include "fm/tasks/codec_losses.h"
#include "fm/tasks/image_text_data.h"
#include "fm/train/recipe.h"
#include "fm/train/task.h"
#include "fm/train/trainer.h"

namespace fm::tasks {
namespace {

void declare_codec_keys(train::Config& c) {
  c.add_int("model.sample_rate", 16000, "sample rate in Hz (clips are resampled to it)")
      .add_int("model.channels", 32, "width after the first convolution; each stride doubles it")
      .add_int("model.dim", 128, "channels of the quantised frames")
      .add_string("model.ratios", "2,4,5,8", "encoder strides, first to last; hop = their product (320: 50 frames/s at 16 kHz)")
      .add_int("model.residual_layers", 1, "residual units per stride")
      .add_int("model.dilation_base", 2, "residual unit j's dilation is dilation_base^j")
      .add_bool("model.weight_norm", true, "weight-normalised convolutions (audiocraft's default)")
      .add_int("model.n_codebooks", 8, "RVQ codebooks (codes per frame)")
      .add_int("model.codebook_size", 1024, "codes per codebook")
      .add_double("quantizer.decay", 0.99, "EMA decay of the codebooks")
      .add_int("quantizer.kmeans_iters", 10, "k-means iterations of the codebooks' initialisation (0: random codes)")
      .add_double("quantizer.dead_code_threshold", 2.0, "restart codes whose EMA cluster size falls below it (0: never)")
      .add_double("loss.l1_weight", 1.0, "weight of the waveform L1")
      .add_double("loss.mel_weight", 0.1, "weight of the multi-scale log-mel L1")
      .add_double("loss.commitment_weight", 1.0, "weight of the RVQ commitment loss")
      .add_int("loss.mel_min_log2", 6, "smallest mel window: 2^mel_min_log2 samples")
      .add_int("loss.mel_max_log2", 11, "largest mel window: 2^mel_max_log2 samples")
      .add_int("loss.n_mels", 64, "mel bands per scale (at most window / 4)")
      .add_double("loss.mel_floor", 1e-2, "added to the power mels before log10 in the loss (the mel_distance metric uses 1e-5)")
      .add_string("data.train", "", "training clips: a folder with captions.jsonl (or the file), audio files beside it")
      .add_string("data.val", "", "held-out clips: mel_distance, si_snr, codebook usage and samples")
      .add_int("data.workers", 2, "loader threads (0: load in the training thread)")
      .add_double("data.segment_seconds", 1.0, "training crop length (rounded up to a multiple of the hop)")
      .add_double("data.eval_seconds", 4.0, "evaluation clip length from each clip's start (rounded up to the hop; shorter clips zero-padded)")
      .add_int("train.eval_samples", 64, "held-out clips for the evaluation (0: all)")
      .add_int("eval.samples", 4, "held-out clips written as WAV reconstructions with each sample")
      .add_string("eval.checker", "", "melodies: judge the reconstructions with the captioned-melodies analyser "
                                      "(codec_adherence*: the ceiling of a music model on these codes)");
}

// Seconds to samples, rounded up to a multiple of the hop.
int64_t clip_samples(double seconds, const CodecOptions& o, int64_t hop, const char* key) {
  if (!(seconds > 0)) error("config: key '", key, "' must be positive, got ", seconds);
  const int64_t n = int64_t(std::ceil(seconds * double(o.sample_rate) - 1e-9));
  return std::max<int64_t>(1, (n + hop - 1) / hop) * hop;
}

class CodecTask : public train::Task {
 public:
  explicit CodecTask(const train::Config& c) : cfg_(c) {}

  void build(const train::RunContext& ctx) override {
    device_ = ctx.device;
    B_ = cfg_.get_int("train.batch_size");
    w_l1_ = cfg_.get_double("loss.l1_weight");
    w_mel_ = cfg_.get_double("loss.mel_weight");
    w_commit_ = cfg_.get_double("loss.commitment_weight");
    for (const char* k : {"loss.l1_weight", "loss.mel_weight", "loss.commitment_weight"})
      if (cfg_.get_double(k) < 0) error("config: key '", k, "' must be >= 0, got ", cfg_.get_double(k));
    const uint64_t seed = uint64_t(cfg_.get_int("train.seed"));
    manual_seed(seed);
    rvq_gen_.manual_seed(seed * 2 + 1);
    Generator init(seed);
    model_ = std::make_unique<Codec>(codec_options(cfg_), &init, &rvq_gen_);
    check_melodies_ = melody_checker(cfg_.get_string("eval.checker"), model_->options.sample_rate);
    const CodecOptions& o = model_->options;
    mel_.sample_rate = int(o.sample_rate);
    mel_.min_log2 = cfg_.get_int("loss.mel_min_log2");
    mel_.max_log2 = cfg_.get_int("loss.mel_max_log2");
    mel_.n_mels = cfg_.get_int("loss.n_mels");
    mel_.floor = cfg_.get_double("loss.mel_floor");
    mel_distance(zeros({1, 1, 64}), zeros({1, 1, 64}), mel_);  // bad mel keys fail now, not at the first step
    metric_.sample_rate = int(o.sample_rate);
    segment_ = clip_samples(cfg_.get_double("data.segment_seconds"), o, model_->hop(), "data.segment_seconds");
    eval_len_ = clip_samples(cfg_.get_double("data.eval_seconds"), o, model_->hop(), "data.eval_seconds");
    if (!ctx.open_data) {
      bench_audio_ = (randn({B_, 1, segment_}) * 0.1).to(device_);
      return;
    }
    data::LoaderOptions lo;
    lo.batch_size = B_;
    lo.workers = int(cfg_.get_int("data.workers"));
    lo.seed = seed;
    lo.rank = ctx.rank;
    lo.world_size = ctx.world_size;
    train_.emplace(open_audio_text(cfg_.get_string("data.train")),
                   audio_clip_transform({int(o.sample_rate), segment_, true}), lo);
    if (const std::string v = cfg_.get_string("data.val"); !v.empty()) val_ = open_audio_text(v);
    eval_transform_ = audio_clip_transform({int(o.sample_rate), eval_len_, false});
  }

  nn::Module& model() override { return *model_; }

  train::StepOutput train_step() override {
    const data::LoaderBatch b = train_->next();
    const auto messages = train_->skip_messages();
    for (; reported_ < messages.size(); ++reported_) std::fprintf(stderr, "fm train: skipped %s\n", messages[reported_].c_str());
    Losses l = losses(b.tensors.at("audio").to(device_));
    return {l.loss,
            {{"l1", l.l1.item()}, {"mel", l.mel.item()}, {"commitment", l.commitment.item()}, {"skipped", double(b.skipped)}}};
  }

  train::StepOutput bench_step() override { return {losses(bench_audio_).loss, {}}; }

  // Per held-out clip (the first train.eval_samples, each its first
  // data.eval_seconds): the codec's reconstruction through all codebooks,
  // averaged over clips: val_l1 (waveform L1), val_mel (the loss's
  // multi-scale log-mel L1), val_loss (their weighted sum, without the
  // commitment term, which is 0 in eval mode), mel_distance (the same
  // distance with the default MelDistanceOptions: windows 64 to 2048, 64
  // mels, floor 1e-5, whatever the loss keys), si_snr (dB); and per codebook
  // the fraction of its codes used (codebook_usage: the mean over codebooks,
  // codebook_usage_min: the least used) and the perplexity exp(entropy) of
  // its code histogram (codebook_perplexity: the mean).
  std::map<std::string, double> evaluate() override {
    std::map<std::string, double> out;
    if (!val_) return out;
    const int64_t K = model_->n_codebooks(), bins = model_->codebook_size();
    std::vector<double> counts(size_t(K * bins), 0.0);
    double l1 = 0, mel = 0, mel_loss = 0, snr = 0;
    int64_t clips = 0;
    const bool check = check_melodies_;
    std::vector<Tensor> heard;
    std::vector<std::string> captions;
    for_each_batch(*val_, eval_transform_, B_, cfg_.get_int("train.eval_samples"), [&](const data::LoaderBatch& b) {
      const Tensor x = b.tensors.at("audio").to(device_);
      const CodecOutput r = model_->forward(x);
      const Tensor y = r.reconstruction.to(DType::f32);
      l1 += sum(mean(abs(y - x), {1, 2})).item();
      mel += sum(mel_distance(y, x, metric_)).item();
      mel_loss += sum(mel_distance(y, x, mel_)).item();
      snr += sum(si_snr(y, x)).item();
      const std::vector<int64_t> codes = r.codes.permute({1, 0, 2}).contiguous().to_vector<int64_t>();  // [K, B * F]
      const size_t per = codes.size() / size_t(K);
      for (size_t i = 0; i < codes.size(); ++i) counts[(i / per) * size_t(bins) + size_t(codes[i])] += 1.0;
      clips += x.size(0);
      if (!check) return;
      const Tensor cpu = y.to(Device::cpu());
      for (int64_t i = 0; i < x.size(0); ++i) {
        heard.push_back(cpu.select(0, i).select(0, 0).contiguous());
        captions.push_back(val_->read(b.indices[size_t(i)]).caption);
      }
    });
    if (clips == 0) return out;
    out["val_l1"] = l1 / double(clips);
    out["mel_distance"] = mel / double(clips);
    out["val_mel"] = mel_loss / double(clips);
    out["val_loss"] = w_l1_ * out["val_l1"] + w_mel_ * out["val_mel"];
    out["si_snr"] = snr / double(clips);
    double usage = 0, usage_min = 1, perplexity = 0;
    for (int64_t k = 0; k < K; ++k) {
      double total = 0, used = 0, entropy = 0;
      for (int64_t c = 0; c < bins; ++c) total += counts[size_t(k * bins + c)];
      for (int64_t c = 0; c < bins; ++c) {
        const double n = counts[size_t(k * bins + c)];
        if (n == 0) continue;
        used += 1;
        entropy -= n / total * std::log(n / total);
      }
      usage += used / double(bins);
      usage_min = std::min(usage_min, used / double(bins));
      perplexity += std::exp(entropy);
    }
    out["codebook_usage"] = usage / double(K);
    out["codebook_usage_min"] = usage_min;
    out["codebook_perplexity"] = perplexity / double(K);
    if (check) add_melody_adherence(heard, captions, "codec_adherence", out);
    return out;
  }

  // The first eval.samples held-out clips and their reconstructions, as
  // samples/step_N_clip_I.wav (reconstruction) and step_N_clip_I_original.wav.
  // TODO(tensorboard audio): also hand the reconstructions to the sink once
  // SampleSink takes audio.
  void write_samples(int64_t step, train::SampleSink& sink) override {
    if (!val_) return;
    const int64_t n = std::min(cfg_.get_int("eval.samples"), val_->size());
    if (n <= 0) return;
    Tensor x;
    for_each_batch(*val_, eval_transform_, n, n, [&](const data::LoaderBatch& b) { x = b.tensors.at("audio"); });
    const Tensor y = model_->forward(x.to(device_)).reconstruction.to(DType::f32).to(Device::cpu());
    const std::filesystem::path dir = std::filesystem::path(cfg_.get_string("run.dir")) / "samples";
    std::filesystem::create_directories(dir);
    const int rate = int(model_->options.sample_rate);
    for (int64_t i = 0; i < x.size(0); ++i) {
      const std::string stem = (dir / ("step_" + std::to_string(step) + "_clip_" + std::to_string(i))).string();
      audio::write(stem + ".wav", audio::from_tensor(y.select(0, i), rate));
      audio::write(stem + "_original.wav", audio::from_tensor(x.select(0, i), rate));
    }
  }

  int64_t batch_samples() const override { return B_; }
  std::string sample_unit() const override { return "clips"; }
  double flops_per_sample() const override { return codec_flops(model_->options, segment_); }

  train::TaskState state() const override {
    return {{{"train", train_ ? train_->position() : 0}}, {{"rvq", rvq_gen_.state()}}, {}};
  }
  void load_state(const train::TaskState& s) override {
    if (auto it = s.positions.find("train"); it != s.positions.end() && train_) train_->set_position(it->second);
    if (auto it = s.rngs.find("rvq"); it != s.rngs.end()) rvq_gen_.set_state(it->second);
  }

 private:
  struct Losses {
    Tensor loss, l1, mel, commitment;
  };

  // The training loss of a batch of clips [B, 1, S] (losses in f32).
  Losses losses(const Tensor& x) {
    const CodecOutput r = model_->forward(x);
    const Tensor y = r.reconstruction.to(DType::f32), target = x.to(DType::f32);
    const Tensor l1 = l1_loss(y, target), mel = mean(mel_distance(y, target, mel_));
    const Tensor commit = r.commitment_loss.to(DType::f32);
    Tensor loss = l1 * w_l1_ + mel * w_mel_;
    if (w_commit_ > 0) loss = loss + commit * w_commit_;
    return {loss, l1.detach(), mel.detach(), commit.detach()};
  }

  const train::Config& cfg_;
  Device device_;
  int64_t B_ = 0, segment_ = 0, eval_len_ = 0;
  double w_l1_ = 0, w_mel_ = 0, w_commit_ = 0;
  MelDistanceOptions mel_;     // the loss's
  bool check_melodies_ = false;  // eval.checker = melodies
  MelDistanceOptions metric_;  // mel_distance's: the defaults, fixed whatever the loss keys
  Generator rvq_gen_;
  std::unique_ptr<Codec> model_;
  std::optional<data::DataLoader> train_;
  size_t reported_ = 0;  // skip messages printed so far
  std::shared_ptr<const data::ImageTextSource> val_;
  data::Transform eval_transform_;
  Tensor bench_audio_;
};

const train::TaskRegistrar registrar{{
    "codec",
    "neural audio codec (SEANet encoder/decoder, residual vector quantisation, as EnCodec without a discriminator): "
    "waveform L1 + multi-scale mel + commitment loss",
    declare_codec_keys,
    {},
    {"model.sample_rate", "model.channels", "model.dim", "model.ratios", "model.residual_layers",
     "model.dilation_base", "model.weight_norm", "model.n_codebooks", "model.codebook_size"},
    [](const train::Config& c) { return std::make_unique<CodecTask>(c); },
}};

}  // namespace

CodecOptions codec_options(const train::Config& c) {
  CodecOptions o;
  o.sample_rate = c.get_int("model.sample_rate");
  o.channels = c.get_int("model.channels");
  o.dim = c.get_int("model.dim");
  o.ratios = parse_int_list("model.ratios", c.get_string("model.ratios"));
  o.residual_layers = c.get_int("model.residual_layers");
  o.dilation_base = c.get_int("model.dilation_base");
  o.weight_norm = c.get_bool("model.weight_norm");
  o.rvq.dim = o.dim;
  o.rvq.n_codebooks = c.get_int("model.n_codebooks");
  o.rvq.codebook_size = c.get_int("model.codebook_size");
  o.rvq.decay = c.get_double("quantizer.decay");
  o.rvq.kmeans_iters = c.get_int("quantizer.kmeans_iters");
  o.rvq.kmeans_init = o.rvq.kmeans_iters > 0;
  o.rvq.threshold_ema_dead_code = c.get_double("quantizer.dead_code_threshold");
  o.rvq.commitment_weight = 1.0;  // scaled by loss.commitment_weight in the task
  if (o.sample_rate < audio::kMinSampleRate || o.sample_rate > audio::kMaxSampleRate)
    error("config: key 'model.sample_rate' must be in [", audio::kMinSampleRate, ", ", audio::kMaxSampleRate, "], got ",
          o.sample_rate);
  return o;
}

CodecRun load_codec_run(const std::string& run_dir) {
  CodecRun run;
  run.config = train::load_run_config(run_dir);
  if (run.config.get_string("task.kind") != "codec")
    error(run_dir, " is a '", run.config.get_string("task.kind"), "' run, not a codec run");
  run.model = std::make_unique<Codec>(codec_options(run.config));
  run.step = train::load_run_weights(run_dir, *run.model);
  run.model->eval();
  return run;
}

}  // namespace fm::tasks
