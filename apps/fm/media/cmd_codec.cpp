// fm codec encode --run DIR --in x.wav --out codes.safetensors
// fm codec decode --run DIR --in codes.safetensors --out y.wav|flac|mp3
// A codec run (task.kind = codec) turns audio into its discrete codes and
// back. The codes file is safetensors: "codes" [K, F] i32 (K codebooks, F
// frames) and metadata naming the model it needs (format, sample_rate, hop,
// n_codebooks, codebook_size, frames, samples: the clip's length at the
// model's rate, run, step, source). The whole file is coded at once.
#include <cstdio>
#include <filesystem>

#include "../commands.h"
#include "../options.h"
#include "fm/audio/audio.h"
#include "fm/error.h"
#include "fm/io/safetensors.h"
#include "fm/ops.h"
#include "fm/tasks/codec.h"

namespace fm::app {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFormat = "libfm-codec-codes";

const char* kUsage =
    "usage: fm codec encode --run DIR --in AUDIO --out CODES.safetensors\n"
    "       fm codec decode --run DIR --in CODES.safetensors --out AUDIO (.wav, .flac or .mp3)\n\n"
    "Encodes audio into the discrete codes of a codec run (task.kind = codec), or decodes codes back to audio,\n"
    "with the run's newest checkpoint (EMA weights when kept). Audio is mixed to mono and resampled to the\n"
    "model's rate; the codes file is safetensors: \"codes\" [codebooks, frames] i32 plus metadata.";

int64_t meta_int(const io::Safetensors& st, const std::string& file, const std::string& key) {
  auto it = st.metadata.find(key);
  if (it == st.metadata.end()) error(file, ": no '", key, "' in its metadata (not written by fm codec encode?)");
  try {
    size_t used = 0;
    const int64_t v = std::stoll(it->second, &used);
    if (used == it->second.size()) return v;
  } catch (...) {
  }
  error(file, ": metadata '", key, "' is not an integer: '", it->second, "'");
}

// The run's model must be the one the codes came from, as far as shapes tell.
void check_matches(const io::Safetensors& st, const std::string& file, const tasks::Codec& m, const std::string& run) {
  auto same = [&](const char* key, int64_t ours, const char* what) {
    const int64_t theirs = meta_int(st, file, key);
    if (theirs != ours)
      error(file, " was made by a codec with ", what, " ", theirs, ", but the model of ", run, " has ", ours);
  };
  same("n_codebooks", m.n_codebooks(), "n_codebooks");
  same("codebook_size", m.codebook_size(), "codebook_size");
  same("sample_rate", m.options.sample_rate, "sample_rate");
  same("hop", m.hop(), "hop");
}

int encode(const Flags& f) {
  const std::string run_dir = f.get("run"), in = f.get("in"), out = f.get("out");
  tasks::CodecRun run = tasks::load_codec_run(run_dir);
  const tasks::Codec& m = *run.model;
  audio::Audio a = audio::to_mono(audio::read(in));
  if (a.sample_rate != m.options.sample_rate) a = audio::resample(a, int(m.options.sample_rate));
  const int64_t samples = a.frames();
  const Tensor wave = audio::to_tensor(a).unsqueeze(0);  // [1, 1, T]
  const Tensor codes = m.encode(wave).select(0, 0).to(DType::i32);  // [K, F]
  io::Metadata meta{{"format", kFormat},
                    {"sample_rate", std::to_string(m.options.sample_rate)},
                    {"hop", std::to_string(m.hop())},
                    {"n_codebooks", std::to_string(m.n_codebooks())},
                    {"codebook_size", std::to_string(m.codebook_size())},
                    {"frames", std::to_string(codes.size(1))},
                    {"samples", std::to_string(samples)},
                    {"run", fs::absolute(run_dir).lexically_normal().string()},
                    {"step", std::to_string(run.step)},
                    {"source", in}};
  io::save_safetensors(out, {{"codes", codes}}, meta);
  std::fprintf(stderr, "fm codec: %s: %.2f s -> %lld x %lld codes (%.1f frames/s) in %s\n", in.c_str(),
               double(samples) / double(m.options.sample_rate), (long long)codes.size(0), (long long)codes.size(1),
               m.frame_rate(), out.c_str());
  return 0;
}

int decode(const Flags& f) {
  const std::string run_dir = f.get("run"), in = f.get("in"), out = f.get("out");
  const io::Safetensors st = io::load_safetensors(in);
  auto it = st.metadata.find("format");
  if (it == st.metadata.end() || it->second != kFormat) error(in, ": not a codes file of fm codec encode (format)");
  auto c = st.tensors.find("codes");
  if (c == st.tensors.end()) error(in, ": no 'codes' tensor");
  const Tensor codes = c->second;
  if (codes.dim() != 2 || (codes.dtype() != DType::i32 && codes.dtype() != DType::i64))
    error(in, ": 'codes' must be [codebooks, frames] integers, got ", codes.dtype(), " ", codes.shape());
  tasks::CodecRun run = tasks::load_codec_run(run_dir);
  const tasks::Codec& m = *run.model;
  check_matches(st, in, m, run_dir);
  if (codes.size(0) != m.n_codebooks())
    error(in, ": 'codes' has ", codes.size(0), " codebooks, but the model of ", run_dir, " has ", m.n_codebooks());
  if (codes.size(1) != meta_int(st, in, "frames"))
    error(in, ": 'codes' has ", codes.size(1), " frames, its metadata says ", meta_int(st, in, "frames"));
  Tensor wave = m.decode(codes.unsqueeze(0)).select(0, 0);  // [1, F * hop]
  const int64_t samples = meta_int(st, in, "samples");
  if (samples <= 0 || samples > wave.size(1))
    error(in, ": metadata 'samples' ", samples, " does not fit ", codes.size(1), " frames of ", m.hop(), " samples");
  wave = wave.narrow(1, 0, samples);
  audio::write(out, audio::from_tensor(wave, int(m.options.sample_rate)));
  std::fprintf(stderr, "fm codec: %s: %lld x %lld codes -> %.2f s in %s\n", in.c_str(), (long long)codes.size(0),
               (long long)codes.size(1), double(samples) / double(m.options.sample_rate), out.c_str());
  return 0;
}

}  // namespace

int cmd_codec(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::printf("%s\n", kUsage);
    return args.empty() ? 2 : 0;
  }
  const std::string sub = args[0];
  if (sub != "encode" && sub != "decode") error("codec: expected encode or decode, got '", sub, "' (see fm codec --help)");
  Flags f(kUsage);
  f.option("run", "", "run directory made by fm train (task.kind = codec)")
      .option("in", "", sub == "encode" ? "audio file (WAV, FLAC, Ogg, MP3, ...)" : "codes file of fm codec encode")
      .option("out", "", sub == "encode" ? "codes file to write (.safetensors)" : "audio file to write (.wav, .flac, .mp3)");
  if (!f.parse(std::vector<std::string>(args.begin() + 1, args.end()))) return 0;
  if (!f.positional().empty()) error("codec ", sub, ": unexpected argument '", f.positional()[0], "'");
  for (const char* k : {"run", "in", "out"})
    if (f.get(k).empty()) error("codec ", sub, ": --", k, " is required");
  if (!fs::is_directory(f.get("run"))) error("codec ", sub, ": --run ", f.get("run"), " is not a directory");
  return sub == "encode" ? encode(f) : decode(f);
}

}  // namespace fm::app
