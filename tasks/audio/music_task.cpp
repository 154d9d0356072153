// [task] kind = music: text-to-music (MusicGen's recipe, fm/tasks/music_model.h)
// over the tokens of a trained codec run (`model.codec`). The training clips
// are encoded once at build and their codes kept in memory (and in the run
// directory, so a resumed run does not encode them again). Each step draws a
// batch of clips, replaces captions by the empty one with probability
// music.cond_drop (for classifier-free guidance) and takes the next-token
// loss. Evaluated by the validation loss and, with eval.checker = melodies,
// by generating clips for validation captions and judging them with the
// captioned-melodies analyser (fm/data/melodies_checker.h).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "fm/audio/audio.h"
#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/io/safetensors.h"
#include "fm/ops.h"
#include "fm/tasks/audio_data.h"
#include "fm/tasks/codec.h"
#include "fm/tasks/image_text_data.h"
#include "fm/tasks/music.h"
#include "fm/train/recipe.h"
#include "fm/train/task.h"
#include "fm/train/trainer.h"

namespace fm::tasks {

MusicOptions music_options(const train::Config& c) {
  MusicOptions o;
  o.n_codebooks = c.get_int("model.n_codebooks");
  o.codebook_size = c.get_int("model.codebook_size");
  o.max_steps = c.get_int("model.max_steps");
  o.width = c.get_int("model.width");
  o.layers = c.get_int("model.layers");
  o.heads = c.get_int("model.heads");
  o.vocab_size = c.get_int("model.vocab_size");
  o.text_context = c.get_int("model.text_context");
  o.text_width = c.get_int("model.text_width");
  o.text_layers = c.get_int("model.text_layers");
  o.text_heads = c.get_int("model.text_heads");
  return o;
}

MusicSampling music_sampling(const train::Config& c, int64_t frames) {
  MusicSampling s;
  s.frames = frames;
  s.guidance = c.get_double("sample.guidance");
  s.temperature = c.get_double("sample.temperature");
  s.top_k = c.get_int("sample.top_k");
  s.top_p = c.get_double("sample.top_p");
  if (s.temperature <= 0) error("config: key 'sample.temperature' must be > 0, got ", s.temperature);
  if (s.top_k < 0) error("config: key 'sample.top_k' must be >= 0, got ", s.top_k);
  if (s.top_p < 0 || s.top_p > 1) error("config: key 'sample.top_p' must lie in [0, 1], got ", s.top_p);
  return s;
}

CaptionBatch tokenize_captions(const text::BpeTokenizer& tokenizer, const std::vector<std::string>& captions,
                               int64_t context_length) {
  std::vector<Tensor> ids, masks;
  for (const auto& caption : captions) {
    auto [row, eot] = tokenize_caption(tokenizer, caption, context_length);
    ids.push_back(row);
    masks.push_back(le(arange(0.0, double(context_length), 1.0, TensorOptions(DType::i64)),
                       full({context_length}, double(eot), DType::i64)));
  }
  return {stack(ids, 0), stack(masks, 0)};
}

double max_music_seconds(const MusicModel& model, const Codec& codec) {
  return double(model.options.max_steps - model.options.n_codebooks + 1) / codec.frame_rate();
}

std::vector<Tensor> MusicRun::generate(const std::vector<std::string>& captions, double seconds,
                                       Generator& gen) const {
  const double most = max_music_seconds(*model, *codec);
  if (!(seconds > 0) || seconds > most)
    error("--seconds: ", seconds, " is not in (0, ", most, "]: this model generates at most ", most,
          " s (model.max_steps)");
  std::vector<Tensor> out;
  if (captions.empty()) return out;
  NoGradGuard no_grad;
  MusicSampling s = sampling;
  s.frames = std::max<int64_t>(1, int64_t(std::lround(seconds * codec->frame_rate())));
  const int64_t L = model->options.text_context;
  const CaptionBatch cond = tokenize_captions(tokenizer, captions, L);
  const CaptionBatch empty = tokenize_captions(tokenizer, std::vector<std::string>(captions.size(), ""), L);
  const Tensor codes = generate_codes(*model, cond.ids, cond.mask, empty.ids, empty.mask, s, gen);
  const Tensor wave = codec->decode(codes);  // [B, 1, frames * hop]
  for (int64_t b = 0; b < wave.size(0); ++b) out.push_back(wave.select(0, b).select(0, 0).contiguous());
  return out;
}

MusicRun load_music_run(const std::string& run_dir) {
  MusicRun r{train::load_run_config(run_dir), nullptr, nullptr, caption_tokenizer(""), {}};
  if (r.config.get_string("task.kind") != "music")
    error(run_dir, " is a '", r.config.get_string("task.kind"), "' run, not a music run");
  r.tokenizer = caption_tokenizer(r.config.get_string("data.tokenizer"));
  r.codec = load_codec_run(r.config.get_string("model.codec")).model;
  r.model = std::make_unique<MusicModel>(music_options(r.config));
  train::load_run_weights(run_dir, *r.model);
  r.model->eval();
  r.sampling = music_sampling(r.config, 1);
  return r;
}

namespace {

void declare_music_keys(train::Config& c) {
  c.add_string("model.codec", "", "the codec run whose tokens the model generates (required)")
      .add_int("model.n_codebooks", 0, "codebooks (0: the codec's)")
      .add_int("model.codebook_size", 0, "codes per codebook (0: the codec's)")
      .add_int("model.max_steps", 0, "positions: frames + codebooks - 1 (0: from data.clip_seconds)")
      .add_int("model.width", 256, "decoder width")
      .add_int("model.layers", 6, "decoder blocks")
      .add_int("model.heads", 8, "decoder heads")
      .add_int("model.vocab_size", 0, "caption vocabulary (0: the tokenizer's)")
      .add_int("model.text_context", 32, "caption tokens, end-of-text included")
      .add_int("model.text_width", 256, "caption encoder width")
      .add_int("model.text_layers", 2, "caption encoder blocks")
      .add_int("model.text_heads", 4, "caption encoder heads")
      .add_string("data.train", "", "folder of audio clips with captions.jsonl ({\"file\", \"caption\"} lines)")
      .add_string("data.val", "", "held-out folder of the same kind (empty: none)")
      .add_string("data.tokenizer", "", "caption tokenizer file (empty: bytes + <|endoftext|>)")
      .add_double("data.clip_seconds", 4.0, "clips are cut or zero-padded to this length")
      .add_double("music.cond_drop", 0.1, "probability of training on the empty caption (classifier-free guidance)")
      .add_double("sample.guidance", 3.0, "classifier-free guidance scale (1: none)")
      .add_double("sample.temperature", 1.0, "sampling temperature")
      .add_int("sample.top_k", 250, "sample among the k most likely codes (0: all)")
      .add_double("sample.top_p", 0.0, "> 0: nucleus sampling instead of top-k")
      .add_string("eval.checker", "", "melodies: judge generated clips with the captioned-melodies analyser")
      .add_int("eval.samples", 8, "validation captions generated for at each evaluation (0: none)")
      .add_int("train.eval_samples", 256, "held-out clips for the validation loss (0: all)");
}

void resolve_music(train::Config& c) {
  const std::string codec_dir = c.get_string("model.codec");
  if (codec_dir.empty()) error("config: key 'model.codec' must name a codec run");
  const train::Config codec = train::load_run_config(codec_dir);
  if (codec.get_string("task.kind") != "codec")
    error("config: key 'model.codec': ", codec_dir, " is a '", codec.get_string("task.kind"), "' run, not a codec run");
  const CodecOptions co = codec_options(codec);
  if (c.get_int("model.n_codebooks") == 0) c.set("model.n_codebooks", std::to_string(co.rvq.n_codebooks), "model.codec");
  if (c.get_int("model.codebook_size") == 0)
    c.set("model.codebook_size", std::to_string(co.rvq.codebook_size), "model.codec");
  if (c.get_int("model.max_steps") == 0) {
    int64_t hop = 1;
    for (int64_t r : co.ratios) hop *= r;
    const int64_t frames = int64_t(std::ceil(c.get_double("data.clip_seconds") * double(co.sample_rate) / double(hop)));
    c.set("model.max_steps", std::to_string(frames + c.get_int("model.n_codebooks") - 1), "data.clip_seconds");
  }
  if (c.get_int("model.vocab_size") == 0)
    c.set("model.vocab_size", std::to_string(caption_tokenizer(c.get_string("data.tokenizer")).vocab_size()),
          "data.tokenizer");
}

class MusicTask : public train::Task {
 public:
  explicit MusicTask(const train::Config& c) : cfg_(c), tokenizer_(caption_tokenizer(c.get_string("data.tokenizer"))) {}

