#include "requests.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "api_error.h"

namespace fm::app::serve {
namespace {

using json = nlohmann::json;

json parse_object(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, std::string("the body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, "the body must be a JSON object");
  return j;
}

// A field that is absent or null gives nullopt; one of another type is a 400.
const json* field(const json& j, const char* name) {
  const auto it = j.find(name);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

[[noreturn]] void bad(const char* name, const std::string& what) {
  throw ApiError(400, std::string("'") + name + "' " + what, name);
}

std::optional<std::string> get_string(const json& j, const char* name) {
  const json* f = field(j, name);
  if (!f) return std::nullopt;
  if (!f->is_string()) bad(name, "must be a string");
  return f->get<std::string>();
}

std::optional<int64_t> get_int(const json& j, const char* name, int64_t lo, int64_t hi) {
  const json* f = field(j, name);
  if (!f) return std::nullopt;
  if (!f->is_number_integer()) bad(name, "must be an integer");
  if (f->is_number_unsigned() && f->get<uint64_t>() > uint64_t(hi)) bad(name, "must be at most " + std::to_string(hi));
  const int64_t v = f->get<int64_t>();
  if (v < lo || v > hi) bad(name, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

std::optional<double> get_number(const json& j, const char* name) {
  const json* f = field(j, name);
  if (!f) return std::nullopt;
  if (!f->is_number()) bad(name, "must be a number");
  return f->get<double>();
}

std::optional<bool> get_bool(const json& j, const char* name) {
  const json* f = field(j, name);
  if (!f) return std::nullopt;
  if (!f->is_boolean()) bad(name, "must be true or false");
  return f->get<bool>();
}

std::optional<uint64_t> get_seed(const json& j) {
  const json* f = field(j, "seed");
  if (!f) return std::nullopt;
  if (!f->is_number_integer()) bad("seed", "must be an integer");
  if (!f->is_number_unsigned() && f->get<int64_t>() < 0) bad("seed", "must be >= 0");
  return f->get<uint64_t>();
}

std::string prompt_of(const json& j, bool required) {
  const json* f = field(j, "prompt");
  if (f && f->is_array()) bad("prompt", "must be a single string (lists of prompts or tokens are not supported)");
  const std::string p = get_string(j, "prompt").value_or("");
  if (required && p.find_first_not_of(" \t\r\n") == std::string::npos) bad("prompt", "must not be empty");
  return p;
}

// OpenAI fields asking for what fm serve does not do: refused unless they hold their neutral value.
void refuse_unsupported(const json& j) {
  if (const auto n = get_int(j, "n", 1, 1 << 20); n && *n != 1) bad("n", "must be 1 (one choice per request)");
  if (const auto n = get_int(j, "best_of", 1, 1 << 20); n && *n != 1) bad("best_of", "must be 1");
  if (field(j, "logprobs")) bad("logprobs", "is not supported");
  if (get_bool(j, "echo").value_or(false)) bad("echo", "is not supported");
  for (const char* p : {"presence_penalty", "frequency_penalty"})
    if (get_number(j, p).value_or(0.0) != 0.0) bad(p, "is not supported (must be 0)");
  if (const json* b = field(j, "logit_bias"); b && !(b->is_object() && b->empty()))
    bad("logit_bias", "is not supported");
  if (!get_string(j, "suffix").value_or("").empty()) bad("suffix", "is not supported");
}

}  // namespace

CompletionRequest parse_completion(const std::string& body) {
  const json j = parse_object(body);
  CompletionRequest r;
  r.model = get_string(j, "model").value_or("");
  r.prompt = prompt_of(j, false);
  r.max_tokens = get_int(j, "max_tokens", 1, 1 << 20).value_or(r.max_tokens);
  r.temperature = get_number(j, "temperature").value_or(r.temperature);
  if (!(r.temperature >= 0 && r.temperature <= 2)) bad("temperature", "must be in [0, 2]");
  r.top_p = get_number(j, "top_p").value_or(r.top_p);
  if (!(r.top_p > 0 && r.top_p <= 1)) bad("top_p", "must be in (0, 1]");
  r.top_k = get_int(j, "top_k", 0, 1 << 30).value_or(0);
  r.seed = get_seed(j);
  r.stream = get_bool(j, "stream").value_or(false);
  if (const json* s = field(j, "stop")) {
    if (s->is_string()) {
      r.stop.push_back(s->get<std::string>());
    } else if (s->is_array() && s->size() <= 4) {
      for (const json& x : *s) {
        if (!x.is_string()) bad("stop", "must be a string or a list of up to 4 strings");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", "must be a string or a list of up to 4 strings");
    }
    for (const auto& x : r.stop)
      if (x.empty()) bad("stop", "must not hold an empty string");
  }
  refuse_unsupported(j);
  return r;
}

ImageRequest parse_image(const std::string& body) {
  const json j = parse_object(body);
  ImageRequest r;
  r.prompt = prompt_of(j, true);
  r.steps = get_int(j, "steps", 1, 1000);
  r.guidance = get_number(j, "guidance");
  if (r.guidance && !(std::isfinite(*r.guidance) && *r.guidance >= 0)) bad("guidance", "must be a finite number >= 0");
  r.sampler = get_string(j, "sampler");
  r.seed = get_seed(j);
  if (const auto n = get_int(j, "n", 1, 1 << 20); n && *n != 1) bad("n", "must be 1 (one image per request)");
  return r;
}

AudioRequest parse_audio(const std::string& body) {
  const json j = parse_object(body);
  AudioRequest r;
  r.prompt = prompt_of(j, true);
  r.seconds = get_number(j, "seconds");
  if (r.seconds && !(std::isfinite(*r.seconds) && *r.seconds > 0)) bad("seconds", "must be a number > 0");
  r.guidance = get_number(j, "guidance");
  if (r.guidance && !(std::isfinite(*r.guidance) && *r.guidance >= 0)) bad("guidance", "must be a finite number >= 0");
  r.temperature = get_number(j, "temperature");
  if (r.temperature && !(std::isfinite(*r.temperature) && *r.temperature > 0))
    bad("temperature", "must be a number > 0");
  r.top_k = get_int(j, "top_k", 0, 1 << 30);
  r.seed = get_seed(j);
  return r;
}

}  // namespace fm::app::serve
