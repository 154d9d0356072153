#include "fm/train/scaling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <set>

#include "fm/error.h"

namespace fm::train::scaling {
namespace {

int num_params(Law law) { return law == Law::power ? 3 : 6; }

double softplus(double s) { return s > 0 ? s + std::log1p(std::exp(-s)) : std::log1p(std::exp(s)); }
double sigmoid(double s) { return s >= 0 ? 1 / (1 + std::exp(-s)) : std::exp(s) / (1 + std::exp(s)); }

// The points on the scale the fit works in: u = ln x - ln x_ref, with x_ref
// the geometric mean of the data's x, so the parameters stay of order one
// whatever x's units (parameters, tokens, FLOPs).
struct Points {
  std::vector<double> u, log_y;
  double log_ref = 0, u_min = 0, u_max = 0, y_min = 0;
};

Points prepare(const std::vector<double>& x, const std::vector<double>& y, double log_ref) {
  Points p;
  p.log_ref = log_ref;
  p.y_min = *std::min_element(y.begin(), y.end());
  for (size_t i = 0; i < x.size(); ++i) {
    p.u.push_back(std::log(x[i]) - log_ref);
    p.log_y.push_back(std::log(y[i]));
  }
  p.u_min = *std::min_element(p.u.begin(), p.u.end());
  p.u_max = *std::max_element(p.u.begin(), p.u.end());
  return p;
}

double geometric_mean_log(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += std::log(v);
  return s / double(x.size());
}

// The law in internal parameters t over u, written so positive quantities
// stay positive without constraints:
//   power:  L = exp(t0) + exp(t1 - t2 u)
//   broken: L = exp(t0) + exp(t1 - t2 u - t3 f softplus((u - t4) / f)),  f = exp(t5)
// Returns L; fills dL/dt when grad is not null.
double model(Law law, const double* t, double u, double* grad) {
  const double floor = std::exp(t[0]);
  if (law == Law::power) {
    const double q = std::exp(t[1] - t[2] * u);
    if (grad) grad[0] = floor, grad[1] = q, grad[2] = -u * q;
    return floor + q;
  }
  const double f = std::exp(t[5]), s = (u - t[4]) / f, sp = softplus(s);
  const double q = std::exp(t[1] - t[2] * u - t[3] * f * sp);
  if (grad) {
    const double sg = sigmoid(s);
    grad[0] = floor;
    grad[1] = q;
    grad[2] = -u * q;
    grad[3] = -f * sp * q;
    grad[4] = q * t[3] * sg;
    grad[5] = -q * t[3] * f * (sp - sg * s);
  }
  return floor + q;
}

// A box that keeps the search where the law means something: the floor
// below e x the smallest loss, slopes of sane size, and the broken law's
// break near the data with a width between sharp and the whole range.
struct Box {
  double lo[6], hi[6];
};

Box box(Law law, const Points& p) {
  const double log_y_min = std::log(p.y_min), range = std::max(p.u_max - p.u_min, 1e-6);
  Box b = {{log_y_min - 40, -60, -5}, {log_y_min + 1, 60, 10}};
  if (law == Law::broken) {
    b.lo[3] = -10, b.hi[3] = 10;
    b.lo[4] = p.u_min - 0.5 * range, b.hi[4] = p.u_max + 0.5 * range;
    b.lo[5] = std::log(0.005 * range), b.hi[5] = std::log(std::max(range, 1.0));
  }
  return b;
}

void clamp_to_box(Law law, const Points& p, double* t) {
  const Box b = box(law, p);
  for (int j = 0; j < num_params(law); ++j) t[j] = std::clamp(t[j], b.lo[j], b.hi[j]);
}

double rho(double r, double delta) {
  if (delta <= 0 || std::abs(r) <= delta) return 0.5 * r * r;
  return delta * (std::abs(r) - 0.5 * delta);
}

double cost(Law law, const Points& p, const double* t, double delta) {
  double c = 0;
  for (size_t i = 0; i < p.u.size(); ++i) c += rho(std::log(model(law, t, p.u[i], nullptr)) - p.log_y[i], delta);
  return std::isfinite(c) ? c : std::numeric_limits<double>::infinity();
}

// Solves the k x k symmetric positive definite system a z = b in place
// (Cholesky). Written out: at most 6 unknowns, and keeping Eigen out of
// libfm::train. False when a is not positive definite.
bool solve_spd(std::vector<double> a, std::vector<double>& b, int k) {
  for (int j = 0; j < k; ++j) {
    double d = a[j * k + j];
    for (int m = 0; m < j; ++m) d -= a[j * k + m] * a[j * k + m];
    if (!(d > 0)) return false;
    a[j * k + j] = std::sqrt(d);
    for (int i = j + 1; i < k; ++i) {
      double s = a[i * k + j];
      for (int m = 0; m < j; ++m) s -= a[i * k + m] * a[j * k + m];
      a[i * k + j] = s / a[j * k + j];
    }
  }
  for (int i = 0; i < k; ++i) {  // L y = b
    for (int m = 0; m < i; ++m) b[i] -= a[i * k + m] * b[m];
    b[i] /= a[i * k + i];
  }
  for (int i = k - 1; i >= 0; --i) {  // L^T z = y
    for (int m = i + 1; m < k; ++m) b[i] -= a[m * k + i] * b[m];
    b[i] /= a[i * k + i];
  }
  return true;
}

// Levenberg-Marquardt from t (Marquardt's diagonal scaling; Huber through
// iteratively reweighted residuals), projected onto the box.
double levenberg_marquardt(Law law, const Points& p, std::vector<double>& t, const FitOptions& o) {
  const int k = num_params(law);
  const size_t n = p.u.size();
  clamp_to_box(law, p, t.data());
  double c = cost(law, p, t.data(), o.huber_delta);
  if (!std::isfinite(c)) return c;
  double lambda = 1e-3;
  std::vector<double> grad(k), a(k * k), g(k), step(k), trial(k);
  for (int it = 0; it < o.max_iterations; ++it) {
    std::fill(a.begin(), a.end(), 0.0);
    std::fill(g.begin(), g.end(), 0.0);
    for (size_t i = 0; i < n; ++i) {
      const double L = model(law, t.data(), p.u[i], grad.data());
      const double r = std::log(L) - p.log_y[i];
      const double w = o.huber_delta > 0 && std::abs(r) > o.huber_delta ? o.huber_delta / std::abs(r) : 1.0;
      for (int j = 0; j < k; ++j) grad[j] /= L;  // d log L / dt
      for (int j = 0; j < k; ++j) {
        g[j] += w * grad[j] * r;
        for (int m = 0; m < k; ++m) a[j * k + m] += w * grad[j] * grad[m];
      }
    }
    double diag_max = 0;
    for (int j = 0; j < k; ++j) diag_max = std::max(diag_max, a[j * k + j]);
    bool accepted = false;
    double new_c = c;
    while (!accepted && lambda < 1e12) {
      std::vector<double> damped = a;
      for (int j = 0; j < k; ++j) damped[j * k + j] += lambda * (a[j * k + j] + 1e-9 * (1 + diag_max));
      for (int j = 0; j < k; ++j) step[j] = -g[j];
      if (solve_spd(damped, step, k)) {
        for (int j = 0; j < k; ++j) trial[j] = t[j] + step[j];
        clamp_to_box(law, p, trial.data());
        new_c = cost(law, p, trial.data(), o.huber_delta);
        accepted = new_c < c;
      }
      if (!accepted) lambda *= 4;
    }
    if (!accepted) break;  // no step lowers the cost: a minimum
    lambda = std::max(lambda / 3, 1e-12);
    double moved = 0;
    for (int j = 0; j < k; ++j) moved = std::max(moved, std::abs(trial[j] - t[j]));
    t = trial;
    const double gain = c - new_c;
    c = new_c;
    if (gain <= 1e-15 * (c + 1e-30) || moved < 1e-12) break;
  }
  return c;
}

// Solves min |sum_j coef_j col_j - z| over the points (normal equations).
bool linear_fit(const std::vector<std::vector<double>>& cols, const std::vector<double>& z, std::vector<double>& coef) {
  const int m = int(cols.size());
  std::vector<double> a(m * m, 0.0);
  coef.assign(m, 0.0);
  for (size_t i = 0; i < z.size(); ++i)
    for (int j = 0; j < m; ++j) {
      coef[j] += cols[j][i] * z[i];
      for (int l = 0; l < m; ++l) a[j * m + l] += cols[j][i] * cols[l][i];
    }
  for (int j = 0; j < m; ++j) a[j * m + j] *= 1 + 1e-12;
  return solve_spd(a, coef, m);
}

// Starting points: for each value of the parameters the law is not linear
// in (the floor, and the broken law's break and width), the others solve a
// linear least-squares problem in log(y - floor).
std::vector<std::vector<double>> grid_starts(Law law, const Points& p) {
  const size_t n = p.u.size();
  const double range = std::max(p.u_max - p.u_min, 1e-6);
  std::vector<std::vector<double>> starts;
  for (double frac : {0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995}) {
    const double floor = frac * p.y_min;
    std::vector<double> z(n), ones(n, 1.0), minus_u(n);
    for (size_t i = 0; i < n; ++i) {
      z[i] = std::log(std::exp(p.log_y[i]) - floor);
      minus_u[i] = -p.u[i];
    }
    const double t0 = std::log(std::max(floor, 1e-6 * p.y_min));
    std::vector<double> coef;
    if (law == Law::power) {
      if (linear_fit({ones, minus_u}, z, coef)) starts.push_back({t0, coef[0], coef[1]});
      continue;
    }
    for (int di = 0; di < 7; ++di) {
      const double d = p.u_min + range * (0.1 + 0.8 * di / 6.0);
      for (double width : {0.03, 0.1, 0.3}) {
        const double f = width * range;
        std::vector<double> knee(n);
        for (size_t i = 0; i < n; ++i) knee[i] = -f * softplus((p.u[i] - d) / f);
        if (linear_fit({ones, minus_u, knee}, z, coef)) starts.push_back({t0, coef[0], coef[1], coef[2], d, std::log(f)});
      }
    }
  }
  return starts;
}

// The best of several Levenberg-Marquardt runs: from the best grid points,
// and from `extra` (a previous fit's parameters).
std::vector<double> fit_internal(Law law, const Points& p, const FitOptions& o, const std::vector<double>* extra) {
  std::vector<std::vector<double>> starts = grid_starts(law, p);
  std::vector<std::pair<double, size_t>> ranked;
  for (size_t s = 0; s < starts.size(); ++s) {
    clamp_to_box(law, p, starts[s].data());
    ranked.push_back({cost(law, p, starts[s].data(), o.huber_delta), s});
  }
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::vector<double>> chosen;
  for (size_t s = 0; s < ranked.size() && int(chosen.size()) < std::max(o.starts, 1); ++s)
    if (std::isfinite(ranked[s].first)) chosen.push_back(starts[ranked[s].second]);
  if (extra) chosen.push_back(*extra);
  double best = std::numeric_limits<double>::infinity();
  std::vector<double> best_t;
  for (auto& t : chosen) {
    const double c = levenberg_marquardt(law, p, t, o);
    if (c < best) best = c, best_t = t;
  }
  if (best_t.empty()) error("scaling: the ", law_name(law), " law found no finite fit to the points");
  return best_t;
}

// Internal parameters to the law's own, in x's units (see law_value).
std::vector<double> to_law_params(Law law, const std::vector<double>& t, double log_ref) {
  if (law == Law::power) return {std::exp(t[0]), std::exp(t[1] + t[2] * log_ref), t[2]};
  return {std::exp(t[0]), std::exp(t[1] + t[2] * log_ref), t[2], t[3], std::exp(t[4] + log_ref), std::exp(t[5])};
}

void check_points(Law law, const std::vector<double>& x, const std::vector<double>& y) {
  FM_CHECK(x.size() == y.size(), "scaling: ", x.size(), " x values but ", y.size(), " losses");
  for (size_t i = 0; i < x.size(); ++i) {
    FM_CHECK(std::isfinite(x[i]) && x[i] > 0, "scaling: point ", i, " has x = ", x[i],
             ", not a positive finite number (the laws are fitted in log-log)");
    FM_CHECK(std::isfinite(y[i]) && y[i] > 0, "scaling: point ", i, " (x = ", x[i], ") has loss ", y[i],
             ", not a positive finite number");
  }
  const size_t distinct = std::set<double>(x.begin(), x.end()).size();
  const int k = num_params(law);
  FM_CHECK(int(distinct) >= k, "scaling: the ", law_name(law), " law has ", k, " parameters but the ", x.size(),
           " points have ", distinct, " distinct x values; it needs at least ", k);
}

double rms_log_residual(const Fit& f, const std::vector<double>& x, const std::vector<double>& y) {
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += std::pow(std::log(f(x[i]) / y[i]), 2);
  return std::sqrt(s / double(x.size()));
}

// The q-quantile of sorted values, interpolating between neighbours.
double quantile(const std::vector<double>& sorted, double q) {
  const double pos = q * double(sorted.size() - 1);
  const size_t lo = size_t(pos);
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - double(lo)) * (sorted[hi] - sorted[lo]);
}

Interval interval_of(std::vector<double> v, double level) {
  std::sort(v.begin(), v.end());
  const double tail = (1 - level) / 2;
  return {quantile(v, tail), quantile(v, 0.5), quantile(v, 1 - tail)};
}

}  // namespace

