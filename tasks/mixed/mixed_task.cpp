// [task] kind = mixed: one transformer trained on mixed-modal samples
// (Transfusion): captioned images become, at random per sample,
//   caption direction   [BOI] image (clean, t = 0) [EOI caption end-of-text]
//                       (next-token loss on the caption)
//   image direction     [caption end-of-text BOI] image (noised) [EOI]
//                       (diffusion loss on the image, next-token loss on the
//                       caption; the caption is dropped, [BOI] alone, with
//                       probability diffusion.cond_drop, for guidance)
// packed into rows under the layout's mask (fm/tasks/mixed_layout.h). The
// loss is text + mixed.image_weight x image, each logged apart. Evaluated
// both ways on held-out images with the same checkers as the single-task
// kinds: caption exact match and metrics (fm/tasks/caption.h), and the
// adherence of images drawn from held-out captions (fm/tasks/diffusion.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>

#include "fm/autograd.h"
#include "fm/data/image_text.h"
#include "fm/factory.h"
#include "fm/image/image.h"
#include "fm/image/transforms.h"
#include "fm/ops.h"
#include "fm/tasks/audio_data.h"
#include "fm/tasks/caption.h"
#include "fm/tasks/codec.h"
#include "fm/tasks/diffusion.h"
#include "fm/tasks/image_text_data.h"
#include "fm/tasks/mixed.h"
#include "fm/tasks/music.h"
#include "fm/train/recipe.h"
#include "fm/train/task.h"
#include "fm/train/trainer.h"

