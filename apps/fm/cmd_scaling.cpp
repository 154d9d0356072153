// fm scaling fit SWEEP_DIR [--x params|params_total|data|compute] [--law power|broken|both] [--bootstrap N] [--plot F.png]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "commands.h"
#include "fm/error.h"
#include "fm/train/scaling.h"
#include "options.h"
#include "scaling_plot.h"

namespace fm::app {
namespace {

namespace fs = std::filesystem;
namespace sc = train::scaling;
using nlohmann::json;

const char* kUsage =
    "usage: fm scaling fit SWEEP_DIR [options]\n\n"
    "Fits the final loss of a sweep's runs (SWEEP_DIR/sweep.jsonl, from fm sweep) against their\n"
    "size, data or compute, as a power law with an irreducible term, L = E + A x^-alpha, and as a\n"
    "broken power law with one break (Caballero et al. 2022), L = a + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1).\n"
    "Prints each law's parameters with bootstrap intervals, fits again without the run of largest x\n"
    "and reports how well that predicts its loss, writes the results as JSON into the sweep\n"
    "directory, and with --plot draws the runs and the fits (log-log) to a PNG.\n"
    "--frontier keeps only the runs that beat every run of smaller x (the compute-efficient frontier).";

struct Point {
  std::string name;
  double x = 0, y = 0;
};

struct Axis {
  std::string key;    // in sweep.jsonl
  std::string label;  // for people
};

Axis x_axis(const std::string& kind, const json& first) {
  if (kind == "params") return {"params", "parameters (without embeddings)"};
  if (kind == "params_total") return {"params_total", "parameters"};
  if (kind == "compute") return {"flops", "training compute (FLOPs)"};
  if (kind == "data")
    return first.value("tokens", 0.0) > 0 ? Axis{"tokens", "training tokens"} : Axis{"samples", "training samples"};
  error("scaling: --x must be params, params_total, data or compute, got '", kind, "'");
}

// "k=v k2=v2" -> pairs.
std::vector<std::pair<std::string, std::string>> parse_where(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream in(text);
  for (std::string term; in >> term;) {
    const size_t eq = term.find('=');
    if (eq == std::string::npos || eq == 0) error("scaling: --where term '", term, "' is not KEY=VALUE");
    out.push_back({term.substr(0, eq), term.substr(eq + 1)});
  }
  return out;
}

std::vector<json> read_sweep(const fs::path& dir) {
  const fs::path path = dir / "sweep.jsonl";
  std::ifstream in(path);
  if (!in) error("scaling: cannot read ", path.string(), " (run fm sweep into ", dir.string(), " first)");
  std::vector<json> rows;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty()) continue;
    try {
      rows.push_back(json::parse(line));
    } catch (const json::exception& e) {
      error("scaling: ", path.string(), " line ", line_no, " is not JSON: ", e.what());
    }
  }
  if (rows.empty()) error("scaling: ", path.string(), " holds no finished run yet");
  return rows;
}

double figure(const json& row, const std::string& key, const fs::path& dir) {
  const std::string name = row.value("point", "?");
  if (row.contains(key) && row[key].is_number()) return row[key].get<double>();
  if (row.contains("metrics") && row["metrics"].contains(key) && row["metrics"][key].is_number())
    return row["metrics"][key].get<double>();
  std::string known;
  if (row.contains("metrics"))
    for (const auto& [k, v] : row["metrics"].items()) known += (known.empty() ? "" : ", ") + k;
  error("scaling: run '", name, "' in ", (dir / "sweep.jsonl").string(), " has no figure '", key, "' (it has: ",
        known, ")");
}

// The rows kept by --where, as points.
std::vector<Point> select_points(const std::vector<json>& rows, const Axis& x, const std::string& y,
                                 const std::string& where, const fs::path& dir) {
  const auto conditions = parse_where(where);
  std::set<std::string> grid_keys;
  for (const auto& r : rows) {
    const json values = r.value("values", json::object());
    for (const auto& [k, v] : values.items()) grid_keys.insert(k);
  }
  for (const auto& [k, v] : conditions)
    if (!grid_keys.count(k)) error("scaling: --where: '", k, "' is not a key of the sweep's grid");
  std::vector<Point> points;
  for (const auto& r : rows) {
    const json values = r.value("values", json::object());
    bool keep = true;
    for (const auto& [k, v] : conditions) keep = keep && values.contains(k) && values[k] == v;
    if (keep) points.push_back({r.value("point", "?"), figure(r, x.key, dir), figure(r, y, dir)});
  }
  if (points.empty()) error("scaling: no run of ", dir.string(), " matches --where '", where, "'");
  std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) { return a.x < b.x; });
  return points;
}

