// The media kinds of ServedModel: diffusion and mixed runs draw images, music
// and mixed runs (with a codec) play audio, through the same run loaders and
// pipelines as fm generate image|music.
#include <optional>

#include "api_error.h"
#include "fm/error.h"
#include "served_model.h"
#ifdef FM_HAVE_MEDIA
#include "fm/audio/audio.h"
#include "fm/image/image.h"
#include "fm/image/transforms.h"
#include "fm/ops.h"
#include "fm/tasks/diffusion.h"
#include "fm/tasks/image_text_data.h"
#include "fm/tasks/mixed.h"
#include "fm/tasks/music.h"
#endif

namespace fm::app::serve {

#ifdef FM_HAVE_MEDIA

struct ServedModel::Media {
  std::unique_ptr<tasks::TextToImageRun> t2i;
  std::optional<tasks::MixedRun> mixed;
  std::optional<tasks::MusicRun> music;
  double max_seconds = 0;
  const train::Config& config() const { return t2i ? t2i->config : mixed ? mixed->config : music->config; }
};

void ServedModel::load_media(const std::string& run_dir) {
  media_ = std::make_shared<Media>();
  Media& m = *media_;
  if (kind_ == "diffusion") {
    m.t2i = tasks::load_text2image_run(run_dir);
    has_images_ = true;
  } else if (kind_ == "mixed") {
    m.mixed.emplace(tasks::load_mixed_run(run_dir));
    tokenizer_ = std::make_unique<text::BpeTokenizer>(m.mixed->tokenizer);
    end_of_text_ = tasks::end_of_text_id(m.mixed->tokenizer);
    has_mixed_text_ = has_images_ = true;
    has_audio_ = m.mixed->codec != nullptr;
    if (has_audio_) m.max_seconds = m.mixed->max_seconds();
  } else if (kind_ == "music") {
    m.music.emplace(tasks::load_music_run(run_dir));
    has_audio_ = true;
    m.max_seconds = tasks::max_music_seconds(*m.music->model, *m.music->codec);
  } else {
    error("serve: a '", kind_, "' run has nothing to serve (lm, mixed, diffusion and music runs do)");
  }
}

std::vector<int32_t> ServedModel::complete_mixed(const std::vector<int32_t>& prompt, const tasks::SamplingOptions& o,
                                                 Generator& gen) {
  const tasks::MixedModel& model = *media_->mixed->model;
  // The prompt's tail, leaving a position to generate into (as sample() crops to its block).
  const size_t keep = std::min(prompt.size(), size_t(std::max<int64_t>(1, model.options.max_positions - 1)));
  const std::vector<int64_t> ids(prompt.end() - long(keep), prompt.end());
  const std::vector<int64_t> out = tasks::mixed_generate_text(model, ids, o, gen);
  return {out.begin(), out.end()};
}

void ServedModel::check(const ImageRequest& r) const {
  if (!r.sampler) return;
  try {
    objectives::make_sampler(*r.sampler, tasks::sampler_options(media_->config()));
  } catch (const Error& e) {
    throw ApiError(400, std::string("'sampler': ") + e.what(), "sampler");
  }
}

void ServedModel::check(const AudioRequest& r) const {
  if (r.seconds && *r.seconds > media_->max_seconds)
    throw ApiError(400, "'seconds' must be at most " + std::to_string(media_->max_seconds) + " for this model",
                   "seconds");
}

std::string ServedModel::png(const ImageRequest& r) {
  const Media& m = *media_;
  tasks::GenerateOptions o = tasks::generate_defaults(m.config());
  if (r.steps) o.steps = *r.steps;
  if (r.guidance) o.cfg = *r.guidance;
  if (r.sampler) o.sampler = *r.sampler;
  o.seed = r.seed.value_or(1);
  int64_t truncated = 0;  // a prompt longer than the caption context is cut, as training cuts captions
  const std::vector<std::string> prompts{r.prompt};
  const Tensor x =
      m.t2i ? m.t2i->pipeline->generate(prompts, o, &truncated) : m.mixed->generate_images(prompts, o, &truncated);
  return image::encode_png(image::from_tensor(x.select(0, 0)));
}

std::string ServedModel::wav(const AudioRequest& r) {
  Media& m = *media_;
  tasks::MusicSampling& s = m.mixed ? m.mixed->sampling : m.music->sampling;
  const tasks::MusicSampling run_defaults = s;
  if (r.guidance) s.guidance = *r.guidance;
  if (r.temperature) s.temperature = *r.temperature;
  if (r.top_k) s.top_k = *r.top_k;
  Generator gen(r.seed.value_or(1));
  const std::vector<std::string> prompts{r.prompt};
  const double seconds = r.seconds.value_or(m.max_seconds);
  std::vector<Tensor> waves;
  try {
    waves = m.mixed ? m.mixed->play(prompts, seconds, gen) : m.music->generate(prompts, seconds, gen);
  } catch (...) {
    s = run_defaults;
    throw;
  }
  s = run_defaults;
  const int rate = int(m.mixed ? m.mixed->codec->options.sample_rate : m.music->codec->options.sample_rate);
  return audio::encode(audio::from_tensor(fm::clamp(waves[0], -1.0, 1.0), rate), "wav");
}

#else  // a build without media libraries serves text runs only

struct ServedModel::Media {};

void ServedModel::load_media(const std::string&) {
  if (kind_ == "diffusion" || kind_ == "mixed" || kind_ == "music")
    error("serve: a '", kind_, "' run needs a build of fm with -DLIBFM_MEDIA=ON");
  error("serve: a '", kind_, "' run has nothing to serve (lm, mixed, diffusion and music runs do)");
}
std::vector<int32_t> ServedModel::complete_mixed(const std::vector<int32_t>&, const tasks::SamplingOptions&,
                                                 Generator&) {
  error("serve: mixed runs need a build of fm with -DLIBFM_MEDIA=ON");
}
void ServedModel::check(const ImageRequest&) const {}
void ServedModel::check(const AudioRequest&) const {}
std::string ServedModel::png(const ImageRequest&) { error("serve: images need a build of fm with -DLIBFM_MEDIA=ON"); }
std::string ServedModel::wav(const AudioRequest&) { error("serve: audio needs a build of fm with -DLIBFM_MEDIA=ON"); }

#endif

}  // namespace fm::app::serve
