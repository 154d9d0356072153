// clip_loss and siglip_loss: loss and gradients against open_clip's formulas
// (tests/fixtures/make_contrastive_fixtures.py; single process and rank 1 of
// a world of 2), gradcheck, the logit-scale clamp, accuracies, errors.
#include <filesystem>

#include "fm/io/safetensors.h"
#include "fm/objectives/contrastive.h"
#include "helpers.h"

using namespace fm;
using namespace fm::objectives;
using fm::test::all_close;
using fm::test::expect_error;
using fm::test::grads_ok;
using fm::test::leaf;
using Ts = std::vector<Tensor>;

namespace {

io::Safetensors load_fixture(const std::string& file) {
  return io::load_safetensors(
      (std::filesystem::path(__FILE__).parent_path().parent_path() / "fixtures" / file).string());
}

// Runs the loss of a fixture in dtype t and compares loss and gradients.
void check_fixture(const std::string& file, DType t, double tol) {
  SCOPED_TRACE(file + " in " + name(t));
  const io::Safetensors st = load_fixture(file);
  auto get = [&](const std::string& key) { return st.tensors.at(key).to(t).detach(); };
  auto param = [&](const std::string& key) { return get(key).requires_grad_(true); };
  const int64_t rank = std::stoll(st.metadata.at("rank"));
  const bool gathered = st.tensors.count("all_image") > 0;
  const bool siglip = st.tensors.count("logit_bias") > 0;

  Tensor image = param("image"), text = param("text"), scale = param("logit_scale");
  Tensor bias = siglip ? param("logit_bias") : Tensor();
  Tensor all_image = gathered ? get("all_image") : Tensor(), all_text = gathered ? get("all_text") : Tensor();
  ContrastiveOutput out = siglip ? siglip_loss(image, text, scale, bias, all_text, rank)
                                 : clip_loss(image, text, scale, all_image, all_text, rank);
  out.loss.backward();
  EXPECT_EQ(out.loss.dtype(), t);
  EXPECT_TRUE(all_close(out.loss.reshape({1}), st.tensors.at("loss"), tol, tol)) << "loss";
  EXPECT_TRUE(all_close(image.grad(), st.tensors.at("grad.image"), tol, tol)) << "grad.image";
  EXPECT_TRUE(all_close(text.grad(), st.tensors.at("grad.text"), tol, tol)) << "grad.text";
  EXPECT_TRUE(all_close(scale.grad(), st.tensors.at("grad.logit_scale"), tol, tol)) << "grad.logit_scale";
  if (siglip) EXPECT_TRUE(all_close(bias.grad(), st.tensors.at("grad.logit_bias"), tol, tol)) << "grad.logit_bias";
}

// The 4 x 4 identity in f64.
Tensor eye4() { return tensor<double>({1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, {4, 4}); }

// Unit rows [n, d] in f64.
Tensor unit_rows(int64_t n, int64_t d) { return normalize(randn({n, d}, DType::f64), -1); }

}  // namespace

TEST(ContrastiveLoss, MatchesOpenClipFixtures) {
  for (const char* file : {"objectives_clip_single.safetensors", "objectives_clip_gathered.safetensors",
                           "objectives_siglip_single.safetensors", "objectives_siglip_gathered.safetensors"}) {
    check_fixture(file, DType::f32, 1e-5);
    check_fixture(file, DType::f64, 1e-10);
  }
}

TEST(ClipLoss, Gradcheck) {
  manual_seed(3);
  EXPECT_TRUE(grads_ok([](const Ts& in) { return clip_loss(in[0], in[1], in[2]).loss; },
                       {leaf({4, 3}), leaf({4, 3}), leaf({}, 0.5)}));
  // Rank 1 of a world of 3: the other ranks' rows are constants.
  Tensor all_image = randn({6, 3}, DType::f64), all_text = randn({6, 3}, DType::f64);
  EXPECT_TRUE(grads_ok([&](const Ts& in) { return clip_loss(in[0], in[1], in[2], all_image, all_text, 1).loss; },
                       {leaf({2, 3}), leaf({2, 3}), leaf({}, 0.5)}));
}

TEST(SiglipLoss, Gradcheck) {
  manual_seed(4);
  EXPECT_TRUE(grads_ok([](const Ts& in) { return siglip_loss(in[0], in[1], in[2], in[3]).loss; },
                       {leaf({4, 3}), leaf({4, 3}), leaf({}, 0.5), leaf({})}));
  Tensor all_text = randn({6, 3}, DType::f64);
  EXPECT_TRUE(grads_ok([&](const Ts& in) { return siglip_loss(in[0], in[1], in[2], in[3], all_text, 2).loss; },
                       {leaf({2, 3}), leaf({2, 3}), leaf({}, 0.5), leaf({})}));
}

TEST(ContrastiveLoss, ScaleClampsAtLn100) {
  manual_seed(5);
  Tensor image = unit_rows(5, 4), text = unit_rows(5, 4);
  Tensor at_max = scalar_tensor(kClipLogitScaleMax, DType::f64);
  const double clip_at_max = clip_loss(image, text, at_max).loss.item();
  const double siglip_at_max = siglip_loss(image, text, at_max, scalar_tensor(-3.0, DType::f64)).loss.item();
  for (double above : {kClipLogitScaleMax + 1e-3, 5.0, 9.0}) {
    Tensor p = scalar_tensor(above, DType::f64).requires_grad_(true);
    ContrastiveOutput c = clip_loss(image, text, p);
    EXPECT_NEAR(c.loss.item(), clip_at_max, 1e-12);
    c.loss.backward();
    EXPECT_EQ(p.grad().item(), 0.0) << "clip, logit_scale " << above;
    Tensor q = scalar_tensor(above, DType::f64).requires_grad_(true);
    ContrastiveOutput s = siglip_loss(image, text, q, scalar_tensor(-3.0, DType::f64));
    EXPECT_NEAR(s.loss.item(), siglip_at_max, 1e-12);
    s.loss.backward();
    EXPECT_EQ(q.grad().item(), 0.0) << "siglip, logit_scale " << above;
  }
  // Below the clamp the scale learns.
  Tensor p = scalar_tensor(kClipLogitScaleInit, DType::f64).requires_grad_(true);
  clip_loss(image, text, p).loss.backward();
  EXPECT_NE(p.grad().item(), 0.0);
}

TEST(ContrastiveLoss, LocalRowsOfGatheredFeaturesAreTheLocalOnes) {
  // Whatever the gathered tensor holds in this rank's rows, the local
  // features are used there (as open_clip splices them in).
  manual_seed(6);
  Tensor image = unit_rows(3, 4), text = unit_rows(3, 4);
  Tensor all_image = unit_rows(9, 4), all_text = unit_rows(9, 4);
  Tensor spliced_image = all_image.clone(), spliced_text = all_text.clone();
  spliced_image.narrow(0, 3, 3).copy_(image);
  spliced_text.narrow(0, 3, 3).copy_(text);
  Tensor s = scalar_tensor(2.0, DType::f64), b = scalar_tensor(-4.0, DType::f64);
  EXPECT_NEAR(clip_loss(image, text, s, all_image, all_text, 1).loss.item(),
              clip_loss(image, text, s, spliced_image, spliced_text, 1).loss.item(), 1e-12);
  EXPECT_NEAR(siglip_loss(image, text, s, b, all_text, 1).loss.item(),
              siglip_loss(image, text, s, b, spliced_text, 1).loss.item(), 1e-12);
  // A world of 1 gathered is the single-process loss.
  EXPECT_NEAR(clip_loss(image, text, s, image, text, 0).loss.item(), clip_loss(image, text, s).loss.item(), 1e-12);
}

TEST(ContrastiveLoss, Accuracies) {
  // Texts are the images e0..e3 except text 3 = normalize(e0 + e3 / 2):
  // every image's best text is its own (image 3 scores 0.45 with text 3, 0
  // with the others), but text 3's best image is image 0 (0.89 > 0.45).
  Tensor image = eye4();
  Tensor text = image.clone();
  text.narrow(0, 3, 1).copy_(normalize(tensor<double>({1, 0, 0, 0.5}, {1, 4}), -1));
  Tensor s = scalar_tensor(kClipLogitScaleInit, DType::f64), b = scalar_tensor(-10.0, DType::f64);
  ContrastiveOutput c = clip_loss(image, text, s);
  EXPECT_DOUBLE_EQ(c.accuracy_i2t, 1.0);
  EXPECT_DOUBLE_EQ(c.accuracy_t2i, 0.75);
  ContrastiveOutput g = siglip_loss(image, text, s, b);
  EXPECT_DOUBLE_EQ(g.accuracy_i2t, 1.0);
  EXPECT_DOUBLE_EQ(g.accuracy_t2i, 0.75);
  // As rank 1 of 2, with rank 0's features the opposite of ours (never picked):
  // the labels are offset by 4, the figures the same.
  Tensor all_image = cat({-image, image}), all_text = cat({-text, text});
  c = clip_loss(image, text, s, all_image, all_text, 1);
  EXPECT_DOUBLE_EQ(c.accuracy_i2t, 1.0);
  EXPECT_DOUBLE_EQ(c.accuracy_t2i, 0.75);
  g = siglip_loss(image, text, s, b, all_text, 1);
  EXPECT_DOUBLE_EQ(g.accuracy_i2t, 1.0);
  EXPECT_DOUBLE_EQ(g.accuracy_t2i, 0.75);
}

TEST(ContrastiveLoss, HalfFeaturesGiveF32Loss) {
  manual_seed(7);
  Tensor image = normalize(randn({6, 8}), -1), text = normalize(randn({6, 8}), -1);
  Tensor s = scalar_tensor(kClipLogitScaleInit), b = scalar_tensor(kSiglipLogitBiasInit);
  for (DType h : {DType::bf16, DType::f16}) {
    Tensor lc = clip_loss(image.to(h), text.to(h), s).loss;
    Tensor ls = siglip_loss(image.to(h), text.to(h), s, b).loss;
    EXPECT_EQ(lc.dtype(), DType::f32);
    EXPECT_EQ(ls.dtype(), DType::f32);
    EXPECT_NEAR(lc.item(), clip_loss(image, text, s).loss.item(), 0.05);
    EXPECT_NEAR(ls.item(), siglip_loss(image, text, s, b).loss.item(), 0.05);
  }
}

TEST(ContrastiveLoss, Errors) {
  Tensor a = randn({4, 3}), s = scalar_tensor(1.0);
  expect_error([&] { clip_loss(a, randn({4, 5}), s); }, "text_features");
  expect_error([&] { clip_loss(a.reshape({12}), a.reshape({12}), s); }, "[N, D]");
  expect_error([&] { clip_loss(a, a, randn({2})); }, "logit_scale");
  expect_error([&] { clip_loss(a, a, s, randn({8, 3})); }, "together");
  expect_error([&] { clip_loss(a, a, s, randn({10, 3}), randn({10, 3}), 0); }, "world");
  expect_error([&] { clip_loss(a, a, s, randn({8, 3}), randn({8, 3}), 2); }, "rank 2");
  expect_error([&] { clip_loss(a, a, s, Tensor(), Tensor(), 1); }, "rank 1");
  expect_error([&] { siglip_loss(a, a, s, Tensor()); }, "logit_bias");
  expect_error([&] { siglip_loss(a, a, s, s, randn({8, 4}), 1); }, "all_text");
}
