// fm::tasks::MixedModel against PyTorch (tests/fixtures/make_mixed_fixtures.py:
// the same model in plain torch and the layout rule written from its
// definition): the packed batch's attention mask, the three losses (text
// next-token, image flow matching, audio delay-pattern next-token) and every
// parameter's gradient of their sum. Then: incremental decoding (left-padded
// prompts, a token at a time, an image block against the cached prefix)
// equals the full forward, and a small model learns both directions of a
// colour <-> word task.
#include <gtest/gtest.h>

#include <random>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/ops.h"
#include "fm/optim/adamw.h"
#include "fm/tasks/mixed_model.h"
#include "parity.h"

using namespace fm;
using fm::test::rel_err;
using tasks::MixedPiece;
using tasks::MixedSample;
using tasks::audio_piece;
using tasks::image_piece;
using tasks::text_piece;
using K = tasks::SegmentKind;

namespace {

using Fixture = fm::test::ParityFixture;
const char* const kFile = "mixed_model.safetensors";

tasks::MixedOptions options_of(const Fixture& f) {
  tasks::MixedOptions o;
  for (auto [key, v] : std::vector<std::pair<const char*, int64_t*>>{
           {"vocab_size", &o.vocab_size}, {"width", &o.width}, {"layers", &o.layers}, {"heads", &o.heads},
           {"max_positions", &o.max_positions}, {"image_size", &o.image_size}, {"patch_size", &o.patch_size},
           {"channels", &o.channels}, {"n_codebooks", &o.n_codebooks}, {"codebook_size", &o.codebook_size},
           {"frequency_dim", &o.frequency_dim}})
    *v = f.option(key);
  return o;
}

objectives::Diffusion flow() {
  objectives::DiffusionOptions d;
  d.process = "flow";
  d.prediction = "velocity";
  return objectives::Diffusion(d);
}

// The fixture's batch (see the script's docstring).
tasks::MixedBatch fixture_batch(const Fixture& f, const tasks::MixedModel& m) {
  const int64_t BOI = m.marker(tasks::Marker::begin_image), EOI = m.marker(tasks::Marker::end_image);
  const int64_t BOA = m.marker(tasks::Marker::begin_audio), EOA = m.marker(tasks::Marker::end_audio);
  const Tensor images = f.get("input.images");
  auto text = [](std::vector<int64_t> t) { return text_piece(std::move(t)); };
  auto image = [&](int64_t i, bool noised) { return image_piece(images.select(0, i), noised); };
  auto audio = [&](const char* key) { return audio_piece(f.get(key)); };
  tasks::PackOptions o;
  o.length = 24;
  o.patches = m.patches();
  o.special = m.audio_special();
  return tasks::pack_mixed({{text({BOI}), image(0, false), text({EOI, 3, 7, 2})},
                            {text({4, 9, BOI}), image(1, true), text({EOI})},
                            {text({6, BOA}), audio("input.steps0"), text({EOA})},
                            {text({BOA}), audio("input.steps1"), text({EOA, 5, 1})}},
                           o);
}

}  // namespace

