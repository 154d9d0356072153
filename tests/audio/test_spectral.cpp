// STFT, ISTFT, mel filterbanks, mel spectrograms, Whisper's log-mel and
// Griffin-Lim against PyTorch, librosa and openai-whisper through fixtures
// (tests/fixtures/make_spectral_fixtures.py; Whisper's on real clips), plus a
// naive STFT, round trips and finite-difference gradients on fresh signals.
#include <cmath>
#include <numbers>
#include <sstream>

#include "fm/audio/audio.h"
#include "fm/audio/spectral.h"
#include "fm/audio/spectrogram_embedding.h"
#include "helpers.h"
#include "parity.h"

namespace fm::audio {
namespace {

using test::all_close;
using test::grads_ok;
using test::leaf;
using test::rel_err;
using Fixture = test::ParityFixture;

std::string fixture_path(const std::string& name) {
  return (std::filesystem::path(__FILE__).parent_path().parent_path() / "fixtures" / name).string();
}

StftOptions fixture_options(const Fixture& f, const std::string& name) {
  std::stringstream ss(f.meta("stft_" + name));
  std::string part;
  std::vector<std::string> v;
  while (std::getline(ss, part, ',')) v.push_back(part);
  StftOptions o;
  o.n_fft = std::stoll(v[0]);
  o.hop_length = std::stoll(v[1]);
  o.win_length = std::stoll(v[2]);
  o.center = v[3] == "1";
  o.pad_mode = v[4];
  o.window = f.get("window_" + name);
  return o;
}

TEST(Stft, EqualsTorchStftAndIstft) {
  const Fixture f("spectral.safetensors");
  const Tensor x = f.get("input.x");
  for (const std::string name : {"a", "b", "c"}) {
    const StftOptions o = fixture_options(f, name);
    const Tensor spec = stft(x, o);
    EXPECT_LT(rel_err(spec, f.get("stft_" + name)), 2e-6) << name;
    const Tensor back = istft(f.get("stft_" + name), o, o.center ? x.size(1) : -1);
    EXPECT_LT(rel_err(back, f.get("istft_" + name)), 2e-6) << name;
  }
}

// The definition, term by term: reflect-padded, windowed frames, DFT.
TEST(Stft, EqualsNaiveDefinition) {
  manual_seed(21);
  const int64_t T = 301, n_fft = 32, hop = 8;
  const Tensor x = randn({T}, DType::f64);
  StftOptions o;
  o.n_fft = n_fft;
  o.hop_length = hop;
  o.window = hann_window(n_fft).to(DType::f64);
  const Tensor spec = stft(x, o);
  const std::vector<double> xv = x.to_vector<double>(), w = o.window.to_vector<double>();
  const int64_t frames = 1 + T / hop, bins = n_fft / 2 + 1;
  ASSERT_EQ(spec.shape(), Shape({bins, frames, 2}));
  std::vector<double> expected(size_t(bins * frames * 2));
  auto sample = [&](int64_t i) {  // reflect padding by n_fft / 2
    i -= n_fft / 2;
    if (i < 0) i = -i;
    if (i >= T) i = 2 * (T - 1) - i;
    return xv[size_t(i)];
  };
  for (int64_t t = 0; t < frames; ++t)
    for (int64_t k = 0; k < bins; ++k) {
      double re = 0, im = 0;
      for (int64_t j = 0; j < n_fft; ++j) {
        const double v = sample(t * hop + j) * w[size_t(j)], a = 2 * std::numbers::pi * double(j * k) / double(n_fft);
        re += v * std::cos(a);
        im -= v * std::sin(a);
      }
      expected[size_t((k * frames + t) * 2)] = re;
      expected[size_t((k * frames + t) * 2 + 1)] = im;
    }
  EXPECT_TRUE(all_close(spec, expected, 1e-10, 1e-10));
}

TEST(Stft, RoundTripsOnFreshSignals) {
  manual_seed(22);
  for (int64_t n_fft : {64, 400, 401}) {
    const Tensor x = randn({3, 2, 4000});
    StftOptions o;
    o.n_fft = n_fft;
    const Tensor back = istft(stft(x, o), o, 4000);
    EXPECT_EQ(back.shape(), x.shape());
    EXPECT_LT(rel_err(back, x), 1e-5) << "n_fft " << n_fft;
  }
}

TEST(Stft, GradientsMatchFiniteDifferences) {
  manual_seed(23);
  StftOptions o;
  o.n_fft = 16;
  o.hop_length = 4;
  o.win_length = 12;
  o.window = hann_window(12).to(DType::f64);
  EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return stft(in[0], o); }, {leaf({2, 50})}));
  const Tensor spec = stft(randn({2, 50}, DType::f64), o).detach().requires_grad_(true);
  EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return istft(in[0], o, 50); }, {spec}));
  // A loss of the kind a codec trains with: log-mel distance.
  MelOptions m;
  m.stft = o;
  m.n_mels = 4;
  EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return log(mel_spectrogram(in[0], m) + 1e-3); },
                       {leaf({1, 40})}));
}

