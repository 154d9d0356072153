#pragma once
// The JSON bodies fm serve accepts, checked field by field: a malformed body
// or a field of the wrong type or range throws ApiError 400 naming the field.
// Fields the API does not know are ignored (clients send OpenAI's whole
// set); known ones asking for what is not implemented (n > 1, logprobs,
// echo, penalties) are refused rather than silently dropped.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fm::app::serve {

// POST /v1/completions (OpenAI's legacy completions, plus top_k).
struct CompletionRequest {
  std::string model;  // echoed back; one model is served whatever it names
  std::string prompt;
  int64_t max_tokens = 16;
  double temperature = 1.0;  // 0: greedy
  double top_p = 1.0;
  int64_t top_k = 0;         // 0: all tokens
  std::optional<uint64_t> seed;  // absent: a random one
  std::vector<std::string> stop;  // up to 4 strings that end the text (not included)
  bool stream = false;
};
CompletionRequest parse_completion(const std::string& body);

// POST /v1/images/generations: one PNG.
struct ImageRequest {
  std::string prompt;
  std::optional<int64_t> steps;      // absent: the run's diffusion.steps
  std::optional<double> guidance;    // classifier-free guidance scale (absent: the run's)
  std::optional<std::string> sampler;  // absent: the run's
  std::optional<uint64_t> seed;
};
ImageRequest parse_image(const std::string& body);

// POST /v1/audio/generations: one WAV.
struct AudioRequest {
  std::string prompt;
  std::optional<double> seconds;  // absent: the longest the model makes
  std::optional<double> guidance, temperature;
  std::optional<int64_t> top_k;
  std::optional<uint64_t> seed;
};
AudioRequest parse_audio(const std::string& body);

}  // namespace fm::app::serve
