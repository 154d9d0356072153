#pragma once
// The corrupt-input corpus (tests/fixtures/corrupt/, made by
// tests/fixtures/make_corrupt.py) as parameterised GoogleTest cases. Each
// test file maps the manifest's reader names it can run to a call; every
// case then checks, per the manifest:
//   error  one fm::Error whose message names the file (its base name) and the
//          manifest's mention, nothing else thrown
//   skip   no error, at least one skip counted, a skip message that holds
//          the mention
//   ok     no error, no skip
// and for all of them: an answer within kCaseSeconds and a peak RSS that
// grows by less than kCaseRssMiB (huge declared sizes are refused before
// they are allocated).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fm/error.h"

namespace fm::test {

constexpr double kCaseSeconds = 30;
constexpr long kCaseRssMiB = 256;

struct CorruptCase {
  std::string reader, expect, file, mention, why;
};

// GoogleTest prints a case by its file (not as bytes).
inline void PrintTo(const CorruptCase& c, std::ostream* os) { *os << c.file; }

// What a reader did with a file that it did not refuse.
struct ReadOutcome {
  int64_t skipped = 0;
  std::vector<std::string> messages;  // the skip messages
};
using CorruptReader = std::function<ReadOutcome(const std::string& path)>;

inline std::filesystem::path corrupt_dir() {
  namespace fs = std::filesystem;
  fs::path tests = fs::path(__FILE__).parent_path();
  // A relative __FILE__ (ccache's base_dir) is relative to the build
  // directory, where the compiler ran: the parent of the binary's tests/.
  if (tests.is_relative()) tests = fs::read_symlink("/proc/self/exe").parent_path().parent_path() / tests;
  return tests / "fixtures" / "corrupt";
}

// The manifest's cases whose reader is one of `readers`.
inline std::vector<CorruptCase> corrupt_cases(const std::vector<std::string>& readers) {
  std::vector<CorruptCase> out;
  std::ifstream in(corrupt_dir() / "cases.txt");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string field; std::getline(ss, field, '\t');) f.push_back(field);
    if (f.size() != 5) {
      std::fprintf(stderr, "cases.txt: malformed line: %s\n", line.c_str());
      std::abort();  // a broken manifest must not pass as zero cases
    }
    for (const auto& r : readers)
      if (f[0] == r) out.push_back({f[0], f[1], f[2], f[3] == "-" ? "" : f[3], f[4]});
  }
  return out;
}

// A GoogleTest-safe name: "safetensors/empty.safetensors" -> "safetensors_empty_safetensors".
inline std::string case_name(const ::testing::TestParamInfo<CorruptCase>& info) {
  std::string n = info.param.file;
  for (char& c : n)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

inline long peak_rss_kib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

// Runs `reader` on the case's file on its own thread (so a hang is reported
// rather than waited on) and checks the outcome against the manifest.
inline void run_corrupt_case(const CorruptCase& c, const CorruptReader& reader) {
  SCOPED_TRACE(c.file + " (" + c.why + ")");
  const std::string path = (corrupt_dir() / c.file).string();
  const std::string base = std::filesystem::path(c.file).filename().string();
  ASSERT_TRUE(std::filesystem::exists(path)) << "run tests/fixtures/make_corrupt.py";
  struct Result {
    bool threw_fm = false, threw_other = false;
    std::string what;
    ReadOutcome outcome;
  };
  const long rss_before = peak_rss_kib();
  const auto start = std::chrono::steady_clock::now();
  std::packaged_task<Result()> task([&] {
    Result r;
    try {
      r.outcome = reader(path);
    } catch (const Error& e) {
      r.threw_fm = true, r.what = e.what();
    } catch (const std::exception& e) {
      r.threw_other = true, r.what = e.what();
    } catch (...) {
      r.threw_other = true, r.what = "(not a std::exception)";
    }
    return r;
  });
  std::future<Result> done = task.get_future();
  std::thread worker(std::move(task));
  if (done.wait_for(std::chrono::duration<double>(kCaseSeconds)) != std::future_status::ready) {
    std::fprintf(stderr, "FAILED: %s: no answer after %.0f s (a hang)\n", c.file.c_str(), kCaseSeconds);
    std::fflush(stderr);
    std::_Exit(1);  // the worker cannot be stopped; the test fails here
  }
  worker.join();
  const Result r = done.get();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const long grew_mib = (peak_rss_kib() - rss_before) / 1024;

  if (std::getenv("FM_CORRUPT_VERBOSE"))  // to review the messages: FM_CORRUPT_VERBOSE=1 ./test_corrupt_...
    std::printf("%s: %s%s (%.3f s, peak RSS +%ld MiB)\n", c.file.c_str(), r.what.c_str(),
                r.outcome.messages.empty() ? "" : r.outcome.messages.front().c_str(), seconds, grew_mib);
  EXPECT_FALSE(r.threw_other) << "threw something other than fm::Error: " << r.what;
  EXPECT_LT(seconds, kCaseSeconds);
  EXPECT_LT(grew_mib, kCaseRssMiB) << "peak RSS grew by " << grew_mib << " MiB";
  if (c.expect == "error") {
    ASSERT_TRUE(r.threw_fm) << "expected an fm::Error; got " << r.outcome.skipped << " skips";
    if (c.reader != "overrides")  // command-line arguments come from no file: the mention names the key
      EXPECT_NE(r.what.find(base), std::string::npos) << "the error does not name the file: " << r.what;
    EXPECT_NE(r.what.find(c.mention), std::string::npos) << "the error does not mention '" << c.mention << "': " << r.what;
    return;
  }
  ASSERT_FALSE(r.threw_fm) << "unexpected fm::Error: " << r.what;
  if (c.expect == "ok") {
    EXPECT_EQ(r.outcome.skipped, 0);
    return;
  }
  ASSERT_EQ(c.expect, "skip");
  EXPECT_GT(r.outcome.skipped, 0) << "nothing was counted as skipped";
  std::string all;
  for (const auto& m : r.outcome.messages) all += m + "\n";
  EXPECT_NE(all.find(c.mention), std::string::npos) << "no skip message mentions '" << c.mention << "':\n" << all;
  EXPECT_NE(all.find(base), std::string::npos) << "no skip message names the file:\n" << all;
}

}  // namespace fm::test