TEST(Stft, BadOptionsNameTheProblem) {
  StftOptions o;
  o.n_fft = 64;
  o.hop_length = 80;  // hop longer than the window: samples with no weight
  const Tensor x = randn({1000});
  EXPECT_THROW(istft(stft(x, o), o), Error);
  o.hop_length = 16;
  o.win_length = 128;
  EXPECT_THROW(stft(x, o), Error);
  o.win_length = 0;
  EXPECT_THROW(stft(randn({20}), o), Error);  // too short to reflect-pad
  o.pad_mode = "circular";
  EXPECT_THROW(stft(x, o), Error);
}

TEST(MelFilterbank, EqualsLibrosaAndWhisper) {
  const Fixture f("spectral.safetensors");
  EXPECT_LT(rel_err(mel_filterbank(22050, 512, 48, 20, 8000, MelScale::htk, MelNorm::none), f.get("mel_htk")), 1e-6);
  EXPECT_LT(rel_err(mel_filterbank(16000, 512, 40, 0, 0, MelScale::slaney, MelNorm::slaney), f.get("mel_slaney")),
            1e-6);
  for (int64_t n_mels : {80, 128})
    EXPECT_LT(rel_err(mel_filterbank(16000, 400, n_mels, 0, 8000, MelScale::slaney, MelNorm::slaney),
                      f.get("whisper_filters_" + std::to_string(n_mels))),
              1e-6)
        << n_mels;
}

TEST(MelSpectrogram, EqualsLibrosaOnARealClip) {
  const Fixture f("spectral.safetensors");
  const Tensor bee = to_tensor(read(fixture_path("spectral_clip_bee.wav"))).squeeze(0);
  MelOptions m;
  m.stft.n_fft = 512;
  m.stft.hop_length = 128;
  m.n_mels = 64;
  EXPECT_LT(rel_err(mel_spectrogram(bee, m), f.get("melspec_bee")), 1e-5);
}

// Whisper's features to 1e-4 on real clips (speech and a bee), both mel sizes.
TEST(WhisperLogMel, EqualsOpenaiWhisper) {
  const Fixture f("spectral.safetensors");
  for (const std::string clip : {"speech", "bee"}) {
    const Tensor x = to_tensor(read(fixture_path("spectral_clip_" + clip + ".wav"))).squeeze(0);
    for (int64_t n_mels : {80, 128}) {
      const std::string key = "whisper_log_mel_" + std::to_string(n_mels) + "_" + clip;
      if (!f.has(key)) continue;
      const Tensor ours = whisper_log_mel(x, n_mels), theirs = f.get(key);
      ASSERT_EQ(ours.shape(), theirs.shape()) << key;
      const double worst = max(abs(ours - theirs)).item<double>();
      std::cout << key << ": max |difference| " << worst << "\n";
      EXPECT_LT(worst, 1e-4) << key;
    }
  }
}

TEST(GriffinLim, EqualsLibrosaFromZeroPhase) {
  const Fixture f("spectral.safetensors");
  GriffinLimOptions g;
  g.stft.n_fft = 256;
  g.stft.hop_length = 64;
  g.n_iter = 8;
  g.rand_init = false;
  g.length = 4000;
  const Tensor y = griffin_lim(f.get("griffin_lim_magnitude"), g);
  EXPECT_LT(rel_err(y, f.get("griffin_lim_bee")), 1e-4);
}

