// The text-to-music model: the delay pattern against audiocraft's layout,
// causality, KV-cached decoding equal to the full forward, the loss over the
// steps that hold frames, and a learning test: a tiny model learns which code
// streams each caption names, and guided sampling reproduces them.
#include "fm/optim/adamw.h"
#include "fm/tasks/music_model.h"
#include "helpers.h"

namespace fm::tasks {
namespace {

using test::rel_err;

MusicOptions tiny() {
  MusicOptions o;
  o.n_codebooks = 3;
  o.codebook_size = 8;
  o.max_steps = 16;
  o.width = 32;
  o.layers = 2;
  o.heads = 2;
  o.vocab_size = 10;
  o.text_context = 6;
  o.text_width = 24;
  o.text_layers = 1;
  o.text_heads = 2;
  return o;
}

TEST(DelayPattern, MatchesAudiocraftsLayoutAndReverts) {
  // 2 codebooks x 3 frames: codebook 1 starts one step late; S = F + K - 1.
  const Tensor codes = tensor(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, {1, 2, 3});
  const Tensor steps = apply_delay_pattern(codes, 9);
  EXPECT_EQ(steps.to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 3, 9, 9, 4, 5, 6}));
  EXPECT_EQ(revert_delay_pattern(steps).to_vector<int64_t>(), codes.to_vector<int64_t>());
  EXPECT_EQ(delay_valid_mask(2, 3).to(DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 1, 0, 0, 1, 1, 1}));
  manual_seed(31);
  const Tensor random = randint(0, 50, {3, 4, 7});
  EXPECT_EQ(revert_delay_pattern(apply_delay_pattern(random, 50)).to_vector<int64_t>(), random.to_vector<int64_t>());
}

struct Batch {
  Tensor ids, mask, codes;
};
Batch random_batch(const MusicOptions& o, int64_t B, int64_t F) {
  Batch b;
  b.ids = randint(0, o.vocab_size, {B, 5});
  b.mask = tensor(std::vector<uint8_t>{1, 1, 1, 0, 0, 1, 1, 1, 1, 1}, {2, 5}).to(DType::b8);
  b.codes = randint(0, o.codebook_size, {B, o.n_codebooks, F});
  return b;
}

TEST(MusicModel, StepsSeeOnlyThePastAndCachedDecodingMatches) {
  manual_seed(32);
  const MusicOptions o = tiny();
  MusicModel model(o);
  const Batch b = random_batch(o, 2, 6);
  const Tensor text = model.encode_text(b.ids, b.mask);
  const Tensor inputs = randint(0, o.codebook_size + 1, {2, 3, 8});
  const Tensor full = model.logits(inputs, text, b.mask);
  ASSERT_EQ(full.shape(), Shape({2, 3, 8, 8}));
  // Changing step 5 onwards leaves steps 0..4 as they were.
  Tensor changed = cat({inputs.narrow(2, 0, 5), randint(0, o.codebook_size + 1, {2, 3, 3})}, 2);
  EXPECT_LT(rel_err(model.logits(changed, text, b.mask).narrow(2, 0, 5), full.narrow(2, 0, 5)), 1e-6);
  // One step at a time through the KV cache.
  std::vector<nn::KVCache> caches;
  std::vector<Tensor> steps;
  for (int64_t t = 0; t < 8; ++t) steps.push_back(model.logits(inputs.narrow(2, t, 1), text, b.mask, &caches));
  EXPECT_LT(rel_err(cat(steps, 2), full), 1e-5);
  // Padding tokens of the caption are not read: changing them changes nothing.
  Tensor ids2 = where(b.mask, b.ids, randint(0, o.vocab_size, {2, 5}));
  EXPECT_LT(rel_err(model.logits(inputs, model.encode_text(ids2, b.mask), b.mask), full), 1e-6);
}

