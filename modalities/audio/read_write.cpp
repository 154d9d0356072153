// fm::audio::decode/read/write: which codec library handles which file.
// libsndfile first, as it reads its formats exactly (soundfile and
// torchaudio's sox back end give the same samples); FFmpeg for the rest.
// MPEG is sent on to FFmpeg even though libsndfile 1.1+ reads it through
// mpg123: FFmpeg trims the encoder delay and padding as the ffmpeg program
// does, so MP3s decode to the same samples through either route.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>

#include "codecs.h"
#include "fm/error.h"
#include "fm/io/atomic_file.h"
#include "../text/read_file.h"

namespace fm::audio {

Audio decode(const void* bytes, size_t size, const std::string& name) {
  if (size == 0) error("audio read: ", name, ": empty file");
  detail::check_wav_data_size(bytes, size, name);
  Audio audio;
  std::string sndfile_said;
  if (!detail::sndfile_decode(bytes, size, name, &audio, &sndfile_said))
    audio = detail::ffmpeg_decode(bytes, size, name, sndfile_said);
  detail::check_audio(audio, "audio read: " + name);
  // A float WAV can hold NaN or infinities; no model should train on them.
  for (size_t i = 0; i < audio.samples.size(); ++i)
    if (!std::isfinite(audio.samples[i]))
      error("audio read: ", name, ": sample ", i, " is ", audio.samples[i] != audio.samples[i] ? "NaN" : "infinite");
  return audio;
}

Audio read(const std::string& path) {
  const std::string bytes = text::read_file(path, "audio read");
  return decode(bytes.data(), bytes.size(), path);
}

std::string encode(const Audio& audio, const std::string& format, const WriteOptions& options,
                   const std::string& name) {
  std::string ext = format;
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  const std::string op = "audio write: " + (name.empty() ? "(memory)" : name);
  detail::check_audio(audio, op);
  if (ext == "wav" || ext == "flac") return detail::sndfile_encode(audio, ext == "flac", options.encoding, op);
  if (ext == "mp3") return detail::ffmpeg_encode_mp3(audio, options.mp3_bitrate, op);
  error(op, ": unknown format '", format, "' (expected wav, flac or mp3)");
}

void write(const std::string& path, const Audio& audio, const WriteOptions& options) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (ext != ".wav" && ext != ".flac" && ext != ".mp3")
    error("audio write: ", path, ": unknown extension '", ext, "' (expected .wav, .flac or .mp3)");
  const std::string bytes = encode(audio, ext.substr(1), options, path);
  io::AtomicFile file(path, "audio write");
  file.write(bytes.data(), bytes.size());
  file.commit();
}

}  // namespace fm::audio
