#pragma once
// Scaling laws: a run's final loss against its model size, data or compute
// (`fm scaling fit`). Two laws of x > 0:
//   power   L(x) = E + A x^-alpha                               (Hoffmann et al. 2022)
//   broken  L(x) = a + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1)     (one break, Caballero et al. 2022)
// The broken law's slope in log-log is c0 well below the break d1 and
// c0 + c1 well above it; f1 is the break's width in units of ln x.
//
// Fitting minimises the log residuals log L(x_i) - log y_i (squared, or
// Huber), by Levenberg-Marquardt from the best points of a grid over the
// parameters the law is not linear in; uncertainty comes from a bootstrap
// over the points.
#include <cstdint>
#include <string>
#include <vector>

namespace fm::train::scaling {

enum class Law { power, broken };
const char* law_name(Law law);           // "power" | "broken"
Law parse_law(const std::string& name);  // an error lists the names
// The parameters' names, in the order of every params vector below:
// {"E", "A", "alpha"} | {"a", "b", "c0", "c1", "d1", "f1"}.
std::vector<std::string> law_parameters(Law law);

// L(x) for the law with `params` (in x's units).
double law_value(Law law, const std::vector<double>& params, double x);

struct FitOptions {
  double huber_delta = 0;  // > 0: Huber loss of the log residuals (Hoffmann et al. use 1e-3); 0: least squares
  int starts = 8;          // Levenberg-Marquardt runs, from the best grid points
  int max_iterations = 300;
};

struct Fit {
  Law law = Law::power;
  std::vector<double> params;   // law_parameters(law) order, in x's units
  double rms_log_residual = 0;  // sqrt(mean((log L(x_i) - log y_i)^2))
  // Parameters the search stopped at the edge of its box (a floor of ~0,
  // a slope of -5 or 10, a break far outside the data): the points do not
  // pin them down.
  std::vector<std::string> at_bound;
  int points = 0;
  double operator()(double x) const { return law_value(law, params, x); }
  double param(const std::string& name) const;
};

// Errors (fm::Error) name the fault: x and y of different lengths, an x
// that is not a positive finite number, a loss that is not, or fewer
// distinct x values than the law has parameters.
Fit fit_law(Law law, const std::vector<double>& x, const std::vector<double>& y, const FitOptions& options = {});

struct Interval {
  double lo = 0, median = 0, hi = 0;
};

struct BootstrapOptions {
  int samples = 1000;
  double level = 0.95;  // central percentile interval
  uint64_t seed = 0;
};

struct Bootstrap {
  std::vector<Interval> params;       // law_parameters(law) order
  std::vector<Interval> predictions;  // L at each of predict_at
  int used = 0;                       // resamples fitted
  int skipped = 0;                    // resamples with fewer distinct x than parameters
};

// Refits the law on `samples` resamples of the points (drawn with
// replacement) and takes percentile intervals of the parameters and of the
// predictions at `predict_at`. An error when no resample could be fitted.
Bootstrap bootstrap_law(Law law, const std::vector<double>& x, const std::vector<double>& y,
                        const std::vector<double>& predict_at, const BootstrapOptions& options = {},
                        const FitOptions& fit_options = {});

// Fits on every point but the one of largest x and predicts that one.
struct Holdout {
  Fit fit;  // on the others
  double x = 0, actual = 0, predicted = 0;
  double relative_error = 0;  // (predicted - actual) / actual
};
Holdout holdout_largest(Law law, const std::vector<double>& x, const std::vector<double>& y,
                        const FitOptions& options = {});

}  // namespace fm::train::scaling
