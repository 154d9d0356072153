// [task] kind = clip: CLIP-style contrastive image-text training (DESIGN.md,
// contrastive objective), evaluated by zero-shot classification and
// image-text retrieval.
#include <algorithm>
#include <cmath>
#include <optional>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/objectives/contrastive.h"
#include "fm/ops.h"
#include "fm/tasks/clip.h"
#include "fm/tasks/image_text_data.h"
#include "fm/train/task.h"

namespace fm::tasks {

void declare_text_tower_keys(train::Config& c) {
  c.add_int("model.vocab_size", 0, "text vocabulary (0: the tokenizer's)")
      .add_int("model.context_length", 32, "caption tokens, end-of-text included")
      .add_int("model.text_width", 128, "text tower width")
      .add_int("model.text_layers", 4, "text tower blocks")
      .add_int("model.text_heads", 4, "text tower heads")
      .add_int("model.embed_dim", 128, "joint embedding size")
      .add_bool("model.shared_core", false, "both towers share one Transformer (equal shapes)")
      .add_string("model.loss", "clip", "clip (softmax InfoNCE) or siglip (sigmoid)")
      .add_string("data.tokenizer", "", "caption tokenizer file (empty: bytes + <|endoftext|>)");
}

void resolve_text_vocab(train::Config& c) {
  if (c.get_int("model.vocab_size") == 0)
    c.set("model.vocab_size", std::to_string(caption_tokenizer(c.get_string("data.tokenizer")).vocab_size()),
          "data.tokenizer");
}

TextTowerOptions text_tower_options(const train::Config& c) {
  TextTowerOptions o;
  o.vocab_size = c.get_int("model.vocab_size");
  o.context_length = c.get_int("model.context_length");
  o.width = c.get_int("model.text_width");
  o.layers = c.get_int("model.text_layers");
  o.heads = c.get_int("model.text_heads");
  o.embed_dim = c.get_int("model.embed_dim");
  o.shared_core = c.get_bool("model.shared_core");
  const std::string loss = c.get_string("model.loss");
  if (loss != "clip" && loss != "siglip") error("config: key 'model.loss': '", loss, "' is not clip or siglip");
  o.logit_bias = loss == "siglip";
  return o;
}

CLIPOptions clip_options(const train::Config& c) {
  CLIPOptions o;
  o.image_size = c.get_int("model.image_size");
  o.patch_size = c.get_int("model.patch_size");
  o.channels = c.get_int("model.channels");
  o.vision_width = c.get_int("model.vision_width");
  o.vision_layers = c.get_int("model.vision_layers");
  o.vision_heads = c.get_int("model.vision_heads");
  o.pool = c.get_string("model.pool");
  const TextTowerOptions t = text_tower_options(c);
  o.vocab_size = t.vocab_size;
  o.context_length = t.context_length;
  o.text_width = t.width;
  o.text_layers = t.layers;
  o.text_heads = t.heads;
  o.embed_dim = t.embed_dim;
  o.shared_core = t.shared_core;
  o.logit_bias = t.logit_bias;
  return o;
}

namespace {

void declare_clip_keys(train::Config& c) {
  c.add_int("model.image_size", 32, "image side in pixels (images are resized and cropped to it)")
      .add_int("model.patch_size", 4, "ViT patch side")
      .add_int("model.channels", 3, "image channels: 3 (RGB) or 1 (luminance)")
      .add_int("model.vision_width", 128, "image tower width")
      .add_int("model.vision_layers", 4, "image tower blocks")
      .add_int("model.vision_heads", 4, "image tower heads")
      .add_string("model.pool", "cls", "image pooling: cls or mean")
      .add_string("data.zeroshot", "", "labelled images for zero-shot accuracy (empty: none)")
      .add_string("data.probe_train", "", "labelled images a linear probe trains on, tested on data.zeroshot (empty: no probe)")
      .add_int("train.probe_samples", 10000, "training images of the linear probe (0: all)")
      .add_bool("data.templates", false, "captions are class names: put them into prompt templates")
      .add_int("train.eval_samples", 1000, "held-out pairs for retrieval, and zero-shot images (0: all)");
  declare_text_tower_keys(c);
  declare_image_data_keys(c, "held-out pairs for retrieval R@1/5/10 (empty: none)");
}

int64_t params_of(const nn::Module& m) { return m.num_parameters(); }

class ClipTask : public train::Task {
 public:
  explicit ClipTask(const train::Config& c) : cfg_(c), tokenizer_(caption_tokenizer(c.get_string("data.tokenizer"))) {}