const char* law_name(Law law) { return law == Law::power ? "power" : "broken"; }

Law parse_law(const std::string& name) {
  if (name == "power") return Law::power;
  if (name == "broken") return Law::broken;
  error("scaling: unknown law '", name, "' (power or broken)");
}

std::vector<std::string> law_parameters(Law law) {
  if (law == Law::power) return {"E", "A", "alpha"};
  return {"a", "b", "c0", "c1", "d1", "f1"};
}

double law_value(Law law, const std::vector<double>& q, double x) {
  FM_CHECK(int(q.size()) == num_params(law), "scaling: the ", law_name(law), " law takes ", num_params(law),
           " parameters, got ", q.size());
  const double lx = std::log(x);
  if (law == Law::power) return q[0] + std::exp(std::log(q[1]) - q[2] * lx);
  // Through logs: (x/d1)^(1/f1) overflows long before the product does.
  return q[0] + std::exp(std::log(q[1]) - q[2] * lx - q[3] * q[5] * softplus((lx - std::log(q[4])) / q[5]));
}

double Fit::param(const std::string& name) const {
  const auto names = law_parameters(law);
  const auto it = std::find(names.begin(), names.end(), name);
  if (it == names.end()) error("scaling: the ", law_name(law), " law has no parameter '", name, "'");
  return params[size_t(it - names.begin())];
}

