// fm::tasks::CLIP against PyTorch: the weights, images, token ids and
// end-of-text positions written by tests/fixtures/make_clip_fixtures.py go
// through libfm's CLIP (encode_image, encode_text) and its loss (clip_loss or
// siglip_loss), then backward; the image and text features, the loss, the
// gradient of every parameter and the gradient of the images must match
// PyTorch's (f32, relative error below 1e-4, measured against the largest
// reference magnitude). Two cases: (a) separate towers, class-token pooling,
// CLIP's InfoNCE, RGB images; (b) one shared Transformer, mean pooling,
// SigLIP's sigmoid loss with logit_bias, one channel.
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>

#include "fm/io/safetensors.h"
#include "fm/objectives/contrastive.h"
#include "fm/tasks/clip_model.h"
#include "helpers.h"

using namespace fm;
using fm::nn::StateDict;
using fm::test::rel_err;

namespace {

constexpr double kTol = 1e-4;
const char* const kSeparate = "clip_separate_cls_clip.safetensors";
const char* const kShared = "clip_shared_mean_siglip.safetensors";

class Fixture {
 public:
  explicit Fixture(const std::string& file)
      : name_(file),
        st_(io::load_safetensors((std::filesystem::path(__FILE__).parent_path().parent_path() / "fixtures" / file).string())) {}

  Tensor get(const std::string& key) const {
    auto it = st_.tensors.find(key);
    if (it == st_.tensors.end()) throw Error(name_ + ": no tensor '" + key + "'");
    return it->second.clone();  // off the file mapping
  }
  std::string meta(const std::string& key) const {
    auto it = st_.metadata.find(key);
    if (it == st_.metadata.end()) throw Error(name_ + ": no metadata '" + key + "'");
    return it->second;
  }
  int64_t option(const std::string& key) const { return std::stoll(meta(key)); }
  StateDict params() const {
    StateDict sd;
    for (const auto& [key, t] : st_.tensors)
      if (key.rfind("param.", 0) == 0) sd[key.substr(6)] = t;
    return sd;
  }
  tasks::CLIPOptions options() const {
    tasks::CLIPOptions o;
    o.image_size = option("image_size");
    o.patch_size = option("patch_size");
    o.channels = option("channels");
    o.vision_width = option("vision_width");
    o.vision_layers = option("vision_layers");
    o.vision_heads = option("vision_heads");
    o.pool = meta("pool");
    o.vocab_size = option("vocab_size");
    o.context_length = option("context_length");
    o.text_width = option("text_width");
    o.text_layers = option("text_layers");
    o.text_heads = option("text_heads");
    o.embed_dim = option("embed_dim");
    o.shared_core = option("shared_core") != 0;
    o.logit_bias = option("logit_bias") != 0;
    return o;
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  io::Safetensors st_;
};

// Compares one tensor, remembers the worst error for the summary line.
struct Comparer {
  explicit Comparer(const Fixture& fixture) : f(fixture) {}
  const Fixture& f;
  double worst = 0;
  std::string worst_name;
  int compared = 0;
  void operator()(const std::string& what, const Tensor& actual, const Tensor& expected) {
    ASSERT_TRUE(actual.defined()) << f.name() << ": " << what << " was not computed";
    const double e = rel_err(actual, expected);
    EXPECT_LT(e, kTol) << f.name() << ": " << what << " (shape " << actual.shape() << " vs " << expected.shape() << ")";
    ++compared;
    if (e >= worst) worst = e, worst_name = what;
  }
  ~Comparer() {
    std::cout << f.name() << ": " << compared << " tensors, max relative error " << worst << " (" << worst_name << ")\n";
  }
};

void run_case(const std::string& file, const std::string& loss_kind) {
  const Fixture f(file);
  ASSERT_EQ(f.meta("loss"), loss_kind);
  tasks::CLIP model(f.options());
  model.load_state_dict(f.params());

  Tensor images = f.get("input.images").requires_grad_(true);
  Tensor image_features = model.encode_image(images);
  Tensor text_features = model.encode_text(f.get("input.ids"), f.get("input.eot"));
  Tensor loss = loss_kind == "clip"
                    ? objectives::clip_loss(image_features, text_features, model.logit_scale).loss
                    : objectives::siglip_loss(image_features, text_features, model.logit_scale, model.logit_bias).loss;
  loss.backward();

  Comparer cmp(f);
  cmp("image_features", image_features, f.get("image_features"));
  cmp("text_features", text_features, f.get("text_features"));
  cmp("loss", loss.reshape({1}), f.get("loss"));
  cmp("grad of images", images.grad(), f.get("input_grad.images"));
  for (const auto& p : model.named_parameters()) cmp("grad of " + p.name, p.tensor.grad(), f.get("param_grad." + p.name));
}

// libfm's parameter names and shapes against the fixture's, both ways.
void check_names(const std::string& file) {
  const Fixture f(file);
  tasks::CLIP model(f.options());
  const StateDict reference = f.params();
  std::set<std::string> ours, theirs;
  for (const auto& p : model.named_parameters()) {
    ours.insert(p.name);
    auto it = reference.find(p.name);
    if (it == reference.end()) {
      ADD_FAILURE() << file << ": libfm's " << p.name << " " << p.tensor.shape() << " is not in the PyTorch reference";
      continue;
    }
    EXPECT_EQ(p.tensor.shape(), it->second.shape()) << file << ": " << p.name;
  }
  for (const auto& [name, t] : reference) {
    theirs.insert(name);
    EXPECT_TRUE(ours.count(name)) << file << ": the reference's " << name << " " << t.shape() << " is not in libfm's CLIP";
  }
  EXPECT_EQ(ours.size(), model.named_parameters().size()) << file << ": duplicate parameter names";
  EXPECT_EQ(ours, theirs);
}

}  // namespace

TEST(CLIPParity, ParameterNamesMatchBothWays) {
  check_names(kSeparate);
  check_names(kShared);
}

TEST(CLIPParity, SeparateTowersClsPoolingClipLoss) { run_case(kSeparate, "clip"); }

TEST(CLIPParity, SharedCoreMeanPoolingSiglipLoss) { run_case(kShared, "siglip"); }

// With logit_bias (SigLIP) the model starts at SigLIP's scale and bias, as
// the header and contrastive.h say (the parity cases overwrite both).
TEST(CLIPParity, SiglipInitialisation) {
  tasks::CLIPOptions o = Fixture(kShared).options();
  std::unique_ptr<tasks::CLIP> model;
  ASSERT_NO_THROW(model = std::make_unique<tasks::CLIP>(o));
  EXPECT_NEAR(model->logit_scale.item<double>(), objectives::kSiglipLogitScaleInit, 1e-6);
  EXPECT_NEAR(model->logit_bias.item<double>(), objectives::kSiglipLogitBiasInit, 1e-6);
  EXPECT_TRUE(model->logit_scale.requires_grad());
  EXPECT_TRUE(model->logit_bias.requires_grad());
}