  void build(const train::RunContext& ctx) override {
    device_ = ctx.device;
    world_ = ctx.comm;
    B_ = cfg_.get_int("train.batch_size");
    manual_seed(uint64_t(cfg_.get_int("train.seed")));
    model_ = std::make_unique<CLIP>(clip_options(cfg_));
    const auto& o = model_->options;
    if (!ctx.open_data) {
      bench_images_ = randn({B_, o.channels, o.image_size, o.image_size}).to(device_);
      bench_ids_ = randint(0, o.vocab_size, {B_, o.context_length}).to(device_);
      bench_eot_ = full({B_}, double(o.context_length - 1), DType::i64).to(device_);
      return;
    }
    classes_ = parse_class_list(cfg_.get_string("data.classes"));
    templates_ = caption_templates(cfg_);
    ImageTransformOptions io = image_transform_options(cfg_);
    train_transform_ = image_text_transform(io, tokenizer_, o.context_length, templates_);
    io.random_crop = io.hflip = false;  // evaluation sees every image whole
    eval_transform_ = image_text_transform(io, tokenizer_, o.context_length, templates_);
    train_.emplace(cfg_, ctx, classes_, train_transform_);
  }

  nn::Module& model() override { return *model_; }

  train::StepOutput train_step() override {
    const data::LoaderBatch b = train_->next();
    auto out = loss(b.tensors.at("image").to(device_), b.tensors.at("text").to(device_), b.tensors.at("eot").to(device_));
    return {out.loss, {{"acc_i2t", out.accuracy_i2t}, {"acc_t2i", out.accuracy_t2i},
                       {"logit_scale", std::exp(model_->logit_scale.item())}, {"skipped", double(b.skipped)},
                       {"captions_truncated", double(captions_truncated())}}};
  }

  train::StepOutput bench_step() override { return {loss(bench_images_, bench_ids_, bench_eot_).loss, {}}; }

  std::map<std::string, double> evaluate() override {
    std::map<std::string, double> out;
    const int64_t limit = cfg_.get_int("train.eval_samples");
    if (const std::string z = cfg_.get_string("data.zeroshot"); !z.empty()) {
      if (classes_.empty()) error("config: data.zeroshot needs data.classes");
      const auto source = open_image_text(z, classes_);
      out["zeroshot_top1"] = zero_shot_accuracy(*model_, *source, eval_transform_, classes_,
                                                templates_.empty() ? std::vector<std::string>{"{}"} : templates_,
                                                tokenizer_, B_, limit, device_);
      if (const std::string p = cfg_.get_string("data.probe_train"); !p.empty())
        out["probe_top1"] = linear_probe_accuracy(*model_, *open_image_text(p, classes_), *source, eval_transform_,
                                                  int64_t(classes_.size()), B_, cfg_.get_int("train.probe_samples"),
                                                  limit, device_);
    }
    if (const std::string v = cfg_.get_string("data.val"); !v.empty()) {
      const auto source = open_image_text(v, classes_);
      const auto r = retrieval(*model_, *source, eval_transform_, B_, limit, device_);
      out.insert(r.begin(), r.end());
    }
    return out;
  }

  int64_t batch_samples() const override { return B_; }
  std::string sample_unit() const override { return "img"; }
  double flops_per_sample() const override {
    const int64_t n_img = model_->patch_embed->num_patches() + (model_->options.pool == "cls" ? 1 : 0);
    return model_->flops_per_pair(
        params_of(*model_->visual) + params_of(*model_->patch_embed) + params_of(*model_->visual_proj), n_img,
        *model_->visual);
  }

  train::TaskState state() const override { return {{{"train", train_ ? train_->position() : 0}}, {}, {}}; }
  void load_state(const train::TaskState& s) override {
    if (auto it = s.positions.find("train"); it != s.positions.end() && train_) train_->set_position(it->second);
  }

 private:
  objectives::ContrastiveOutput loss(const Tensor& images, const Tensor& ids, const Tensor& eot) const {
    return model_->loss(model_->encode_image(images), model_->encode_text(ids, eot), world_);
  }

  const train::Config& cfg_;
  dist::Communicator* world_ = nullptr;  // training gathers features from every rank
  text::BpeTokenizer tokenizer_;
  Device device_;
  int64_t B_ = 0;
  std::unique_ptr<CLIP> model_;
  std::vector<std::string> classes_, templates_;
  data::Transform train_transform_, eval_transform_;
  std::optional<TrainImages> train_;
  Tensor bench_images_, bench_ids_, bench_eot_;
};

const train::TaskRegistrar registrar{{
    "clip",
    "CLIP: image and text towers trained with a contrastive loss on image-text pairs",
    declare_clip_keys,
    resolve_text_vocab,
    {"model.image_size", "model.patch_size", "model.channels", "model.vision_width", "model.vision_layers",
     "model.vision_heads", "model.pool", "model.vocab_size", "model.context_length", "model.text_width",
     "model.text_layers", "model.text_heads", "model.embed_dim", "model.shared_core", "model.loss"},
    [](const train::Config& c) { return std::make_unique<ClipTask>(c); },
}};

}  // namespace
}  // namespace fm::tasks