Fit fit_law(Law law, const std::vector<double>& x, const std::vector<double>& y, const FitOptions& options) {
  check_points(law, x, y);
  const Points p = prepare(x, y, geometric_mean_log(x));
  const std::vector<double> t = fit_internal(law, p, options, nullptr);
  Fit f;
  f.law = law;
  f.params = to_law_params(law, t, p.log_ref);
  // A floor under 0.1% of the smallest loss counts as the box's lower edge:
  // its gradient vanishes there, so the search slows down long before.
  const Box b = box(law, p);
  for (int j = 0; j < num_params(law); ++j)
    if (t[j] <= b.lo[j] || t[j] >= b.hi[j] || (j == 0 && f.params[0] < 1e-3 * p.y_min))
      f.at_bound.push_back(law_parameters(law)[j]);
  f.points = int(x.size());
  f.rms_log_residual = rms_log_residual(f, x, y);
  return f;
}

Bootstrap bootstrap_law(Law law, const std::vector<double>& x, const std::vector<double>& y,
                        const std::vector<double>& predict_at, const BootstrapOptions& options,
                        const FitOptions& fit_options) {
  check_points(law, x, y);
  FM_CHECK(options.samples >= 1, "scaling: the bootstrap needs at least 1 resample, got ", options.samples);
  FM_CHECK(options.level > 0 && options.level < 1, "scaling: the interval level must lie in (0, 1), got ",
           options.level);
  for (double v : predict_at)
    FM_CHECK(std::isfinite(v) && v > 0, "scaling: cannot predict at x = ", v, " (x must be positive)");
  const int k = num_params(law);
  const size_t n = x.size();
  // Every resample keeps the whole data's reference, so the full fit is a
  // good extra start for each.
  const double log_ref = geometric_mean_log(x);
  const std::vector<double> full = fit_internal(law, prepare(x, y, log_ref), fit_options, nullptr);
  std::mt19937_64 rng(options.seed);
  std::vector<std::vector<double>> params(k), preds(predict_at.size());
  Bootstrap b;
  std::vector<double> xs(n), ys(n);
  for (int s = 0; s < options.samples; ++s) {
    for (size_t i = 0; i < n; ++i) {
      const size_t j = size_t((unsigned __int128)rng() * n >> 64);  // uniform in [0, n), the same on every platform
      xs[i] = x[j], ys[i] = y[j];
    }
    if (int(std::set<double>(xs.begin(), xs.end()).size()) < k) {
      ++b.skipped;
      continue;
    }
    const std::vector<double> t = fit_internal(law, prepare(xs, ys, log_ref), fit_options, &full);
    const std::vector<double> q = to_law_params(law, t, log_ref);
    for (int j = 0; j < k; ++j) params[j].push_back(q[j]);
    for (size_t j = 0; j < predict_at.size(); ++j) preds[j].push_back(law_value(law, q, predict_at[j]));
    ++b.used;
  }
  if (b.used == 0)
    error("scaling: no bootstrap resample of the ", n, " points had the ", k, " distinct x values the ",
          law_name(law), " law needs");
  for (int j = 0; j < k; ++j) b.params.push_back(interval_of(params[j], options.level));
  for (auto& v : preds) b.predictions.push_back(interval_of(v, options.level));
  return b;
}

Holdout holdout_largest(Law law, const std::vector<double>& x, const std::vector<double>& y, const FitOptions& options) {
  check_points(law, x, y);
  Holdout h;
  h.x = *std::max_element(x.begin(), x.end());
  // Every point at the largest x is held out; the actual loss is their mean.
  std::vector<double> xs, ys;
  double sum = 0;
  int held = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] == h.x) sum += y[i], ++held;
    else xs.push_back(x[i]), ys.push_back(y[i]);
  }
  const int k = num_params(law);
  const size_t distinct = std::set<double>(xs.begin(), xs.end()).size();
  FM_CHECK(int(distinct) >= k, "scaling: holding out the largest x leaves ", distinct, " distinct x values; the ",
           law_name(law), " law needs at least ", k);
  h.fit = fit_law(law, xs, ys, options);
  h.actual = sum / held;
  h.predicted = h.fit(h.x);
  h.relative_error = (h.predicted - h.actual) / h.actual;
  return h;
}

}  // namespace fm::train::scaling
