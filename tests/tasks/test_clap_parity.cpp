// fm::tasks::CLAP against PyTorch: the weights, waveforms, token ids and
// end-of-text positions written by tests/fixtures/make_clap_fixtures.py go
// through libfm's CLAP from the waveforms (its own STFT, mel filterbank and
// log-mel, then encode_features; encode_text) and its loss, then backward.
// The mel filterbank, the log-mel features, the audio and text features, the
// loss, the gradient of every parameter and the gradient of the waveforms
// must match PyTorch's (f32, relative error below 1e-4, measured against the
// largest reference magnitude). Two cases: (a) separate towers, class-token
// pooling, CLIP's InfoNCE, mel bands up to 3 kHz; (b) one shared
// Transformer, mean pooling, SigLIP's sigmoid loss, mel bands up to Nyquist.
#include <memory>

#include "fm/audio/spectral.h"
#include "fm/objectives/contrastive.h"
#include "fm/tasks/clap_model.h"
#include "parity.h"

using namespace fm;

namespace {

constexpr double kTol = 1e-4;
const char* const kSeparate = "clap_separate_cls_clip.safetensors";
const char* const kShared = "clap_shared_mean_siglip.safetensors";

using Fixture = fm::test::ParityFixture;

// The model options the script wrote into the fixture's metadata.
tasks::CLAPOptions clap_options(const Fixture& f) {
  tasks::CLAPOptions o;
  o.sample_rate = f.option("sample_rate");
  o.clip_samples = f.option("clip_samples");
  o.n_fft = f.option("n_fft");
  o.hop = f.option("hop");
  o.n_mels = f.option("n_mels");
  o.f_max = std::stod(f.meta("f_max"));
  o.patch_freq = f.option("patch_freq");
  o.patch_time = f.option("patch_time");
  o.feature_mean = std::stod(f.meta("feature_mean"));
  o.feature_std = std::stod(f.meta("feature_std"));
  o.audio_width = f.option("audio_width");
  o.audio_layers = f.option("audio_layers");
  o.audio_heads = f.option("audio_heads");
  o.pool = f.meta("pool");
  o.text.vocab_size = f.option("vocab_size");
  o.text.context_length = f.option("context_length");
  o.text.width = f.option("text_width");
  o.text.layers = f.option("text_layers");
  o.text.heads = f.option("text_heads");
  o.text.embed_dim = f.option("embed_dim");
  o.text.shared_core = f.option("shared_core") != 0;
  o.text.logit_bias = f.option("logit_bias") != 0;
  return o;
}

void run_case(const std::string& file, const std::string& loss_kind) {
  const Fixture f(file);
  ASSERT_EQ(f.meta("loss"), loss_kind);
  const tasks::CLAPOptions o = clap_options(f);
  tasks::CLAP model(o);
  model.load_state_dict(f.params());

  fm::test::Comparer cmp(f, kTol);
  cmp("mel_filterbank",
      audio::mel_filterbank(int(o.sample_rate), o.n_fft, o.n_mels, 0.0, o.f_max, audio::MelScale::htk, audio::MelNorm::none),
      f.get("mel_filterbank"));
  Tensor waveforms = f.input_leaf("waveforms");
  Tensor features = model.features(waveforms);
  Tensor audio_features = model.encode_features(features);
  Tensor text_features = model.encode_text(f.get("input.ids"), f.get("input.eot"));
  Tensor loss = model.loss(audio_features, text_features).loss;
  loss.backward();

  cmp("features", features, f.get("features"));
  cmp("audio_features", audio_features, f.get("audio_features"));
  cmp("text_features", text_features, f.get("text_features"));
  cmp("loss", loss.reshape({1}), f.get("loss"));
  cmp("grad of waveforms", waveforms.grad(), f.get("input_grad.waveforms"));
  for (const auto& p : model.named_parameters()) cmp("grad of " + p.name, p.tensor.grad(), f.get("param_grad." + p.name));
  // encode_audio is features then encode_features.
  NoGradGuard ng;
  EXPECT_LT(fm::test::rel_err(model.encode_audio(f.get("input.waveforms")), f.get("audio_features")), kTol);
  EXPECT_LT(fm::test::rel_err(model.encode_audio(f.get("input.waveforms").unsqueeze(1)), f.get("audio_features")), kTol);
}

}  // namespace

TEST(CLAPParity, ParameterNamesMatchBothWays) {
  for (const char* file : {kSeparate, kShared}) {
    const Fixture f(file);
    tasks::CLAP model(clap_options(f));
    fm::test::expect_same_parameters(model, f);
  }
}

TEST(CLAPParity, SeparateTowersClsPoolingClipLoss) { run_case(kSeparate, "clip"); }

TEST(CLAPParity, SharedCoreMeanPoolingSiglipLoss) { run_case(kShared, "siglip"); }

TEST(CLAPParity, BadShapesAndOptionsSayWhat) {
  tasks::CLAPOptions o = clap_options(Fixture(kSeparate));
  tasks::CLAP model(o);
  EXPECT_THROW(model.encode_audio(zeros({2, o.clip_samples - 1})), Error);
  EXPECT_THROW(model.encode_audio(zeros({2, 2, o.clip_samples})), Error);
  tasks::CLAPOptions bad = o;
  bad.pool = "max";
  EXPECT_THROW(tasks::CLAP{bad}, Error);
  bad = o;
  bad.text.shared_core = true;  // audio 20 wide, text 16
  EXPECT_THROW(tasks::CLAP{bad}, Error);
  bad = o;
  bad.patch_time = 1000;  // longer than the clip's frames
  EXPECT_THROW(tasks::CLAP{bad}, Error);
}
