#pragma once
// GPT-2 in Hugging Face's layout, read and written: a directory with
//   config.json        GPT2Config (n_layer, n_head, n_embd, n_positions,
//                      vocab_size, layer_norm_epsilon, activation_function, ...)
//   model.safetensors  "transformer.h.0.attn.c_attn.weight" ... (the prefix is
//                      optional on reading: GPT2Model saves without it)
//   vocab.json, merges.txt  GPT-2's byte-level BPE tokenizer files (optional;
//                      or tokenizer.json)
// as transformers' GPT2LMHeadModel.from_pretrained / save_pretrained use it.
// HF's attention and MLP layers are Conv1D, weight [in, out]: the transpose
// of libfm's Linear [out, in]; c_attn's output is q | k | v, as libfm's qkv.
// gelu_new (the tanh approximation) is libfm's "gelu_tanh".
#include <memory>
#include <optional>
#include <string>

#include "fm/io/safetensors.h"
#include "fm/nn/gpt.h"
#include "fm/text/bpe.h"

namespace fm::tasks {

// config.json of `dir` -> GPTOptions. Configs libfm's GPT cannot compute
// exactly (another activation, n_inner != 4 n_embd, cross-attention, layer-
// scaled attention, ...) are refused with an fm::Error naming the file and key.
nn::GPTOptions read_hf_gpt2_config(const std::string& dir);

// The GPT of an HF GPT-2 directory (every tensor checked: all missing and
// unexpected names, and wrong shapes, in one error naming the file).
std::unique_ptr<nn::GPT> load_hf_gpt2(const std::string& dir);

// The model's weights under HF's names ("transformer." prefix, Conv1D
// weights transposed, lm_head.weight only when untied), and back.
io::TensorMap to_hf_gpt2_tensors(const nn::GPT& model);
nn::StateDict from_hf_gpt2_tensors(const io::TensorMap& hf, const nn::GPTOptions& o, const std::string& source);

// Writes model.safetensors (metadata {"format": "pt"}) and config.json into
// `dir` (created if needed), and the tokenizer's files when one is given
// (then bos/eos_token_id are its <|endoftext|>). Refuses models HF's GPT-2
// cannot express (no biases, an activation other than gelu / gelu_tanh).
void save_hf_gpt2(const nn::GPT& model, const std::string& dir, const text::BpeTokenizer* tokenizer = nullptr);

// vocab.json + merges.txt of `dir`; without them, tokenizer.json (all that
// transformers 5 saves) when it is GPT-2's byte-level BPE; nullopt when
// there is neither. Merge n must make token 256 + n (GPT-2's layout; see
// BpeTokenizer::from_gpt2_files).
std::optional<text::BpeTokenizer> load_hf_gpt2_tokenizer(const std::string& dir);

// Writes vocab.json (tokens spelt in GPT-2's byte-to-unicode alphabet, special
// tokens as their text), merges.txt (each token above the 256 bytes as the
// pair of earlier tokens that BPE merges into it, in id order) and
// tokenizer_config.json. Errors when a token cannot be made by one merge of
// two earlier tokens, or the ids are not GPT-2's layout (bytes, then merges).
void save_hf_gpt2_tokenizer(const text::BpeTokenizer& tokenizer, const std::string& dir,
                            int64_t model_max_length = 0);

}  // namespace fm::tasks
