#pragma once
// The `music` kind's pieces for programs that use a trained run (fm generate
// music, apps/examples/media/musicgen.cpp): loading the run (its model, its
// codec run and tokenizer) and turning captions into audio.
#include <memory>
#include <string>
#include <vector>

#include "fm/tasks/codec_model.h"
#include "fm/tasks/music_model.h"
#include "fm/text/bpe.h"
#include "fm/train/config.h"

namespace fm::tasks {

MusicOptions music_options(const train::Config& c);
// The sample.* keys of a run (guidance, temperature, top-k, top-p), for `frames` frames.
MusicSampling music_sampling(const train::Config& c, int64_t frames);

// Caption ids [B, L] and their mask [B, L] (true up to the end-of-text), and
// the empty caption's (the end-of-text alone) for B rows.
struct CaptionBatch {
  Tensor ids, mask;
};
CaptionBatch tokenize_captions(const text::BpeTokenizer& tokenizer, const std::vector<std::string>& captions,
                               int64_t context_length);

// The longest clip a model can generate, in seconds.
double max_music_seconds(const MusicModel& model, const Codec& codec);

// A data set's clips as codes [N, K, F] with their captions, encoded once
// and kept in `cache` (a safetensors file) for the next build. The cache is
// reused only for the same folder, clip count and length, codebooks and
// codec checkpoint (a retrained codec makes other codes).
struct EncodedClips {
  Tensor codes;  // [N, K, F] i64, CPU
  std::vector<std::string> captions;
};
struct CodecSource {
  const Codec& codec;
  std::string dir;   // the codec run
  int64_t step = 0;  // its checkpoint
  int64_t n_codebooks = 0;  // the first K codebooks are kept
};
// The first `limit` clips (0: all) of a caption folder of audio, `samples`
// long from their start.
EncodedClips encode_folder(const CodecSource& src, const std::string& folder, int64_t samples, int64_t limit,
                           const std::string& cache, Device device);

struct MusicRun {
  train::Config config;
  std::unique_ptr<MusicModel> model;
  std::unique_ptr<Codec> codec;
  text::BpeTokenizer tokenizer;
  MusicSampling sampling;
  // One waveform [T] per caption, T = seconds at the codec's rate (rounded
  // to whole frames). Errors name the option when seconds is not in
  // (0, max_music_seconds].
  std::vector<Tensor> generate(const std::vector<std::string>& captions, double seconds, Generator& gen) const;
};
MusicRun load_music_run(const std::string& run_dir);

}  // namespace fm::tasks
