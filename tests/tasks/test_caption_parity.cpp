// fm::tasks::CaptionModel against PyTorch: the weights, images, token ids and
// last caption positions written by tests/fixtures/make_caption_fixtures.py
// (a captioning model written out in plain torch with libfm's parameter
// names) go through libfm's CaptionModel::forward, then backward of the same
// fixed random linear functional of the outputs; the logits (CoCa: also both
// embeddings), the loss, the gradient of every parameter and the gradient of
// the images must match PyTorch's element-wise (f32, |a - e| <= 1e-4 +
// 1e-4 |e|, as torch.allclose). Three cases: (a) the cross layout (a ViT
// encoder 8 wide, a decoder 12 wide cross-attending to it); (b) the single
// layout (one Transformer under the prefix-causal mask, with a class token);
// (c) CoCa (one unimodal block of three, class-token pooling, grey images).
// Also: incremental decoding with KV caches (one token at a time, or in
// chunks) gives the full forward's logits at every position, and the cross
// layout projects the image's keys and values once, at the first call.
#include <algorithm>
#include <cmath>
#include <iostream>

#include "fm/tasks/caption_model.h"
#include "parity.h"

using namespace fm;
using fm::test::rel_err;

namespace {

constexpr double kTol = 1e-4;  // rtol and atol of the PyTorch comparison
constexpr double kDecodeTol = 1e-5;
const char* const kCross = "caption_cross.safetensors";
const char* const kSingle = "caption_single.safetensors";
const char* const kCoca = "caption_coca.safetensors";

using Fixture = fm::test::ParityFixture;

// The model options the script wrote into the fixture's metadata.
tasks::CaptionOptions caption_options(const Fixture& f) {
  tasks::CaptionOptions o;
  o.layout = f.meta("layout");
  o.image_size = f.option("image_size");
  o.patch_size = f.option("patch_size");
  o.channels = f.option("channels");
  o.vision_width = f.option("vision_width");
  o.vision_layers = f.option("vision_layers");
  o.vision_heads = f.option("vision_heads");
  o.cls_token = f.option("cls_token") != 0;
  o.vocab_size = f.option("vocab_size");
  o.context_length = f.option("context_length");
  o.text_width = f.option("text_width");
  o.text_layers = f.option("text_layers");
  o.text_heads = f.option("text_heads");
  o.coca = f.option("coca") != 0;
  o.unimodal_layers = f.option("unimodal_layers");
  o.embed_dim = f.option("embed_dim");
  return o;
}

// Element-wise comparison as torch.allclose (|a - e| <= atol + rtol |e|,
// rtol = atol = tol); prints how many tensors, the worst element (as a
// fraction of its allowance) and the worst absolute and max-relative errors.
struct CloseComparer {
  CloseComparer(const std::string& name, double tolerance) : case_name(name), tol(tolerance) {}
  std::string case_name;
  double tol;
  double worst_ratio = 0, worst_abs = 0, worst_rel = 0;
  std::string worst_name;
  int compared = 0;
  void operator()(const std::string& what, const Tensor& actual, const Tensor& expected) {
    ASSERT_TRUE(actual.defined()) << case_name << ": " << what << " was not computed";
    ASSERT_EQ(actual.shape(), expected.shape()) << case_name << ": " << what;
    const std::vector<double> a = actual.to(Device::cpu()).to_vector<double>(), e = expected.to_vector<double>();
    double ratio = 0, abs_err = 0;
    size_t at = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      const double d = std::fabs(a[i] - e[i]);
      const double r = std::isnan(d) ? INFINITY : d / (tol + tol * std::fabs(e[i]));
      abs_err = std::max(abs_err, std::isnan(d) ? INFINITY : d);
      if (r > ratio) ratio = r, at = i;
    }
    EXPECT_LE(ratio, 1.0) << case_name << ": " << what << " element " << at << ": " << a[at] << " vs " << e[at]
                          << " (shape " << actual.shape() << ")";
    ++compared;
    worst_abs = std::max(worst_abs, abs_err);
    worst_rel = std::max(worst_rel, rel_err(actual, expected));
    if (ratio >= worst_ratio) worst_ratio = ratio, worst_name = what;
  }
  ~CloseComparer() {
    std::cout << case_name << ": " << compared << " tensors, worst element at " << worst_ratio
              << " of its allowance (" << worst_name << "), max abs error " << worst_abs
              << ", max error relative to the largest magnitude " << worst_rel << "\n";
  }
};

