#pragma once
// An HTTP error of fm serve's API, sent as OpenAI sends them:
//   {"error": {"message": ..., "type": ..., "param": ...}}
#include <stdexcept>
#include <string>

namespace fm::app::serve {

struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string param = "")
      : std::runtime_error(message), status(status), param(std::move(param)) {}
  int status;
  std::string param;  // the request field at fault (empty: none)
};

// The error's JSON body; its "type" follows from the status.
std::string error_body(int status, const std::string& message, const std::string& param = "");

}  // namespace fm::app::serve