TEST(MixedModelParity, MaskLossesAndGradientsEqualPyTorch) {
  const Fixture f(kFile);
  tasks::MixedModel m(options_of(f));
  fm::test::expect_same_parameters(m, f);
  fm::test::Comparer cmp(f, 1e-4);
  cmp("patch_pos", m.patch_pos, f.get("buffer.patch_pos"));
  nn::StateDict sd = f.params();
  sd["patch_pos"] = f.get("buffer.patch_pos");
  m.load_state_dict(sd);
  const tasks::MixedBatch b = fixture_batch(f, m);
  ASSERT_EQ(b.rows, 2);
  EXPECT_EQ(tasks::key_range_mask(b.key_lo, b.key_hi).to(DType::u8).contiguous().to_vector<uint8_t>(),
            f.get("mask").to_vector<uint8_t>());
  Generator gen{uint64_t(1)};
  const tasks::MixedLosses l = tasks::mixed_losses(m, b, flow(), gen, f.get("input.t"), f.get("input.noise"));
  cmp("text_loss", l.text.reshape({1}), f.get("text_loss"));
  cmp("image_loss", l.image.reshape({1}), f.get("image_loss"));
  cmp("audio_loss", l.audio.reshape({1}), f.get("audio_loss"));
  EXPECT_EQ(l.text_n, 12);  // s0: EOI 3 7 2; s1: 9 BOI, EOI; s2: BOA, EOA; s3: EOA 5 1
  EXPECT_EQ(l.image_n, 1);
  (l.text + l.image + l.audio).backward();
  for (const auto& p : m.named_parameters()) cmp("grad " + p.name, p.tensor.grad(), f.get("param_grad." + p.name));
}

// Incremental decoding sees exactly what the full forward sees.
TEST(MixedModelDecoding, CachedStepsEqualTheFullForward) {
  tasks::MixedOptions o;
  o.vocab_size = 9, o.width = 16, o.layers = 2, o.heads = 2, o.max_positions = 16;
  o.image_size = 4, o.patch_size = 2, o.channels = 1, o.n_codebooks = 2, o.codebook_size = 3, o.frequency_dim = 8;
  Generator init{uint64_t(3)};
  tasks::MixedModel m(o, &init);
  for (const auto& p : m.named_parameters()) {  // the image head starts at zero: make every path count
    NoGradGuard ng;
    Tensor(p.tensor).copy_(randn(p.tensor.shape(), TensorOptions(DType::f32), &init) * 0.3);
  }
  m.eval();
  const int64_t BOI = m.marker(tasks::Marker::begin_image);
  const Tensor img = randn({1, 4, 4}, TensorOptions(DType::f32), &init);
  const Tensor x_t = randn({2, 1, 4, 4}, TensorOptions(DType::f32), &init);
  const Tensor t = tensor(std::vector<float>{250.f, 700.f});
  // Row 0: [1 2 3 BOI] then an image at t 250; row 1: [BOI] (left-padded) then one at t 700.
  tasks::MixedDecoder dec(m);
  dec.start({{text_piece({1, 2, 3, BOI})}, {text_piece({BOI})}});
  const Tensor got = dec.image(x_t, t);
  const Tensor again = dec.image(x_t, t);  // the caches are left as they were
  EXPECT_LT(rel_err(again, got), 1e-6);
  tasks::PackOptions po;
  po.length = 8;
  po.patches = m.patches();
  po.pack = false;
  for (int64_t r = 0; r < 2; ++r) {
    MixedSample s{text_piece(r == 0 ? std::vector<int64_t>{1, 2, 3, BOI} : std::vector<int64_t>{BOI}),
                  image_piece(x_t.select(0, r), true)};
    const tasks::MixedBatch b = tasks::pack_mixed({s}, po);
    NoGradGuard ng;
    const Tensor h = m.run(m.embed(b, x_t.narrow(0, r, 1), t.narrow(0, r, 1)), b.key_lo, b.key_hi);
    const Tensor full = m.image_output(index_select(h.reshape({8, 16}), 0, b.image_at));
    EXPECT_LT(rel_err(got.narrow(0, r, 1), full), 1e-5) << "row " << r;
  }
  // Text a token at a time, then audio steps, against the whole sequence at once.
  tasks::MixedDecoder d2(m);
  const Tensor h0 = d2.start({{text_piece({4, 5})}, {text_piece({6})}});
  const Tensor h1 = d2.append_text({7, 8});
  const Tensor h2 = d2.append_audio(tensor(std::vector<int64_t>{0, 3, 2, 1}, {2, 2}));
  const std::vector<std::vector<int64_t>> text = {{4, 5, 7}, {6, 8}};
  const std::vector<std::vector<int64_t>> codes = {{0, 3}, {2, 1}};
  for (int64_t r = 0; r < 2; ++r) {
    MixedSample s{text_piece(text[size_t(r)]),
                  audio_piece(tensor(codes[size_t(r)], {2, 1}))};
    const tasks::MixedBatch b = tasks::pack_mixed({s}, po);
    NoGradGuard ng;
    const Tensor h = m.run(m.embed(b, Tensor(), Tensor()), b.key_lo, b.key_hi).select(0, 0);
    const int64_t n = int64_t(text[size_t(r)].size());
    EXPECT_LT(rel_err(h0.select(0, r), h.select(0, n - 2)), 1e-5) << "row " << r;
    EXPECT_LT(rel_err(h1.select(0, r), h.select(0, n - 1)), 1e-5) << "row " << r;
    EXPECT_LT(rel_err(h2.select(0, r), h.select(0, n)), 1e-5) << "row " << r;
  }
}

