#pragma once
// What fm generate image and fm generate music share: the prompts file
// (captions.jsonl, one {"file": ..., "caption": ...} per line, as the
// captioned-shapes and captioned-melodies specs write) and output checks.
#include <filesystem>
#include <string>
#include <vector>

namespace fm::app {

struct PromptLine {
  std::string file, caption;
};

// Errors start with `command` ("generate image") and name the file and line.
// `file` must be a relative path inside the output folder.
std::vector<PromptLine> read_prompt_file(const std::string& path, const std::string& command);

// Throws unless `dir` is a writable directory.
void check_writable_dir(const std::filesystem::path& dir, const std::string& what, const std::string& command);

}  // namespace fm::app
