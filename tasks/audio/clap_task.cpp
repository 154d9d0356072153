// [task] kind = clap: CLAP-style contrastive audio-text training
// (fm/tasks/clap_model.h: an AST-style audio tower over log-mel patches and
// CLIP's text tower, the clip or siglip loss of objectives/contrastive.h) on
// caption folders of audio files (fm/tasks/audio_data.h: decoded, mixed to
// mono, resampled, cropped at random in training and from the start in
// evaluation). Evaluated by
//   retrieval   audio-to-text and text-to-audio recall at 1, 5 and 10
//               (a2t_r1 ... t2a_r10) over the first train.eval_samples
//               held-out pairs of data.val;
//   zero-shot   on captioned melodies (data.zeroshot, labels read from the
//               captions' grammar): per attribute, each clip's features
//               against one text feature per value of the attribute, the
//               argmax its prediction: zeroshot_key (9 values),
//               zeroshot_tempo (4), zeroshot_timbre (4), zeroshot_register
//               (2), their mean zeroshot_mean, and chance (1 / values) as
//               zeroshot_*_chance. A value's feature is that of one prompt
//               naming it alone, in the captions' own words: "a melody in
//               {key}", "a {tempo} melody", "a melody played on a {timbre}",
//               "a melody, {register} register". zeroshot_*_ensemble (and
//               zeroshot_mean_ensemble) use CLIP's prompt ensembling
//               instead: the mean feature of the grammar's captions that
//               hold the value (32 per key, 72 per tempo or timbre, 144 per
//               register), which are what the text tower was trained on.
#include <cmath>
#include <optional>

#include "fm/data/image_text.h"
#include "fm/data/melodies.h"
#include "fm/data/melodies_checker.h"
#include "fm/factory.h"
#include "fm/ops.h"
#include "fm/tasks/audio_data.h"
#include "fm/tasks/clap_model.h"
#include "fm/tasks/clip.h"
#include "fm/tasks/image_text_data.h"
#include "fm/train/task.h"

namespace fm::tasks {
namespace {

void declare_clap_keys(train::Config& c) {
  c.add_int("model.sample_rate", 16000, "sample rate in Hz (clips are resampled to it)")
      .add_double("model.clip_seconds", 4.0, "clip length: training crops at random, evaluation from the start, zero-padded")
      .add_int("model.n_fft", 512, "STFT window (Hann) of the log-mel")
      .add_int("model.hop", 256, "STFT hop")
      .add_int("model.n_mels", 64, "mel bands (HTK scale)")
      .add_double("model.f_max", 0.0, "highest mel band edge in Hz (0: half the sample rate)")
      .add_int("model.patch_freq", 16, "patch height in mel bands")
      .add_int("model.patch_time", 16, "patch width in frames (the frames are cut to a multiple of it)")
      .add_double("model.feature_mean", -6.0, "log-mel normalisation: (log(mel + 1e-6) - mean) / (2 std)")
      .add_double("model.feature_std", 4.0, "log-mel normalisation std")
      .add_int("model.audio_width", 128, "audio tower width")
      .add_int("model.audio_layers", 4, "audio tower blocks")
      .add_int("model.audio_heads", 4, "audio tower heads")
      .add_string("model.pool", "cls", "audio pooling: cls or mean")
      .add_string("data.train", "", "training clips: a caption folder (captions.jsonl/.tsv/.csv) or its caption file")
      .add_string("data.val", "", "held-out pairs for retrieval R@1/5/10 (empty: none)")
      .add_string("data.zeroshot", "", "captioned-melodies clips for zero-shot accuracy per attribute (empty: none)")
      .add_int("data.workers", 2, "loader threads (0: load in the training thread)")
      .add_int("train.eval_samples", 1000, "held-out pairs for retrieval, and zero-shot clips (0: all)");
  declare_text_tower_keys(c);
}

CLAPOptions clap_options(const train::Config& c) {
  CLAPOptions o;
  o.sample_rate = c.get_int("model.sample_rate");
  const double seconds = c.get_double("model.clip_seconds");
  if (!(seconds > 0)) error("config: key 'model.clip_seconds' must be positive, got ", seconds);
  o.clip_samples = int64_t(std::llround(seconds * double(o.sample_rate)));
  o.n_fft = c.get_int("model.n_fft");
  o.hop = c.get_int("model.hop");
  o.n_mels = c.get_int("model.n_mels");
  o.f_max = c.get_double("model.f_max");
  o.patch_freq = c.get_int("model.patch_freq");
  o.patch_time = c.get_int("model.patch_time");
  o.feature_mean = c.get_double("model.feature_mean");
  o.feature_std = c.get_double("model.feature_std");
  o.audio_width = c.get_int("model.audio_width");
  o.audio_layers = c.get_int("model.audio_layers");
  o.audio_heads = c.get_int("model.audio_heads");
  o.pool = c.get_string("model.pool");
  o.text = text_tower_options(c);
  return o;
}

// Sample -> {"audio": [1, samples], "text": [L], "eot": []}.
data::Transform clap_transform(const CLAPOptions& o, const text::BpeTokenizer& tokenizer, bool training) {
  const data::Transform clip = audio_clip_transform({int(o.sample_rate), o.clip_samples, training});
  return [clip, tokenizer, L = o.text.context_length](const data::ImageTextSample& s, uint64_t seed) {
    data::Example e = clip(s, seed);
    auto [ids, eot] = tokenize_caption(tokenizer, s.caption, L);
    e["text"] = ids;
    e["eot"] = scalar_tensor(double(eot), DType::i64);
    return e;
  };
}

// One attribute of captioned melodies for zero-shot classification: its
// values, the prompt naming one of them, and a clip's value from its caption.
struct MelodyAttribute {
  const char* name;
  const std::vector<std::string>& values;
  const char* prompt;
  std::string data::MelodyCaption::*value;
};

const MelodyAttribute kMelodyAttributes[] = {
    {"key", data::melody_keys(), "a melody in {}", &data::MelodyCaption::key},
    {"tempo", data::melody_tempos(), "a {} melody", &data::MelodyCaption::tempo},
    {"timbre", data::melody_timbres(), "a melody played on a {}", &data::MelodyCaption::timbre},
    {"register", data::melody_registers(), "a melody, {} register", &data::MelodyCaption::register_word},
};

class ClapTask : public train::Task {
 public:
  explicit ClapTask(const train::Config& c) : cfg_(c), tokenizer_(caption_tokenizer(c.get_string("data.tokenizer"))) {}