TEST(MusicModel, LossCountsOnlyStepsWithFrames) {
  manual_seed(33);
  const MusicOptions o = tiny();
  MusicModel model(o);
  const Batch b = random_batch(o, 2, 5);
  const Tensor text = model.encode_text(b.ids, b.mask);
  const Tensor loss = model.loss(b.codes, text, b.mask);
  // The same sum by hand: codebook k of frame f is predicted at step f + k
  // from the inputs shifted by one step.
  const Tensor steps = apply_delay_pattern(b.codes, o.codebook_size);
  const Tensor inputs = cat({full({2, 3, 1}, double(o.codebook_size), DType::i64), steps.narrow(2, 0, 6)}, 2);
  const Tensor logp = log_softmax(model.logits(inputs, text, b.mask), -1);
  const std::vector<float> lp = logp.to_vector<float>();
  const std::vector<int64_t> c = b.codes.to_vector<int64_t>();
  double total = 0;
  int n = 0;
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t k = 0; k < 3; ++k)
      for (int64_t f = 0; f < 5; ++f) {
        const int64_t s = f + k, code = c[size_t((r * 3 + k) * 5 + f)];
        total -= lp[size_t(((r * 3 + k) * 7 + s) * 8 + code)];
        ++n;
      }
  EXPECT_NEAR(loss.item<double>(), total / n, 1e-5);
}

// Four captions, each naming its own fixed streams; after training, sampling
// with top-k 1 and guidance returns each caption's streams.
TEST(MusicModel, LearnsCaptionedStreamsAndSamplesThem) {
  manual_seed(34);
  MusicOptions o = tiny();
  o.codebook_size = 6;
  MusicModel model(o);
  const int64_t F = 6, C = 4;
  const Tensor patterns = randint(0, o.codebook_size, {C, o.n_codebooks, F});
  const Tensor ids = tensor(std::vector<int64_t>{1, 2, 9, 3, 4, 9, 5, 6, 9, 7, 8, 9}, {C, 3});
  const Tensor mask = ones({C, 3}, DType::b8);
  const Tensor empty_ids = full({C, 1}, 9.0, DType::i64), empty_mask = ones({C, 1}, DType::b8);
  optim::AdamW opt(model, {.lr = 3e-3, .weight_decay = 0.0});
  double first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    // Condition dropout: a quarter of the rows see the empty caption.
    const Tensor drop = lt(rand({C, 1}), full({C, 1}, 0.25));
    const Tensor step_ids = where(drop, pad(empty_ids, {0, 2}, "constant", 0.0), ids);
    const Tensor step_mask = where(drop, tensor(std::vector<uint8_t>{1, 0, 0}, {1, 3}).to(DType::b8).expand({C, 3}), mask);
    Tensor loss = model.loss(patterns, model.encode_text(step_ids, step_mask), step_mask);
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item<double>();
    last = loss.item<double>();
  }
  std::cout << "loss " << first << " -> " << last << "\n";
  EXPECT_LT(last, 0.1 * first);
  MusicSampling s;
  s.frames = F;
  s.top_k = 1;
  s.guidance = 3.0;
  Generator gen(1);
  const Tensor codes = generate_codes(model, ids, mask, empty_ids, empty_mask, s, gen);
  EXPECT_EQ(codes.to_vector<int64_t>(), patterns.to_vector<int64_t>());
  s.guidance = 1.0;
  EXPECT_EQ(generate_codes(model, ids, mask, empty_ids, empty_mask, s, gen).to_vector<int64_t>(),
            patterns.to_vector<int64_t>());
}

TEST(MusicModel, BadInputsNameTheProblem) {
  const MusicOptions o = tiny();
  MusicModel model(o);
  const Batch b = random_batch(o, 2, 20);  // 20 frames + 2 > max_steps 16
  EXPECT_THROW(model.loss(b.codes, model.encode_text(b.ids, b.mask), b.mask), Error);
  EXPECT_THROW(apply_delay_pattern(randint(0, 4, {3, 4}), 4), Error);
  MusicSampling s;
  s.frames = 0;
  Generator gen(1);
  EXPECT_THROW(generate_codes(model, b.ids, b.mask, b.ids, b.mask, s, gen), Error);
}

}  // namespace
}  // namespace fm::tasks
