// fm::tasks::Autoencoder against PyTorch: the weights and inputs written by
// tests/fixtures/make_autoencoder_fixtures.py (SD's AutoencoderKL laid out
// in plain torch without attention, renamed to libfm's parameters) go
// through libfm's encode and decode, then backward of
// sum(w * decode(mean)) + sum(w2 * logvar); the posterior's mean, logvar and
// KL, the decoded images, the gradient of every parameter and of the input
// must match PyTorch's (f32, relative error below 1e-4, measured against the
// largest reference magnitude). Two cases: (a) RGB, two levels, a GroupNorm
// whose group count is lowered; (b) grey, three levels, two encoder blocks a
// level. Also: the initialisation, the logvar clamp, the posterior sample,
// the FLOPs count against the model's own weight shapes, and a tiny
// autoencoder that learns to reconstruct a fixed batch of smooth images.
#include <cmath>
#include <regex>
#include <set>

#include "fm/optim/adamw.h"
#include "fm/tasks/autoencoder.h"
#include "parity.h"

using namespace fm;
using fm::nn::StateDict;
using fm::test::rel_err;

namespace {

constexpr double kTol = 1e-4;
const char* const kRgb = "autoencoder_rgb.safetensors";
const char* const kGrey = "autoencoder_grey3.safetensors";

using Fixture = fm::test::ParityFixture;

// The model options the script wrote into the fixture's metadata.
tasks::AutoencoderOptions options_of(const Fixture& f) {
  tasks::AutoencoderOptions o;
  o.image_size = f.option("image_size");
  o.channels = f.option("channels");
  o.latent_channels = f.option("latent_channels");
  o.base_channels = f.option("base_channels");
  o.channel_mult.clear();
  const std::string mult = f.meta("channel_mult");
  for (size_t a = 0; a < mult.size();) {
    size_t b = mult.find(',', a);
    if (b == std::string::npos) b = mult.size();
    o.channel_mult.push_back(std::stoll(mult.substr(a, b - a)));
    a = b + 1;
  }
  o.res_blocks = f.option("res_blocks");
  o.groups = f.option("groups");
  return o;
}

void run_case(const std::string& file) {
  const Fixture f(file);
  tasks::Autoencoder model(options_of(f));
  model.load_state_dict(f.params());
  fm::test::Comparer cmp(f, kTol);

  Tensor x = f.input_leaf("x");
  const tasks::Posterior q = model.encode(x);
  const Tensor decoded = model.decode(q.mean);
  (sum(decoded * f.get("output_grad.decoded")) + sum(q.logvar * f.get("output_grad.logvar"))).backward();

  cmp("posterior mean", q.mean, f.get("output.mean"));
  cmp("posterior logvar", q.logvar, f.get("output.logvar"));
  cmp("kl", q.kl(), f.get("output.kl"));
  cmp("decode(mean)", decoded, f.get("output.decoded"));
  cmp("grad of x", x.grad(), f.get("input_grad.x"));
  for (const auto& p : model.named_parameters()) cmp("grad of " + p.name, p.tensor.grad(), f.get("param_grad." + p.name));
}

// libfm's parameter names and shapes against the fixture's, both ways.
void check_names(const std::string& file) {
  const Fixture f(file);
  tasks::Autoencoder model(options_of(f));
  fm::test::expect_same_parameters(model, f);
  EXPECT_TRUE(model.named_buffers().empty());
}

tasks::AutoencoderOptions tiny_options() {
  tasks::AutoencoderOptions o;
  o.image_size = 16, o.channels = 3, o.latent_channels = 4;
  o.base_channels = 8, o.channel_mult = {1, 2}, o.res_blocks = 1, o.groups = 4;
  return o;
}

}  // namespace

TEST(AutoencoderParity, ParameterNamesMatchBothWays) {
  check_names(kRgb);
  check_names(kGrey);
}

TEST(AutoencoderParity, RgbTwoLevels) { run_case(kRgb); }

TEST(AutoencoderParity, GreyThreeLevelsTwoBlocks) { run_case(kGrey); }

TEST(Autoencoder, GroupsAreLoweredToADivisor) {
  EXPECT_EQ(tasks::autoencoder_groups(32, 64), 32);
  EXPECT_EQ(tasks::autoencoder_groups(32, 128), 32);
  EXPECT_EQ(tasks::autoencoder_groups(32, 48), 24);
  EXPECT_EQ(tasks::autoencoder_groups(4, 6), 3);
  EXPECT_EQ(tasks::autoencoder_groups(2, 3), 1);
  EXPECT_EQ(tasks::autoencoder_groups(32, 8), 8);
  EXPECT_THROW(tasks::autoencoder_groups(0, 8), Error);
}