  void build(const train::RunContext& ctx) override {
    device_ = ctx.device;
    rank_ = ctx.rank, world_size_ = ctx.world_size;
    B_ = cfg_.get_int("train.batch_size");
    cond_drop_ = cfg_.get_double("music.cond_drop");
    if (cond_drop_ < 0 || cond_drop_ >= 1) error("config: key 'music.cond_drop' must lie in [0, 1), got ", cond_drop_);
    const uint64_t seed = uint64_t(cfg_.get_int("train.seed"));
    manual_seed(seed);
    data_gen_.manual_seed(seed * 2 + 1);
    sample_gen_.manual_seed(seed * 2 + 2);
    model_ = std::make_unique<MusicModel>(music_options(cfg_));
    const auto& o = model_->options;
    frames_ = o.max_steps - o.n_codebooks + 1;
    empty_ = tokenize_captions(tokenizer_, std::vector<std::string>(size_t(B_), ""), o.text_context);
    if (!ctx.open_data) {
      bench_codes_ = randint(0, o.codebook_size, {B_, o.n_codebooks, frames_}).to(device_);
      const CaptionBatch c = tokenize_captions(tokenizer_, std::vector<std::string>(size_t(B_), "a bench caption"),
                                               o.text_context);
      bench_ids_ = c.ids.to(device_), bench_mask_ = c.mask.to(device_);
      return;
    }
    const std::string codec_dir = cfg_.get_string("model.codec");
    CodecRun codec_run = load_codec_run(codec_dir);
    codec_ = std::move(codec_run.model);
    codec_->to(device_);
    if (codec_->n_codebooks() < o.n_codebooks || codec_->codebook_size() != o.codebook_size)
      error("config: the codec run has ", codec_->n_codebooks(), " codebooks of ", codec_->codebook_size(),
            "; the model expects ", o.n_codebooks, " (at most the codec's) of ", o.codebook_size);
    check_melodies_ = melody_checker(cfg_.get_string("eval.checker"), codec_->options.sample_rate);
    const int64_t samples = int64_t(std::lround(cfg_.get_double("data.clip_seconds") * double(codec_->options.sample_rate)));
    const std::string run = cfg_.get_string("run.dir");
    std::filesystem::create_directories(run);
    const CodecSource src{*codec_, codec_dir, codec_run.step, o.n_codebooks};
    train_ = encode_folder(src, cfg_.get_string("data.train"), samples, 0, run + "/codes_train.safetensors", device_);
    if (train_.codes.size(2) != frames_)
      error("data.train: clips encode to ", train_.codes.size(2), " frames; model.max_steps allows ", frames_);
    train_tok_ = tokenize_captions(tokenizer_, train_.captions, o.text_context);
    if (const std::string v = cfg_.get_string("data.val"); !v.empty()) {
      val_ = encode_folder(src, v, samples, cfg_.get_int("train.eval_samples"), run + "/codes_val.safetensors", device_);
      val_tok_ = tokenize_captions(tokenizer_, val_.captions, o.text_context);
      if (check_melodies_) measure_ceiling();
    }
    std::printf("music: %lld training clips as %lld x %lld codes (%.1f frames/s)\n", (long long)train_.codes.size(0),
                (long long)o.n_codebooks, (long long)frames_, codec_->frame_rate());
  }