  void build(const train::RunContext& ctx) override {
    device_ = ctx.device;
    world_ = ctx.comm;
    B_ = cfg_.get_int("train.batch_size");
    manual_seed(uint64_t(cfg_.get_int("train.seed")));
    model_ = std::make_unique<CLAP>(clap_options(cfg_));
    const auto& o = model_->options;
    if (!ctx.open_data) {
      bench_audio_ = (randn({B_, o.clip_samples}) * 0.1).to(device_);
      bench_ids_ = randint(0, o.text.vocab_size, {B_, o.text.context_length}).to(device_);
      bench_eot_ = full({B_}, double(o.text.context_length - 1), DType::i64).to(device_);
      return;
    }
    train_.emplace(cfg_, ctx, std::vector<std::string>{}, clap_transform(o, tokenizer_, true));
    eval_transform_ = clap_transform(o, tokenizer_, false);
  }

  nn::Module& model() override { return *model_; }

  train::StepOutput train_step() override {
    const data::LoaderBatch b = train_->next();
    auto out = loss(b.tensors.at("audio").to(device_), b.tensors.at("text").to(device_), b.tensors.at("eot").to(device_));
    return {out.loss, {{"acc_a2t", out.accuracy_i2t}, {"acc_t2a", out.accuracy_t2i},
                       {"logit_scale", std::exp(model_->logit_scale.item())}, {"skipped", double(b.skipped)}}};
  }

  train::StepOutput bench_step() override { return {loss(bench_audio_, bench_ids_, bench_eot_).loss, {}}; }

  std::map<std::string, double> evaluate() override {
    std::map<std::string, double> out;
    const int64_t limit = cfg_.get_int("train.eval_samples");
    if (const std::string v = cfg_.get_string("data.val"); !v.empty()) {
      std::vector<Tensor> audio, text;
      for_each_batch(*open_audio_text(v), eval_transform_, B_, limit, [&](const data::LoaderBatch& b) {
        audio.push_back(model_->encode_audio(b.tensors.at("audio").to(device_)).to(Device::cpu()));
        text.push_back(model_->encode_text(b.tensors.at("text").to(device_), b.tensors.at("eot").to(device_)).to(Device::cpu()));
      });
      const auto r = recall_at_k(matmul(cat(audio), cat(text).t()), "a", "t");
      out.insert(r.begin(), r.end());
    }
    if (const std::string z = cfg_.get_string("data.zeroshot"); !z.empty()) zero_shot(z, limit, out);
    return out;
  }

