#pragma once
// Parity with PyTorch: a fixture file written by a script in tests/fixtures/
// (tensors: "input.*", "param.*", "param_grad.*", outputs; options in the
// metadata), and a comparer that checks each tensor at a relative tolerance
// and prints the worst error of a case.
#include <filesystem>
#include <iostream>
#include <set>

#include "fm/io/safetensors.h"
#include "fm/nn/module.h"
#include "helpers.h"

namespace fm::test {

class ParityFixture {
 public:
  explicit ParityFixture(const std::string& file)
      : name_(file),
        st_(io::load_safetensors((std::filesystem::path(__FILE__).parent_path() / "fixtures" / file).string())) {}

  bool has(const std::string& key) const { return st_.tensors.count(key) > 0; }
  Tensor get(const std::string& key) const {
    auto it = st_.tensors.find(key);
    if (it == st_.tensors.end()) throw Error(name_ + ": no tensor '" + key + "'");
    return it->second.clone();  // off the file mapping
  }
  // A floating input as a leaf that collects its gradient.
  Tensor input_leaf(const std::string& key) const { return get("input." + key).requires_grad_(true); }
  std::string meta(const std::string& key) const {
    auto it = st_.metadata.find(key);
    if (it == st_.metadata.end()) throw Error(name_ + ": no metadata '" + key + "'");
    return it->second;
  }
  int64_t option(const std::string& key) const { return std::stoll(meta(key)); }
  // The "param.<name>" tensors by parameter name.
  nn::StateDict params() const {
    nn::StateDict sd;
    for (const auto& [key, t] : st_.tensors)
      if (key.rfind("param.", 0) == 0) sd[key.substr(6)] = t;
    return sd;
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  io::Safetensors st_;
};

// Compares tensors of one case; prints how many and the worst error at the end.
struct Comparer {
  Comparer(const ParityFixture& fixture, double tolerance) : f(fixture), tol(tolerance) {}
  const ParityFixture& f;
  double tol;
  double worst = 0;
  std::string worst_name;
  int compared = 0;
  void operator()(const std::string& what, const Tensor& actual, const Tensor& expected) {
    ASSERT_TRUE(actual.defined()) << f.name() << ": " << what << " was not computed";
    const double e = rel_err(actual, expected);
    EXPECT_LT(e, tol) << f.name() << ": " << what << " (shape " << actual.shape() << " vs " << expected.shape() << ")";
    ++compared;
    if (e >= worst) worst = e, worst_name = what;
  }
  ~Comparer() {
    std::cout << f.name() << ": " << compared << " tensors, max relative error " << worst << " (" << worst_name << ")\n";
  }
};

// The model's parameter names and shapes equal the fixture's "param.*"
// tensors, both ways (every mismatch reported).
inline void expect_same_parameters(const nn::Module& model, const ParityFixture& f) {
  const nn::StateDict reference = f.params();
  std::set<std::string> ours, theirs;
  for (const auto& p : model.named_parameters()) {
    ours.insert(p.name);
    auto it = reference.find(p.name);
    if (it == reference.end()) {
      ADD_FAILURE() << f.name() << ": libfm's " << p.name << " " << p.tensor.shape() << " is not in the PyTorch reference";
      continue;
    }
    EXPECT_EQ(p.tensor.shape(), it->second.shape()) << f.name() << ": " << p.name;
  }
  for (const auto& [name, t] : reference) {
    theirs.insert(name);
    EXPECT_TRUE(ours.count(name)) << f.name() << ": the reference's " << name << " " << t.shape() << " is not in libfm's model";
  }
  EXPECT_EQ(ours.size(), model.named_parameters().size()) << f.name() << ": duplicate parameter names";
  EXPECT_EQ(ours, theirs);
}

}  // namespace fm::test
