// [task] kind = caption: image captioning (DESIGN.md: `[image patches]
// [caption]` with next-token loss on the caption). A ViT encoder and a
// cross-attending text decoder, or one Transformer under the prefix mask;
// CoCa adds a contrastive loss. The image tower can start from a CLIP run.
// Evaluated by the validation loss and by decoding held-out images: BLEU,
// ROUGE-L, CIDEr-D against their captions, and exact match where captions
// are canonical (captioned shapes).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>

#include "fm/autograd.h"
#include "fm/data/shapes.h"
#include "fm/data/melodies_checker.h"
#include "fm/data/shapes_checker.h"
#include "fm/factory.h"
#include "fm/objectives/contrastive.h"
#include "fm/objectives/next_token.h"
#include "fm/ops.h"
#include "fm/tasks/caption.h"
#include "fm/tasks/audio_data.h"
#include "fm/tasks/caption_metrics.h"
#include "fm/tasks/clip.h"
#include "fm/tasks/image_text_data.h"
#include "fm/train/recipe.h"
#include "fm/train/trainer.h"
#include "fm/train/task.h"

namespace fm::tasks {
namespace {

void declare_caption_keys(train::Config& c) {
  c.add_string("model.layout", "cross", "cross (ViT encoder + cross-attending decoder) or single (one Transformer, prefix mask)")
      .add_string("model.modality", "image", "image (ViT patches) or audio (AST patches of a log-mel spectrogram)")
      .add_int("model.sample_rate", 16000, "audio: clips are resampled to this rate")
      .add_double("model.clip_seconds", 4.0, "audio: clips are cut or zero-padded to this length")
      .add_int("model.n_fft", 512, "audio: STFT window")
      .add_int("model.hop", 256, "audio: STFT hop")
      .add_int("model.n_mels", 64, "audio: mel bands")
      .add_int("model.patch_freq", 16, "audio: patch height in mel bands")
      .add_int("model.patch_time", 16, "audio: patch width in frames")
      .add_int("model.image_size", 32, "image side in pixels (images are resized and cropped to it)")
      .add_int("model.patch_size", 4, "ViT patch side")
      .add_int("model.channels", 3, "image channels: 3 (RGB) or 1 (luminance)")
      .add_int("model.vision_width", 128, "image encoder width (cross layout)")
      .add_int("model.vision_layers", 4, "image encoder blocks (cross layout)")
      .add_int("model.vision_heads", 4, "image encoder heads (cross layout)")
      .add_bool("model.cls_token", false, "a class token before the patches (set from model.image_encoder)")
      .add_string("model.image_encoder", "", "a CLIP run whose image tower starts the encoder (cross layout; empty: none)")
      .add_bool("model.freeze_image_encoder", false, "keep that image tower as it is (no gradient)")
      .add_int("model.vocab_size", 0, "caption vocabulary (0: the tokenizer's)")
      .add_int("model.context_length", 32, "decoder positions: a start token, the caption and its end-of-text")
      .add_int("model.text_width", 128, "decoder width (single layout: the one Transformer's)")
      .add_int("model.text_layers", 4, "decoder blocks (CoCa: unimodal ones included)")
      .add_int("model.text_heads", 4, "decoder heads")
      .add_bool("model.coca", false, "CoCa: contrastive and captioning losses together (cross layout)")
      .add_int("model.unimodal_layers", 2, "CoCa: decoder blocks without cross-attention, whose output is the caption embedding")
      .add_int("model.embed_dim", 128, "CoCa: joint embedding size")
      .add_double("loss.caption_weight", 2.0, "CoCa: weight of the captioning loss (open_clip's 2)")
      .add_double("loss.contrastive_weight", 1.0, "CoCa: weight of the contrastive loss")
      .add_string("data.tokenizer", "", "caption tokenizer file (empty: bytes + <|endoftext|>)")
      .add_int("train.eval_samples", 1000, "held-out images for the validation loss and the caption metrics (0: all)")
      .add_string("eval.checker", "", "shapes or melodies: exact-match figures for captioned shapes or melodies (empty: none)")
      .add_int("eval.samples", 8, "held-out images captioned in the logs at each sample step");
  declare_image_data_keys(c, "held-out captioned images: validation loss and caption metrics");
  declare_decode_keys(c);
}

void resolve_caption(train::Config& c) {
  if (const std::string clip_dir = c.get_string("model.image_encoder"); !clip_dir.empty()) {
    if (c.get_string("model.modality") != "image") error("config: model.image_encoder needs model.modality = image");
    const train::Config clip = train::load_run_config(clip_dir);
    if (clip.get_string("task.kind") != "clip") error("config: model.image_encoder: ", clip_dir, " is not a clip run");
    if (c.get_string("model.layout") != "cross") error("config: model.image_encoder needs model.layout = cross");
    for (const char* k : {"model.image_size", "model.patch_size", "model.channels", "model.vision_width",
                          "model.vision_layers", "model.vision_heads", "data.mean", "data.std"})
      c.set(k, clip.text(k), "model.image_encoder");
    c.set("model.cls_token", clip.get_string("model.pool") == "cls" ? "true" : "false", "model.image_encoder");
  }
  if (c.get_int("model.vocab_size") == 0)
    c.set("model.vocab_size", std::to_string(caption_tokenizer(c.get_string("data.tokenizer")).vocab_size()),
          "data.tokenizer");
}

// Sample -> {"image": the model's input, "text", "eot"}: an image as the
// image kinds transform it (random crops and flips in training when the
// config asks), or a clip as [1, samples] (a random crop of longer files in
// training, their start otherwise) with its caption tokenized likewise.
data::Transform caption_transform(const train::Config& c, const CaptionOptions& o,
                                  const text::BpeTokenizer& tokenizer, bool training) {
  if (o.modality == "image") {
    ImageTransformOptions io = image_transform_options(c);
    if (!training) io.random_crop = io.hflip = false;  // evaluation sees every image whole
    return image_text_transform(io, tokenizer, o.context_length, {});
  }
  AudioClipOptions ao;
  ao.sample_rate = int(o.sample_rate);
  ao.samples = o.clip_samples;
  ao.random_crop = training;
  const data::Transform clip = audio_clip_transform(ao);
  return [clip, tokenizer, L = o.context_length](const data::ImageTextSample& s, uint64_t seed) {
    data::Example e = clip(s, seed);
    auto [ids, eot] = tokenize_caption(tokenizer, s.caption, L);
    return data::Example{{"image", e.at("audio")}, {"text", ids}, {"eot", scalar_tensor(double(eot), DType::i64)}};
  };
}

// The decoder's inputs and targets from a batch's "text" [B, L] (caption,
// end-of-text, zero padding) and "eot" [B]: inputs are a start token (the
// end-of-text id, as GPT-2 starts documents) then text[:, :L-1]; targets are
// text, ignored after the end-of-text.
struct DecoderBatch {
  Tensor inputs, targets, last;
};
DecoderBatch decoder_batch(const Tensor& text, const Tensor& eot, int32_t start) {
  const int64_t B = text.size(0), L = text.size(1);
  Tensor ids = text.to(DType::i64);
  DecoderBatch d;
  d.inputs = cat({full({B, 1}, double(start), TensorOptions(DType::i64).device(ids.device())), ids.narrow(1, 0, L - 1)}, 1);
  Tensor pos = arange(0.0, double(L), 1.0, TensorOptions(DType::i64).device(ids.device())).unsqueeze(0);
  d.targets = masked_fill(ids, gt(pos, eot.to(DType::i64).unsqueeze(1)), -100.0);
  d.last = eot.to(DType::i64);  // inputs[eot] is the caption's last token (the start token when it is empty)
  return d;
}

// Which of a melody caption's four attributes the generated caption names
// rightly (a caption outside the grammar names none).
void melody_attributes(const std::string& want_caption, const std::string& generated,
                       std::map<std::string, int64_t>& right) {
  const data::MelodyCaption want = data::parse_melody_caption(want_caption);
  data::MelodyCaption got;
  try {
    got = data::parse_melody_caption(generated);
  } catch (const Error&) {
    return;
  }
  right["key"] += got.key == want.key;
  right["tempo"] += got.tempo == want.tempo;
  right["timbre"] += got.timbre == want.timbre;
  right["register"] += got.register_word == want.register_word;
}

// Which words of a one-shape caption the generated one gets right (a
// caption outside the grammar gets none): what a model has learnt so far.
void one_shape_attributes(const data::ParsedCaption& want, const std::string& generated,
                          std::map<std::string, int64_t>& right) {
  data::ParsedCaption got;
  try {
    got = data::parse_shapes_caption(generated);
  } catch (const Error&) {
    return;
  }
  if (got.shapes.size() != 1) return;
  right["colour"] += got.shapes[0].colour == want.shapes[0].colour;
  right["type"] += got.shapes[0].type == want.shapes[0].type;
  right["size"] += got.shapes[0].size == want.shapes[0].size;
  right["position"] += got.position == want.position;
}

class CaptionTask : public train::Task {
 public:
  explicit CaptionTask(const train::Config& c)
      : cfg_(c), tokenizer_(caption_tokenizer(c.get_string("data.tokenizer"))), eot_(end_of_text_id(tokenizer_)) {}