TEST(Autoencoder, ShapesAndErrors) {
  tasks::AutoencoderOptions o = tiny_options();
  o.channel_mult = {1, 2, 2};
  tasks::Autoencoder model(o);
  EXPECT_EQ(model.downsample_factor(), 4);
  EXPECT_EQ(model.latent_size(), 4);
  EXPECT_EQ(model.encoder->down->size(), 3u);
  EXPECT_FALSE(model.encoder->down->operator[](2).downsample);  // none at the last level
  EXPECT_FALSE(model.decoder->up->operator[](2).upsample);      // none at the shallowest
  EXPECT_EQ(model.decoder->up->operator[](0).blocks->size(), 2u);  // res_blocks + 1
  EXPECT_EQ(model.encoder->down->operator[](1).blocks->operator[](0).skip->weight.shape(), (Shape{16, 8, 1, 1}));
  EXPECT_FALSE(model.encoder->down->operator[](0).blocks->operator[](0).skip);
  const Tensor x = randn({2, 3, 16, 16});
  const tasks::Posterior q = model.encode(x);
  EXPECT_EQ(q.mean.shape(), (Shape{2, 4, 4, 4}));
  EXPECT_EQ(q.logvar.shape(), (Shape{2, 4, 4, 4}));
  EXPECT_EQ(q.kl().shape(), (Shape{2}));
  EXPECT_EQ(model.decode(q.mean).shape(), x.shape());
  // Fully convolutional: other sizes that the factor divides work too.
  EXPECT_EQ(model.decode(model.encode(randn({1, 3, 8, 12})).mean).shape(), (Shape{1, 3, 8, 12}));
  EXPECT_THROW(model.encode(randn({2, 1, 16, 16})), Error);   // channels
  EXPECT_THROW(model.encode(randn({2, 3, 10, 16})), Error);   // not a multiple of 4
  EXPECT_THROW(model.decode(randn({2, 3, 4, 4})), Error);     // latent channels
  tasks::AutoencoderOptions bad = tiny_options();
  bad.image_size = 17;  // not a multiple of 2
  EXPECT_THROW(tasks::Autoencoder{bad}, Error);
  bad = tiny_options();
  bad.channel_mult.clear();
  EXPECT_THROW(tasks::Autoencoder{bad}, Error);
}

// PyTorch's default convolution init (U(+-1/sqrt(fan_in)) for weights and
// biases) from the given generator, reproducible from its seed; norms at 1, 0.
TEST(Autoencoder, InitialisationIsPyTorchsDefaultFromTheSeed) {
  Generator g1(5), g2(5), g3(6);
  tasks::Autoencoder a(tiny_options(), &g1), b(tiny_options(), &g2), c(tiny_options(), &g3);
  const auto pa = a.named_parameters(), pb = b.named_parameters(), pc = c.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  const StateDict params = a.state_dict();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(max(abs(pa[i].tensor - pb[i].tensor)).item(), 0.0) << pa[i].name;
    const std::string& n = pa[i].name;
    if (n.find("norm") != std::string::npos) {
      EXPECT_EQ(max(abs(pa[i].tensor - (n.find("weight") != std::string::npos ? 1.0 : 0.0))).item(), 0.0) << n;
      continue;
    }
    EXPECT_GT(max(abs(pa[i].tensor - pc[i].tensor)).item(), 0.0) << n;  // another seed, other values
    const Tensor w = params.at(n.substr(0, n.rfind('.')) + ".weight");
    const double bound = 1.0 / std::sqrt(double(w.numel() / w.size(0)));
    EXPECT_LE(max(abs(pa[i].tensor)).item(), bound) << n;
    if (pa[i].tensor.numel() >= 64) EXPECT_GT(max(abs(pa[i].tensor)).item(), 0.8 * bound) << n;
  }
}

