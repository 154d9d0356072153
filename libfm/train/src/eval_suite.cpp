#include "fm/train/eval_suite.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "fm/error.h"
#include "fm/io/atomic_file.h"
#include "fm/strings.h"
#include "fm/train/finetune.h"
#include "fm/train/recipe.h"
#include "fm/train/trainer.h"

namespace fm::train {
namespace fs = std::filesystem;
namespace {

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r"), b = s.find_last_not_of(" \t\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::string format_figure(double v) {
  char buf[32];
  if (v == std::floor(v) && std::fabs(v) < 1e9) {  // counts (adherence_n, ...)
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  std::snprintf(buf, sizeof buf, std::fabs(v) >= 1e4 || (v != 0 && std::fabs(v) < 1e-3) ? "%.4g" : "%.4f", v);
  return buf;
}

void write_atomic(const std::string& path, const std::string& text) {
  io::AtomicFile f(path, "eval results");
  f.write(text.data(), text.size());
  f.commit();
}

}  // namespace

Suite load_suite(const std::string& path) {
  std::ifstream in(path);
  if (!in) error("suite: cannot open ", path);
  Suite s;
  s.name = fs::path(path).stem().string();
  std::string line, section;
  std::set<std::string> names;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const size_t hash = line.find_first_of("#;");
    line = trim(hash == std::string::npos ? line : line.substr(0, hash));
    if (line.empty()) continue;
    const std::string where = path + ":" + std::to_string(n);
    if (line.front() == '[') {
      if (line.back() != ']') error("suite: ", where, ": a section header must end with ']'");
      section = trim(line.substr(1, line.size() - 2));
      if (section.empty()) error("suite: ", where, ": empty section name");
      if (section == "suite") continue;
      if (!names.insert(section).second) error("suite: ", where, ": evaluation '", section, "' appears twice");
      s.evals.push_back({section, {}, {}, {}});
      continue;
    }
    const size_t eq = line.find('=');
    if (eq == std::string::npos) error("suite: ", where, ": expected 'key = value', got '", line, "'");
    const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    if (section.empty()) error("suite: ", where, ": '", key, "' comes before any [section]");
    if (section == "suite") {
      if (key != "name") error("suite: ", where, ": [suite] takes 'name' only, got '", key, "'");
      s.name = value;
      continue;
    }
    SuiteEval& e = s.evals.back();
    if (key == "report") e.report = split_patterns(value);
    else if (key == "kinds") e.kinds = split_patterns(value);
    else if (key.find('.') == std::string::npos)
      error("suite: ", where, ": '", key, "' is neither report, kinds nor a config key (section.name)");
    else e.overrides.push_back("--" + key + "=" + value);
  }
  if (s.evals.empty()) error("suite: ", path, " names no evaluation ([name] sections)");
  return s;
}

SuiteResults run_suite(const std::string& run_dir, const Suite& suite) {
  SuiteResults r;
  r.run = run_dir;
  r.suite = suite.name;
  r.kind = load_run_config(run_dir).get_string("task.kind");
  for (const SuiteEval& e : suite.evals) {
    if (!e.kinds.empty() && std::find(e.kinds.begin(), e.kinds.end(), r.kind) == e.kinds.end()) {
      r.skipped.push_back(e.name + " (for " + join(e.kinds) + ", not " + r.kind + ")");
      continue;
    }
    std::map<std::string, double> figures;
    try {
      figures = evaluate_run(run_dir, e.overrides);
    } catch (const Error& err) {
      error("suite ", suite.name, ": evaluation '", e.name, "': ", err.what());
    }
    r.step = int64_t(figures["step"]);
    figures.erase("step");
    if (r.kind == "lm" && figures.count("val_loss")) figures["val_ppl"] = std::exp(figures["val_loss"]);
    if (!e.report.empty()) {
      std::map<std::string, double> kept;
      for (const auto& name : e.report) {
        auto it = figures.find(name);
        if (it == figures.end()) {
          std::vector<std::string> have;
          for (const auto& [k, v] : figures) have.push_back(k);
          error("suite ", suite.name, ": evaluation '", e.name, "' reports no figure '", name, "' (it has: ", join(have), ")");
        }
        kept[name] = it->second;
      }
      figures = kept;
    }
    std::printf("eval %s/%s: %zu figures\n", suite.name.c_str(), e.name.c_str(), figures.size());
    r.results.emplace_back(e.name, figures);
  }
  return r;
}

std::string suite_markdown(const SuiteResults& r) {
  std::ostringstream os;
  os << "# " << r.suite << ": " << r.run << " (" << r.kind << ", step " << r.step << ")\n\n"
     << "| evaluation | figure | value |\n| --- | --- | ---: |\n";
  for (const auto& [name, figures] : r.results)
    for (const auto& [k, v] : figures) os << "| " << name << " | " << k << " | " << format_figure(v) << " |\n";
  if (!r.skipped.empty()) os << "\nskipped:\n";
  for (const auto& s : r.skipped) os << "- " << s << "\n";
  return os.str();
}

std::string write_suite_results(const std::string& run_dir, const SuiteResults& r) {
  const fs::path dir = fs::path(run_dir) / "eval";
  fs::create_directories(dir);
  nlohmann::ordered_json j;
  j["run"] = r.run;
  j["suite"] = r.suite;
  j["kind"] = r.kind;
  j["step"] = r.step;
  nlohmann::ordered_json results = nlohmann::ordered_json::object();
  for (const auto& [name, figures] : r.results) results[name] = figures;
  j["results"] = results;
  j["skipped"] = r.skipped;
  const std::string json_path = (dir / (r.suite + ".json")).string();
  write_atomic(json_path, j.dump(2) + "\n");
  write_atomic((dir / (r.suite + ".md")).string(), suite_markdown(r));
  return json_path;
}

SuiteResults read_suite_results(const std::string& path) {
  std::ifstream in(path);
  if (!in) error("eval --compare: cannot open ", path, " (run fm eval RUN --suite SUITE.ini first)");
  SuiteResults r;
  try {
    const nlohmann::ordered_json j = nlohmann::ordered_json::parse(in);
    r.run = j.at("run").get<std::string>();
    r.suite = j.at("suite").get<std::string>();
    r.kind = j.at("kind").get<std::string>();
    r.step = j.at("step").get<int64_t>();
    for (const auto& [name, figures] : j.at("results").items())
      r.results.emplace_back(name, figures.get<std::map<std::string, double>>());
    r.skipped = j.value("skipped", std::vector<std::string>{});
  } catch (const nlohmann::json::exception& e) {
    error("eval --compare: ", path, ": not a suite results file (", e.what(), ")");
  }
  return r;
}

std::string compare_markdown(const SuiteResults& a, const SuiteResults& b) {
  std::ostringstream os;
  os << "# " << a.suite << ": A = " << a.run << " (step " << a.step << "), B = " << b.run << " (step " << b.step
     << ")\n\n| evaluation | figure | A | B | B - A |\n| --- | --- | ---: | ---: | ---: |\n";
  auto find = [](const SuiteResults& r, const std::string& name) -> const std::map<std::string, double>* {
    for (const auto& [n, f] : r.results)
      if (n == name) return &f;
    return nullptr;
  };
  std::vector<std::string> names;
  for (const auto& [n, f] : a.results) names.push_back(n);
  for (const auto& [n, f] : b.results)
    if (!find(a, n)) names.push_back(n);
  for (const auto& name : names) {
    const auto *fa = find(a, name), *fb = find(b, name);
    std::set<std::string> keys;
    for (const auto* f : {fa, fb})
      if (f)
        for (const auto& [k, v] : *f) keys.insert(k);
    for (const auto& k : keys) {
      const bool ha = fa && fa->count(k), hb = fb && fb->count(k);
      os << "| " << name << " | " << k << " | " << (ha ? format_figure(fa->at(k)) : "-") << " | "
         << (hb ? format_figure(fb->at(k)) : "-") << " | "
         << (ha && hb ? format_figure(fb->at(k) - fa->at(k)) : "-") << " |\n";
    }
  }
  return os.str();
}

}  // namespace fm::train