// More iterations bring the magnitude closer: spectral convergence falls.
TEST(GriffinLim, ConvergesOnAFreshSignal) {
  manual_seed(24);
  const Tensor t = arange(0, 8000) / 16000.0;
  const Tensor x = sin(t * (2 * std::numbers::pi * 440.0)) + 0.5 * sin(t * (2 * std::numbers::pi * 1250.0)) +
                   0.05 * randn({8000});
  GriffinLimOptions g;
  g.stft.n_fft = 512;
  g.stft.hop_length = 128;
  g.length = 8000;
  const Tensor target = complex_abs(stft(x, g.stft));
  auto convergence = [&](int iters) {
    g.n_iter = iters;
    Generator gen(7);
    const Tensor got = complex_abs(stft(griffin_lim(target, g, &gen), g.stft));
    return std::sqrt(sum(square(got - target)).item<double>() / sum(square(target)).item<double>());
  };
  const double c1 = convergence(1), c32 = convergence(32);
  std::cout << "spectral convergence: 1 iteration " << c1 << ", 32 iterations " << c32 << "\n";
  EXPECT_LT(c32, 0.5 * c1);
  EXPECT_LT(c32, 0.2);
}

// Patch n (time-major) holds spec[b, fi * pf + i, ti * pt + j] at i * pt + j.
TEST(SpectrogramEmbedding, PatchesAreTimeMajorAndInvertible) {
  manual_seed(25);
  const int64_t B = 2, F = 8, T = 12, pf = 4, pt = 3;
  const Tensor spec = randn({B, F, T});
  const Tensor p = patchify_spectrogram(spec, pf, pt);
  ASSERT_EQ(p.shape(), Shape({B, (F / pf) * (T / pt), pf * pt}));
  const std::vector<float> s = spec.to_vector<float>(), pv = p.to_vector<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t ti = 0; ti < T / pt; ++ti)
      for (int64_t fi = 0; fi < F / pf; ++fi)
        for (int64_t i = 0; i < pf; ++i)
          for (int64_t j = 0; j < pt; ++j) {
            const int64_t n = ti * (F / pf) + fi;
            ASSERT_EQ(pv[size_t((b * p.size(1) + n) * pf * pt + i * pt + j)],
                      s[size_t((b * F + fi * pf + i) * T + ti * pt + j)]);
          }
  EXPECT_TRUE(all_close(unpatchify_spectrogram(p, pf, pt, F, T), spec, 0, 0));
  EXPECT_THROW(patchify_spectrogram(randn({1, 9, 12}), pf, pt), Error);
}

TEST(SpectrogramEmbedding, TokensAreProjectedPatchesPlusPositions) {
  manual_seed(26);
  SpectrogramEmbeddingOptions o;
  o.n_mels = 16;
  o.frames = 24;
  o.patch_freq = 8;
  o.patch_time = 6;
  o.d_model = 10;
  SpectrogramEmbedding embed(o);
  const Tensor spec = randn({3, 16, 24});
  const Tensor tokens = embed.forward(spec);
  ASSERT_EQ(tokens.shape(), Shape({3, 1 + 8, 10}));
  const Tensor patches = patchify_spectrogram(spec, 8, 6);
  const Tensor expected = matmul(patches, embed.proj->weight.t()) + embed.proj->bias + embed.pos.narrow(0, 1, 8);
  EXPECT_LT(rel_err(tokens.narrow(1, 1, 8), expected), 1e-6);
  EXPECT_LT(rel_err(tokens.select(1, 0), (embed.cls + embed.pos.select(0, 0)).unsqueeze(0).expand({3, -1})), 1e-6);
  SpectrogramHead head(o);
  EXPECT_EQ(head.forward(tokens.narrow(1, 1, 8)).shape(), spec.shape());
  EXPECT_THROW(embed.forward(randn({3, 16, 30})), Error);
}

TEST(SpectrogramEmbedding, FeaturesOfAClipHaveTheAnnouncedFrames) {
  LogMelFeatures f;
  f.mel.stft.n_fft = 512;
  f.mel.stft.hop_length = 256;
  f.mel.n_mels = 64;
  const Tensor x = randn({2, 64000});
  const Tensor v = log_mel_features(x, f);
  EXPECT_EQ(v.shape(), Shape({2, 64, feature_frames(64000, f)}));
  EXPECT_EQ(feature_frames(64000, f), 251);
}

}  // namespace
}  // namespace fm::audio
