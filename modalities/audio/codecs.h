#pragma once
// The codec back ends behind fm::audio::decode and write (audio.h).
#include <string>

#include "fm/audio/audio.h"

namespace fm::audio::detail {

// Throws fm::Error "<op>: sample rate R Hz outside [kMinSampleRate, kMaxSampleRate]".
void check_sample_rate(int rate, const std::string& op);
// Throws unless the audio holds at least one frame of 1+ channels at a valid rate.
void check_audio(const Audio& audio, const std::string& op);

// A RIFF/WAVE file whose data chunk claims more bytes than the file holds
// throws (libsndfile would quietly read the part that is there).
void check_wav_data_size(const void* bytes, size_t size, const std::string& name);

// libsndfile: false (and why in *why_not) when it does not take the file
// (not a format it reads, or MPEG, which goes to FFmpeg); throws fm::Error
// when it takes the file but the data are bad.
bool sndfile_decode(const void* bytes, size_t size, const std::string& name, Audio* out, std::string* why_not);
// The whole file as WAV (flac = false) or FLAC.
std::string sndfile_encode(const Audio& audio, bool flac, Encoding encoding, const std::string& op);

// FFmpeg (libavformat + libavcodec); `sndfile_said` goes into the error
// message when FFmpeg cannot open the file either.
Audio ffmpeg_decode(const void* bytes, size_t size, const std::string& name, const std::string& sndfile_said);
// The whole file as MP3 through libmp3lame.
std::string ffmpeg_encode_mp3(const Audio& audio, int bitrate, const std::string& op);

}  // namespace fm::audio::detail
