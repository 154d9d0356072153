// fm::tasks::Codec (SEANet encoder and decoder around residual vector
// quantisation) and its losses: parity of the encoder and decoder with a
// PyTorch reference (tests/fixtures/make_codec_fixtures.py: audiocraft's
// padding and weight norm written independently), exact lengths, gradients
// by finite differences in f64, SI-SNR and the multi-scale log-mel distance
// against naive loops, and a tiny codec that learns to code sums of
// sinusoids far better than a trivial baseline.
#include <cmath>
#include <complex>

#include "fm/audio/spectral.h"
#include "fm/optim/adamw.h"
#include "fm/tasks/codec_losses.h"
#include "fm/tasks/codec_model.h"
#include "parity.h"

using namespace fm;
using fm::test::rel_err;

namespace {

using Fixture = fm::test::ParityFixture;

tasks::CodecOptions options_of(const Fixture& f) {
  tasks::CodecOptions o;
  o.channels = f.option("channels");
  o.dim = f.option("dim");
  o.ratios.clear();
  const std::string r = f.meta("ratios");
  for (size_t a = 0; a < r.size();) {
    size_t b = r.find(',', a);
    if (b == std::string::npos) b = r.size();
    o.ratios.push_back(std::stoll(r.substr(a, b - a)));
    a = b + 1;
  }
  o.residual_layers = f.option("residual_layers");
  o.dilation_base = f.option("dilation_base");
  o.weight_norm = f.meta("weight_norm") == "true";
  o.rvq.n_codebooks = 2;
  o.rvq.codebook_size = 16;
  return o;
}

tasks::CodecOptions tiny_options() {
  tasks::CodecOptions o;
  o.channels = 4, o.dim = 8, o.ratios = {2, 4, 5, 8}, o.residual_layers = 1;
  o.rvq.n_codebooks = 3, o.rvq.codebook_size = 16;
  return o;
}

void run_case(const std::string& file) {
  const Fixture f(file);
  tasks::Codec model(options_of(f));
  model.load_state_dict(f.params(), false);  // the quantiser's buffers are not in the fixture
  fm::test::expect_same_parameters(model, f);
  fm::test::Comparer cmp(f, 1e-4);
  Tensor x = f.input_leaf("x");
  const Tensor latents = model.encoder->forward(x);
  const Tensor decoded = model.decoder->forward(latents);
  (sum(latents * f.get("output_grad.latents")) + sum(decoded * f.get("output_grad.decoded"))).backward();
  cmp("latents", latents, f.get("output.latents"));
  cmp("decoded", decoded, f.get("output.decoded"));
  cmp("grad of x", x.grad(), f.get("input_grad.x"));
  for (const auto& p : model.named_parameters()) cmp("grad of " + p.name, p.tensor.grad(), f.get("param_grad." + p.name));
}

}  // namespace

TEST(CodecParity, WeightNormStrides2And3) { run_case("codec_wn.safetensors"); }

TEST(CodecParity, PlainWeightsThreeStridesTwoUnitsLengthNotAMultipleOfTheHop) { run_case("codec_plain.safetensors"); }

