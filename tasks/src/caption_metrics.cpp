// Caption metrics written to give pycocoevalcap 1.2's numbers, quirks
// included (checked against it by tests/tasks/test_caption_metrics.cpp).
#include "fm/tasks/caption_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace fm::tasks {
namespace {

constexpr int kMaxN = 4;

void check_corpus(const std::vector<CaptionExample>& examples) {
  if (examples.empty()) throw std::invalid_argument("caption metrics: empty corpus");
  for (const CaptionExample& ex : examples)
    if (ex.references.empty()) throw std::invalid_argument("caption metrics: an example has no references");
}

// Python's str.split(): runs of whitespace, which for ASCII includes 0x1c-0x1f.
bool is_python_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_python_space(s[i])) ++i;
    const size_t start = i;
    while (i < s.size() && !is_python_space(s[i])) ++i;
    if (i > start) words.emplace_back(s, start, i - start);
  }
  return words;
}

// Python's str.split(" "), which ROUGE uses: every single space cuts, so
// doubled spaces give empty words.
std::vector<std::string> split_on_space(const std::string& s) {
  std::vector<std::string> words;
  size_t start = 0;
  for (size_t cut; (cut = s.find(' ', start)) != std::string::npos; start = cut + 1) words.emplace_back(s, start, cut - start);
  words.emplace_back(s, start);
  return words;
}

// Counts of the 1..4-grams of a sentence, one map per order, keyed by the
// n-gram's words joined with spaces (words hold no spaces).
using NgramCounts = std::array<std::unordered_map<std::string, int>, kMaxN>;

NgramCounts count_ngrams(const std::vector<std::string>& words) {
  NgramCounts counts;
  for (size_t n = 1; n <= kMaxN; ++n)
    for (size_t i = 0; i + n <= words.size(); ++i) {
      std::string key = words[i];
      for (size_t j = 1; j < n; ++j) key.append(" ").append(words[i + j]);
      ++counts[n - 1][key];
    }
  return counts;
}

size_t lcs_length(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<size_t> prev(b.size() + 1, 0), row(b.size() + 1, 0);
  for (const std::string& x : a) {
    for (size_t j = 1; j <= b.size(); ++j) row[j] = x == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], row[j - 1]);
    std::swap(prev, row);
  }
  return prev[b.size()];
}

// A sentence's tf-idf vector for CIDEr-D.
struct TfIdf {
  std::array<std::unordered_map<std::string, double>, kMaxN> weight;
  std::array<double, kMaxN> norm{};
  double length = 0;
};

}  // namespace

std::array<double, 4> bleu(const std::vector<CaptionExample>& examples) {
  check_corpus(examples);
  // pycocoevalcap's constants: a zero count gives (0 + tiny) / (0 + small), not 0 / 0.
  constexpr double kSmall = 1e-9, kTiny = 1e-15;
  long test_len = 0, ref_len = 0;
  std::array<long, kMaxN> correct{}, guess{};
  for (const CaptionExample& ex : examples) {
    const std::vector<std::string> candidate = split_words(ex.candidate);
    const long len = static_cast<long>(candidate.size());
    NgramCounts max_ref;  // each n-gram's largest count in any one reference
    long closest = -1;    // the reference length nearest the candidate's, the shorter on a tie
    for (const std::string& r : ex.references) {
      const std::vector<std::string> words = split_words(r);
      const long rl = static_cast<long>(words.size());
      if (closest < 0 || std::labs(rl - len) < std::labs(closest - len) ||
          (std::labs(rl - len) == std::labs(closest - len) && rl < closest))
        closest = rl;
      const NgramCounts counts = count_ngrams(words);
      for (int n = 0; n < kMaxN; ++n)
        for (const auto& [ngram, c] : counts[n]) max_ref[n][ngram] = std::max(max_ref[n][ngram], c);
    }
    test_len += len;
    ref_len += closest;
    const NgramCounts counts = count_ngrams(candidate);
    for (int n = 0; n < kMaxN; ++n) {
      guess[n] += std::max(0L, len - n);
      for (const auto& [ngram, c] : counts[n]) {
        const auto it = max_ref[n].find(ngram);
        if (it != max_ref[n].end()) correct[n] += std::min(c, it->second);
      }
    }
  }
  std::array<double, 4> scores{};
  double product = 1.0;
  for (int n = 0; n < kMaxN; ++n) {
    product *= (correct[n] + kTiny) / (guess[n] + kSmall);
    scores[n] = std::pow(product, 1.0 / (n + 1));
  }
  const double ratio = (test_len + kTiny) / (ref_len + kSmall);  // one brevity penalty for the corpus
  if (ratio < 1)
    for (double& s : scores) s *= std::exp(1 - 1 / ratio);
  return scores;
}

double rouge_l(const std::vector<CaptionExample>& examples) {
  check_corpus(examples);
  constexpr double kBeta2 = 1.2 * 1.2;
  double sum = 0;
  for (const CaptionExample& ex : examples) {
    const std::vector<std::string> candidate = split_on_space(ex.candidate);
    double precision = 0, recall = 0;  // the maxima over references, taken separately
    for (const std::string& r : ex.references) {
      const std::vector<std::string> words = split_on_space(r);
      const double lcs = static_cast<double>(lcs_length(words, candidate));
      precision = std::max(precision, lcs / candidate.size());
      recall = std::max(recall, lcs / words.size());
    }
    if (precision != 0 && recall != 0) sum += ((1 + kBeta2) * precision * recall) / (recall + kBeta2 * precision);
  }
  return sum / examples.size();
}

