// Scaling-law fits on synthetic losses drawn from a known law with fresh
// multiplicative noise (fixed seeds): the fits recover the parameters, the
// broken law its break, bootstrap intervals cover the truth, the hold-out
// predicts the largest point, and bad points fail with clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "fm/error.h"
#include "fm/train/scaling.h"
#include "helpers.h"

namespace sc = fm::train::scaling;

namespace {

struct Points {
  std::vector<double> x, y;
};

std::vector<double> log_spaced(double lo, double hi, int n) {
  std::vector<double> x;
  for (int i = 0; i < n; ++i) x.push_back(lo * std::pow(hi / lo, double(i) / (n - 1)));
  return x;
}

// y = law(x) * exp(noise * N(0, 1)); normal draws by Box-Muller from a
// fixed-seed engine, so every platform sees the same numbers.
Points draw(sc::Law law, const std::vector<double>& params, const std::vector<double>& x, double noise, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&] { return (double(rng() >> 11) + 0.5) * 0x1.0p-53; };
  Points p{x, {}};
  for (double v : x) {
    const double z = std::sqrt(-2 * std::log(uniform())) * std::cos(2 * M_PI * uniform());
    p.y.push_back(sc::law_value(law, params, v) * std::exp(noise * z));
  }
  return p;
}

// Chinchilla's fit of loss against parameters (Hoffmann et al. 2022, eq. 10's N term).
const std::vector<double> kPower = {1.69, 406.4, 0.34};
// Slope 0.1 below a break at 1e7, 0.5 above it.
const std::vector<double> kBroken = {1.0, 30.0, 0.1, 0.4, 1e7, 0.3};

}  // namespace

TEST(Scaling, LawValues) {
  EXPECT_NEAR(sc::law_value(sc::Law::power, {1.5, 10, 0.5}, 100.0), 1.5 + 10 / 10.0, 1e-12);
  // Far below the break the broken law is a + b x^-c0; far above, its slope is c0 + c1.
  const std::vector<double> q = {0.0, 2.0, 0.1, 0.4, 1e6, 0.2};
  EXPECT_NEAR(sc::law_value(sc::Law::broken, q, 10.0), 2.0 * std::pow(10.0, -0.1), 1e-9);
  const double hi1 = sc::law_value(sc::Law::broken, q, 1e12), hi2 = sc::law_value(sc::Law::broken, q, 1e13);
  EXPECT_NEAR(std::log10(hi1 / hi2), 0.5, 1e-6);
  EXPECT_EQ(sc::law_parameters(sc::Law::broken).size(), 6u);
  EXPECT_EQ(sc::parse_law("broken"), sc::Law::broken);
  EXPECT_NE(fm::test::error_of([] { sc::parse_law("cubic"); }).find("unknown law 'cubic'"), std::string::npos);
}

TEST(Scaling, PowerLawExactWithoutNoise) {
  const Points p = draw(sc::Law::power, kPower, log_spaced(1e6, 1e10, 9), 0.0, 1);
  const sc::Fit f = sc::fit_law(sc::Law::power, p.x, p.y);
  EXPECT_NEAR(f.param("E"), 1.69, 1e-6);
  EXPECT_NEAR(f.param("A") / 406.4, 1.0, 1e-5);
  EXPECT_NEAR(f.param("alpha"), 0.34, 1e-7);
  EXPECT_LT(f.rms_log_residual, 1e-9);
  EXPECT_TRUE(f.at_bound.empty());
  // Without a floor in the data, the fitted floor runs to the edge of the
  // search, and the fit says so.
  const Points bare = draw(sc::Law::power, {0.0, 406.4, 0.34}, log_spaced(1e6, 1e10, 9), 0.0, 1);
  const sc::Fit g = sc::fit_law(sc::Law::power, bare.x, bare.y);
  EXPECT_EQ(g.at_bound, std::vector<std::string>{"E"});
  EXPECT_NEAR(g.param("alpha"), 0.34, 1e-6);
}