// The runs that reach a lower loss than every run of smaller x.
std::vector<Point> frontier(const std::vector<Point>& sorted) {
  std::vector<Point> out;
  double best = INFINITY;
  for (const auto& p : sorted)
    if (p.y < best) out.push_back(p), best = p.y;
  return out;
}

std::vector<double> log_grid(double lo, double hi, int n) {
  std::vector<double> x;
  for (int i = 0; i < n; ++i) x.push_back(lo * std::pow(hi / lo, double(i) / (n - 1)));
  return x;
}

json interval_json(double value, const sc::Interval* iv) {
  json j = {{"value", value}};
  if (iv) j["lo"] = iv->lo, j["median"] = iv->median, j["hi"] = iv->hi;
  return j;
}

std::string interval_text(const sc::Interval* iv) {
  if (!iv) return "";
  char buf[96];
  std::snprintf(buf, sizeof buf, "[%.5g, %.5g]", iv->lo, iv->hi);
  return buf;
}

struct Settings {
  sc::FitOptions fit;
  sc::BootstrapOptions boot;
  bool bootstrap = true;
};

// Fits one law, prints it, adds its curves to `plot`; returns its JSON.
json report_law(sc::Law law, const std::vector<Point>& pts, const Settings& s, std::vector<PlotSeries>& plot,
                int colour) {
  std::vector<double> x, y;
  for (const auto& p : pts) x.push_back(p.x), y.push_back(p.y);
  const auto names = sc::law_parameters(law);
  const char* title = law == sc::Law::power ? "power law, L = E + A x^-alpha"
                                            : "broken power law, L = a + b x^-c0 (1 + (x/d1)^(1/f1))^(-c1 f1)";
  const sc::Fit fit = sc::fit_law(law, x, y, s.fit);
  const std::vector<double> curve_x = log_grid(x.front() / 1.15, x.back() * 1.15, 80);
  std::optional<sc::Bootstrap> boot;
  if (s.bootstrap) boot = sc::bootstrap_law(law, x, y, curve_x, s.boot, s.fit);
  std::printf("\n%s: %zu points, rms log residual %.4g", title, x.size(), fit.rms_log_residual);
  if (boot) std::printf("; %d bootstrap resamples, %g%% intervals", boot->used, 100 * s.boot.level);
  std::printf("\n");
  json params = json::object();
  for (size_t j = 0; j < names.size(); ++j) {
    const sc::Interval* iv = boot ? &boot->params[j] : nullptr;
    std::printf("  %-6s %-12.6g %s\n", names[j].c_str(), fit.params[j], interval_text(iv).c_str());
    params[names[j]] = interval_json(fit.params[j], iv);
  }
  if (!fit.at_bound.empty()) {
    std::string list;
    for (const auto& n : fit.at_bound) list += (list.empty() ? "" : ", ") + n;
    std::printf("  note: %s at the edge of the search (a floor of ~0, a slope of -5 or 10, a break far outside the "
                "data): the points do not pin %s down\n",
                list.c_str(), fit.at_bound.size() > 1 ? "them" : "it");
  }
  if (boot && boot->used < s.boot.samples / 2)
    std::printf("  note: only %d of %d resamples had the %zu distinct x values the law needs: the intervals say little\n",
                boot->used, s.boot.samples, names.size());
  json out = {{"params", params}, {"rms_log_residual", fit.rms_log_residual}, {"points", x.size()},
              {"at_bound", fit.at_bound}};
  if (boot) out["bootstrap"] = {{"resamples", boot->used}, {"skipped", boot->skipped}, {"level", s.boot.level}};
  const std::string label = law == sc::Law::power ? "power law" : "broken power law";
  std::vector<double> curve_y;
  for (double v : curve_x) curve_y.push_back(fit(v));
  plot.push_back({label, curve_x, curve_y, colour, PlotSeries::line});
  if (boot) {
    std::vector<double> lo, hi;
    for (const auto& iv : boot->predictions) lo.push_back(iv.lo), hi.push_back(iv.hi);
    char band[64];
    std::snprintf(band, sizeof band, "%s, %g%% band", label.c_str(), 100 * s.boot.level);
    plot.push_back({band, curve_x, lo, colour, PlotSeries::dotted});
    plot.push_back({"", curve_x, hi, colour, PlotSeries::dotted, false});
  }

  // The largest run held out: fitted on the others, predicted.
  const double x_max = x.back();
  std::vector<double> xs, ys;
  for (size_t i = 0; i < x.size(); ++i)
    if (x[i] < x_max) xs.push_back(x[i]), ys.push_back(y[i]);
  const size_t distinct = std::set<double>(xs.begin(), xs.end()).size();
  if (int(distinct) < int(names.size())) {
    std::printf("  hold-out: skipped (without the largest x, %zu distinct x values remain; the law needs %zu)\n",
                distinct, names.size());
    return out;
  }
  const sc::Holdout h = sc::holdout_largest(law, x, y, s.fit);
  std::optional<sc::Bootstrap> hboot;
  if (s.bootstrap) hboot = sc::bootstrap_law(law, xs, ys, {h.x}, s.boot, s.fit);
  const sc::Interval* hiv = hboot ? &hboot->predictions[0] : nullptr;
  std::printf("  hold-out: fitted on the %zu runs below x = %.4g, it predicts %.5g %s there; the run reached %.5g: "
              "error %+.2f%%\n",
              xs.size(), h.x, h.predicted, interval_text(hiv).c_str(), h.actual, 100 * h.relative_error);
  json held = {{"x", h.x}, {"actual", h.actual}, {"predicted", interval_json(h.predicted, hiv)},
               {"relative_error", h.relative_error}, {"points", xs.size()}};
  json hparams = json::object();
  for (size_t j = 0; j < names.size(); ++j) hparams[names[j]] = h.fit.params[j];
  held["params"] = hparams;
  out["holdout"] = held;
  std::vector<double> hx = log_grid(xs.front() / 1.15, h.x * 1.15, 80), hy;
  for (double v : hx) hy.push_back(h.fit(v));
  plot.push_back({label + " without the largest run", hx, hy, colour, PlotSeries::dashed});
  return out;
}

}  // namespace