double cider_d(const std::vector<CaptionExample>& examples) {
  check_corpus(examples);
  constexpr double kSigma = 6.0;
  std::vector<NgramCounts> candidates;
  std::vector<std::vector<NgramCounts>> references(examples.size());
  // Document frequency: the number of images whose references hold the n-gram.
  std::array<std::unordered_map<std::string, double>, kMaxN> doc_freq;
  for (size_t i = 0; i < examples.size(); ++i) {
    candidates.push_back(count_ngrams(split_words(examples[i].candidate)));
    std::array<std::unordered_set<std::string>, kMaxN> seen;
    for (const std::string& r : examples[i].references) {
      references[i].push_back(count_ngrams(split_words(r)));
      for (int n = 0; n < kMaxN; ++n)
        for (const auto& entry : references[i].back()[n]) seen[n].insert(entry.first);
    }
    for (int n = 0; n < kMaxN; ++n)
      for (const std::string& ngram : seen[n]) doc_freq[n][ngram] += 1;
  }
  // The idf's numerator: log of the number of images, 0 for a single image.
  const double log_images = std::log(static_cast<double>(examples.size()));
  const auto tfidf = [&](const NgramCounts& counts) {
    TfIdf t;
    for (int n = 0; n < kMaxN; ++n) {
      for (const auto& [ngram, tf] : counts[n]) {
        const auto it = doc_freq[n].find(ngram);
        const double df = it == doc_freq[n].end() ? 0.0 : it->second;
        const double w = tf * (log_images - std::log(std::max(1.0, df)));
        t.weight[n][ngram] = w;
        t.norm[n] += w * w;
      }
      t.norm[n] = std::sqrt(t.norm[n]);
    }
    // pycocoevalcap's length is the number of bigrams (its `n == 1` counts
    // 0-based orders), i.e. words - 1, not the number of words.
    for (const auto& entry : counts[1]) t.length += entry.second;
    return t;
  };
  double total = 0;
  for (size_t i = 0; i < examples.size(); ++i) {
    const TfIdf hyp = tfidf(candidates[i]);
    std::array<double, kMaxN> score{};
    for (const NgramCounts& r : references[i]) {
      const TfIdf ref = tfidf(r);
      const double delta = hyp.length - ref.length;
      const double penalty = std::exp(-(delta * delta) / (2 * kSigma * kSigma));
      for (int n = 0; n < kMaxN; ++n) {
        double val = 0;
        for (const auto& [ngram, w] : hyp.weight[n]) {
          const auto it = ref.weight[n].find(ngram);
          const double w_ref = it == ref.weight[n].end() ? 0.0 : it->second;
          val += std::min(w, w_ref) * w_ref;  // the candidate's weight clipped at the reference's
        }
        if (hyp.norm[n] != 0 && ref.norm[n] != 0) val /= hyp.norm[n] * ref.norm[n];
        score[n] += val * penalty;
      }
    }
    const double mean_over_orders = (score[0] + score[1] + score[2] + score[3]) / kMaxN;
    total += mean_over_orders / examples[i].references.size() * 10.0;
  }
  return total / examples.size();
}

CaptionScores caption_scores(const std::vector<CaptionExample>& examples) {
  CaptionScores s{};
  const std::array<double, 4> b = bleu(examples);
  std::copy(b.begin(), b.end(), s.bleu);
  s.rouge_l = rouge_l(examples);
  s.cider_d = cider_d(examples);
  return s;
}

namespace {

// The characters behind PTBTokenizer's PUNCTUATIONS ('' ' `` ` -LRB- -RRB-
// -LCB- -RCB- . ? ! , : - -- ... ;): PTB writes ( ) { } as -LRB- etc. and "
// as `` or ''.
bool is_dropped_punctuation(char c) { return std::string_view("'\"`(){}.?!,:;-").find(c) != std::string_view::npos; }

// Where PTB would split a clitic off the word (its own, kept, token).
size_t clitic_start(std::string_view word) {
  for (std::string_view clitic : {"n't", "'s", "'re", "'ll", "'ve", "'m", "'d"})
    if (word.size() > clitic.size() && word.substr(word.size() - clitic.size()) == clitic)
      return word.size() - clitic.size();
  return word.size();
}

}  // namespace

std::string normalize_caption(const std::string& s) {
  std::string out;
  const auto emit = [&](std::string_view w) {
    if (w.empty()) return;
    if (!out.empty()) out += ' ';
    out += w;
  };
  for (std::string word : split_words(s)) {
    for (char& c : word)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    size_t begin = 0, end = word.size();
    while (begin < end && is_dropped_punctuation(word[begin])) ++begin;
    while (end > begin && is_dropped_punctuation(word[end - 1])) --end;
    const std::string_view core(word.data() + begin, end - begin);
    const size_t cut = clitic_start(core);
    emit(core.substr(0, cut));
    emit(core.substr(cut));
  }
  return out;
}

}  // namespace fm::tasks
