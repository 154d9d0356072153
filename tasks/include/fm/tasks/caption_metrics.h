#pragma once
// Caption metrics as pycocoevalcap 1.2 computes them (Bleu(4), Rouge, Cider),
// so libfm's captioning numbers stand beside published COCO ones. Inputs are
// already tokenised: words separated by spaces (see normalize_caption).
#include <array>
#include <string>
#include <vector>

namespace fm::tasks {

// One image's candidate caption and its references (at least one).
struct CaptionExample {
  std::string candidate;
  std::vector<std::string> references;
};

struct CaptionScores {
  double bleu[4];  // BLEU-1 .. BLEU-4
  double rouge_l;
  double cider_d;
};

// Every score below is over the whole corpus (at least one example); an empty
// corpus or an example without references throws std::invalid_argument.

// Corpus BLEU-1..4: clipped n-gram counts summed over the corpus, each
// example's reference length the one closest to its candidate's (the shorter
// on a tie), one brevity penalty on the summed lengths, and pycocoevalcap's
// 1e-15 / 1e-9 added to the counts (a zero precision gives about 1e-6, not 0).
std::array<double, 4> bleu(const std::vector<CaptionExample>& examples);

// ROUGE-L, beta 1.2: per example the largest LCS precision and the largest LCS
// recall over its references (each may come from a different one), then their
// F-measure; the mean over examples.
double rouge_l(const std::vector<CaptionExample>& examples);

// CIDEr-D (pycocoevalcap's Cider): 1..4-gram tf-idf with document frequencies
// from this corpus' references, clipped cosine similarity, a Gaussian length
// penalty (sigma 6), averaged over n-gram orders and references, times 10;
// the mean over examples. A corpus of one example scores 0 (its idf is log 1).
double cider_d(const std::vector<CaptionExample>& examples);

CaptionScores caption_scores(const std::vector<CaptionExample>& examples);

// PTB-like normalisation of a raw caption: lowercase (ASCII), split on
// whitespace, the punctuation pycocoevalcap's PTBTokenizer drops (its
// PUNCTUATIONS: ' " ` ( ) { } . ? ! , : ; - and runs of them) removed from the
// ends of each word, clitics split off as PTB does ("dog's" -> "dog 's",
// "don't" -> "do n't"), words rejoined with single spaces. Punctuation inside
// a word stays ("t-shirt", "3.5"), as in PTB.
std::string normalize_caption(const std::string& s);

}  // namespace fm::tasks