TEST(Scaling, PowerLawRecoversParametersFromNoisyLosses) {
  // 12 runs over 4 decades, 0.5% noise on each loss.
  const Points p = draw(sc::Law::power, kPower, log_spaced(1e6, 1e10, 12), 0.005, 42);
  // Tolerances: about 4 standard deviations of each estimate over noise
  // draws (measured over 40 draws: E 0.012, A 6%, alpha 0.0046).
  const sc::Fit f = sc::fit_law(sc::Law::power, p.x, p.y);
  EXPECT_NEAR(f.param("E"), 1.69, 0.05);
  EXPECT_NEAR(f.param("alpha"), 0.34, 0.02);
  EXPECT_NEAR(std::log(f.param("A") / 406.4), 0.0, 0.25);
  EXPECT_LT(f.rms_log_residual, 0.01);
  // The same noise, units of x a million times larger: the same law, A scaled.
  std::vector<double> big = p.x;
  for (double& v : big) v *= 1e6;
  const sc::Fit g = sc::fit_law(sc::Law::power, big, p.y);
  EXPECT_NEAR(g.param("E"), f.param("E"), 1e-5);
  EXPECT_NEAR(g.param("alpha"), f.param("alpha"), 1e-5);
  EXPECT_NEAR(std::log(g.param("A") / f.param("A")), f.param("alpha") * std::log(1e6), 1e-3);
}

TEST(Scaling, BrokenPowerLawRecoversItsBreak) {
  // 20 runs over 4 decades around the break, 0.2% noise.
  const Points p = draw(sc::Law::broken, kBroken, log_spaced(1e5, 1e9, 20), 0.002, 7);
  // Tolerances: many standard deviations over noise draws (measured over
  // 30: log10 d1 0.006, c0 0.001, c0 + c1 0.006, a 0.016).
  const sc::Fit f = sc::fit_law(sc::Law::broken, p.x, p.y);
  EXPECT_NEAR(std::log10(f.param("d1")), 7.0, 0.05);  // the break within 12%
  EXPECT_NEAR(f.param("c0"), 0.1, 0.01);
  EXPECT_NEAR(f.param("c0") + f.param("c1"), 0.5, 0.03);
  EXPECT_NEAR(f.param("a"), 1.0, 0.07);
  EXPECT_NEAR(f.param("f1"), 0.3, 0.1);
  EXPECT_LT(f.rms_log_residual, 0.004);
  // A single power law cannot bend: it fits the same points far worse.
  EXPECT_GT(sc::fit_law(sc::Law::power, p.x, p.y).rms_log_residual, 5 * f.rms_log_residual);
  // The bootstrap's interval of the break holds the true one.
  sc::BootstrapOptions o;
  o.samples = 100;
  const sc::Bootstrap b = sc::bootstrap_law(sc::Law::broken, p.x, p.y, {}, o);
  EXPECT_LE(b.params[4].lo, 1e7);
  EXPECT_GE(b.params[4].hi, 1e7);
}

TEST(Scaling, BootstrapIntervalsCoverTheTrueValues) {
  const Points p = draw(sc::Law::power, kPower, log_spaced(1e6, 1e10, 12), 0.005, 3);
  sc::BootstrapOptions o;
  o.samples = 400;
  o.seed = 11;
  const sc::Bootstrap b = sc::bootstrap_law(sc::Law::power, p.x, p.y, {3e8}, o);
  ASSERT_EQ(b.params.size(), 3u);
  EXPECT_EQ(b.used + b.skipped, 400);
  for (int j = 0; j < 3; ++j) {
    EXPECT_LE(b.params[j].lo, kPower[j]) << sc::law_parameters(sc::Law::power)[j];
    EXPECT_GE(b.params[j].hi, kPower[j]) << sc::law_parameters(sc::Law::power)[j];
    EXPECT_LE(b.params[j].lo, b.params[j].median);
    EXPECT_LE(b.params[j].median, b.params[j].hi);
  }
  const double truth = sc::law_value(sc::Law::power, kPower, 3e8);
  EXPECT_LE(b.predictions[0].lo, truth);
  EXPECT_GE(b.predictions[0].hi, truth);
  // Reproducible from its seed.
  const sc::Bootstrap again = sc::bootstrap_law(sc::Law::power, p.x, p.y, {3e8}, o);
  EXPECT_EQ(again.params[2].lo, b.params[2].lo);
  EXPECT_EQ(again.predictions[0].hi, b.predictions[0].hi);
}

