#include "api_error.h"

#include <nlohmann/json.hpp>

namespace fm::app::serve {
namespace {

const char* error_type(int status) {
  switch (status) {
    case 400: return "invalid_request_error";
    case 404: return "not_found_error";
    case 405: return "method_not_allowed";
    case 413: return "request_too_large";
    case 503: return "server_overloaded";
    case 504: return "timeout";
    default: return status < 500 ? "invalid_request_error" : "server_error";
  }
}

}  // namespace

std::string error_body(int status, const std::string& message, const std::string& param) {
  nlohmann::json e = {{"message", message}, {"type", error_type(status)}, {"param", nullptr}};
  if (!param.empty()) e["param"] = param;
  return nlohmann::json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace fm::app::serve
