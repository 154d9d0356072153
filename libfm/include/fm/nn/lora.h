#pragma once
// LoRA over a whole model, and selecting layers and parameters by name
// pattern (what fine-tuning recipes write: `lora_targets = qkv, proj`).
#include <string>
#include <utility>
#include <vector>

#include "fm/nn/layers.h"

namespace fm::nn {

// Shell-style pattern (`*` any run of characters, dots included; `?` one
// character) against a full name. A pattern without a dot also matches the
// last component, as peft's target_modules do: "qkv" matches
// "transformer.blocks.0.attn.qkv".
bool name_matches(const std::string& pattern, const std::string& name);
bool matches_any(const std::vector<std::string>& patterns, const std::string& name);

// Every Linear in m by full module name, depth first.
std::vector<std::pair<std::string, Linear*>> named_linears(Module& m);

// Adds an adapter to every Linear whose name matches one of `patterns`;
// returns their names. No match at all is an error listing the model's
// Linear layers, so a mistyped pattern is caught.
std::vector<std::string> add_lora(Module& m, const std::vector<std::string>& patterns, const LoraOptions& o,
                                  Generator* gen = nullptr);
void merge_lora(Module& m);    // every adapted layer
void unmerge_lora(Module& m);  // every merged layer, bit for bit
// Merges every adapter and drops its parameters: a plain model again, whose
// state dict has the base model's names (peft's merge_and_unload).
void merge_and_unload_lora(Module& m);

}  // namespace fm::nn
