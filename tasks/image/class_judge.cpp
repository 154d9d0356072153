// The class judge of generated images: a classifier trained on the real
// labelled training set (Fashion-MNIST), sharing nothing with the
// generator, so "does this image show a sneaker?" is answered independently.
#include <algorithm>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/nn/init.h"
#include "fm/ops.h"
#include "fm/optim/adamw.h"
#include "fm/tasks/diffusion.h"
#include "fm/tasks/image_text_data.h"

namespace fm::tasks {

// Pixels -> hidden (GELU) -> class logits.
struct ClassJudge::Net : nn::Module {
  Net(int64_t in, int64_t hidden, int64_t classes) {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(nn::LinearOptions{in, hidden, true}));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(nn::LinearOptions{hidden, classes, true}));
  }
  Tensor forward(const Tensor& images) const {
    return fc2->forward(gelu(fc1->forward(images.reshape({images.size(0), -1}).to(DType::f32))));
  }
  std::shared_ptr<nn::Linear> fc1, fc2;
};

ClassJudge::ClassJudge(const data::ImageTextSource& train, const data::Transform& transform, int64_t num_classes,
                       const ClassJudgeOptions& o) {
  if (num_classes < 2) error("class judge: needs at least 2 classes, got ", num_classes);
  // Trained with gradients even when built inside an evaluation (no_grad).
  struct GradOn {
    bool prev = grad_enabled();
    GradOn() { set_grad_enabled(true); }
    ~GradOn() { set_grad_enabled(prev); }
  } grad_on;
  Generator gen(o.seed);
  data::ImageTextSample first = train.read(0);
  const Tensor x0 = transform(first, 0).at("image");
  net_ = std::make_shared<Net>(x0.numel(), o.hidden, num_classes);
  nn::init::normal_(net_->fc1->weight, 0.0, 1.0 / std::sqrt(double(x0.numel())), &gen);
  nn::init::normal_(net_->fc2->weight, 0.0, 1.0 / std::sqrt(double(o.hidden)), &gen);
  optim::AdamWOptions ao;
  ao.lr = o.lr;
  ao.weight_decay = 0;
  optim::AdamW opt(*net_, ao);
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    for_each_batch(train, transform, o.batch_size, o.limit, [&](const data::LoaderBatch& b) {
      std::vector<int64_t> labels;
      for (int64_t i : b.indices) labels.push_back(train.read(i).label);
      if (*std::min_element(labels.begin(), labels.end()) < 0)
        error("class judge: ", train.name(), " has samples without a class label");
      opt.zero_grad();
      Tensor loss = cross_entropy(net_->forward(b.tensors.at("image")), tensor(labels));
      loss.backward();
      opt.step();
    });
  }
}

std::vector<int64_t> ClassJudge::classify(const Tensor& images) const {
  NoGradGuard ng;
  return argmax(net_->forward(images.to(Device::cpu())), 1).to_vector<int64_t>();
}

double ClassJudge::accuracy(const data::ImageTextSource& source, const data::Transform& transform, int64_t limit,
                            int64_t shift) const {
  int64_t right = 0, total = 0;
  const int64_t K = net_->fc2->options.out_features;
  for_each_batch(source, transform, 256, limit, [&](const data::LoaderBatch& b) {
    const std::vector<int64_t> pred = classify(b.tensors.at("image"));
    for (size_t i = 0; i < pred.size(); ++i) {
      right += pred[i] == (source.read(b.indices[i]).label + shift) % K;
      ++total;
    }
  });
  return total ? double(right) / double(total) : 0.0;
}

std::map<std::string, double> class_adherence(const TextToImagePipeline& p, const ClassJudge& judge,
                                              const std::vector<std::string>& classes, int64_t per_class,
                                              int64_t batch, const GenerateOptions& o) {
  int64_t right = 0, total = 0;
  std::vector<int64_t> labels;
  std::vector<std::string> prompts;
  for (int64_t k = 0; k < int64_t(classes.size()); ++k)
    for (int64_t i = 0; i < per_class; ++i) labels.push_back(k), prompts.push_back(classes[size_t(k)]);
  for (size_t start = 0; start < prompts.size(); start += size_t(batch)) {
    const size_t end = std::min(prompts.size(), start + size_t(batch));
    GenerateOptions bo = o;
    bo.seed = o.seed + start;
    const Tensor images = p.generate({prompts.begin() + long(start), prompts.begin() + long(end)}, bo);
    const std::vector<int64_t> pred = judge.classify(images * 2.0 - 1.0);  // [0, 1] -> the data range
    for (size_t i = 0; i < pred.size(); ++i) right += pred[i] == labels[start + i], ++total;
  }
  return {{"adherence", total ? double(right) / double(total) : 0.0}, {"adherence_n", double(total)}};
}

}  // namespace fm::tasks
