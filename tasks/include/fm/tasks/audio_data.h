#pragma once
// Audio-text data for the kinds that read audio (codec; music later). A
// folder of audio files with captions (captions.jsonl lines {"file",
// "caption", ...}, `file` relative to the folder, or the CSV/TSV layouts of
// fm/data/image_text.h) is read by the caption-folder reader, which hands
// out each file's bytes; the transform here decodes them (fm::audio::decode:
// libsndfile, or FFmpeg for MP3/AAC), mixes to mono, resamples and crops.
// Decoding needs the media libraries, which datasets/ does not link: so this
// lives beside the tasks, as image_text_data.h does for images. Built with
// LIBFM_MEDIA.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fm/data/loader.h"
#include "fm/tensor.h"

namespace fm::tasks {

// A caption folder (or its captions.jsonl / .csv / .tsv) of audio files.
std::shared_ptr<const data::ImageTextSource> open_audio_text(const std::string& spec);

struct AudioClipOptions {
  int sample_rate = 16000;  // resampled to it (libswresample) when the file has another rate
  int64_t samples = 16000;  // the crop's length; shorter files are zero-padded on the right
  bool random_crop = true;  // a uniform offset from the sample seed; else the file's start
};

// Sample -> {"audio": [1, samples] f32}, the mean of the file's channels.
// Undecodable files throw fm::Error naming the file (the loader skips them).
data::Transform audio_clip_transform(const AudioClipOptions& options);

// The captioned-melodies analyser (fm/data/melodies_checker.h) on clips
// [T] (CPU, 16 kHz) against their captions: out[name] is the share that
// match in every attribute, out[name + "_key" | "_tempo" | "_timbre" |
// "_register"] each attribute's. Captions outside the grammar throw.
// eval.checker's value: true for "melodies" (which needs 16 kHz clips),
// false for ""; anything else throws naming the key.
bool melody_checker(const std::string& checker, int64_t sample_rate);

void add_melody_adherence(const std::vector<Tensor>& waves, const std::vector<std::string>& captions,
                          const std::string& name, std::map<std::string, double>& out);

}  // namespace fm::tasks
