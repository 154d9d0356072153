#include "prompt_file.h"

#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "fm/error.h"

namespace fm::app {
namespace fs = std::filesystem;

std::vector<PromptLine> read_prompt_file(const std::string& path, const std::string& command) {
  std::ifstream in(path);
  if (!in) error(command, ": cannot read --prompts ", path);
  std::vector<PromptLine> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
      error(command, ": ", path, ":", n, ": not JSON (", e.what(), ")");
    }
    if (!j.is_object() || !j.contains("file") || !j.contains("caption") || !j["file"].is_string() ||
        !j["caption"].is_string())
      error(command, ": ", path, ":", n, ": expected {\"file\": ..., \"caption\": ...}");
    const std::string file = j["file"];
    if (file.empty() || fs::path(file).is_absolute() || file.find("..") != std::string::npos)
      error(command, ": ", path, ":", n, ": 'file' must be a relative path inside --out, got '", file, "'");
    out.push_back({file, j["caption"]});
  }
  if (out.empty()) error(command, ": ", path, " holds no prompts");
  return out;
}

void check_writable_dir(const fs::path& dir, const std::string& what, const std::string& command) {
  if (!fs::is_directory(dir)) error(command, ": ", what, " ", dir.string(), " is not a directory");
  if (access(dir.c_str(), W_OK) != 0) error(command, ": ", what, " ", dir.string(), " is not writable");
}

}  // namespace fm::app