  nn::Module& model() override { return *model_; }

  train::StepOutput train_step() override {
    const int64_t N = train_.codes.size(0);
    // The world draws W x B rows; this rank takes its block of them.
    const int64_t W = world_size_, lo = int64_t(rank_) * B_;
    const Tensor index = randint(0, N, {W * B_}, TensorOptions(DType::i64), &data_gen_).narrow(0, lo, B_);
    ++position_;
    Tensor ids = index_select(train_tok_.ids, 0, index), mask = index_select(train_tok_.mask, 0, index);
    // Condition dropout: those rows train on the empty caption.
    const Tensor drop = lt(rand({W * B_, 1}, TensorOptions(DType::f32), &data_gen_).narrow(0, lo, B_),
                           full({B_, 1}, cond_drop_));
    ids = where(drop, empty_.ids, ids);
    mask = where(drop, empty_.mask, mask);
    const Tensor codes = index_select(train_.codes, 0, index).to(device_);
    ids = ids.to(device_), mask = mask.to(device_);
    const Tensor loss = model_->loss(codes, model_->encode_text(ids, mask), mask);
    return {loss, {}};
  }

  train::StepOutput bench_step() override {
    return {model_->loss(bench_codes_, model_->encode_text(bench_ids_, bench_mask_), bench_mask_), {}};
  }