namespace fm::tasks {
namespace {

void declare_mixed_keys(train::Config& c) {
  c.add_int("model.image_size", 32, "image side in pixels (images are resized and cropped to it)")
      .add_int("model.channels", 3, "image channels: 3 (RGB) or 1 (luminance)")
      .add_int("model.patch_size", 4, "image patch side (each patch is one position)")
      .add_int("model.width", 256, "transformer width")
      .add_int("model.layers", 6, "transformer blocks")
      .add_int("model.heads", 4, "attention heads")
      .add_int("model.vocab_size", 0, "text vocabulary before the four markers (0: the tokenizer's)")
      .add_int("model.context_length", 24, "caption tokens, end-of-text included")
      .add_int("model.max_positions", 0, "positions inside one sample (0: the longest sample: caption, markers and patches)")
      .add_double("mixed.caption_share", 0.5, "share of training images in the caption direction (the rest: image direction)")
      .add_double("mixed.text_weight", 1.0, "weight of the next-token loss")
      .add_double("mixed.image_weight", 5.0, "weight of the diffusion loss (Transfusion's lambda)")
      .add_int("mixed.row_length", 0, "positions per packed row (0: model.max_positions)")
      .add_bool("mixed.pack", true, "pack several samples into a row (block-diagonal attention)")
      .add_string("model.codec", "", "a codec run whose tokens carry audio segments (empty: images and text only)")
      .add_int("model.n_codebooks", 0, "codec codebooks used (0: all of the codec run's)")
      .add_int("model.codebook_size", 0, "codes per codebook (set from model.codec)")
      .add_string("data.audio_train", "", "captioned clips (a caption folder of audio) for the audio segments")
      .add_string("data.audio_val", "", "held-out captioned clips")
      .add_double("data.clip_seconds", 4.0, "clip length, from each clip's start")
      .add_int("mixed.audio_batch", 8, "captioned clips per step besides train.batch_size images (with model.codec)")
      .add_double("mixed.audio_weight", 1.0, "weight of the audio codes' next-token loss")
      .add_double("mixed.describe_share", 0.5, "share of clips in the describe direction (the rest: music)")
      .add_int("eval.clips", 16, "held-out clips described, and captions played, at each evaluation")
      .add_double("sample.guidance", 3.0, "music: classifier-free guidance on the code logits (1: none)")
      .add_double("sample.temperature", 1.0, "music: sampling temperature")
      .add_int("sample.top_k", 250, "music: sample among the k most likely codes")
      .add_double("sample.top_p", 0.0, "music: > 0: nucleus sampling instead of top-k")
      .add_string("data.tokenizer", "", "caption tokenizer file (empty: bytes + <|endoftext|>)")
      .add_int("train.eval_samples", 512, "held-out images for the validation losses (0: all)")
      .add_string("eval.checker", "", "shapes: caption exact match and image adherence on captioned shapes (empty: none)")
      .add_int("eval.images", 64, "held-out images captioned, and captions drawn, at each evaluation (0: all)")
      .add_int("eval.samples", 16, "prompts (the first of data.val) in each sample grid");
  declare_decode_keys(c);
  declare_diffusion_objective_keys(c);
  declare_image_data_keys(c, "held-out captioned images: validation losses, caption and image figures");
}

// Delayed steps of one clip: frames at the codec's rate, plus K - 1.
int64_t clip_steps(const train::Config& c) {
  const CodecOptions co = codec_options(train::load_run_config(c.get_string("model.codec")));
  int64_t hop = 1;
  for (int64_t r : co.ratios) hop *= r;
  const int64_t frames = int64_t(std::ceil(c.get_double("data.clip_seconds") * double(co.sample_rate) / double(hop)));
  return frames + c.get_int("model.n_codebooks") - 1;
}

// Caption ids up to and including the end-of-text.
std::vector<int64_t> caption_ids(const Tensor& text, int64_t eot) {
  std::vector<int64_t> all = text.contiguous().to_vector<int64_t>();
  all.resize(size_t(eot + 1));
  return all;
}

void resolve_mixed(train::Config& c) {
  resolve_diffusion_objective(c);
  if (c.get_int("model.vocab_size") == 0)
    c.set("model.vocab_size", std::to_string(caption_tokenizer(c.get_string("data.tokenizer")).vocab_size()),
          "data.tokenizer");
  if (const std::string codec_dir = c.get_string("model.codec"); !codec_dir.empty()) {
    const train::Config codec = train::load_run_config(codec_dir);
    if (codec.get_string("task.kind") != "codec")
      error("config: key 'model.codec': ", codec_dir, " is a '", codec.get_string("task.kind"), "' run, not a codec run");
    const CodecOptions co = codec_options(codec);
    if (c.get_int("model.n_codebooks") == 0) c.set("model.n_codebooks", std::to_string(co.rvq.n_codebooks), "model.codec");
    c.set("model.codebook_size", std::to_string(co.rvq.codebook_size), "model.codec");
  }
  if (c.get_int("model.max_positions") == 0) {
    const int64_t p = c.get_int("model.patch_size"), g = p > 0 ? c.get_int("model.image_size") / p : 0;
    int64_t longest = c.get_int("model.context_length") + 2 + g * g;
    if (!c.get_string("model.codec").empty())  // caption, two markers, the delayed steps of a clip
      longest = std::max(longest, c.get_int("model.context_length") + 2 + clip_steps(c));
    c.set("model.max_positions", std::to_string(longest), "model.context_length");
  }
}

class MixedTask : public train::Task {
 public:
  explicit MixedTask(const train::Config& c)
      : cfg_(c), tokenizer_(caption_tokenizer(c.get_string("data.tokenizer"))), eot_(end_of_text_id(tokenizer_)),
        diffusion_(diffusion_options(c)) {}

