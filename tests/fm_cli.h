#pragma once
// Running the fm command from a test program: build/tests/test_X sits beside
// build/bin/fm. For the data-generator tests that check `fm prepare ...`.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace fm::test {

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::filesystem::path fm_binary() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path() / "bin" / "fm";
}

struct FmRun {
  int code;            // exit status, -1 when fm did not exit normally
  std::string output;  // stdout and stderr
};

// Runs `fm ARGS` with its output in dir/fm.log.
inline FmRun run_fm(const std::string& args, const std::filesystem::path& dir) {
  const std::filesystem::path log = dir / "fm.log";
  const int status = std::system((fm_binary().string() + " " + args + " > " + log.string() + " 2>&1").c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(log)};
}

}  // namespace fm::test