  void build(const train::RunContext& ctx) override {
    device_ = ctx.device;
    B_ = cfg_.get_int("train.batch_size");
    manual_seed(uint64_t(cfg_.get_int("train.seed")));
    model_ = std::make_unique<CaptionModel>(caption_options(cfg_));
    decode_ = decode_options(cfg_, model_->options);
    load_image_encoder();
    const auto& o = model_->options;
    if (!ctx.open_data) {
      bench_images_ = (audio() ? randn({B_, 1, o.clip_samples}) * 0.1 : randn({B_, o.channels, o.image_size, o.image_size})).to(device_);
      bench_ = decoder_batch(randint(0, o.vocab_size, {B_, o.context_length}),
                             full({B_}, double(o.context_length - 1), DType::i64), eot_);
      for (Tensor* t : {&bench_.inputs, &bench_.targets, &bench_.last}) *t = t->to(device_);
      return;
    }
    train_.emplace(cfg_, ctx, std::vector<std::string>{}, caption_transform(cfg_, o, tokenizer_, true));
    eval_transform_ = caption_transform(cfg_, o, tokenizer_, false);
  }

  nn::Module& model() override { return *model_; }

  train::StepOutput train_step() override {
    const data::LoaderBatch b = train_->next();
    DecoderBatch d = decoder_batch(b.tensors.at("text").to(device_), b.tensors.at("eot").to(device_), eot_);
    auto out = loss(b.tensors.at("image").to(device_), d);
    out.metrics["skipped"] = double(b.skipped);
    if (const int64_t cut = captions_truncated(); cut > 0) out.metrics["captions_truncated"] = double(cut);
    return out;
  }

