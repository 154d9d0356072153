#pragma once
// The run fm serve loads once: its newest checkpoint, and what its kind can
// do. lm: text; diffusion: images; music: audio; mixed: text and images, and
// audio when it has a codec. The checks read only what loading fixed, so
// request threads may call them; generation runs on the model worker's
// thread alone.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fm/nn/gpt.h"
#include "fm/tasks/sampling.h"
#include "fm/text/bpe.h"
#include "requests.h"

namespace fm::app::serve {

class ServedModel {
 public:
  explicit ServedModel(const std::string& run_dir);
  ~ServedModel();

  const std::string& kind() const { return kind_; }
  const std::string& name() const { return name_; }  // the run directory's name: the "model" of responses
  int64_t step() const { return step_; }
  bool serves_text() const { return gpt_ || has_mixed_text_; }
  bool serves_images() const { return has_images_; }
  bool serves_audio() const { return has_audio_; }

  // Text (serves_text()).
  const text::BpeTokenizer& tokenizer() const;
  int32_t end_of_text() const { return end_of_text_; }  // -1: the tokenizer has none
  // lm runs: the GPT a BatchedSampler drives; null: each completion runs alone through complete().
  const nn::GPT* batchable() const { return gpt_.get(); }
  std::vector<int32_t> complete(const std::vector<int32_t>& prompt, const tasks::SamplingOptions& o, uint64_t seed);

  // Images and audio: check() throws ApiError 400 for what the run cannot do
  // (an unknown sampler, more seconds than it makes); png() and wav() generate.
  void check(const ImageRequest& r) const;
  void check(const AudioRequest& r) const;
  std::string png(const ImageRequest& r);
  std::string wav(const AudioRequest& r);

 private:
  struct Media;  // the media kinds' runs (served_media.cpp; LIBFM_MEDIA builds)
  void load_media(const std::string& run_dir);
  std::vector<int32_t> complete_mixed(const std::vector<int32_t>& prompt, const tasks::SamplingOptions& o,
                                      Generator& gen);

  std::string kind_, name_;
  int64_t step_ = 0;
  std::unique_ptr<nn::GPT> gpt_;
  std::unique_ptr<text::BpeTokenizer> tokenizer_;
  int32_t end_of_text_ = -1;
  std::shared_ptr<Media> media_;  // shared_ptr: destroyed where Media is complete
  bool has_mixed_text_ = false, has_images_ = false, has_audio_ = false;
};

}  // namespace fm::app::serve
