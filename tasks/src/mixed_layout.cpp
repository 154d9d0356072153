#include "fm/tasks/mixed_layout.h"

#include <algorithm>
#include <string>
#include <utility>

#include "fm/error.h"
#include "fm/factory.h"
#include "fm/ops.h"

namespace fm::tasks {
namespace {

const char* kind_name(SegmentKind k) {
  switch (k) {
    case SegmentKind::text: return "text";
    case SegmentKind::image: return "image";
    case SegmentKind::audio: return "audio";
    case SegmentKind::pad: return "pad";
  }
  return "?";
}

int64_t sample_length(const std::vector<Segment>& sample) {
  int64_t n = 0;
  for (const Segment& s : sample) n += s.length;
  return n;
}

int64_t piece_length(const MixedPiece& p, int64_t patches) {
  switch (p.kind) {
    case SegmentKind::text: return int64_t(p.tokens.size());
    case SegmentKind::image: return patches;
    case SegmentKind::audio: return p.steps.defined() ? p.steps.size(1) : 0;
    case SegmentKind::pad: break;
  }
  error("pack_mixed: a sample holds a pad piece");
}

}  // namespace

bool bidirectional(SegmentKind kind) { return kind == SegmentKind::image; }

MixedPiece text_piece(std::vector<int64_t> tokens) {
  MixedPiece p;
  p.tokens = std::move(tokens);
  return p;
}

MixedPiece image_piece(const Tensor& image, bool noised) {
  MixedPiece p;
  p.kind = SegmentKind::image;
  p.image = image;
  p.noised = noised;
  return p;
}

MixedPiece audio_piece(const Tensor& steps) {
  MixedPiece p;
  p.kind = SegmentKind::audio;
  p.steps = steps;
  return p;
}

KeyRanges layout_key_ranges(const std::vector<std::vector<Segment>>& samples, int64_t length, int64_t offset) {
  KeyRanges r;
  r.lo.reserve(size_t(length));
  r.hi.reserve(size_t(length));
  int64_t at = 0;
  for (; at < offset; ++at) r.lo.push_back(int32_t(at)), r.hi.push_back(int32_t(at + 1));
  for (size_t i = 0; i < samples.size(); ++i) {
    const int64_t start = at;
    if (at + sample_length(samples[i]) > length)
      error("mixed layout: sample ", i, " of ", sample_length(samples[i]), " positions does not fit a row of ", length,
            " (", at, " taken)");
    for (const Segment& s : samples[i]) {
      if (s.length < 1 || s.kind == SegmentKind::pad)
        error("mixed layout: sample ", i, " has a ", kind_name(s.kind), " segment of ", s.length, " positions");
      const int64_t end = at + s.length;
      for (int64_t q = at; q < end; ++q) {
        r.lo.push_back(int32_t(start));
        r.hi.push_back(int32_t(bidirectional(s.kind) ? end : q + 1));
      }
      at = end;
    }
  }
  for (; at < length; ++at) r.lo.push_back(int32_t(at)), r.hi.push_back(int32_t(at + 1));
  return r;
}

Tensor key_range_mask(const Tensor& lo, const Tensor& hi, int64_t keys) {
  if (lo.dim() != 2 || hi.shape() != lo.shape())
    error("key_range_mask: lo and hi must be [B, T] alike, got ", lo.shape(), " and ", hi.shape());
  const int64_t B = lo.size(0), Q = lo.size(1), T = keys > 0 ? keys : Q;
  const std::vector<int32_t> l = lo.to(Device::cpu()).to(DType::i32).contiguous().to_vector<int32_t>();
  const std::vector<int32_t> h = hi.to(Device::cpu()).to(DType::i32).contiguous().to_vector<int32_t>();
  std::vector<uint8_t> m(size_t(B * Q * T), 0);
  for (int64_t q = 0; q < B * Q; ++q)
    for (int64_t k = std::max<int64_t>(0, l[size_t(q)]); k < std::min<int64_t>(T, h[size_t(q)]); ++k) m[size_t(q * T + k)] = 1;
  return tensor(m, {B, 1, Q, T}).to(DType::b8).to(lo.device());
}

int64_t sample_length(const MixedSample& sample, int64_t patches) {
  int64_t n = 0;
  for (const MixedPiece& p : sample) n += piece_length(p, patches);
  return n;
}

MixedBatch pack_mixed(const std::vector<MixedSample>& samples, const PackOptions& o) {
  if (o.length < 1) error("pack_mixed: row length must be > 0, got ", o.length);
  // Rows: samples in order, a new row when the next does not fit.
  std::vector<std::vector<size_t>> rows;
  int64_t used = o.length;
  for (size_t i = 0; i < samples.size(); ++i) {
    const int64_t n = sample_length(samples[i], o.patches);
    if (n > o.length) error("pack_mixed: sample ", i, " has ", n, " positions, more than the row length ", o.length);
    if (n == 0) error("pack_mixed: sample ", i, " is empty");
    if (!o.pack || o.align_right || used + n > o.length) rows.emplace_back(), used = 0;
    rows.back().push_back(i);
    used += n;
  }
  MixedBatch b;
  b.rows = int64_t(rows.size());
  b.length = o.length;
  b.samples = int64_t(samples.size());
  const int64_t T = o.length, BT = b.rows * T;
  std::vector<int64_t> tokens(size_t(BT), 0), positions(size_t(BT), 0), image_at, audio_at, text_at, text_targets,
      audio_from, audio_targets, audio_codes;
  std::vector<int32_t> lo, hi;
  std::vector<Tensor> images;
  int64_t K = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    std::vector<std::vector<Segment>> layout;
    const int64_t offset = o.align_right ? T - sample_length(samples[rows[r][0]], o.patches) : 0;
    int64_t at = int64_t(r) * T + offset;
    for (size_t i : rows[r]) {
      std::vector<Segment>& segs = layout.emplace_back();
      const int64_t start = at;
      for (const MixedPiece& p : samples[i]) {
        const int64_t n = piece_length(p, o.patches);
        if (n == 0) error("pack_mixed: sample ", i, " has an empty ", kind_name(p.kind), " piece");
        segs.push_back({p.kind, n});
        // The position before this piece (same sample) predicts its first element.
        const bool has_prev = at > start;
        for (int64_t q = at; q < at + n; ++q) positions[size_t(q)] = q - start;
        if (p.kind == SegmentKind::text) {
          for (int64_t j = 0; j < n; ++j) tokens[size_t(at + j)] = p.tokens[size_t(j)];
          for (int64_t j = has_prev ? 0 : 1; j < n; ++j) text_at.push_back(at + j - 1), text_targets.push_back(p.tokens[size_t(j)]);
        } else if (p.kind == SegmentKind::image) {
          if (!p.image.defined() || p.image.dim() != 3) error("pack_mixed: sample ", i, ": an image piece must be [C, H, W]");
          images.push_back(p.image);
          b.noised.push_back(p.noised);
          for (int64_t j = 0; j < n; ++j) image_at.push_back(at + j);
        } else {
          if (p.steps.dim() != 2) error("pack_mixed: sample ", i, ": an audio piece must be [K, S] steps");
          if (K == 0) K = p.steps.size(0);
          if (p.steps.size(0) != K) error("pack_mixed: sample ", i, " has ", p.steps.size(0), " codebooks, others ", K);
          const Tensor steps = p.steps.to(DType::i64).contiguous();
          const int64_t* s = steps.data<int64_t>();
          for (int64_t j = 0; j < n; ++j) {
            audio_at.push_back(at + j);
            for (int64_t k = 0; k < K; ++k) audio_codes.push_back(s[k * n + j]);
            if (j == 0 && !has_prev) continue;
            audio_from.push_back(at + j - 1);
            for (int64_t k = 0; k < K; ++k) audio_targets.push_back(s[k * n + j] == o.special ? -100 : s[k * n + j]);
          }
        }
        at += n;
      }
    }
    const KeyRanges kr = layout_key_ranges(layout, T, offset);
    lo.insert(lo.end(), kr.lo.begin(), kr.lo.end());
    hi.insert(hi.end(), kr.hi.begin(), kr.hi.end());
  }
  const auto i64 = [](const std::vector<int64_t>& v, Shape s) { return tensor(v, s); };
  b.tokens = i64(tokens, {b.rows, T});
  b.positions = i64(positions, {b.rows, T});
  b.key_lo = tensor(lo, {b.rows, T});
  b.key_hi = tensor(hi, {b.rows, T});
  if (!images.empty()) b.images = stack(images, 0).to(DType::f32);
  b.image_at = i64(image_at, {int64_t(image_at.size())});
  b.audio_at = i64(audio_at, {int64_t(audio_at.size())});
  b.audio_codes = i64(audio_codes, {int64_t(audio_at.size()), K});
  b.text_at = i64(text_at, {int64_t(text_at.size())});
  b.text_targets = i64(text_targets, {int64_t(text_targets.size())});
  b.audio_from = i64(audio_from, {int64_t(audio_from.size())});
  b.audio_targets = i64(audio_targets, {int64_t(audio_from.size()), K});
  return b;
}

}  // namespace fm::tasks
