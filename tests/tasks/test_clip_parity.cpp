// fm::tasks::CLIP against PyTorch: the weights, images, token ids and
// end-of-text positions written by tests/fixtures/make_clip_fixtures.py go
// through libfm's CLIP (encode_image, encode_text) and its loss (clip_loss or
// siglip_loss), then backward; the image and text features, the loss, the
// gradient of every parameter and the gradient of the images must match
// PyTorch's (f32, relative error below 1e-4, measured against the largest
// reference magnitude). Two cases: (a) separate towers, class-token pooling,
// CLIP's InfoNCE, RGB images; (b) one shared Transformer, mean pooling,
// SigLIP's sigmoid loss with logit_bias, one channel.
#include <memory>
#include <set>

#include "fm/objectives/contrastive.h"
#include "fm/tasks/clip_model.h"
#include "parity.h"

using namespace fm;
using fm::nn::StateDict;
using fm::test::rel_err;

namespace {

constexpr double kTol = 1e-4;
const char* const kSeparate = "clip_separate_cls_clip.safetensors";
const char* const kShared = "clip_shared_mean_siglip.safetensors";

using Fixture = fm::test::ParityFixture;

// The model options the script wrote into the fixture's metadata.
tasks::CLIPOptions clip_options(const Fixture& f) {
  tasks::CLIPOptions o;
  o.image_size = f.option("image_size");
  o.patch_size = f.option("patch_size");
  o.channels = f.option("channels");
  o.vision_width = f.option("vision_width");
  o.vision_layers = f.option("vision_layers");
  o.vision_heads = f.option("vision_heads");
  o.pool = f.meta("pool");
  o.vocab_size = f.option("vocab_size");
  o.context_length = f.option("context_length");
  o.text_width = f.option("text_width");
  o.text_layers = f.option("text_layers");
  o.text_heads = f.option("text_heads");
  o.embed_dim = f.option("embed_dim");
  o.shared_core = f.option("shared_core") != 0;
  o.logit_bias = f.option("logit_bias") != 0;
  return o;
}

void run_case(const std::string& file, const std::string& loss_kind) {
  const Fixture f(file);
  ASSERT_EQ(f.meta("loss"), loss_kind);
  tasks::CLIP model(clip_options(f));
  model.load_state_dict(f.params());

  Tensor images = f.get("input.images").requires_grad_(true);
  Tensor image_features = model.encode_image(images);
  Tensor text_features = model.encode_text(f.get("input.ids"), f.get("input.eot"));
  Tensor loss = loss_kind == "clip"
                    ? objectives::clip_loss(image_features, text_features, model.logit_scale).loss
                    : objectives::siglip_loss(image_features, text_features, model.logit_scale, model.logit_bias).loss;
  loss.backward();

  fm::test::Comparer cmp(f, kTol);
  cmp("image_features", image_features, f.get("image_features"));
  cmp("text_features", text_features, f.get("text_features"));
  cmp("loss", loss.reshape({1}), f.get("loss"));
  cmp("grad of images", images.grad(), f.get("input_grad.images"));
  for (const auto& p : model.named_parameters()) cmp("grad of " + p.name, p.tensor.grad(), f.get("param_grad." + p.name));
}

// libfm's parameter names and shapes against the fixture's, both ways.
void check_names(const std::string& file) {
  const Fixture f(file);
  tasks::CLIP model(clip_options(f));
  fm::test::expect_same_parameters(model, f);
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
  tasks::CLIPOptions o = clip_options(Fixture(kShared));
  std::unique_ptr<tasks::CLIP> model;
  ASSERT_NO_THROW(model = std::make_unique<tasks::CLIP>(o));
  EXPECT_NEAR(model->logit_scale.item<double>(), objectives::kSiglipLogitScaleInit, 1e-6);
  EXPECT_NEAR(model->logit_bias.item<double>(), objectives::kSiglipLogitBiasInit, 1e-6);
  EXPECT_TRUE(model->logit_scale.requires_grad());
  EXPECT_TRUE(model->logit_bias.requires_grad());
}