int cmd_scaling(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::printf("%s\n", kUsage);
    return args.empty() ? 2 : 0;
  }
  if (args[0] != "fit") error("scaling: unknown subcommand '", args[0], "' (fm scaling fit SWEEP_DIR)");
  Flags f(kUsage);
  f.option("x", "compute", "params (without embeddings), params_total, data (tokens, or samples) or compute (FLOPs)")
      .option("y", "val_loss", "the loss to fit: val_loss, train_loss or another figure of the runs' metrics")
      .option("law", "both", "power, broken or both")
      .option("bootstrap", "1000", "bootstrap resamples for the intervals (0: none)")
      .option("level", "0.95", "the intervals' level")
      .option("seed", "0", "the bootstrap's seed")
      .option("huber", "0", "Huber delta on the log residuals (0: least squares; Hoffmann et al. use 1e-3)")
      .option("where", "", "keep the runs with these grid values, e.g. \"train.max_steps=800\"")
      .option("frontier", "", "(a flag) keep the runs that beat every run of smaller x")
      .option("plot", "", "draw the runs and fits, log-log, to this PNG")
      .option("json", "", "the results file (default: SWEEP_DIR/scaling_<x>.json)");
  // --frontier alone is a flag (Flags options take values).
  std::vector<std::string> rest(args.begin() + 1, args.end());
  bool use_frontier = std::find(rest.begin(), rest.end(), "--frontier") != rest.end();
  rest.erase(std::remove(rest.begin(), rest.end(), "--frontier"), rest.end());
  if (!f.parse(rest)) return 0;
  if (const std::string v = f.get("frontier"); !v.empty()) {
    if (v != "true" && v != "false") error("scaling: --frontier takes no value (or true / false), got '", v, "'");
    use_frontier = v == "true";
  }
  if (f.positional().size() != 1) error("scaling fit: expected one SWEEP_DIR, got ", f.positional().size());
  const fs::path dir = f.positional()[0];
  const std::string law_arg = f.get("law");
  std::vector<sc::Law> laws;
  if (law_arg == "both") laws = {sc::Law::power, sc::Law::broken};
  else laws = {sc::parse_law(law_arg)};
  Settings s;
  s.fit.huber_delta = f.get_double("huber");
  const int64_t resamples = f.get_int("bootstrap");
  if (resamples < 0) error("scaling: --bootstrap must be 0 or more, got ", resamples);
  s.bootstrap = resamples > 0;
  s.boot.samples = int(resamples);
  s.boot.level = f.get_double("level");
  s.boot.seed = uint64_t(f.get_int("seed"));
  if (!(s.boot.level > 0 && s.boot.level < 1)) error("scaling: --level must lie in (0, 1), got ", s.boot.level);

  const std::vector<json> rows = read_sweep(dir);
  const Axis x = x_axis(f.get("x"), rows[0]);
  const std::string y = f.get("y");
  std::vector<Point> pts = select_points(rows, x, y, f.get("where"), dir);
  const size_t selected = pts.size();
  if (use_frontier) pts = frontier(pts);
  std::printf("fm scaling fit: %zu runs of %s%s: %s against %s\n", pts.size(), dir.string().c_str(),
              use_frontier ? (" (the frontier of " + std::to_string(selected) + ")").c_str() : "", y.c_str(),
              x.label.c_str());
  for (const auto& p : pts) std::printf("  %-36s x %-12.5g %s %.5g\n", p.name.c_str(), p.x, y.c_str(), p.y);

  std::vector<PlotSeries> plot;
  PlotSeries runs{"runs", {}, {}, 1, PlotSeries::points};
  for (const auto& p : pts) runs.x.push_back(p.x), runs.y.push_back(p.y);
  json fits = json::object();
  const std::set<double> distinct(runs.x.begin(), runs.x.end());
  if (distinct.size() < pts.size())
    std::printf("note: %zu runs share %zu x values; the fits take them all (--where or --frontier picks fewer)\n",
                pts.size(), distinct.size());
  for (sc::Law law : laws) {
    const size_t k = sc::law_parameters(law).size();
    if (laws.size() > 1 && distinct.size() < k) {
      std::printf("\n%s law: skipped (%zu distinct x values; it has %zu parameters)\n", sc::law_name(law),
                  distinct.size(), k);
      continue;
    }
    fits[sc::law_name(law)] = report_law(law, pts, s, plot, law == sc::Law::power ? 2 : 4);
  }
  plot.insert(plot.begin(), runs);
  PlotSeries held{"held-out run", {}, {}, 3, PlotSeries::points};  // those at the largest x
  for (const auto& p : pts)
    if (p.x == pts.back().x) held.x.push_back(p.x), held.y.push_back(p.y);
  if (distinct.size() > 1) plot.push_back(held);

  json points = json::array();
  for (const auto& p : pts) points.push_back({{"point", p.name}, {"x", p.x}, {"y", p.y}});
  const json result = {{"sweep", dir.string()}, {"x", f.get("x")}, {"x_key", x.key}, {"y", y},
                       {"where", f.get("where")}, {"frontier", use_frontier}, {"points", points}, {"fits", fits}};
  const std::string json_path =
      f.get("json").empty() ? (dir / ("scaling_" + f.get("x") + ".json")).string() : f.get("json");
  {
    std::ofstream out(json_path);
    out << result.dump(2) << "\n";
    if (!out) error("scaling: cannot write ", json_path);
  }
  std::printf("\nresults: %s\n", json_path.c_str());
  if (!f.get("plot").empty()) {
    const fs::path norm = dir.lexically_normal();
    const std::string name = (norm.has_filename() ? norm : norm.parent_path()).filename().string();
    plot_loglog(f.get("plot"), y + " against " + x.label + ": " + name, x.label, y, plot);
    std::printf("plot: %s\n", f.get("plot").c_str());
  }
  return 0;
}

}  // namespace fm::app
