// The mixed-modal layout (fm/tasks/mixed_layout.h): key ranges and the mask
// they make against a mask written out by hand, and against the rule's own
// definition on random layouts; packing (rows, pads, positions, targets).
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "fm/factory.h"
#include "fm/tasks/mixed_layout.h"

using namespace fm;
using fm::tasks::MixedPiece;
using fm::tasks::MixedSample;
using fm::tasks::Segment;
using fm::tasks::audio_piece;
using fm::tasks::image_piece;
using fm::tasks::text_piece;
using K = fm::tasks::SegmentKind;

namespace {

std::vector<std::string> mask_rows(const Tensor& mask) {  // [1, 1, T, T] -> "1" / "." per key
  const int64_t T = mask.size(2);
  const std::vector<uint8_t> m = mask.to(DType::u8).contiguous().to_vector<uint8_t>();
  std::vector<std::string> rows;
  for (int64_t q = 0; q < T; ++q) {
    std::string s;
    for (int64_t k = 0; k < T; ++k) s += m[size_t(q * T + k)] ? '1' : '.';
    rows.push_back(s);
  }
  return rows;
}

Tensor mask_of(const tasks::KeyRanges& r) {
  const int64_t T = int64_t(r.lo.size());
  return tasks::key_range_mask(tensor(r.lo, {1, T}), tensor(r.hi, {1, T}));
}

}  // namespace

TEST(MixedLayout, MaskEqualsOneWrittenByHand) {
  // Sample A: text 2, image 3, text 2. Sample B: text 1, audio 3. Then 1 pad.
  const auto r = tasks::layout_key_ranges({{{K::text, 2}, {K::image, 3}, {K::text, 2}}, {{K::text, 1}, {K::audio, 3}}}, 12);
  const std::vector<std::string> expected = {
      // keys: A t t i i i t t | B t a a a | pad
      "1...........",  // A text 0: causal
      "11..........",  // A text 1
      "11111.......",  // A image: the text before, the whole image
      "11111.......",
      "11111.......",
      "111111......",  // A text after the image: all of it, causal inside
      "1111111.....",
      ".......1....",  // B text: its own sample only (block-diagonal)
      ".......11...",  // B audio: causal (next-token codes)
      ".......111..",
      ".......1111.",
      "...........1",  // pad: itself
  };
  EXPECT_EQ(mask_rows(mask_of(r)), expected);
}

TEST(MixedLayout, LeftPaddingSeesItselfAndTheSampleStartsAfterIt) {
  const auto r = tasks::layout_key_ranges({{{K::text, 1}, {K::image, 2}}}, 5, 2);
  const std::vector<std::string> expected = {"1....", ".1...", "..1..", "..111", "..111"};
  EXPECT_EQ(mask_rows(mask_of(r)), expected);
}

TEST(MixedLayout, RandomLayoutsFollowTheRuleDefinition) {
  std::mt19937 rng(uint32_t(::testing::UnitTest::GetInstance()->random_seed()));
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<std::vector<Segment>> samples;
    std::vector<int> sample_of, segment_of;
    std::vector<K> kind_of;
    const int n_samples = 1 + int(rng() % 3);
    for (int s = 0; s < n_samples; ++s) {
      auto& segs = samples.emplace_back();
      const int n = 1 + int(rng() % 4);
      for (int g = 0; g < n; ++g) {
        const K k = std::array<K, 3>{K::text, K::image, K::audio}[rng() % 3];
        const int64_t len = 1 + int64_t(rng() % 4);
        segs.push_back({k, len});
        for (int64_t j = 0; j < len; ++j) sample_of.push_back(s), segment_of.push_back(g), kind_of.push_back(k);
      }
    }
    const int64_t used = int64_t(sample_of.size()), T = used + int64_t(rng() % 3);
    const std::vector<std::string> got = mask_rows(mask_of(tasks::layout_key_ranges(samples, T)));
    for (int64_t q = 0; q < T; ++q)
      for (int64_t k = 0; k < T; ++k) {
        bool want;
        if (q >= used || k >= used) want = q == k;
        else
          want = sample_of[size_t(q)] == sample_of[size_t(k)] &&
                 (segment_of[size_t(k)] < segment_of[size_t(q)] ||
                  (segment_of[size_t(k)] == segment_of[size_t(q)] && (kind_of[size_t(q)] == K::image || k <= q)));
        ASSERT_EQ(got[size_t(q)][size_t(k)] == '1', want) << "trial " << trial << " query " << q << " key " << k;
      }
  }
}