  train::StepOutput bench_step() override { return loss(bench_images_, bench_); }

  std::map<std::string, double> evaluate() override {
    std::map<std::string, double> out;
    const std::string v = cfg_.get_string("data.val");
    if (v.empty()) return out;
    const auto source = open_image_text(v, {});
    const int64_t limit = cfg_.get_int("train.eval_samples");
    double loss_sum = 0;
    int64_t n = 0;
    std::vector<std::string> generated;
    std::vector<int64_t> indices;
    for_each_batch(*source, eval_transform_, B_, limit, [&](const data::LoaderBatch& b) {
      const Tensor images = b.tensors.at("image").to(device_);
      DecoderBatch d = decoder_batch(b.tensors.at("text").to(device_), b.tensors.at("eot").to(device_), eot_);
      const int64_t rows = images.size(0);
      loss_sum += objectives::next_token_loss(model_->forward(images, d.inputs, d.last).logits, d.targets).item() * double(rows);
      n += rows;
      for (const Decoded& c : caption_images(*model_, images, eot_, decode_)) generated.push_back(tokenizer_.decode(c.tokens));
      indices.insert(indices.end(), b.indices.begin(), b.indices.end());
    });
    if (n == 0) return out;
    out["val_loss"] = loss_sum / double(n);
    caption_figures(cfg_.get_string("eval.checker"), *source, indices, generated, out);
    return out;
  }

