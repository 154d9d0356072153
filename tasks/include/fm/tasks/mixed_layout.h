#pragma once
// Mixed-modal sequences (`[task] kind = mixed`; DESIGN.md, "a batch is a
// sequence of segments"): a sample is a list of typed segments (text tokens,
// image patches, audio codec steps), and several samples are packed into
// one row of a batch. The layout alone decides who attends to whom:
//   - a position sees keys of its own sample only (packing is block-diagonal);
//   - it sees every earlier segment of its sample (causal across segments);
//   - inside its own segment it sees the keys before it and itself (text and
//     audio tokens, which the next-token loss predicts one by one), or the
//     whole segment (an image, denoised as one block: Transfusion's rule).
// So the keys a query sees are always one contiguous range [lo, hi): two
// integers per position describe the mask, never a T x T matrix.
//
// Which position predicts what follows from the same layout: a position whose
// next position (in the same sample) is a text token predicts that token
// (next-token loss), one whose next is an audio step predicts its K codes
// (delay-pattern next-token loss), and image positions predict the diffusion
// target of their own patch.
#include <cstdint>
#include <vector>

#include "fm/tensor.h"

namespace fm::tasks {

enum class SegmentKind : uint8_t { text, image, audio, pad };

struct Segment {
  SegmentKind kind = SegmentKind::text;
  int64_t length = 0;  // positions
};

// A segment kind's attention inside itself: true for images.
bool bidirectional(SegmentKind kind);

// Visible keys [lo, hi) of each position of one row holding `samples` one
// after another, then pad positions up to `length` (each sees itself
// alone). With `offset`, the samples start after that many pad positions.
// Errors when the samples do not fit or a segment is empty.
struct KeyRanges {
  std::vector<int32_t> lo, hi;
};
KeyRanges layout_key_ranges(const std::vector<std::vector<Segment>>& samples, int64_t length, int64_t offset = 0);

// [B, T] ranges (i32) -> [B, 1, T, keys] bool, true where query q may attend
// key k (lo[q] <= k < hi[q]; keys 0: T): the mask the ranges stand for (the
// model hands the ranges themselves to attention, fm/ops/attention.h).
Tensor key_range_mask(const Tensor& lo, const Tensor& hi, int64_t keys = 0);

// One piece of a sample, in order.
struct MixedPiece {
  SegmentKind kind = SegmentKind::text;
  std::vector<int64_t> tokens;  // text: token ids (markers included)
  Tensor image;                 // image: x0 [C, H, W] (f32, the data range)
  bool noised = false;          // image: noised, taking the diffusion loss; else clean (t = 0), a condition
  Tensor steps;                 // audio: delay-pattern steps [K, S] (i64; the special token where a stream has no frame)
};
using MixedSample = std::vector<MixedPiece>;
MixedPiece text_piece(std::vector<int64_t> tokens);
MixedPiece image_piece(const Tensor& image, bool noised = false);
MixedPiece audio_piece(const Tensor& steps);

// A batch as the model reads it, built on the CPU by pack_mixed. Positions
// are flat (row * T + column).
struct MixedBatch {
  int64_t rows = 0, length = 0;  // B, T
  Tensor tokens;     // [B, T] i64: text ids, 0 at other positions
  Tensor positions;  // [B, T] i64: the position inside its sample (0 at pads)
  Tensor key_lo, key_hi;  // [B, T] i32: visible keys [lo, hi) within the row
  // Images in order of appearance: x0 [I, C, H, W], whether each is noised,
  // and the flat positions of their patches [I * N] (N per image, in order).
  Tensor images;
  std::vector<bool> noised;
  Tensor image_at;
  // Audio positions in order: their flat positions [A] and the codes each
  // holds [A, K] (the step's K tokens).
  Tensor audio_at, audio_codes;
  // Next-token targets: flat positions whose next position is text, and
  // that token [Nt]; those whose next is an audio step, and its codes [Na, K]
  // with -100 where the step holds the special token (no frame).
  Tensor text_at, text_targets;
  Tensor audio_from, audio_targets;
  int64_t samples = 0;
};

struct PackOptions {
  int64_t length = 0;      // T: positions per row
  int64_t patches = 0;     // positions per image (N)
  int64_t special = -1;    // audio: the delay pattern's filler token (no target)
  bool pack = true;        // several samples per row (else one per row)
  bool align_right = false;  // one per row, padded on the left so each ends at the last column (decoding)
};
// Positions a sample takes (an image: `patches`).
int64_t sample_length(const MixedSample& sample, int64_t patches);

// Samples -> rows of `length` positions. A sample longer than `length` is an
// error naming its index and length.
MixedBatch pack_mixed(const std::vector<MixedSample>& samples, const PackOptions& o);

}  // namespace fm::tasks
