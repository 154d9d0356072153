// Evaluations of CLIP models: zero-shot classification and retrieval.
#include <algorithm>
#include <filesystem>

#include "fm/autograd.h"
#include "fm/data/image_text.h"
#include "fm/factory.h"
#include "fm/ops.h"
#include "fm/optim/adamw.h"
#include "fm/tasks/clip.h"
#include "fm/tasks/image_text_data.h"
#include "fm/train/recipe.h"
#include "fm/train/trainer.h"

namespace fm::tasks {
namespace {

// Rank of each row's own column (its diagonal entry) among the row: how many
// entries score strictly higher.
std::vector<int64_t> diagonal_ranks(const Tensor& scores) {
  const int64_t n = scores.size(0);
  const std::vector<float> s = scores.contiguous().to_vector<float>();
  std::vector<int64_t> ranks(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float own = s[size_t(i * n + i)];
    int64_t higher = 0;
    for (int64_t j = 0; j < n; ++j) higher += s[size_t(i * n + j)] > own;
    ranks[size_t(i)] = higher;
  }
  return ranks;
}

}  // namespace

std::map<std::string, double> recall_at_k(const Tensor& scores, const std::string& a, const std::string& b) {
  const Tensor s = scores.to(DType::f32).to(Device::cpu());
  std::map<std::string, double> out;
  const std::pair<std::string, Tensor> directions[] = {{a + "2" + b, s}, {b + "2" + a, s.t()}};
  for (const auto& [name, d] : directions) {
    const std::vector<int64_t> ranks = diagonal_ranks(d);
    for (int64_t k : {1, 5, 10}) {
      const auto hits = std::count_if(ranks.begin(), ranks.end(), [&](int64_t r) { return r < k; });
      out[name + "_r" + std::to_string(k)] = double(hits) / double(ranks.size());
    }
  }
  return out;
}

Tensor class_text_features(const ContrastiveModel& model, const std::vector<std::string>& classes,
                           const std::vector<std::string>& templates, const text::BpeTokenizer& tokenizer,
                           Device device) {
  std::vector<std::vector<std::string>> prompts;
  for (const auto& name : classes) {
    prompts.emplace_back();
    for (const auto& t : templates) prompts.back().push_back(data::apply_caption_template(t, name));
  }
  return class_text_features(model, prompts, tokenizer, device);
}

Tensor class_text_features(const ContrastiveModel& model, const std::vector<std::vector<std::string>>& prompts,
                           const text::BpeTokenizer& tokenizer, Device device) {
  NoGradGuard ng;
  std::vector<Tensor> per_class;
  for (const auto& class_prompts : prompts) {
    if (class_prompts.empty()) error("class_text_features: class ", per_class.size(), " has no prompts");
    std::vector<Tensor> ids;
    std::vector<int64_t> eots;
    for (const auto& p : class_prompts) {
      auto [row, eot] = tokenize_caption(tokenizer, p, model.context_length());
      ids.push_back(row);
      eots.push_back(eot);
    }
    Tensor f = model.encode_text(stack(ids).to(device), tensor(eots).to(device));
    per_class.push_back(l2_normalize(mean(f, {0})));
  }
  return stack(per_class);
}

double zero_shot_accuracy(const CLIP& model, const data::ImageTextSource& source, const data::Transform& transform,
                          const std::vector<std::string>& classes, const std::vector<std::string>& templates,
                          const text::BpeTokenizer& tokenizer, int64_t batch_size, int64_t limit, Device device) {
  NoGradGuard ng;
  const Tensor class_features = class_text_features(model, classes, templates, tokenizer, device);
  int64_t correct = 0, total = 0;
  for_each_batch(source, transform, batch_size, limit, [&](const data::LoaderBatch& b) {
    const Tensor pred = argmax(matmul(model.encode_image(b.tensors.at("image").to(device)), class_features.t()), 1);
    const std::vector<int64_t> p = pred.to(Device::cpu()).to_vector<int64_t>();
    for (size_t i = 0; i < p.size(); ++i) {
      const int64_t label = source.read(b.indices[i]).label;
      if (label < 0) error("zero-shot: ", source.name(), " sample ", b.indices[i], " has no class label");
      correct += p[i] == label;
      ++total;
    }
  });
  if (total == 0) error("zero-shot: ", source.name(), " gave no samples");
  return double(correct) / double(total);
}

namespace {
// Image features [N, D] (on the CPU) and labels of the first `limit` samples.
std::pair<Tensor, std::vector<int64_t>> labelled_features(const CLIP& model, const data::ImageTextSource& source,
                                                          const data::Transform& transform, int64_t classes,
                                                          int64_t batch_size, int64_t limit, Device device) {
  NoGradGuard ng;
  std::vector<Tensor> features;
  std::vector<int64_t> labels;
  for_each_batch(source, transform, batch_size, limit, [&](const data::LoaderBatch& b) {
    features.push_back(model.encode_image(b.tensors.at("image").to(device)).to(Device::cpu()));
    for (int64_t i : b.indices) {
      const int64_t label = source.read(i).label;
      if (label < 0 || label >= classes)
        error("linear probe: ", source.name(), " sample ", i, " has label ", label, ", not one of ", classes, " classes");
      labels.push_back(label);
    }
  });
  if (features.empty()) error("linear probe: ", source.name(), " gave no samples");
  return {cat(features).to(DType::f32), labels};
}
}  // namespace

double linear_probe_accuracy(const CLIP& model, const data::ImageTextSource& train, const data::ImageTextSource& test,
                             const data::Transform& transform, int64_t classes, int64_t batch_size,
                             int64_t train_limit, int64_t test_limit, Device device) {
  auto [x, y] = labelled_features(model, train, transform, classes, batch_size, train_limit, device);
  auto [tx, ty] = labelled_features(model, test, transform, classes, batch_size, test_limit, device);
  // Standardised with the training features' statistics, so one learning rate suits every model.
  const Tensor mu = mean(x, {0}, true), sd = sqrt(mean((x - mu) * (x - mu), {0}, true) + 1e-6);
  x = (x - mu) / sd;
  tx = (tx - mu) / sd;
  const int64_t d = x.size(1);
  const bool was = grad_enabled();
  set_grad_enabled(true);  // evaluations run under no_grad; the probe itself trains
  const Tensor w = zeros({classes, d}).requires_grad_(true), bias = zeros({classes}).requires_grad_(true);
  optim::AdamW opt({{{{"weight", w, 0}}, 0.05, 1e-3}, {{{"bias", bias, nn::kNoDecay}}, 0.05, 0.0}}, {});
  const Tensor target = tensor(y, {int64_t(y.size())});
  for (int step = 0; step < 300; ++step) {
    opt.zero_grad();
    cross_entropy(linear(x, w, bias), target).backward();
    opt.step();
  }
  set_grad_enabled(was);
  NoGradGuard ng;
  const std::vector<int64_t> pred = argmax(linear(tx, w, bias), 1).to_vector<int64_t>();
  int64_t correct = 0;
  for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == ty[i];
  return double(correct) / double(pred.size());
}

std::map<std::string, double> retrieval(const CLIP& model, const data::ImageTextSource& source,
                                        const data::Transform& transform, int64_t batch_size, int64_t limit,
                                        Device device) {
  NoGradGuard ng;
  std::vector<Tensor> images, texts;
  for_each_batch(source, transform, batch_size, limit, [&](const data::LoaderBatch& b) {
    images.push_back(model.encode_image(b.tensors.at("image").to(device)).to(Device::cpu()));
    texts.push_back(model.encode_text(b.tensors.at("text").to(device), b.tensors.at("eot").to(device)).to(Device::cpu()));
  });
  if (images.empty()) error("retrieval: ", source.name(), " gave no samples");
  return recall_at_k(matmul(cat(images), cat(texts).t()), "i", "t");
}

ClipRun load_clip_run(const std::string& run_dir) {
  ClipRun r{train::load_run_config(run_dir), nullptr, text::BpeTokenizer(caption_tokenizer("")), {}};
  if (r.config.get_string("task.kind") != "clip") error(run_dir, " is a '", r.config.get_string("task.kind"), "' run, not clip");
  r.tokenizer = caption_tokenizer(r.config.get_string("data.tokenizer"));
  r.model = std::make_unique<CLIP>(clip_options(r.config));
  train::load_run_weights(run_dir, *r.model);
  r.model->eval();
  ImageTransformOptions io = image_transform_options(r.config);
  io.random_crop = io.hflip = false;
  r.transform = image_text_transform(io, r.tokenizer, r.model->options.context_length, caption_templates(r.config));
  return r;
}

}  // namespace fm::tasks