  void write_samples(int64_t step, train::SampleSink& sink) override {
    const std::string v = cfg_.get_string("data.val");
    const int64_t count = cfg_.get_int("eval.samples");
    if (v.empty() || count <= 0) return;
    const auto source = open_image_text(v, {});
    std::string text;
    for_each_batch(*source, eval_transform_, count, count, [&](const data::LoaderBatch& b) {
      const auto captions = caption_images(*model_, b.tensors.at("image").to(device_), eot_, decode_);
      for (size_t i = 0; i < captions.size(); ++i) {
        const data::ImageTextSample s = source->read(b.indices[i]);
        text += s.key + ": " + tokenizer_.decode(captions[i].tokens) + "    (reference: " + s.caption + ")\n";
      }
    });
    sink.text("captions", text);
  }

  int64_t batch_samples() const override { return B_; }
  std::string sample_unit() const override { return audio() ? "clip" : "img"; }
  double flops_per_sample() const override {
    // 6 FLOPs per parameter per token it acts on, plus attention's products.
    const auto& o = model_->options;
    const double n_img = double(model_->image_tokens()), L = double(o.context_length);
    const double embed = double(model_->patch_embed ? model_->patch_embed->num_parameters()
                                                    : model_->spec_embed->num_parameters());
    if (model_->core) {
      const double T = n_img + L;
      return 6.0 * (embed * n_img + double(model_->core->num_parameters()) * T + double(o.vocab_size * o.text_width) * L) +
             12.0 * double(o.text_layers * o.text_width) * T * T;
    }
    const double text = double(model_->decoder->num_parameters() + (model_->unimodal ? model_->unimodal->num_parameters() : 0));
    const double vision = model_->options.freeze_image_tower ? 2.0 : 6.0;  // a frozen tower runs forward only
    return vision * (embed + double(model_->visual->num_parameters())) * n_img + 6.0 * text * L +
           6.0 * double(o.vocab_size * o.text_width) * L +
           12.0 * (double(o.vision_layers * o.vision_width) * n_img * n_img +
                   double(o.text_layers * o.text_width) * (L * L + L * n_img));
  }

  train::TaskState state() const override { return {{{"train", train_ ? train_->position() : 0}}, {}, {}}; }
  void load_state(const train::TaskState& s) override {
    if (auto it = s.positions.find("train"); it != s.positions.end() && train_) train_->set_position(it->second);
  }

 private:
  // model.image_encoder: the CLIP run's patch embedding and image tower (EMA
  // weights when kept) replace the fresh ones.
  void load_image_encoder() {
    const std::string dir = cfg_.get_string("model.image_encoder");
    if (dir.empty()) return;
    const ClipRun clip = load_clip_run(dir);
    nn::StateDict mine = model_->state_dict();
    int64_t copied = 0;
    NoGradGuard ng;
    for (const auto& [name, t] : clip.model->state_dict())
      if (name.rfind("patch_embed.", 0) == 0 || name.rfind("visual.", 0) == 0) {
        auto it = mine.find(name);
        if (it == mine.end() || it->second.shape() != t.shape())
          error("config: model.image_encoder: ", dir, ": tensor '", name, "' does not fit the caption model");
        it->second.copy_(t);
        ++copied;
      }
    if (model_->options.freeze_image_tower)
      for (auto& p : model_->named_parameters())
        if (p.name.rfind("patch_embed.", 0) == 0 || p.name.rfind("visual.", 0) == 0) p.tensor.requires_grad_(false);
    std::fprintf(stderr, "caption: image tower from %s (%lld tensors%s)\n", dir.c_str(), static_cast<long long>(copied),
                 model_->options.freeze_image_tower ? ", frozen" : "");
  }