  void build(const train::RunContext& ctx) override {
    device_ = ctx.device;
    B_ = cfg_.get_int("train.batch_size");
    caption_share_ = cfg_.get_double("mixed.caption_share");
    cond_drop_ = cfg_.get_double("diffusion.cond_drop");
    if (caption_share_ < 0 || caption_share_ > 1) error("config: key 'mixed.caption_share' must be in [0, 1], got ", caption_share_);
    if (cond_drop_ < 0 || cond_drop_ >= 1) error("config: key 'diffusion.cond_drop' must be in [0, 1), got ", cond_drop_);
    if (const std::string checker = cfg_.get_string("eval.checker"); !checker.empty() && checker != "shapes")
      error("config: key 'eval.checker': '", checker, "' is not shapes");
    objectives::make_sampler(cfg_.get_string("diffusion.sampler"), sampler_options(cfg_));  // a bad name fails now
    // Each rank its own streams (rank 0's are saved: a resumed multi-rank run draws anew on the others).
    const uint64_t seed = uint64_t(cfg_.get_int("train.seed")) + uint64_t(ctx.rank) * 7919;
    manual_seed(seed);
    noise_gen_.manual_seed(seed * 2 + 1);
    layout_gen_.manual_seed(seed * 2 + 2);
    model_ = std::make_unique<MixedModel>(mixed_options(cfg_));
    pack_.length = cfg_.get_int("mixed.row_length") > 0 ? cfg_.get_int("mixed.row_length") : model_->options.max_positions;
    pack_.patches = model_->patches();
    pack_.special = model_->audio_special();
    pack_.pack = cfg_.get_bool("mixed.pack");
    decode_ = decode_options(cfg_, cfg_.get_int("model.context_length") + 1);
    const int64_t L = cfg_.get_int("model.context_length");
    if (!ctx.open_data) {
      const auto& o = model_->options;
      bench_images_ = randn({B_, o.channels, o.image_size, o.image_size});
      bench_ids_ = randint(0, o.vocab_size, {B_, L});
      return;
    }
    ImageTransformOptions io = image_transform_options(cfg_);
    train_.emplace(cfg_, ctx, std::vector<std::string>{}, image_text_transform(io, tokenizer_, L, {}));
    io.random_crop = io.hflip = false;
    eval_transform_ = image_text_transform(io, tokenizer_, L, {});
    if (const std::string v = cfg_.get_string("data.val"); !v.empty()) val_ = open_image_text(v, {});
    if (!cfg_.get_string("model.codec").empty()) open_audio();
  }

  nn::Module& model() override { return *model_; }

  train::StepOutput train_step() override {
    const data::LoaderBatch b = train_->next();
    const Tensor images = b.tensors.at("image"), text = b.tensors.at("text");
    const std::vector<int64_t> eot = b.tensors.at("eot").to_vector<int64_t>();
    const std::vector<float> u = rand({images.size(0), 2}, TensorOptions(DType::f32), &layout_gen_).to_vector<float>();
    std::vector<MixedSample> samples;
    int64_t dropped = 0, captioning = 0;
    for (int64_t i = 0; i < images.size(0); ++i) {
      const bool caption_dir = u[size_t(2 * i)] < caption_share_;
      const bool drop = !caption_dir && u[size_t(2 * i + 1)] < cond_drop_;
      captioning += caption_dir;
      dropped += drop;
      samples.push_back(sample(images.select(0, i), caption_ids(text.select(0, i), eot[size_t(i)]), caption_dir, drop));
    }
    const int64_t clips = add_audio_samples(samples);
    train::StepOutput out = step_loss(samples, noise_gen_);
    if (clips) out.metrics["clips"] = double(clips);
    out.metrics["caption_share"] = double(captioning) / double(images.size(0));
    out.metrics["cond_dropped"] = double(dropped) / double(std::max<int64_t>(1, images.size(0) - captioning));
    out.metrics["skipped"] = double(b.skipped);
    return out;
  }

  train::StepOutput bench_step() override {
    std::vector<MixedSample> samples;
    const int64_t L = cfg_.get_int("model.context_length");
    for (int64_t i = 0; i < B_; ++i) {
      std::vector<int64_t> ids = bench_ids_.select(0, i).narrow(0, 0, L * 3 / 4).to_vector<int64_t>();
      ids.push_back(eot_);
      samples.push_back(sample(bench_images_.select(0, i), ids, i % 2 == 0, false));
    }
    return step_loss(samples, noise_gen_);
  }

  std::map<std::string, double> evaluate() override {
    std::map<std::string, double> out;
    if (!val_) return out;
    validation_losses(out);
    const int64_t n = cfg_.get_int("eval.images");
    std::vector<int64_t> indices;
    std::vector<std::string> generated;
    for_each_batch(*val_, eval_transform_, B_, n, [&](const data::LoaderBatch& b) {
      for (const Decoded& d : mixed_caption_images(*model_, b.tensors.at("image").to(device_), eot_, decode_))
        generated.push_back(tokenizer_.decode(d.tokens));
      indices.insert(indices.end(), b.indices.begin(), b.indices.end());
    });
    caption_figures(cfg_.get_string("eval.checker"), *val_, indices, generated, out);
    if (cfg_.get_string("eval.checker") == "shapes") {
      const auto a = adherence(generator(), *val_, "shapes", n, B_, generate_defaults(cfg_));
      out.insert(a.begin(), a.end());
    }
    if (audio_val_.codes.defined()) audio_figures(out);
    return out;
  }

