#include "fm/nn/lora.h"

#include "fm/error.h"
#include "fm/strings.h"

namespace fm::nn {
namespace {

bool glob(const char* p, const char* s) {
  // Iterative matcher with one backtrack point: linear in practice.
  const char *star = nullptr, *resume = nullptr;
  while (*s) {
    if (*p == '?' || (*p && *p != '*' && *p == *s)) {
      ++p, ++s;
    } else if (*p == '*') {
      star = p++;
      resume = s;
    } else if (star) {
      p = star + 1;
      s = ++resume;
    } else {
      return false;
    }
  }
  while (*p == '*') ++p;
  return !*p;
}

void collect_linears(const std::string& prefix, Module& m, std::vector<std::pair<std::string, Linear*>>* out) {
  for (auto& [name, child] : m.named_children()) {
    const std::string full = prefix.empty() ? name : prefix + "." + name;
    if (auto* l = dynamic_cast<Linear*>(child)) out->push_back({full, l});
    collect_linears(full, *child, out);
  }
}

}  // namespace

bool name_matches(const std::string& pattern, const std::string& name) {
  if (glob(pattern.c_str(), name.c_str())) return true;
  if (pattern.find('.') != std::string::npos) return false;
  const size_t dot = name.rfind('.');
  return dot != std::string::npos && glob(pattern.c_str(), name.c_str() + dot + 1);
}

bool matches_any(const std::vector<std::string>& patterns, const std::string& name) {
  for (const auto& p : patterns)
    if (name_matches(p, name)) return true;
  return false;
}

std::vector<std::pair<std::string, Linear*>> named_linears(Module& m) {
  std::vector<std::pair<std::string, Linear*>> out;
  collect_linears("", m, &out);
  return out;
}

std::vector<std::string> add_lora(Module& m, const std::vector<std::string>& patterns, const LoraOptions& o,
                                  Generator* gen) {
  if (patterns.empty()) error("add_lora: no target patterns");
  std::vector<std::string> adapted, all;
  for (auto& [name, layer] : named_linears(m)) {
    all.push_back(name);
    if (!matches_any(patterns, name)) continue;
    layer->add_lora(o, gen);
    adapted.push_back(name);
  }
  if (adapted.empty())
    error("add_lora: no Linear layer matches '", join(patterns), "'; the model's Linear layers are: ",
          all.empty() ? "(none)" : join(all));
  return adapted;
}

void merge_lora(Module& m) {
  for (auto& [name, layer] : named_linears(m))
    if (layer->has_lora() && !layer->lora_merged()) layer->merge_lora();
}

void unmerge_lora(Module& m) {
  for (auto& [name, layer] : named_linears(m))
    if (layer->lora_merged()) layer->unmerge_lora();
}

void merge_and_unload_lora(Module& m) {
  for (auto& [name, layer] : named_linears(m)) {
    if (!layer->has_lora()) continue;
    if (!layer->lora_merged()) layer->merge_lora();
    layer->remove_lora();
  }
}

}  // namespace fm::nn