TEST(MixedLayout, SamplesThatDoNotFitAreErrors) {
  EXPECT_THROW(tasks::layout_key_ranges({{{K::text, 4}}, {{K::image, 3}}}, 6), Error);
  EXPECT_THROW(tasks::layout_key_ranges({{{K::text, 0}}}, 6), Error);
  tasks::PackOptions o;
  o.length = 4;
  o.patches = 4;
  const MixedPiece img = image_piece(zeros({3, 8, 8}));
  try {
    tasks::pack_mixed({{text_piece({1}), img}}, o);
    FAIL() << "a sample of 5 positions packed into rows of 4";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sample 0 has 5 positions"), std::string::npos) << e.what();
  }
}

TEST(MixedLayout, PackingFillsRowsAndReadsTargetsFromTheLayout) {
  tasks::PackOptions o;
  o.length = 10;
  o.patches = 2;
  o.special = 9;
  const MixedPiece boi = text_piece({20}), cap = text_piece({5, 6});
  const MixedPiece img = image_piece(full({1, 2, 2}, 0.5), true);
  const MixedPiece audio = audio_piece(tensor(std::vector<int64_t>{1, 2, 9, 9, 3, 4}, {2, 3}));
  // s0: [5 6][20][img 2] = 5; s1: [20][audio 3] = 4 -> row 0 (9 of 10); s2: [5 6] -> row 1.
  const tasks::MixedBatch b = tasks::pack_mixed({{cap, boi, img}, {boi, audio}, {cap}}, o);
  ASSERT_EQ(b.rows, 2);
  EXPECT_EQ(b.samples, 3);
  EXPECT_EQ(b.positions.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(b.tokens.to_vector<int64_t>()[2], 20);
  EXPECT_EQ(b.image_at.to_vector<int64_t>(), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(b.noised, std::vector<bool>{true});
  // Text targets: 5->6, 6->20 (s0); nothing before s1's first token; s2: 5->6.
  EXPECT_EQ(b.text_at.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 10}));
  EXPECT_EQ(b.text_targets.to_vector<int64_t>(), (std::vector<int64_t>{6, 20, 6}));
  // Audio: positions 6, 7, 8 hold steps (1, 9), (2, 3), (9, 4); each is predicted by the position before.
  EXPECT_EQ(b.audio_at.to_vector<int64_t>(), (std::vector<int64_t>{6, 7, 8}));
  EXPECT_EQ(b.audio_codes.to_vector<int64_t>(), (std::vector<int64_t>{1, 9, 2, 3, 9, 4}));
  EXPECT_EQ(b.audio_from.to_vector<int64_t>(), (std::vector<int64_t>{5, 6, 7}));
  EXPECT_EQ(b.audio_targets.to_vector<int64_t>(), (std::vector<int64_t>{1, -100, 2, 3, -100, 4}));
  const std::vector<int32_t> lo = b.key_lo.to_vector<int32_t>(), hi = b.key_hi.to_vector<int32_t>();
  EXPECT_EQ(lo[3], 0);
  EXPECT_EQ(hi[3], 5);  // the image block
  EXPECT_EQ(lo[6], 5);
  EXPECT_EQ(hi[6], 7);  // audio: causal inside sample 1
  EXPECT_EQ(lo[9], 9);
  EXPECT_EQ(hi[9], 10);  // the pad
  // One sample per row, right-aligned (decoding prompts).
  o.pack = false;
  o.align_right = true;
  const tasks::MixedBatch d = tasks::pack_mixed({{cap}, {boi}}, o);
  EXPECT_EQ(d.rows, 2);
  EXPECT_EQ(d.tokens.to_vector<int64_t>()[8], 5);
  EXPECT_EQ(d.tokens.to_vector<int64_t>()[19], 20);
  EXPECT_EQ(d.key_lo.to_vector<int32_t>()[19], 9);
}
