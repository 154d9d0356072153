#pragma once
// fm::nn::Module: the base of every layer and model, as in libtorch. A module
// registers named parameters, buffers and child modules; names compose into
// paths ("blocks.0.attn.qkv.weight") for state dicts and checkpoints.
// Parameter handles stay valid when a model is moved or flattened: those
// rebind the tensors' storage in place.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fm/tensor.h"

namespace fm::nn {

// Tags that optimizers read instead of guessing from names or indices.
enum ParamTag : uint32_t {
  kNoDecay = 1u << 0,  // norms, biases, embeddings: no weight decay by default
};

struct NamedTensor {
  std::string name;
  Tensor tensor;
  uint32_t tags = 0;
};

// name -> tensor; the tensors share storage with the module's.
using StateDict = std::map<std::string, Tensor>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  std::vector<NamedTensor> named_parameters() const;  // in registration order, depth first
  std::vector<Tensor> parameters() const;
  std::vector<NamedTensor> named_buffers() const;
  std::vector<std::pair<std::string, Module*>> named_children() const;

  // Parameters and buffers by full name.
  StateDict state_dict() const;
  // Copies values in (converting dtype and device). Strict: every name must
  // match both ways; all mismatches (missing, unexpected, shape) are listed
  // in one fm::Error, and nothing is changed when there are any.
  void load_state_dict(const StateDict& state, bool strict = true);

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves or converts every parameter and buffer in place (floating ones
  // only for dtype); handles held elsewhere see the change.
  void to(Device device);
  void to(DType dtype);

  int64_t num_parameters() const;
  void zero_grad();  // zeroes gradient buffers (keeps them allocated)

 protected:
  Tensor register_parameter(const std::string& name, Tensor t, uint32_t tags = 0);
  Tensor register_buffer(const std::string& name, Tensor t);
  void remove_parameter(const std::string& name);  // an error when there is none of that name
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    check_new_name(name);
    children_.emplace_back(name, m);
    return m;
  }

 private:
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, std::vector<NamedTensor>* out, bool buffers) const;

  std::vector<NamedTensor> params_;
  std::vector<NamedTensor> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// An indexed list of modules of one type; children are named "0", "1", ...
template <class M>
class ModuleList : public Module {
 public:
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    items_.push_back(register_module(std::to_string(items_.size()), std::move(m)));
    return items_.back();
  }
  M& operator[](size_t i) const { return *items_.at(i); }
  size_t size() const { return items_.size(); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

// Makes `dst` (every handle sharing its impl) hold `src`'s data: storage,
// shape, strides and dtype. Used to move and flatten parameters in place.
void rebind(const Tensor& dst, const Tensor& src);

}  // namespace fm::nn