  void write_samples(int64_t step, train::SampleSink& sink) override {
    if (!val_) return;
    const int64_t n = std::min(cfg_.get_int("eval.samples"), val_->size());
    if (n <= 0) return;
    std::vector<std::string> prompts;
    for (int64_t i = 0; i < n; ++i) prompts.push_back(val_->read(i).caption);
    int64_t truncated = 0;
    const Tensor grid = image_grid(generator()(prompts, generate_defaults(cfg_), &truncated), 4);
    const image::Image img = image::from_tensor(grid);
    sink.image_png("samples", image::encode_png(img), img.height, img.width);
    std::string text;
    for_each_batch(*val_, eval_transform_, n, n, [&](const data::LoaderBatch& b) {
      const auto captions = mixed_caption_images(*model_, b.tensors.at("image").to(device_), eot_, decode_);
      for (size_t i = 0; i < captions.size(); ++i)
        text += std::to_string(i) + ": drawn from \"" + prompts[i] + "\"; captioned \"" +
                tokenizer_.decode(captions[i].tokens) + "\"\n";
    });
    sink.text("prompts_and_captions", text);
  }

  int64_t batch_samples() const override { return B_; }
  std::string sample_unit() const override { return "img"; }
  double flops_per_sample() const override {
    // 6 FLOPs per core parameter per position and attention's products over one sample's positions (heads left out).
    const auto& o = model_->options;
    const double T = double(o.max_positions);
    return 6.0 * double(model_->core->num_parameters()) * T + 12.0 * double(o.layers * o.width) * T * T;
  }

  train::TaskState state() const override {
    return {{{"train", train_ ? train_->position() : 0}}, {{"noise", noise_gen_.state()}, {"layout", layout_gen_.state()}}, {}};
  }
  void load_state(const train::TaskState& s) override {
    if (auto it = s.positions.find("train"); it != s.positions.end() && train_) train_->set_position(it->second);
    if (auto it = s.rngs.find("noise"); it != s.rngs.end()) noise_gen_.set_state(it->second);
    if (auto it = s.rngs.find("layout"); it != s.rngs.end()) layout_gen_.set_state(it->second);
  }

 private:
  // One captioned image as a sample of either direction.
  MixedSample sample(const Tensor& image, const std::vector<int64_t>& caption, bool caption_dir, bool drop) const {
    const int64_t BOI = model_->marker(Marker::begin_image), EOI = model_->marker(Marker::end_image);
    if (caption_dir) {
      std::vector<int64_t> after{EOI};
      after.insert(after.end(), caption.begin(), caption.end());
      return {text_piece({BOI}), image_piece(image), text_piece(after)};
    }
    std::vector<int64_t> before = drop ? std::vector<int64_t>{} : caption;
    before.push_back(BOI);
    return {text_piece(before), image_piece(image, true),
            text_piece({EOI})};
  }

  train::StepOutput step_loss(const std::vector<MixedSample>& samples, Generator& gen,
                              const Tensor& t = Tensor(), const Tensor& noise = Tensor()) {
    const MixedBatch b = pack_mixed(samples, pack_);
    const MixedLosses l = mixed_losses(*model_, b, diffusion_, gen, t, noise);
    Tensor loss;
    train::StepOutput out;
    const auto add = [&](const Tensor& part, double weight, const char* name) {
      if (!part.defined()) return;
      out.metrics[name] = part.item();
      loss = loss.defined() ? loss + part * weight : part * weight;
    };
    add(l.text, cfg_.get_double("mixed.text_weight"), "text_loss");
    add(l.image, cfg_.get_double("mixed.image_weight"), "image_loss");
    add(l.audio, cfg_.get_double("mixed.audio_weight"), "audio_loss");
    out.metrics["rows"] = double(b.rows);
    out.loss = loss;
    return out;
  }