TEST(Codec, ShapesAndExactLengths) {
  tasks::Codec model(tiny_options());
  EXPECT_EQ(model.hop(), 320);
  EXPECT_DOUBLE_EQ(model.frame_rate(), 50.0);
  EXPECT_EQ(model.encoder->stages->size(), 4u);
  EXPECT_EQ(model.encoder->stages->operator[](3).down->effective_weight().shape(), (Shape{64, 32, 16}));
  EXPECT_EQ(model.decoder->stages->operator[](0).up->effective_weight().shape(), (Shape{64, 32, 16}));
  EXPECT_EQ(model.decoder->conv_in->effective_weight().shape(), (Shape{64, 8, 7}));
  // A multiple of the hop: F = T / hop frames, decoded to exactly T samples.
  const Tensor x = randn({2, 1, 1280}) * 0.3;
  const Tensor z = model.encoder->forward(x);
  EXPECT_EQ(z.shape(), (Shape{2, 8, 4}));
  EXPECT_EQ(model.decoder->forward(z).shape(), (Shape{2, 1, 1280}));
  const tasks::CodecOutput out = model.forward(x);  // training mode: the codebooks start by k-means
  EXPECT_EQ(out.reconstruction.shape(), (Shape{2, 1, 1280}));
  EXPECT_EQ(out.codes.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(out.commitment_loss.dim(), 0);
  model.eval();
  const Tensor codes = model.encode(x);
  EXPECT_EQ(codes.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(codes.dtype(), DType::i64);
  EXPECT_EQ(model.decode(codes).shape(), (Shape{2, 1, 1280}));
  // Otherwise ceil(T / hop) frames (zeros complete the last), and forward trims.
  for (int64_t T : {1, 319, 321, 700}) {
    const Tensor y = randn({1, 1, T});
    const int64_t frames = (T + 319) / 320;
    EXPECT_EQ(model.encode(y).shape(), (Shape{1, 3, frames})) << T;
    EXPECT_EQ(model.decode(model.encode(y)).shape(), (Shape{1, 1, frames * 320})) << T;
    EXPECT_EQ(model.forward(y).reconstruction.shape(), (Shape{1, 1, T})) << T;
  }
  // In eval mode forward is decode(encode(x)).
  EXPECT_LT(rel_err(model.forward(x).reconstruction, model.decode(codes)), 1e-6);
  EXPECT_THROW(model.encode(randn({2, 2, 640})), Error);  // not mono
  EXPECT_THROW(model.encode(randn({2, 640})), Error);
  EXPECT_THROW(model.decode(cat({codes, codes.narrow(1, 0, 1)}, 1)), Error);  // more codebooks than the model
  EXPECT_THROW(model.decode(codes.narrow(1, 0, 0)), Error);
  // The first K codebooks decode alone: the residual sum of K codewords.
  const Tensor coarse = model.decode(codes.narrow(1, 0, 2).contiguous());
  const Tensor latent2 = model.quantizer->decode(codes.narrow(1, 0, 2).contiguous());
  EXPECT_LT(rel_err(coarse, model.decoder->forward(latent2)), 1e-6);
  EXPECT_THROW(model.decode(full({1, 3, 2}, 16.0, DType::i64)), Error);  // outside [0, codebook_size)
  EXPECT_THROW(model.decode(full({1, 3, 2}, -1.0, DType::i64)), Error);
  EXPECT_THROW(model.decode(zeros({1, 3, 2})), Error);  // not integers
  tasks::CodecOptions bad = tiny_options();
  bad.ratios = {2, 0};
  EXPECT_THROW(tasks::Codec{bad}, Error);
  bad = tiny_options();
  bad.channels = 1;
  EXPECT_THROW(tasks::Codec{bad}, Error);
}

// Each convolution keeps ceil(T / stride) positions whatever T, and the
// transposed one gives exactly T * stride, for every kernel the codec uses.
TEST(Codec, ConvolutionLengths) {
  for (int64_t stride : {1, 2, 3, 5, 8})
    for (int64_t T : {1, 2, 7, 16, 17}) {
      const int64_t kernel = stride == 1 ? 7 : 2 * stride;
      tasks::CodecConv1d conv(2, 3, kernel, stride, 1, true);
      EXPECT_EQ(conv.forward(randn({1, 2, T})).size(2), (T + stride - 1) / stride) << stride << " " << T;
      if (stride > 1) {
        tasks::CodecConvTranspose1d up(2, 3, kernel, stride, false);
        EXPECT_EQ(up.forward(randn({1, 2, T})).size(2), T * stride);
      }
    }
  tasks::CodecConv1d dilated(2, 2, 3, 1, 9, false);
  EXPECT_EQ(dilated.forward(randn({1, 2, 5})).size(2), 5);
}

// Weights start with variance 1 / fan_in (fan_in: the inputs reaching one
// output), weight_g = |weight_v| (the effective weight is weight_v), biases 0;
// everything from init_gen. The signal keeps its scale through the stack.
TEST(Codec, InitialisationFromTheSeed) {
  Generator g1(5), g2(5), g3(6);
  tasks::Codec a(tiny_options(), &g1), b(tiny_options(), &g2), c(tiny_options(), &g3);
  const auto pa = a.named_parameters(), pb = b.named_parameters(), pc = c.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(max(abs(pa[i].tensor - pb[i].tensor)).item(), 0.0) << pa[i].name;
    if (pa[i].name.find("bias") != std::string::npos) EXPECT_EQ(max(abs(pa[i].tensor)).item(), 0.0) << pa[i].name;
    else EXPECT_GT(max(abs(pa[i].tensor - pc[i].tensor)).item(), 0.0) << pa[i].name;
  }
  const auto& conv = *a.encoder->stages->operator[](1).down;
  EXPECT_LT(rel_err(conv.effective_weight(), conv.weight_v), 1e-6);
  const double bound = std::sqrt(3.0 / double(conv.in * conv.kernel));
  EXPECT_LE(max(abs(conv.weight_v)).item(), bound);
  EXPECT_GT(max(abs(conv.weight_v)).item(), 0.9 * bound);
  const auto& up = *a.decoder->stages->operator[](0).up;  // 64 -> 32, stride 8, kernel 16
  EXPECT_LE(max(abs(up.weight_v)).item(), std::sqrt(3.0 / (64.0 * 16 / 8)));
  EXPECT_GT(max(abs(up.weight_v)).item(), 0.9 * std::sqrt(3.0 / (64.0 * 16 / 8)));
  // Parameter tags: no weight decay on weight_g and biases.
  for (const auto& p : a.named_parameters()) {
    const bool no_decay = p.name.find("weight_g") != std::string::npos || p.name.find("bias") != std::string::npos;
    EXPECT_EQ((p.tags & nn::kNoDecay) != 0, no_decay) << p.name;
  }
  // The scale survives: latents and reconstruction of unit-variance noise keep
  // a standard deviation within 4x of 1 (PyTorch's default init gave ~1/30).
  NoGradGuard ng;
  tasks::Codec big([] {
    tasks::CodecOptions o;
    o.channels = 16, o.dim = 64;
    return o;
  }(), &g3);
  const Tensor x = randn({2, 1, 6400}, DType::f32, &g3);
  const Tensor z = big.encoder->forward(x);
  const double sz = std::sqrt(mean(square(z - mean(z))).item()), sy = std::sqrt(mean(square(big.decoder->forward(z))).item());
  std::cout << "std of latents " << sz << ", of the decoded latents " << sy << "\n";
  EXPECT_GT(sz, 0.25);
  EXPECT_LT(sz, 4.0);
  EXPECT_GT(sy, 0.25);
  EXPECT_LT(sy, 4.0);
}

// d/d(every parameter and the input) of sum(r1 * encoder(x)) +
// sum(r2 * decoder(encoder(x))) in f64 against central differences, on a
// tiny model with weight norm, dilations and a length the hop does not divide.
TEST(Codec, EncoderDecoderGradientsByFiniteDifferences) {
  tasks::CodecOptions o;
  o.channels = 2, o.dim = 3, o.ratios = {2, 3}, o.residual_layers = 2, o.dilation_base = 2;
  o.rvq.n_codebooks = 1, o.rvq.codebook_size = 4;
  Generator gen(7);
  tasks::Codec model(o, &gen);
  model.to(DType::f64);
  Tensor x = (randn({2, 1, 13}, DType::f64, &gen) * 0.5).requires_grad_(true);
  const Tensor r1 = randn({2, 3, 3}, DType::f64, &gen), r2 = randn({2, 1, 18}, DType::f64, &gen);
  auto loss = [&] {
    const Tensor z = model.encoder->forward(x);
    return sum(z * r1) + sum(model.decoder->forward(z) * r2);
  };
  loss().backward();
  std::vector<Tensor> leaves{x};
  std::vector<std::string> names{"x"};
  for (const auto& p : model.named_parameters()) leaves.push_back(p.tensor), names.push_back(p.name);
  const double eps = 1e-6;
  int64_t checked = 0;
  double worst = 0;
  for (size_t i = 0; i < leaves.size(); ++i) {
    const Tensor grad = leaves[i].grad().contiguous();
    const std::vector<double> analytic = grad.to_vector<double>();
    for (int64_t j = 0; j < leaves[i].numel(); ++j) {
      NoGradGuard ng;
      Tensor flat = leaves[i].view({leaves[i].numel()});
      const double v = flat.narrow(0, j, 1).item();
      flat.narrow(0, j, 1).fill_(v + eps);
      const double up = loss().item();
      flat.narrow(0, j, 1).fill_(v - eps);
      const double down = loss().item();
      flat.narrow(0, j, 1).fill_(v);
      const double numeric = (up - down) / (2 * eps);
      const double err = std::fabs(numeric - analytic[size_t(j)]);
      worst = std::max(worst, err / (1e-3 + std::fabs(numeric)));
      EXPECT_NEAR(analytic[size_t(j)], numeric, 1e-6 + 1e-5 * std::fabs(numeric)) << names[i] << "[" << j << "]";
      ++checked;
    }
  }
  std::cout << checked << " gradient elements checked, worst relative error " << worst << "\n";
}

// In training mode the quantiser passes the decoder's gradient straight to
// the encoder (and adds the commitment loss's); the codebooks learn.
TEST(Codec, TrainingForwardReachesTheEncoder) {
  Generator gen(3);
  tasks::Codec model(tiny_options(), &gen, &gen);
  const Tensor x = randn({4, 1, 3200}, DType::f32, &gen) * 0.3;  // 40 frames for 16 codes
  const tasks::CodecOutput out = model.forward(x);
  EXPECT_EQ(model.quantizer->layers->operator[](0).codebook->inited.item(), 1.0);
  EXPECT_GT(out.commitment_loss.item(), 0.0);
  (l1_loss(out.reconstruction, x) + out.commitment_loss).backward();
  for (const auto& p : model.named_parameters()) {
    ASSERT_TRUE(p.tensor.grad().defined()) << p.name;
    const double g = max(abs(p.tensor.grad())).item();
    EXPECT_TRUE(std::isfinite(g)) << p.name;
    EXPECT_GT(g, 0.0) << p.name;
  }
}

TEST(Codec, FlopsCountEveryConvolution) {
  tasks::CodecOptions o;
  o.channels = 2, o.dim = 3, o.ratios = {2};
  // Per convolution 2 * in * out * kernel * positions (a transposed one at
  // its input's positions), T = 8: encoder 224 + 96 + 32 + 256 + 672,
  // decoder 672 + 256 + 96 + 32 + 224; forward and backward 3x.
  EXPECT_DOUBLE_EQ(tasks::codec_flops(o, 8), 3.0 * 2560);
  // One ratio 2 more doubles the widths behind it; positions halve: at least it grows.
  o.ratios = {2, 2};
  EXPECT_GT(tasks::codec_flops(o, 8), 3.0 * 2560);
}

// SI-SNR against the textbook formula in f64 loops; invariance to the
// estimate's scale and offset.
TEST(CodecLosses, SiSnrEqualsTheNaiveFormula) {
  Generator gen(1);
  const Tensor ref = randn({3, 1, 200}, DType::f32, &gen);
  const Tensor est = ref * 0.7 + randn({3, 1, 200}, DType::f32, &gen) * 0.3 + 0.2;
  const std::vector<double> r = ref.to_vector<double>(), e = est.to_vector<double>();
  const std::vector<double> got = tasks::si_snr(est, ref).to_vector<double>();
  ASSERT_EQ(got.size(), 3u);
  for (size_t b = 0; b < 3; ++b) {
    double mr = 0, me = 0;
    for (size_t t = 0; t < 200; ++t) mr += r[b * 200 + t] / 200, me += e[b * 200 + t] / 200;
    double dot = 0, rr = 0;
    for (size_t t = 0; t < 200; ++t) {
      const double rv = r[b * 200 + t] - mr, ev = e[b * 200 + t] - me;
      dot += ev * rv, rr += rv * rv;
    }
    double pp = 0, nn_ = 0;
    for (size_t t = 0; t < 200; ++t) {
      const double p = dot / rr * (r[b * 200 + t] - mr);
      pp += p * p;
      nn_ += (e[b * 200 + t] - me - p) * (e[b * 200 + t] - me - p);
    }
    EXPECT_NEAR(got[b], 10 * std::log10(pp / nn_), 1e-3) << b;
  }
  EXPECT_LT(rel_err(tasks::si_snr(est * 3.0 - 1.0, ref), tasks::si_snr(est, ref)), 1e-4);
  EXPECT_GT(min(tasks::si_snr(ref, ref)).item(), 60.0);
  EXPECT_THROW(tasks::si_snr(est, ref.narrow(2, 0, 100)), Error);
}

// The multi-scale log-mel L1 against direct DFTs: per scale n = 2^i, frames
// centred (n / 2 zeros each side), periodic Hann, |DFT|^2 of bins 0..n/2,
// HTK mel triangles (fm::audio::mel_filterbank), log10(mel + floor), mean
// |difference|; the scales averaged. Small scales, so n_mels is capped at n / 4.
TEST(CodecLosses, MelDistanceEqualsDirectDfts) {
  Generator gen(2);
  const int64_t T = 300;
  const Tensor a = randn({2, 1, T}, DType::f32, &gen) * 0.3, b = randn({2, 1, T}, DType::f32, &gen) * 0.3;
  tasks::MelDistanceOptions o;
  o.sample_rate = 8000;
  o.min_log2 = 4, o.max_log2 = 6, o.n_mels = 12;
  const std::vector<double> got = tasks::mel_distance(a, b, o).to_vector<double>();
  const std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
  for (size_t clip = 0; clip < 2; ++clip) {
    double expect = 0;
    for (int64_t i = o.min_log2; i <= o.max_log2; ++i) {
      const int64_t n = int64_t(1) << i, hop = n / 4, bins = n / 2 + 1, mels = std::min<int64_t>(12, n / 4);
      const std::vector<double> fb =
          audio::mel_filterbank(8000, n, mels, 0, 0, audio::MelScale::htk, audio::MelNorm::none).to_vector<double>();
      const int64_t frames = 1 + T / hop;  // (T + n - n) / hop + 1
      auto log_mel = [&](const std::vector<double>& v) {
        std::vector<double> out(size_t(mels * frames));
        for (int64_t f = 0; f < frames; ++f) {
          std::vector<double> power(static_cast<size_t>(bins), 0.0);
          for (int64_t k = 0; k < bins; ++k) {
            std::complex<double> acc = 0;
            for (int64_t j = 0; j < n; ++j) {
              const int64_t t = f * hop + j - n / 2;
              const double s = t >= 0 && t < T ? v[clip * size_t(T) + size_t(t)] : 0.0;
              const double w = 0.5 - 0.5 * std::cos(2 * M_PI * double(j) / double(n));
              acc += s * w * std::polar(1.0, -2 * M_PI * double(k * j) / double(n));
            }
            power[size_t(k)] = std::norm(acc);
          }
          for (int64_t m = 0; m < mels; ++m) {
            double s = 0;
            for (int64_t k = 0; k < bins; ++k) s += fb[size_t(m * bins + k)] * power[size_t(k)];
            out[size_t(m * frames + f)] = std::log10(s + o.floor);
          }
        }
        return out;
      };
      const std::vector<double> la = log_mel(va), lb = log_mel(vb);
      double d = 0;
      for (size_t k = 0; k < la.size(); ++k) d += std::fabs(la[k] - lb[k]);
      expect += d / double(la.size());
    }
    expect /= double(o.max_log2 - o.min_log2 + 1);
    EXPECT_NEAR(got[clip], expect, 1e-4 * expect) << clip;
  }
  EXPECT_EQ(tasks::mel_distance(a, a, o).to_vector<double>(), (std::vector<double>{0.0, 0.0}));
  o.min_log2 = 1;
  EXPECT_THROW(tasks::mel_distance(a, b, o), Error);
}

namespace {

// B clips of T samples at 8 kHz, each the sum of three sinusoids with
// frequencies from a small set, random amplitudes and phases.
Tensor sinusoids(int64_t B, int64_t T, Generator* gen) {
  static const double freqs[] = {250, 375, 500, 625, 750, 1000, 1250, 1500};
  const std::vector<double> pick = rand({B, 3, 3}, DType::f64, gen).to_vector<double>();
  std::vector<float> out(size_t(B * T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < 3; ++s) {
      const double* u = &pick[size_t((b * 3 + s) * 3)];
      const double f = freqs[int(u[0] * 8) % 8], amp = 0.1 + 0.2 * u[1], phase = 2 * M_PI * u[2];
      for (int64_t t = 0; t < T; ++t) out[size_t(b * T + t)] += float(amp * std::sin(2 * M_PI * f * double(t) / 8000 + phase));
    }
  return tensor(out, {B, 1, T});
}

// Each clip's frame means, held over the frame: all one number per frame tells.
Tensor frame_means(const Tensor& x, int64_t hop) {
  const int64_t B = x.size(0), F = x.size(2) / hop;
  return mean(x.reshape({B, 1, F, hop}), {3}, true).expand({B, 1, F, hop}).reshape({B, 1, F * hop});
}

}  // namespace

// A learnable pattern: a tiny codec (hop 8, 4 codebooks of 64 codes) trained
// on fresh sums of sinusoids with the task's default loss (waveform L1 +
// 0.1 x multi-scale log-mel L1 with floor 1e-2 + commitment) must code held-out clips far better than the
// trivial one-number-per-frame code (each frame's mean) and than itself
// untrained. A broken backward, straight-through estimate or codebook update
// cannot do that.
TEST(Codec, LearnsToCodeSumsOfSinusoids) {
  manual_seed(4);
  Generator init(11), rvq(12), data(13), held(14);
  tasks::CodecOptions o;
  o.sample_rate = 8000;
  o.channels = 8, o.dim = 16, o.ratios = {2, 4};
  o.rvq.n_codebooks = 4, o.rvq.codebook_size = 64;
  tasks::Codec model(o, &init, &rvq);
  tasks::MelDistanceOptions mo;
  mo.sample_rate = 8000;
  mo.min_log2 = 5, mo.max_log2 = 9, mo.n_mels = 32, mo.floor = 1e-2;
  const int64_t T = 1024;
  const Tensor test = sinusoids(16, T, &held);
  auto test_snr = [&] {
    NoGradGuard ng;
    model.eval();
    const double s = mean(tasks::si_snr(model.forward(test).reconstruction, test)).item();
    model.train();
    return s;
  };
  model.forward(sinusoids(16, T, &data));  // k-means initialisation on a first batch
  const double untrained = test_snr();
  optim::AdamW opt(model, {.lr = 3e-3, .weight_decay = 0.0});
  double first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    const Tensor x = sinusoids(8, T, &data);
    opt.zero_grad();
    const tasks::CodecOutput out = model.forward(x);
    const Tensor loss =
        l1_loss(out.reconstruction, x) + mean(tasks::mel_distance(out.reconstruction, x, mo)) * 0.1 + out.commitment_loss;
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  const double trained = test_snr();
  const double baseline = mean(tasks::si_snr(frame_means(test, model.hop()), test)).item();
  std::cout << "loss " << first << " -> " << last << "; held-out SI-SNR: untrained " << untrained << " dB, frame means "
            << baseline << " dB, trained " << trained << " dB\n";
  EXPECT_LT(last, first / 2);
  EXPECT_GT(trained, baseline + 6.0);
  EXPECT_GT(trained, untrained + 10.0);
}
