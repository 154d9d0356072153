// A tiny fm::tasks::CLAP learns audio-text pairing: 48 synthetic clips
// (sine tones at one of 8 pitches, half an octave apart, with random phase,
// level and a little noise), each captioned "tone K" with K its pitch. AdamW
// on the CLIP loss over random batches of them, from the waveforms (the
// model's own log-mel) to the loss. On 64 fresh clips, zero-shot
// classification against the 8 captions goes from chance (1/8) to above
// 80%, retrieval among the fresh clips rises, and the training loss falls: a
// broken audio tower, text tower or backward cannot do that.
#include <cmath>
#include <string>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/ops.h"
#include "fm/optim/adamw.h"
#include "fm/tasks/clap_model.h"
#include "helpers.h"

using namespace fm;

namespace {

constexpr int64_t kPitches = 8, kRate = 8000, kSamples = 2048, kContext = 8;

tasks::CLAPOptions tiny_options() {
  tasks::CLAPOptions o;
  o.sample_rate = kRate;
  o.clip_samples = kSamples;
  o.n_fft = 256;
  o.hop = 128;
  o.n_mels = 32;
  o.patch_freq = 8;
  o.patch_time = 4;  // 17 frames -> 16: 4 x 4 patches
  o.feature_mean = 0.0;
  o.feature_std = 4.0;
  o.audio_width = 32;
  o.audio_layers = 2;
  o.audio_heads = 2;
  o.text.vocab_size = 257;  // bytes and an end-of-text token
  o.text.context_length = kContext;
  o.text.width = 32;
  o.text.layers = 1;
  o.text.heads = 2;
  o.text.embed_dim = 32;
  return o;
}

// "tone K" as bytes, end-of-text (256) after it, zero padding: ids [kContext].
Tensor caption_ids(int64_t pitch) {
  const std::string caption = "tone " + std::to_string(pitch);
  std::vector<int64_t> ids(kContext, 0);
  for (size_t i = 0; i < caption.size(); ++i) ids[i] = static_cast<unsigned char>(caption[i]);
  ids[caption.size()] = 256;
  return tensor(ids, {kContext});
}
const int64_t kEot = 6;  // the end-of-text position of every caption

struct Clips {
  Tensor audio;                 // [N, kSamples]
  Tensor ids, eot;              // [N, kContext], [N]
  std::vector<int64_t> pitch;   // [N]
};

// n clips, pitch i % kPitches: 220 Hz * 2^(pitch / 2), phase, level in [0.2, 0.8], noise 0.02.
Clips make_clips(int64_t n, Generator& gen) {
  const Tensor t = arange(0.0, double(kSamples), 1.0) / double(kRate);
  const Tensor phase = rand({n, 1}, {}, &gen) * (2 * M_PI);
  const Tensor level = rand({n, 1}, {}, &gen) * 0.6 + 0.2;
  std::vector<double> freq;
  Clips c;
  std::vector<Tensor> ids;
  for (int64_t i = 0; i < n; ++i) {
    c.pitch.push_back(i % kPitches);
    freq.push_back(220.0 * std::pow(2.0, double(i % kPitches) / 2.0));
    ids.push_back(caption_ids(i % kPitches));
  }
  const Tensor f = tensor(freq, {n, 1}).to(DType::f32);
  c.audio = level * sin(f * t.unsqueeze(0) * (2 * M_PI) + phase) + randn({n, kSamples}, {}, &gen) * 0.02;
  c.ids = stack(ids);
  c.eot = full({n}, double(kEot), DType::i64);
  return c;
}

struct Figures {
  double zero_shot = 0, a2t_r1 = 0;
};

// Zero-shot accuracy against the 8 captions, and audio-to-text top-1 among the clips' own captions
// (a clip finds a caption of its pitch: clips of one pitch share their caption).
Figures evaluate(const tasks::CLAP& model, const Clips& c) {
  NoGradGuard ng;
  std::vector<Tensor> class_ids;
  for (int64_t k = 0; k < kPitches; ++k) class_ids.push_back(caption_ids(k));
  const Tensor audio = model.encode_audio(c.audio);
  const Tensor classes = model.encode_text(stack(class_ids), full({kPitches}, double(kEot), DType::i64));
  const std::vector<int64_t> pred = argmax(matmul(audio, classes.t()), 1).to_vector<int64_t>();
  const std::vector<int64_t> best = argmax(matmul(audio, model.encode_text(c.ids, c.eot).t()), 1).to_vector<int64_t>();
  Figures f;
  for (size_t i = 0; i < pred.size(); ++i) {
    f.zero_shot += double(pred[i] == c.pitch[i]) / double(pred.size());
    f.a2t_r1 += double(c.pitch[size_t(best[i])] == c.pitch[i]) / double(pred.size());
  }
  return f;
}

}  // namespace

TEST(ClapLearning, TinyClapLearnsPitchCaptions) {
  manual_seed(5);
  Generator data(6), held_out(7), batches(8);
  const Clips train = make_clips(48, data), fresh = make_clips(64, held_out);
  tasks::CLAP model(tiny_options());
  optim::AdamW opt(model, {.lr = 3e-3, .weight_decay = 0.0});

  const Figures before = evaluate(model, fresh);
  double first_loss = 0, last_loss = 0;
  constexpr int kSteps = 150, kBatch = 16;
  for (int step = 0; step < kSteps; ++step) {
    const Tensor rows = randint(0, train.audio.size(0), {kBatch}, DType::i64, &batches);
    opt.zero_grad();
    Tensor loss = model.loss(model.encode_audio(index_select(train.audio, 0, rows)),
                             model.encode_text(index_select(train.ids, 0, rows), index_select(train.eot, 0, rows)))
                      .loss;
    loss.backward();
    opt.step();
    if (step < 10) first_loss += loss.item() / 10;
    if (step >= kSteps - 10) last_loss += loss.item() / 10;
  }
  const Figures after = evaluate(model, fresh);
  std::printf("loss %.3f -> %.3f, zero-shot %.2f -> %.2f, a2t R@1 %.2f -> %.2f (chance 0.125)\n", first_loss,
              last_loss, before.zero_shot, after.zero_shot, before.a2t_r1, after.a2t_r1);
  EXPECT_GT(after.zero_shot, 0.8);
  EXPECT_GT(after.a2t_r1, 0.8);
  EXPECT_LT(last_loss, 0.7 * first_loss);
}