  train::StepOutput loss(const Tensor& images, const DecoderBatch& d) const {
    const CaptionForward f = model_->forward(images, d.inputs, d.last);
    Tensor caption = objectives::next_token_loss(f.logits, d.targets);
    if (!model_->options.coca) return {caption, {}};
    const auto c = objectives::clip_loss(f.image_emb, f.text_emb, model_->logit_scale);
    Tensor total = caption * cfg_.get_double("loss.caption_weight") + c.loss * cfg_.get_double("loss.contrastive_weight");
    return {total, {{"caption_loss", caption.item()}, {"contrastive_loss", c.loss.item()}, {"acc_i2t", c.accuracy_i2t}}};
  }







  bool audio() const { return model_->options.modality == "audio"; }

  const train::Config& cfg_;
  text::BpeTokenizer tokenizer_;
  int32_t eot_;
  Device device_;
  int64_t B_ = 0;
  std::unique_ptr<CaptionModel> model_;
  DecodeOptions decode_;
  std::optional<TrainImages> train_;
  data::Transform eval_transform_;
  Tensor bench_images_;
  DecoderBatch bench_;
};

const train::TaskRegistrar registrar{{
    "caption",
    "Captioning: an image encoder and a text decoder (or one prefix-masked Transformer) trained with next-token loss",
    declare_caption_keys,
    resolve_caption,
    {"model.layout", "model.modality", "model.sample_rate", "model.clip_seconds", "model.n_fft", "model.hop",
     "model.n_mels", "model.patch_freq", "model.patch_time", "model.image_size", "model.patch_size", "model.channels", "model.vision_width",
     "model.vision_layers", "model.vision_heads", "model.cls_token", "model.vocab_size", "model.context_length",
     "model.text_width", "model.text_layers", "model.text_heads", "model.coca", "model.unimodal_layers",
     "model.embed_dim"},
    [](const train::Config& c) { return std::make_unique<CaptionTask>(c); },
}};

}  // namespace

void caption_figures(const std::string& checker, const data::ImageTextSource& source, const std::vector<int64_t>& indices,
                     const std::vector<std::string>& generated, std::map<std::string, double>& out) {
  std::map<std::string, size_t> example_of;  // image key -> example
  std::vector<CaptionExample> examples;
  const bool shapes = checker == "shapes", melodies = checker == "melodies";
  std::map<std::string, std::pair<int64_t, int64_t>> exact;  // group -> (matches, images)
  std::map<std::string, int64_t> attributes;                  // one-shape images: attribute -> right
  for (size_t i = 0; i < indices.size(); ++i) {
    const data::ImageTextSample s = source.read(indices[i]);
    auto [it, fresh] = example_of.emplace(s.key, examples.size());
    if (fresh) examples.push_back({normalize_caption(generated[i]), {}});
    examples[it->second].references.push_back(normalize_caption(s.caption));
    if (melodies) {
      const bool ok = normalize_caption(generated[i]) == normalize_caption(s.caption);
      exact[""].first += ok;
      exact[""].second += 1;
      melody_attributes(s.caption, generated[i], attributes);
    }
    if (!shapes) continue;
    const data::ParsedCaption p = data::parse_shapes_caption(s.caption);
    bool held_out = false;
    for (const auto& sh : p.shapes) held_out = held_out || data::is_held_out_pair(sh.colour, sh.type);
    const bool ok = same_shapes_caption(generated[i], s.caption);
    const char* seen = held_out ? nullptr : p.shapes.size() == 1 ? "_one_seen" : "_two_seen";
    for (const char* g : {"", p.shapes.size() == 1 ? "_one" : "_two", held_out ? "_heldout" : seen}) {
      exact[g].first += ok;
      exact[g].second += 1;
    }
    if (p.shapes.size() == 1) one_shape_attributes(p, generated[i], attributes);
  }
  const CaptionScores sc = caption_scores(examples);
  for (int k = 0; k < 4; ++k) out["bleu" + std::to_string(k + 1)] = sc.bleu[k];
  out["rouge_l"] = sc.rouge_l;
  out["cider_d"] = sc.cider_d;
  for (const auto& [g, mn] : exact) {
    out["exact" + g] = double(mn.first) / double(mn.second);
    out["exact" + g + "_n"] = double(mn.second);
  }
  if (melodies && !exact.empty())
    for (const char* a : {"key", "tempo", "timbre", "register"})
      out[std::string("melody_") + a] = double(attributes[a]) / double(exact[""].second);
  if (const auto it = exact.find("_one"); it != exact.end())
    for (const char* a : {"colour", "type", "size", "position"})
      out[std::string("one_") + a] = double(attributes[a]) / double(it->second.second);
}
CaptionRun load_caption_run(const std::string& run_dir) {
  CaptionRun r{train::load_run_config(run_dir), nullptr, text::BpeTokenizer(caption_tokenizer("")), {}, {}};
  if (r.config.get_string("task.kind") != "caption")
    error(run_dir, " is a '", r.config.get_string("task.kind"), "' run, not a caption run");
  r.tokenizer = caption_tokenizer(r.config.get_string("data.tokenizer"));
  CaptionOptions o = caption_options(r.config);
  o.freeze_image_tower = false;  // the whole model is loaded; nothing trains
  r.model = std::make_unique<CaptionModel>(o);
  train::load_run_weights(run_dir, *r.model);
  r.model->eval();
  r.decode = decode_options(r.config, r.model->options);
  if (o.modality == "audio") {
    AudioClipOptions ao;
    ao.sample_rate = int(o.sample_rate);
    ao.samples = o.clip_samples;
    ao.random_crop = false;
    const data::Transform clip = audio_clip_transform(ao);
    r.transform = [clip](const data::ImageTextSample& s, uint64_t seed) {
      return data::Example{{"image", clip(s, seed).at("audio")}};
    };
    return r;
  }
  ImageTransformOptions io = image_transform_options(r.config);
  io.random_crop = io.hflip = false;
  r.transform = image_transform(io);
  return r;
}

Tensor CaptionRun::load_image(const std::string& path) const {
  const std::string e = data::image_format_of(path);
  bool is_audio = false;
  for (const char* audio : {"wav", "flac", "ogg", "mp3", "m4a", "aac", "opus"}) is_audio = is_audio || e == audio;
  const bool audio_run = model->options.modality == "audio";
  if (is_audio && !audio_run) error(path, ": it is audio (.", e, "), and this run captions images");
  if (!is_audio && audio_run) error(path, ": it is not an audio file (.wav, .flac, .ogg, .mp3, ...), and this run captions audio");
  std::ifstream in(path, std::ios::binary);
  if (!in) error(path, ": cannot open it");
  data::ImageTextSample s;
  s.key = s.origin = path;
  s.image.assign(std::istreambuf_iterator<char>(in), {});
  s.image_format = e;
  if (s.image.empty()) error(path, ": the file is empty");
  return transform(s, 0).at("image");
}

std::vector<std::string> CaptionRun::caption_files(const std::vector<std::string>& paths, Generator* gen) const {
  std::vector<Tensor> images;
  for (const auto& p : paths) images.push_back(load_image(p));
  std::vector<std::string> out;
  if (images.empty()) return out;
  for (const Decoded& d : caption_images(*model, stack(images, 0), end_of_text_id(tokenizer), decode, gen))
    out.push_back(tokenizer.decode(d.tokens));
  return out;
}

}  // namespace fm::tasks