  // Held-out losses with fixed draws: the first train.eval_samples images,
  // even ones in the caption direction (val_text_loss: the caption's
  // next-token loss), odd ones in the image direction at evenly spread times
  // with fixed noise (val_image_loss); val_loss is their weighted sum.
  void validation_losses(std::map<std::string, double>& out) {
    Generator gen(12345);
    double text = 0, image = 0;
    int64_t n_text = 0, n_image = 0, seen = 0;
    const int64_t limit = cfg_.get_int("train.eval_samples");
    const int64_t total = limit > 0 ? std::min(limit, val_->size()) : val_->size();
    for_each_batch(*val_, eval_transform_, B_, limit, [&](const data::LoaderBatch& b) {
      const Tensor images = b.tensors.at("image"), ids = b.tensors.at("text");
      const std::vector<int64_t> eot = b.tensors.at("eot").to_vector<int64_t>();
      std::vector<MixedSample> caps, draws;
      std::vector<float> times;
      for (int64_t i = 0; i < images.size(0); ++i, ++seen) {
        const bool caption_dir = seen % 2 == 0;
        (caption_dir ? caps : draws).push_back(sample(images.select(0, i), caption_ids(ids.select(0, i), eot[size_t(i)]), caption_dir, false));
        if (!caption_dir) times.push_back(float((double(seen) + 0.5) / double(total)));
      }
      if (!caps.empty()) {
        const MixedLosses l = mixed_losses(*model_, pack_mixed(caps, pack_), diffusion_, gen);
        text += l.text.item() * double(l.text_n);
        n_text += l.text_n;
      }
      if (!draws.empty()) {
        const auto& o = model_->options;
        const Tensor noise = randn({int64_t(draws.size()), o.channels, o.image_size, o.image_size}, TensorOptions(DType::f32), &gen);
        std::vector<float> t = times;
        if (diffusion_.options().process != "flow")
          for (float& v : t) v = std::floor(v * float(diffusion_.options().num_train_timesteps));
        const MixedLosses l = mixed_losses(*model_, pack_mixed(draws, pack_), diffusion_, gen, tensor(t), noise);
        image += l.image.item() * double(l.image_n);
        n_image += l.image_n;
      }
    });
    if (n_text) out["val_text_loss"] = text / double(n_text);
    if (n_image) out["val_image_loss"] = image / double(n_image);
    if (n_text && n_image)
      out["val_loss"] = cfg_.get_double("mixed.text_weight") * out["val_text_loss"] +
                        cfg_.get_double("mixed.image_weight") * out["val_image_loss"];
  }

  // model.codec: the codec run, and the training and held-out clips as
  // codes (encoded once, kept in the run directory).
  void open_audio() {
    const std::string dir = cfg_.get_string("model.codec");
    CodecRun run = load_codec_run(dir);
    codec_ = std::move(run.model);
    codec_->to(device_);
    const auto& o = model_->options;
    if (codec_->n_codebooks() < o.n_codebooks || codec_->codebook_size() != o.codebook_size)
      error("config: the codec run has ", codec_->n_codebooks(), " codebooks of ", codec_->codebook_size(),
            "; the model expects ", o.n_codebooks, " (at most the codec's) of ", o.codebook_size);
    const std::string train = cfg_.get_string("data.audio_train");
    if (train.empty()) error("config: model.codec is set: key 'data.audio_train' must name captioned clips");
    const int64_t samples = int64_t(std::lround(cfg_.get_double("data.clip_seconds") * double(codec_->options.sample_rate)));
    const std::string run_dir = cfg_.get_string("run.dir");
    std::filesystem::create_directories(run_dir);
    const CodecSource src{*codec_, dir, run.step, o.n_codebooks};
    audio_train_ = encode_folder(src, train, samples, 0, run_dir + "/codes_train.safetensors", device_);
    const int64_t L = cfg_.get_int("model.context_length");
    for (const auto& c : audio_train_.captions) audio_train_ids_.push_back(caption_tokens(c, L));
    if (const std::string v = cfg_.get_string("data.audio_val"); !v.empty()) {
      audio_val_ = encode_folder(src, v, samples, cfg_.get_int("eval.clips"), run_dir + "/codes_val.safetensors", device_);
      for (const auto& c : audio_val_.captions) audio_val_ids_.push_back(caption_tokens(c, L));
      audio_val_source_ = open_audio_text(v);
    }
    std::printf("mixed: %lld training clips as %lld x %lld codes\n", (long long)audio_train_.codes.size(0),
                (long long)o.n_codebooks, (long long)audio_train_.codes.size(2));
  }