// Colour <-> word, both directions in one model: a 4 x 4 image of one grey
// level (of three) and the word for it. Captioning must name the level of
// every image; generating from the word must give images of the right mean.
TEST(MixedModelLearning, OneModelLearnsCaptionsAndImagesOfGreyLevels) {
  tasks::MixedOptions o;
  o.vocab_size = 3, o.width = 32, o.layers = 2, o.heads = 2, o.max_positions = 8;
  o.image_size = 4, o.patch_size = 2, o.channels = 1, o.frequency_dim = 16;
  Generator init{uint64_t(7)};
  tasks::MixedModel m(o, &init);
  const int64_t BOI = m.marker(tasks::Marker::begin_image), EOI = m.marker(tasks::Marker::end_image);
  const std::vector<float> level = {-0.8f, 0.0f, 0.8f};
  auto image_of = [&](int64_t c) { return full({1, 4, 4}, double(level[size_t(c)])); };
  optim::AdamWOptions ao;
  ao.lr = 3e-3;
  ao.weight_decay = 0;
  optim::AdamW opt(m, ao);
  const objectives::Diffusion d = flow();
  Generator gen{uint64_t(11)};
  tasks::PackOptions po;
  po.length = 16;
  po.patches = m.patches();
  std::mt19937 rng(5);
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    std::vector<MixedSample> batch;
    for (int i = 0; i < 12; ++i) {
      const int64_t c = int64_t(rng() % 3);
      if (i % 2) batch.push_back({text_piece({BOI}), image_piece(image_of(c)), text_piece({EOI, c})});
      else batch.push_back({text_piece({c, BOI}), image_piece(image_of(c), true), text_piece({EOI})});
    }
    const tasks::MixedLosses l = tasks::mixed_losses(m, tasks::pack_mixed(batch, po), d, gen);
    const Tensor loss = l.text + l.image;
    opt.zero_grad();
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  EXPECT_LT(last, 0.5 * first);
  m.eval();
  NoGradGuard ng;
  for (int64_t c = 0; c < 3; ++c) {
    tasks::MixedDecoder dec(m);
    dec.start({{text_piece({BOI}), image_piece(image_of(c))}});
    const Tensor h = dec.append_text({EOI});
    EXPECT_EQ(int64_t(argmax(m.text_logits(h), 1).item()), c) << "caption of grey level " << c;
    // Flow Euler from t = 1 to 0 in 10 steps.
    tasks::MixedDecoder gen_dec(m);
    gen_dec.start({{text_piece({c, BOI})}});
    Tensor x = randn({1, 1, 4, 4}, TensorOptions(DType::f32), &gen);
    for (int i = 0; i < 10; ++i) {
      const double tt = 1.0 - i / 10.0;
      x = x - 0.1 * gen_dec.image(x, full({1}, tt * 1000.0));
    }
    EXPECT_NEAR(mean(x).item(), level[size_t(c)], 0.2) << "image of word " << c;
  }
}
