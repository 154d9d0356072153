#include "fm/tasks/audio_data.h"

#include <algorithm>
#include <cstring>

#include "fm/audio/audio.h"
#include "fm/data/image_text.h"
#include "fm/data/melodies_checker.h"
#include "fm/error.h"
#include "fm/factory.h"
#include "fm/random.h"

namespace fm::tasks {

std::shared_ptr<const data::ImageTextSource> open_audio_text(const std::string& spec) {
  if (spec.empty()) error("open_audio_text: no data folder given");
  std::shared_ptr<const data::ImageTextSource> source = data::open_caption_folder(spec);
  if (source->size() == 0) error(source->name(), ": no readable audio files listed");
  return source;
}

data::Transform audio_clip_transform(const AudioClipOptions& o) {
  if (o.sample_rate < audio::kMinSampleRate || o.sample_rate > audio::kMaxSampleRate)
    error("audio_clip_transform: sample rate ", o.sample_rate, " is outside [", audio::kMinSampleRate, ", ",
          audio::kMaxSampleRate, "]");
  if (o.samples <= 0) error("audio_clip_transform: needs samples > 0, got ", o.samples);
  return [o](const data::ImageTextSample& s, uint64_t seed) {
    if (s.image.empty()) error(s.origin, ": no audio bytes (an image source given to an audio kind?)");
    audio::Audio a = audio::to_mono(audio::decode(s.image.data(), s.image.size(), s.origin));
    if (a.sample_rate != o.sample_rate) a = audio::resample(a, o.sample_rate);
    const int64_t frames = a.frames();
    int64_t offset = 0;
    if (o.random_crop && frames > o.samples) {
      Generator gen(seed);
      offset = randint(0, frames - o.samples + 1, {1}, DType::i64, &gen).item<int64_t>();
    }
    std::vector<float> clip(size_t(o.samples), 0.0f);
    const int64_t n = std::min(o.samples, frames - offset);
    std::memcpy(clip.data(), a.samples.data() + offset, size_t(n) * sizeof(float));
    return data::Example{{"audio", tensor(clip, {1, o.samples})}};
  };
}

bool melody_checker(const std::string& checker, int64_t sample_rate) {
  if (checker.empty()) return false;
  if (checker != "melodies") error("config: key 'eval.checker' must be melodies or empty, got '", checker, "'");
  if (sample_rate != 16000)
    error("config: key 'eval.checker': the melodies analyser hears 16 kHz clips; the model's rate is ", sample_rate);
  return true;
}

void add_melody_adherence(const std::vector<Tensor>& waves, const std::vector<std::string>& captions,
                          const std::string& name, std::map<std::string, double>& out) {
  if (waves.size() != captions.size() || waves.empty())
    error("add_melody_adherence: ", waves.size(), " clips for ", captions.size(), " captions");
  double key = 0, tempo = 0, timbre = 0, reg = 0, all = 0;
  for (size_t i = 0; i < waves.size(); ++i) {
    const std::vector<float> x = waves[i].to_vector<float>();
    const data::MelodyCheck c = data::check_melody(data::read_melody(x.data(), int64_t(x.size()), 16000),
                                                   data::parse_melody_caption(captions[i]));
    key += c.key, tempo += c.tempo, timbre += c.timbre, reg += c.register_ok, all += c.all();
  }
  const double n = double(waves.size());
  out[name] = all / n;
  out[name + "_key"] = key / n;
  out[name + "_tempo"] = tempo / n;
  out[name + "_timbre"] = timbre / n;
  out[name + "_register"] = reg / n;
}

}  // namespace fm::tasks