  std::vector<int64_t> caption_tokens(const std::string& caption, int64_t L) const {
    auto [ids, eot] = tokenize_caption(tokenizer_, caption, L);
    return caption_ids(ids, eot);
  }

  // One clip as a sample: music [caption BOA] steps [EOA] (the caption
  // dropped with diffusion.cond_drop, for guidance), or describe [BOA]
  // steps [EOA caption].
  MixedSample clip_sample(const Tensor& codes, const std::vector<int64_t>& caption, bool describe, bool drop) const {
    const int64_t BOA = model_->marker(Marker::begin_audio), EOA = model_->marker(Marker::end_audio);
    const Tensor steps = apply_delay_pattern(codes.unsqueeze(0), model_->audio_special()).squeeze(0).contiguous();
    if (describe) {
      std::vector<int64_t> after{EOA};
      after.insert(after.end(), caption.begin(), caption.end());
      return {text_piece({BOA}), audio_piece(steps), text_piece(after)};
    }
    std::vector<int64_t> before = drop ? std::vector<int64_t>{} : caption;
    before.push_back(BOA);
    return {text_piece(before), audio_piece(steps), text_piece({EOA})};
  }

  // mixed.audio_batch clips drawn at random into the step's samples.
  int64_t add_audio_samples(std::vector<MixedSample>& samples) {
    if (!audio_train_.codes.defined()) return 0;
    const int64_t A = cfg_.get_int("mixed.audio_batch"), N = audio_train_.codes.size(0);
    const std::vector<int64_t> pick = randint(0, N, {A}, TensorOptions(DType::i64), &layout_gen_).to_vector<int64_t>();
    const std::vector<float> u = rand({A, 2}, TensorOptions(DType::f32), &layout_gen_).to_vector<float>();
    const double describe = cfg_.get_double("mixed.describe_share");
    for (int64_t i = 0; i < A; ++i) {
      const bool d = u[size_t(2 * i)] < describe;
      samples.push_back(clip_sample(audio_train_.codes.select(0, pick[size_t(i)]), audio_train_ids_[size_t(pick[size_t(i)])],
                                    d, !d && u[size_t(2 * i + 1)] < cond_drop_));
    }
    return A;
  }

  // Held-out clips: the codes' loss in the music direction (val_audio_loss),
  // descriptions (describe_exact and the other caption figures, with the
  // melodies' per-attribute rates), and clips played from their captions,
  // judged by the captioned-melodies analyser (music_adherence*; 16 kHz codecs).
  void audio_figures(std::map<std::string, double>& out) {
    Generator gen(12345);
    const int64_t N = audio_val_.codes.size(0);
    double loss = 0;
    int64_t count = 0;
    std::vector<std::string> described;
    std::vector<int64_t> indices;
    DecodeOptions d = decode_;
    for (int64_t s = 0; s < N; s += B_) {
      const int64_t n = std::min(B_, N - s);
      std::vector<MixedSample> music;
      for (int64_t i = s; i < s + n; ++i) music.push_back(clip_sample(audio_val_.codes.select(0, i), audio_val_ids_[size_t(i)], false, false));
      const MixedLosses l = mixed_losses(*model_, pack_mixed(music, pack_), diffusion_, gen);
      loss += l.audio.item() * double(l.audio_n);
      count += l.audio_n;
      for (const Decoded& c : mixed_caption_codes(*model_, audio_val_.codes.narrow(0, s, n), eot_, d))
        described.push_back(tokenizer_.decode(c.tokens));
      for (int64_t i = s; i < s + n; ++i) indices.push_back(i);
    }
    if (count) out["val_audio_loss"] = loss / double(count);
    std::map<std::string, double> figures;
    caption_figures("melodies", *audio_val_source_, indices, described, figures);
    for (const auto& [k, v] : figures) out["describe_" + k] = v;
    if (codec_->options.sample_rate != 16000) return;  // the analyser hears 16 kHz clips
    std::vector<std::vector<int64_t>> prompts(audio_val_ids_.begin(), audio_val_ids_.begin() + N);
    const MusicSampling ms = music_sampling(cfg_, audio_val_.codes.size(2));
    Generator play(7);
    const Tensor codes = mixed_generate_codes(*model_, prompts, ms.frames, ms, play);
    NoGradGuard ng;
    const Tensor waves = codec_->decode(codes.to(device_)).to(Device::cpu());
    std::vector<Tensor> clips;
    for (int64_t i = 0; i < N; ++i) clips.push_back(waves.select(0, i).select(0, 0).contiguous());
    add_melody_adherence(clips, std::vector<std::string>(audio_val_.captions.begin(), audio_val_.captions.begin() + N),
                         "music_adherence", out);
  }