  int64_t batch_samples() const override { return B_; }
  std::string sample_unit() const override { return "clip"; }
  double flops_per_sample() const override {
    const int64_t n = model_->spec_embed->num_patches() + (model_->options.pool == "cls" ? 1 : 0);
    return model_->flops_per_pair(
        model_->audio->num_parameters() + model_->spec_embed->num_parameters() + model_->audio_proj->num_parameters(),
        n, *model_->audio);
  }

  train::TaskState state() const override { return {{{"train", train_ ? train_->position() : 0}}, {}, {}}; }
  void load_state(const train::TaskState& s) override {
    if (auto it = s.positions.find("train"); it != s.positions.end() && train_) train_->set_position(it->second);
  }

 private:
  objectives::ContrastiveOutput loss(const Tensor& audio, const Tensor& ids, const Tensor& eot) const {
    return model_->loss(model_->encode_audio(audio), model_->encode_text(ids, eot), world_);
  }

  // Zero-shot accuracy per attribute of captioned melodies (the file comment).
  void zero_shot(const std::string& spec, int64_t limit, std::map<std::string, double>& out) const {
    const auto source = open_audio_text(spec);
    std::vector<Tensor> features;
    std::vector<data::MelodyCaption> truth;
    for_each_batch(*source, eval_transform_, B_, limit, [&](const data::LoaderBatch& b) {
      features.push_back(model_->encode_audio(b.tensors.at("audio").to(device_)));
      for (int64_t i : b.indices) truth.push_back(data::parse_melody_caption(source->read(i).caption));
    });
    if (truth.empty()) error("zero-shot: ", source->name(), " gave no clips");
    const Tensor audio = cat(features);
    const std::vector<std::string> captions = data::melody_captions();  // all 288 of the grammar
    std::vector<data::MelodyCaption> grammar;
    for (const std::string& c : captions) grammar.push_back(data::parse_melody_caption(c));
    const auto accuracy = [&](const MelodyAttribute& a, const std::vector<std::vector<std::string>>& prompts) {
      const Tensor classes = class_text_features(*model_, prompts, tokenizer_, device_);
      const std::vector<int64_t> pred = argmax(matmul(audio, classes.t()), 1).to(Device::cpu()).to_vector<int64_t>();
      int64_t right = 0;
      for (size_t i = 0; i < truth.size(); ++i) right += a.values[size_t(pred[i])] == truth[i].*a.value;
      return double(right) / double(truth.size());
    };
    const double n = double(std::size(kMelodyAttributes));
    for (const MelodyAttribute& a : kMelodyAttributes) {
      std::vector<std::vector<std::string>> named(a.values.size()), ensemble(a.values.size());
      for (size_t k = 0; k < a.values.size(); ++k) {
        named[k] = {data::apply_caption_template(a.prompt, a.values[k])};
        for (size_t c = 0; c < grammar.size(); ++c)
          if (grammar[c].*a.value == a.values[k]) ensemble[k].push_back(captions[c]);
      }
      const std::string key = std::string("zeroshot_") + a.name;
      out[key] = accuracy(a, named);
      out[key + "_ensemble"] = accuracy(a, ensemble);
      out[key + "_chance"] = 1.0 / double(a.values.size());
      out["zeroshot_mean"] += out[key] / n;
      out["zeroshot_mean_ensemble"] += out[key + "_ensemble"] / n;
    }
  }

  const train::Config& cfg_;
  dist::Communicator* world_ = nullptr;  // training gathers features from every rank
  text::BpeTokenizer tokenizer_;
  Device device_;
  int64_t B_ = 0;
  std::unique_ptr<CLAP> model_;
  data::Transform eval_transform_;
  std::optional<TrainImages> train_;  // the image kinds' training stream serves any caption folder
  Tensor bench_audio_, bench_ids_, bench_eot_;
};

const train::TaskRegistrar registrar{{
    "clap",
    "CLAP: audio and text towers trained with a contrastive loss on audio-text pairs",
    declare_clap_keys,
    resolve_text_vocab,
    {"model.sample_rate", "model.clip_seconds", "model.n_fft", "model.hop", "model.n_mels", "model.f_max", "model.patch_freq",
     "model.patch_time", "model.feature_mean", "model.feature_std", "model.audio_width", "model.audio_layers",
     "model.audio_heads", "model.pool", "model.vocab_size", "model.context_length", "model.text_width",
     "model.text_layers", "model.text_heads", "model.embed_dim", "model.shared_core", "model.loss"},
    [](const train::Config& c) { return std::make_unique<ClapTask>(c); },
}};

}  // namespace
}  // namespace fm::tasks