TEST(Scaling, BootstrapCoverageOverManyNoiseDraws) {
  // Over 20 fresh noise draws, the 95% intervals of each parameter and of
  // the loss extrapolated a decade past the data hold the truth in most of
  // them (a percentile bootstrap on 12 points runs a little narrow: about
  // 90% measured over 40 draws).
  const double far = 1e11, truth = sc::law_value(sc::Law::power, kPower, far);
  int covered[4] = {0, 0, 0, 0};
  for (uint64_t seed = 100; seed < 120; ++seed) {
    const Points p = draw(sc::Law::power, kPower, log_spaced(1e6, 1e10, 12), 0.005, seed);
    sc::BootstrapOptions o;
    o.samples = 150;
    o.seed = seed;
    sc::FitOptions fo;
    fo.starts = 3;
    const sc::Bootstrap b = sc::bootstrap_law(sc::Law::power, p.x, p.y, {far}, o, fo);
    for (int j = 0; j < 3; ++j) covered[j] += b.params[j].lo <= kPower[j] && kPower[j] <= b.params[j].hi;
    covered[3] += b.predictions[0].lo <= truth && truth <= b.predictions[0].hi;
  }
  for (int j = 0; j < 4; ++j) EXPECT_GE(covered[j], 15) << (j < 3 ? sc::law_parameters(sc::Law::power)[j] : "L(1e11)");
}

TEST(Scaling, HoldoutPredictsTheLargestRun) {
  const Points p = draw(sc::Law::power, kPower, log_spaced(1e6, 1e10, 12), 0.003, 5);
  const sc::Holdout h = sc::holdout_largest(sc::Law::power, p.x, p.y);
  EXPECT_EQ(h.x, 1e10);
  EXPECT_EQ(h.fit.points, 11);
  EXPECT_EQ(h.actual, p.y.back());
  EXPECT_NEAR(h.relative_error, 0.0, 0.02);  // over 30 draws: 0.4% rms, 0.9% at worst
  EXPECT_NEAR(h.predicted, (h.actual * (1 + h.relative_error)), 1e-12);
  // The broken law's hold-out, across its break.
  const Points q = draw(sc::Law::broken, kBroken, log_spaced(1e5, 1e9, 20), 0.002, 8);
  EXPECT_NEAR(sc::holdout_largest(sc::Law::broken, q.x, q.y).relative_error, 0.0, 0.02);
}

TEST(Scaling, HuberResistsAnOutlier) {
  Points p = draw(sc::Law::power, kPower, log_spaced(1e6, 1e10, 12), 0.002, 9);
  p.y[6] *= 1.3;  // one diverged run
  sc::FitOptions huber;
  huber.huber_delta = 1e-3;
  const double robust = sc::fit_law(sc::Law::power, p.x, p.y, huber).param("alpha");
  const double plain = sc::fit_law(sc::Law::power, p.x, p.y).param("alpha");
  EXPECT_NEAR(robust, 0.34, 0.03);
  EXPECT_LT(std::abs(robust - 0.34), std::abs(plain - 0.34));
}

TEST(Scaling, DegenerateInputsGiveClearErrors) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto fit = [](std::vector<double> x, std::vector<double> y, sc::Law law = sc::Law::power) {
    return fm::test::error_of([&] { sc::fit_law(law, x, y); });
  };
  EXPECT_NE(fit({1, 2}, {3, 2}).find("has 3 parameters but the 2 points have 2 distinct x values"), std::string::npos);
  EXPECT_NE(fit({1, 1, 1, 2}, {3, 3, 3, 2}).find("4 points have 2 distinct x values"), std::string::npos);
  EXPECT_NE(fit({1, 2, 3, 4, 5}, {5, 4, 3, 2, 1}, sc::Law::broken).find("broken law has 6 parameters"),
            std::string::npos);
  EXPECT_NE(fit({1, 0, 3}, {3, 2, 1}).find("point 1 has x = 0, not a positive finite number"), std::string::npos);
  EXPECT_NE(fit({1, -2, 3}, {3, 2, 1}).find("point 1 has x = -2"), std::string::npos);
  EXPECT_NE(fit({1, 2, 3}, {3, nan, 1}).find("point 1 (x = 2) has loss nan"), std::string::npos);
  EXPECT_NE(fit({1, 2, 3}, {3, 2, 0}).find("has loss 0"), std::string::npos);
  EXPECT_NE(fit({1, 2, 3}, {3, 2}).find("3 x values but 2 losses"), std::string::npos);
  EXPECT_NE(fm::test::error_of([] { sc::holdout_largest(sc::Law::power, {1, 2, 3}, {3, 2, 1}); })
                .find("holding out the largest x leaves 2 distinct x values"),
            std::string::npos);
  sc::BootstrapOptions o;
  o.samples = 0;
  EXPECT_NE(fm::test::error_of([&] { sc::bootstrap_law(sc::Law::power, {1, 2, 3}, {3, 2, 1}, {}, o); })
                .find("at least 1 resample"),
            std::string::npos);
  EXPECT_NE(fm::test::error_of([] { sc::bootstrap_law(sc::Law::power, {1, 2, 3}, {3, 2, 1}, {-1}); }).find("x = -1"),
            std::string::npos);
}