  ImageGenerator generator() {
    return [this](const std::vector<std::string>& prompts, const GenerateOptions& o, int64_t* truncated) {
      return generate_images(*model_, tokenizer_, cfg_, prompts, o, truncated);
    };
  }

 public:
  // Prompts -> images in [0, 1] (shared with MixedRun).
  static Tensor generate_images(const MixedModel& m, const text::BpeTokenizer& tokenizer, const train::Config& c,
                                const std::vector<std::string>& prompts, const GenerateOptions& o, int64_t* truncated);

 private:
  const train::Config& cfg_;
  text::BpeTokenizer tokenizer_;
  int32_t eot_;
  objectives::Diffusion diffusion_;
  Device device_;
  int64_t B_ = 0;
  double caption_share_ = 0.5, cond_drop_ = 0.1;
  Generator noise_gen_, layout_gen_;
  std::unique_ptr<MixedModel> model_;
  PackOptions pack_;
  DecodeOptions decode_;
  std::optional<TrainImages> train_;
  data::Transform eval_transform_;
  std::shared_ptr<const data::ImageTextSource> val_;
  Tensor bench_images_, bench_ids_;
  std::unique_ptr<Codec> codec_;
  EncodedClips audio_train_, audio_val_;
  std::vector<std::vector<int64_t>> audio_train_ids_, audio_val_ids_;
  std::shared_ptr<const data::ImageTextSource> audio_val_source_;
};

Tensor MixedTask::generate_images(const MixedModel& m, const text::BpeTokenizer& tokenizer, const train::Config& c,
                                  const std::vector<std::string>& prompts, const GenerateOptions& o, int64_t* truncated) {
  if (prompts.empty()) error("generate: no prompts");
  const int64_t L = c.get_int("model.context_length");
  std::vector<std::vector<int64_t>> captions;
  for (const auto& p : prompts) {
    auto [ids, eot] = tokenize_prompt(tokenizer, p, L, truncated);
    captions.push_back(caption_ids(ids, eot));
  }
  auto sampler = objectives::make_sampler(o.sampler, sampler_options(c));
  Generator gen(o.seed);
  const Tensor x = mixed_generate_images(m, captions, *sampler, o.steps, o.cfg, gen);
  return clamp((x.to(Device::cpu()).to(DType::f32) + 1.0) * 0.5, 0.0, 1.0);  // data range [-1, 1] (mean = std = 0.5)
}

const train::TaskRegistrar registrar{{
    "mixed",
    "one transformer over mixed-modal sequences: next-token loss on text, diffusion loss on image patches (Transfusion)",
    declare_mixed_keys,
    resolve_mixed,
    {"model.image_size", "model.channels", "model.patch_size", "model.width", "model.layers", "model.heads",
     "model.vocab_size", "model.context_length", "model.max_positions", "model.codec", "model.n_codebooks",
     "model.codebook_size"},
    [](const train::Config& c) { return std::make_unique<MixedTask>(c); },
}};

}  // namespace

MixedOptions mixed_options(const train::Config& c) {
  MixedOptions o;
  o.vocab_size = c.get_int("model.vocab_size");
  o.width = c.get_int("model.width");
  o.layers = c.get_int("model.layers");
  o.heads = c.get_int("model.heads");
  o.max_positions = c.get_int("model.max_positions");
  o.image_size = c.get_int("model.image_size");
  o.patch_size = c.get_int("model.patch_size");
  o.channels = c.get_int("model.channels");
  o.n_codebooks = c.get_int("model.n_codebooks");
  o.codebook_size = c.get_int("model.codebook_size");
  if (c.get_string("model.codec").empty()) o.n_codebooks = 0;
  return o;
}

MixedRun load_mixed_run(const std::string& run_dir, Device device) {
  MixedRun r{train::load_run_config(run_dir), nullptr, caption_tokenizer(""), {}, {}, nullptr, {}, 0};
  if (r.config.get_string("task.kind") != "mixed")
    error(run_dir, " is a '", r.config.get_string("task.kind"), "' run, not a mixed run");
  r.tokenizer = caption_tokenizer(r.config.get_string("data.tokenizer"));
  r.model = std::make_unique<MixedModel>(mixed_options(r.config));
  r.step = train::load_run_weights(run_dir, *r.model);
  r.model->to(device);
  r.model->eval();
  r.decode = decode_options(r.config, r.config.get_int("model.context_length") + 1);
  if (const std::string codec = r.config.get_string("model.codec"); !codec.empty()) {
    r.codec = std::move(load_codec_run(codec).model);
    r.codec->to(device);
  }
  r.sampling = music_sampling(r.config, 0);  // frames: set per call
  ImageTransformOptions io = image_transform_options(r.config);
  io.random_crop = io.hflip = false;
  r.transform = image_transform(io);
  return r;
}

Tensor MixedRun::generate_images(const std::vector<std::string>& prompts, const GenerateOptions& o,
                                 int64_t* truncated) const {
  return MixedTask::generate_images(*model, tokenizer, config, prompts, o, truncated);
}

Tensor MixedRun::load_image(const std::string& path) const {
  std::ifstream in(path, std::ios::binary);
  if (!in) error(path, ": cannot open it");
  data::ImageTextSample s;
  s.key = s.origin = path;
  s.image.assign(std::istreambuf_iterator<char>(in), {});
  s.image_format = data::image_format_of(path);
  if (s.image.empty()) error(path, ": the file is empty");
  return transform(s, 0).at("image");
}

double MixedRun::max_seconds() const {
  if (!codec) return 0;
  const int64_t L = config.get_int("model.context_length"), K = model->options.n_codebooks;
  const int64_t frames = model->options.max_positions - (L + 2) - (K - 1);  // caption, BOA, EOA, the delay
  return double(frames) / codec->frame_rate();
}

std::vector<Tensor> MixedRun::play(const std::vector<std::string>& captions, double seconds, Generator& gen) const {
  if (!codec) error("this mixed run has no audio segments (model.codec is empty)");
  const double most = max_seconds();
  if (!(seconds > 0) || seconds > most)
    error("--seconds: ", seconds, " is not in (0, ", most, "]: this model generates at most ", most, " s (model.max_positions)");
  std::vector<std::vector<int64_t>> ids;
  const int64_t L = config.get_int("model.context_length");
  for (const auto& c : captions) {
    auto [t, eot] = tokenize_caption(tokenizer, c, L);
    ids.push_back(caption_ids(t, eot));
  }
  MusicSampling s = sampling;
  s.frames = std::max<int64_t>(1, int64_t(std::lround(seconds * codec->frame_rate())));
  const Tensor codes = mixed_generate_codes(*model, ids, s.frames, s, gen);
  NoGradGuard ng;
  const Tensor wave = codec->decode(codes.to(model->token_embedding->weight.device())).to(Device::cpu());
  std::vector<Tensor> out;
  for (int64_t b = 0; b < wave.size(0); ++b) out.push_back(wave.select(0, b).select(0, 0).contiguous());
  return out;
}

std::vector<std::string> MixedRun::caption(const Tensor& images, const DecodeOptions& o, Generator* gen) const {
  std::vector<std::string> out;
  for (const Decoded& d : mixed_caption_images(*model, images.to(model->token_embedding->weight.device()),
                                               end_of_text_id(tokenizer), o, gen))
    out.push_back(tokenizer.decode(d.tokens));
  return out;
}

}  // namespace fm::tasks
