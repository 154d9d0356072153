#pragma once
// fm::audio::Audio: a waveform in memory, and its files. Decoding, encoding
// and resampling go through libsndfile and FFmpeg (libavformat, libavcodec,
// libswresample), which stay out of this header. Built with LIBFM_MEDIA.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fm/tensor.h"

namespace fm::audio {

// Frames of `channels` f32 samples each, interleaved (L R L R ...), as files
// and codecs lay them out; full scale is [-1, 1] (16-bit PCM v reads as
// v / 32768, as libsndfile, soundfile and torchaudio do). to_tensor() gives
// libfm's [C, T] layout for models.
struct Audio {
  int sample_rate = 0;
  int channels = 0;
  std::vector<float> samples;  // frames() * channels values

  int64_t frames() const { return channels > 0 ? int64_t(samples.size()) / channels : 0; }
  double seconds() const { return sample_rate > 0 ? double(frames()) / sample_rate : 0.0; }
};

// Sample rates that read, write and resample accept, in Hz.
constexpr int kMinSampleRate = 1000;
constexpr int kMaxSampleRate = 768000;

// Decodes any file libsndfile reads natively (WAV, FLAC, Ogg Vorbis/Opus,
// AIFF, ...) through libsndfile; anything else (MP3, AAC/M4A, ...) through
// FFmpeg. MP3 always goes through FFmpeg, which drops the encoder's delay and
// padding (LAME's gapless header) as the ffmpeg program does. Truncated,
// corrupt or empty files, files that are not audio, a WAV whose data chunk
// claims more bytes than the file holds, zero frames, NaN or infinite samples
// (float WAV) and sample rates outside [kMinSampleRate, kMaxSampleRate] throw
// fm::Error naming `name` (a path, or a member of an archive).
Audio decode(const void* bytes, size_t size, const std::string& name);
Audio read(const std::string& path);  // errors name the path

// How write() stores samples; WAV takes all three, FLAC pcm16 and pcm24,
// MP3 ignores it. Integer encodings round x * 2^(bits-1) and clip, the exact
// inverse of read(), so a pcm16 round trip of 16-bit audio is lossless.
enum class Encoding { pcm16, pcm24, f32 };

struct WriteOptions {
  Encoding encoding = Encoding::pcm16;
  int mp3_bitrate = 192000;  // bits per second
};

// The format comes from the extension (.wav, .flac: libsndfile; .mp3: FFmpeg's
// libmp3lame encoder, at the rates MP3 allows: 8 to 48 kHz, 1 or 2 channels).
// Written atomically (temp file, fsync, rename): readers see the old file or
// the new one, never a part. Errors name the path.
void write(const std::string& path, const Audio& audio, const WriteOptions& options = {});
// The bytes of such a file, in memory: format "wav", "flac" or "mp3"; errors
// name `name` (what the bytes are for) when given.
std::string encode(const Audio& audio, const std::string& format, const WriteOptions& options = {},
                   const std::string& name = "");

// Resamples to `rate` Hz through libswresample (its windowed-sinc filter,
// default settings); the result has ceil(frames * rate / sample_rate) frames
// (as torchaudio and librosa). The same rate returns a copy.
Audio resample(const Audio& audio, int rate);

// The mean of the channels (torchaudio's and librosa's to-mono).
Audio to_mono(const Audio& audio);
// To 1 channel (the mean) or from 1 channel to `channels` (copies); the same
// count returns a copy. Other layouts (5.1 -> stereo) need a mixing matrix
// and throw fm::Error.
Audio mix(const Audio& audio, int channels);

// [C, T] f32 (libfm's layout for waveforms) and back; from_tensor takes a
// floating [C, T] or a [T] (mono) tensor on any device.
fm::Tensor to_tensor(const Audio& audio);
Audio from_tensor(const fm::Tensor& waveform, int sample_rate);

}  // namespace fm::audio