  std::map<std::string, double> evaluate() override {
    std::map<std::string, double> out;
    if (!val_.codes.defined()) return out;
    double total = 0;
    int64_t count = 0;
    const int64_t N = val_.codes.size(0);
    for (int64_t s = 0; s < N; s += B_) {
      const int64_t n = std::min(B_, N - s);
      const Tensor ids = val_tok_.ids.narrow(0, s, n).to(device_), mask = val_tok_.mask.narrow(0, s, n).to(device_);
      total += model_->loss(val_.codes.narrow(0, s, n).to(device_), model_->encode_text(ids, mask), mask).item<double>() * double(n);
      count += n;
    }
    out["val_loss"] = total / double(count);
    const int64_t k = std::min<int64_t>(cfg_.get_int("eval.samples"), N);
    if (k > 0) {
      generated_ = generate(std::vector<std::string>(val_.captions.begin(), val_.captions.begin() + k));
      if (check_melodies_) add_melody_adherence(generated_.waves, generated_.captions, "adherence", out);
    }
    out.insert(ceiling_.begin(), ceiling_.end());
    return out;
  }

  void write_samples(int64_t step, train::SampleSink& sink) override {
    if (generated_.waves.empty()) return;
    const int rate = int(codec_->options.sample_rate);
    for (size_t i = 0; i < std::min<size_t>(2, generated_.waves.size()); ++i) {
      audio::Audio a = audio::from_tensor(generated_.waves[i], rate);
      sink.audio_wav("sample_" + std::to_string(i), audio::encode(a, "wav"), rate, 1, a.frames());
      sink.text("sample_" + std::to_string(i) + "_caption", generated_.captions[i]);
    }
  }

  int64_t batch_samples() const override { return B_; }
  std::string sample_unit() const override { return "clip"; }
  double flops_per_sample() const override {
    const auto& o = model_->options;
    const double steps = double(o.max_steps), text = double(o.text_context);
    const double decoder = double(model_->decoder->num_parameters()) + double(o.n_codebooks * o.codebook_size * o.width);
    return 6.0 * (decoder * steps + double(model_->text_encoder->num_parameters()) * text) +
           12.0 * double(o.layers * o.width) * (steps * steps + steps * text);
  }

  train::TaskState state() const override {
    return {{{"train", position_}}, {{"data", data_gen_.state()}, {"sample", sample_gen_.state()}}, {}};
  }
  void load_state(const train::TaskState& s) override {
    if (auto it = s.positions.find("train"); it != s.positions.end()) position_ = it->second;
    if (auto it = s.rngs.find("data"); it != s.rngs.end()) data_gen_.set_state(it->second);
    if (auto it = s.rngs.find("sample"); it != s.rngs.end()) sample_gen_.set_state(it->second);
  }

 private:
  struct Generated {
    std::vector<std::string> captions;
    std::vector<Tensor> waves;  // [T] each, CPU
  };

  Generated generate(const std::vector<std::string>& captions) {
    Generated g;
    g.captions = captions;
    const auto& o = model_->options;
    const CaptionBatch cond = tokenize_captions(tokenizer_, captions, o.text_context);
    const CaptionBatch empty = tokenize_captions(tokenizer_, std::vector<std::string>(captions.size(), ""), o.text_context);
    const Tensor codes = generate_codes(*model_, cond.ids.to(device_), cond.mask.to(device_), empty.ids.to(device_),
                                        empty.mask.to(device_), music_sampling(cfg_, frames_), sample_gen_);
    const Tensor wave = codec_->decode(codes).to(Device::cpu());
    for (int64_t b = 0; b < wave.size(0); ++b) g.waves.push_back(wave.select(0, b).select(0, 0).contiguous());
    return g;
  }