void run_case(const std::string& file) {
  const Fixture f(file);
  const tasks::CaptionOptions o = caption_options(f);
  tasks::CaptionModel model(o);
  fm::test::expect_same_parameters(model, f);
  model.load_state_dict(f.params());

  Tensor images = f.input_leaf("images");
  const Tensor ids = f.get("input.ids"), last = f.get("input.last");
  ASSERT_EQ(ids.dtype(), DType::i64);
  tasks::CaptionForward out = model.forward(images, ids, last);
  Tensor loss = sum(out.logits * f.get("output_grad.logits"));
  if (o.coca) {
    ASSERT_TRUE(out.image_emb.defined() && out.text_emb.defined());
    loss = loss + sum(out.image_emb * f.get("output_grad.image_emb")) + sum(out.text_emb * f.get("output_grad.text_emb"));
  } else {
    EXPECT_FALSE(out.image_emb.defined() || out.text_emb.defined());
    EXPECT_FALSE(f.has("image_emb"));
  }
  loss.backward();

  CloseComparer cmp(f.name(), kTol);
  cmp("logits", out.logits, f.get("logits"));
  if (o.coca) {
    cmp("image_emb", out.image_emb, f.get("image_emb"));
    cmp("text_emb", out.text_emb, f.get("text_emb"));
  }
  cmp("loss", loss.reshape({1}), f.get("loss"));
  cmp("grad of images", images.grad(), f.get("input_grad.images"));
  for (const auto& p : model.named_parameters()) {
    Tensor g = p.tensor.grad();
    // forward never reads CoCa's logit_scale (the contrastive loss does): no gradient, zero in the fixture.
    if (p.name == "logit_scale" && !g.defined()) g = zeros_like(p.tensor);
    cmp("grad of " + p.name, g, f.get("param_grad." + p.name));
  }
}

// Decodes ids with KV caches in chunks of the given sizes (the first call
// takes in the image, later ones an undefined Tensor()) and compares each
// chunk's logits with the full forward's at the same positions.
void decode_in_chunks(const std::string& file, const std::vector<int64_t>& chunks) {
  const Fixture f(file);
  const tasks::CaptionOptions o = caption_options(f);
  tasks::CaptionModel model(o);
  model.load_state_dict(f.params());
  NoGradGuard no_grad;
  const Tensor images = f.get("input.images"), ids = f.get("input.ids");
  const int64_t T = ids.size(1);
  const Tensor full = model.forward(images, ids, f.get("input.last")).logits;
  const Tensor image = model.encode_image(images);
  const size_t unimodal = o.coca ? size_t(o.unimodal_layers) : 0;

  std::vector<nn::KVCache> caches;
  Tensor cross_k_after_first;
  int64_t t = 0;
  for (size_t c = 0; t < T; ++c) {
    const int64_t n = std::min(c < chunks.size() ? chunks[c] : chunks.back(), T - t);
    const Tensor step = model.logits(t == 0 ? image : Tensor(), ids.narrow(1, t, n), &caches);
    ASSERT_EQ(step.shape(), (Shape{ids.size(0), n, o.vocab_size})) << file << " at " << t;
    EXPECT_TRUE(fm::test::all_close(step, full.narrow(1, t, n).contiguous(), kDecodeTol, kDecodeTol))
        << file << ": positions " << t << " to " << t + n - 1 << " of " << T;
    if (t == 0 && o.layout == "cross") {
      // The first call projected the image's keys and values into every decoder layer's cache, and only there.
      ASSERT_EQ(caches.size(), size_t(o.text_layers));
      for (size_t i = 0; i < caches.size(); ++i)
        EXPECT_EQ(caches[i].cross_k.defined() && caches[i].cross_v.defined(), i >= unimodal) << file << " layer " << i;
      cross_k_after_first = caches[unimodal].cross_k;
    }
    t += n;
  }
  EXPECT_EQ(caches[0].length(), (o.layout == "single" ? model.image_tokens() : 0) + T) << file;
  if (o.layout == "cross")  // later calls (with no image) reused the first call's keys, never recomputed them
    EXPECT_TRUE(caches[unimodal].cross_k.is_same(cross_k_after_first)) << file;
}

}  // namespace

TEST(CaptionParity, CrossLayout) { run_case(kCross); }

TEST(CaptionParity, SingleLayoutPrefixMask) { run_case(kSingle); }

TEST(CaptionParity, CocaUnimodalAndEmbeddings) { run_case(kCoca); }

// The prefix-causal mask of the single layout, element by element.
TEST(CaptionParity, PrefixCausalMask) {
  const int64_t N = 3, T = 4;
  const std::vector<double> m = tasks::prefix_causal_mask(N, T).to(DType::f64).to_vector<double>();
  ASSERT_EQ(m.size(), size_t((N + T) * (N + T)));
  for (int64_t q = 0; q < N + T; ++q)
    for (int64_t k = 0; k < N + T; ++k)
      EXPECT_EQ(m[size_t(q * (N + T) + k)], (k < N || k <= q) ? 1.0 : 0.0) << "query " << q << " key " << k;
}

// Incremental decoding, one token at a time: every position's logits equal
// the full forward's (tolerance 1e-5).
TEST(CaptionDecoding, OneTokenAtATimeEqualsFullForward) {
  for (const char* file : {kCross, kSingle, kCoca}) decode_in_chunks(file, {1});
}

// The same with several tokens per call (causal attention over the cache and
// the new tokens together).
TEST(CaptionDecoding, ChunksEqualFullForward) {
  for (const char* file : {kCross, kSingle, kCoca}) decode_in_chunks(file, {3, 2});
}

// Without an image, the first call fails (there is nothing to attend to).
TEST(CaptionDecoding, FirstCallNeedsTheImage) {
  for (const char* file : {kCross, kSingle, kCoca}) {
    const Fixture f(file);
    tasks::CaptionModel model(caption_options(f));
    std::vector<nn::KVCache> caches;
    fm::test::expect_error([&] { model.logits(Tensor(), f.get("input.ids").narrow(1, 0, 1), &caches); },
                           "needs the image");
  }
}