// logvar is clamped to [-30, 20] (as diffusers), and a sample is
// mean + exp(logvar / 2) * noise with the noise from the given generator.
TEST(Autoencoder, LogvarClampAndPosteriorSample) {
  tasks::Autoencoder model(tiny_options());
  const int64_t lc = model.options.latent_channels;
  {
    NoGradGuard ng;
    model.quant_conv->bias.narrow(0, lc, lc).fill_(1000.0);  // logvar far above 20
  }
  tasks::Posterior q = model.encode(randn({2, 3, 16, 16}));
  EXPECT_EQ(min(q.logvar).item(), 20.0);
  EXPECT_EQ(max(q.logvar).item(), 20.0);
  {
    NoGradGuard ng;
    model.quant_conv->bias.narrow(0, lc, lc).fill_(-1000.0);
  }
  q = model.encode(randn({2, 3, 16, 16}));
  EXPECT_EQ(max(q.logvar).item(), -30.0);

  q.mean = randn({2, 4, 4, 4});
  q.logvar = randn({2, 4, 4, 4});
  Generator g1(9), g2(9);
  const Tensor z = model.sample(q, &g1);
  const Tensor expect = q.mean + exp(q.logvar * 0.5) * randn(q.mean.shape(), TensorOptions(DType::f32), &g2);
  EXPECT_LT(rel_err(z, expect), 1e-6);
  // KL per image, summed over latent elements.
  const Tensor kl = q.kl();
  const auto m = q.mean.to_vector<double>(), lv = q.logvar.to_vector<double>();
  double first = 0;
  for (size_t i = 0; i < m.size() / 2; ++i) first += 0.5 * (m[i] * m[i] + std::exp(lv[i]) - 1.0 - lv[i]);
  EXPECT_NEAR(kl.to_vector<double>()[0], first, 1e-4 * std::fabs(first));
}

// The FLOPs count against the model's own weights: each convolution's
// weight elements times 2 times its output positions (side from where the
// convolution sits), times 3 for forward and backward.
TEST(Autoencoder, FlopsPerImageCountsEveryConvolution) {
  for (const auto& mult : {std::vector<int64_t>{1, 2}, std::vector<int64_t>{1, 2, 4}}) {
    tasks::AutoencoderOptions o = tiny_options();
    o.channel_mult = mult;
    o.res_blocks = 2;
    o.image_size = 32;
    tasks::Autoencoder model(o);
    const int64_t s0 = o.image_size, sl = model.latent_size();
    const std::regex down(R"(encoder\.down\.(\d+)\.(blocks|downsample).*)"), up(R"(decoder\.up\.(\d+)\.(blocks|upsample).*)");
    double expect = 0;
    for (const auto& p : model.named_parameters()) {
      if (p.tensor.dim() != 4) continue;
      int64_t side = sl;  // mid blocks, conv_out of the encoder, the quant convolutions, decoder.conv_in
      std::smatch m;
      if (p.name == "encoder.conv_in.weight" || p.name == "decoder.conv_out.weight") side = s0;
      else if (std::regex_match(p.name, m, down)) side = s0 >> (std::stoi(m[1]) + (m[2] == "downsample" ? 1 : 0));
      else if (std::regex_match(p.name, m, up)) side = sl << (std::stoi(m[1]) + (m[2] == "upsample" ? 1 : 0));
      expect += 2.0 * double(p.tensor.numel()) * double(side * side);
    }
    expect *= 3.0;
    EXPECT_NEAR(tasks::autoencoder_flops_per_image(o), expect, 1e-9 * expect) << mult.size() << " levels";
  }
}

// A learnable pattern: a tiny autoencoder trained with AdamW on one fixed
// batch of smooth images (random 4x4 fields, bilinearly upsampled) must
// reconstruct it: the L1 + KL loss falls at least 5x in 200 steps. A broken
// backward anywhere in the stack cannot do that.
TEST(Autoencoder, LearnsToReconstructAFixedBatch) {
  manual_seed(3);
  Generator init(11), noise(12);
  tasks::Autoencoder model(tiny_options(), &init);
  const Tensor x = tanh(upsample(randn({8, 3, 4, 4}) * 1.5, 16, 16, "bilinear"));
  optim::AdamW opt(model, {.lr = 2e-3, .weight_decay = 0.0});
  auto step = [&] {
    opt.zero_grad();
    const tasks::Posterior q = model.encode(x);
    const Tensor rec = model.decode(model.sample(q, &noise));
    Tensor loss = l1_loss(rec, x) + mean(q.kl()) * 1e-6;
    loss.backward();
    opt.step();
    return loss.item();
  };
  const double first = step();
  double last = first;
  for (int i = 1; i < 200; ++i) last = step();
  std::cout << "L1 + KL loss: " << first << " -> " << last << " (" << first / last << "x)\n";
  EXPECT_LT(last, first / 5.0);
  NoGradGuard ng;
  const Tensor rec = model.decode(model.encode(x).mean);
  EXPECT_LT(mean(abs(rec - x)).item(), first / 5.0);  // the posterior mean reconstructs too
}