  // What the model could reach at best: the analyser on the codec's round
  // trip of held-out clips (their codes decoded), logged as codec_adherence*.
  void measure_ceiling() {
    NoGradGuard no_grad;
    Generated g;
    const int64_t n = std::min<int64_t>(64, val_.codes.size(0));
    for (int64_t s = 0; s < n; s += B_) {
      const int64_t m = std::min(B_, n - s);
      const Tensor wave = codec_->decode(val_.codes.narrow(0, s, m).to(device_)).to(Device::cpu());
      for (int64_t b = 0; b < m; ++b) g.waves.push_back(wave.select(0, b).select(0, 0).contiguous());
    }
    g.captions.assign(val_.captions.begin(), val_.captions.begin() + n);
    add_melody_adherence(g.waves, g.captions, "codec_adherence", ceiling_);
    std::printf("music: the codec's round trip of %lld held-out clips keeps %.1f%% of their captions (key %.1f%%, "
                "tempo %.1f%%, timbre %.1f%%, register %.1f%%): the ceiling for generated clips\n",
                (long long)n, 100 * ceiling_["codec_adherence"], 100 * ceiling_["codec_adherence_key"],
                100 * ceiling_["codec_adherence_tempo"], 100 * ceiling_["codec_adherence_timbre"],
                100 * ceiling_["codec_adherence_register"]);
  }

  const train::Config& cfg_;
  text::BpeTokenizer tokenizer_;
  Device device_;
  int64_t B_ = 0, frames_ = 0, position_ = 0;
  double cond_drop_ = 0;
  bool check_melodies_ = false;  // eval.checker = melodies
  int rank_ = 0, world_size_ = 1;
  Generator data_gen_, sample_gen_;
  std::unique_ptr<MusicModel> model_;
  std::unique_ptr<Codec> codec_;
  EncodedClips train_, val_;
  CaptionBatch train_tok_, val_tok_, empty_;
  Generated generated_;
  std::map<std::string, double> ceiling_;  // codec_adherence*: the analyser on codec round trips
  Tensor bench_codes_, bench_ids_, bench_mask_;
};

const train::TaskRegistrar registrar{{
    "music",
    "text-to-music: a Transformer over a codec's tokens (delay pattern), cross-attending to a caption encoder",
    declare_music_keys,
    resolve_music,
    {"model.codec", "model.n_codebooks", "model.codebook_size", "model.max_steps", "model.width", "model.layers",
     "model.heads", "model.vocab_size", "model.text_context", "model.text_width", "model.text_layers",
     "model.text_heads"},
    [](const train::Config& c) { return std::make_unique<MusicTask>(c); },
}};

}  // namespace

EncodedClips encode_folder(const CodecSource& src, const std::string& folder, int64_t samples, int64_t limit,
                           const std::string& cache, Device device) {
  const Codec& codec = src.codec;
  const auto source = open_audio_text(folder);
  EncodedClips out;
  const int64_t n = limit > 0 ? std::min(limit, source->size()) : source->size();
  if (n == 0) error(folder, ": no clips");
  for (int64_t i = 0; i < n; ++i) out.captions.push_back(source->read(i).caption);
  const std::map<std::string, std::string> meta = {{"folder", folder},
                                                    {"clips", std::to_string(n)},
                                                    {"samples", std::to_string(samples)},
                                                    {"codebooks", std::to_string(src.n_codebooks)},
                                                    {"codec", src.dir},
                                                    {"codec_step", std::to_string(src.step)}};
  if (std::filesystem::exists(cache)) {
    io::Safetensors st = io::load_safetensors(cache);
    auto it = st.tensors.find("codes");
    bool same = it != st.tensors.end();
    for (const auto& [k, v] : meta) same = same && st.metadata[k] == v;
    if (same) {
      out.codes = it->second.to(DType::i64).clone();
      return out;
    }
    std::printf("music: %s was made from other clips or another codec; encoding again\n", cache.c_str());
  }
  AudioClipOptions clip;
  clip.sample_rate = int(codec.options.sample_rate);
  clip.samples = samples;
  clip.random_crop = false;  // the clip from its start, the same at every encoding
  const data::Transform transform = audio_clip_transform(clip);
  NoGradGuard no_grad;
  std::vector<Tensor> parts;
  const int64_t B = 16;
  for (int64_t start = 0; start < n; start += B) {
    std::vector<Tensor> waves;
    for (int64_t i = start; i < std::min(n, start + B); ++i) waves.push_back(transform(source->read(i), 0).at("audio"));
    parts.push_back(codec.encode(stack(waves, 0).to(device)).narrow(1, 0, src.n_codebooks).to(Device::cpu()));
  }
  out.codes = cat(parts, 0);
  io::save_safetensors(cache, {{"codes", out.codes.to(DType::i32)}}, meta);
  return out;
}

}  // namespace fm::tasks
