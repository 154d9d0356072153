#pragma once
// The `diffusion` kind's pieces for programs that use a run (fm generate
// image, fm eval, apps/examples/text2image.cpp): options from a config,
// loading a run, prompts to images, and adherence judged by a checker that
// shares nothing with the model.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fm/data/image_text.h"
#include "fm/data/loader.h"
#include "fm/tasks/autoencoder.h"
#include "fm/tasks/clip_model.h"
#include "fm/tasks/text2image.h"
#include "fm/text/bpe.h"
#include "fm/train/config.h"

namespace fm::tasks {

// The diffusion.* keys (process, schedule, prediction, times, condition
// dropout, sampler, steps, guidance), for every kind that trains with the
// diffusion objective; and the defaults derived after parsing (prediction
// and sampler from the process).
void declare_diffusion_objective_keys(train::Config& c);
void resolve_diffusion_objective(train::Config& c);

// Pixel space, or the latents of an autoencoder run (model.autoencoder).
DiTOptions dit_options(const train::Config& c);
objectives::DiffusionOptions diffusion_options(const train::Config& c);
objectives::SamplerOptions sampler_options(const train::Config& c);
// The run's sampler, steps and guidance scale (diffusion.sampler, ...).
GenerateOptions generate_defaults(const train::Config& c);

// Prompts to images with a model and its caption encoder (the live model of
// a training run, or a loaded one).
class TextToImagePipeline {
 public:
  // autoencoder: the frozen codec of a latent model (null in pixel space);
  // its latents were multiplied by model.latent_scale for the DiT.
  TextToImagePipeline(const train::Config& config, const TextToImage& model, const CLIP* frozen_text,
                      const Autoencoder* autoencoder, const text::BpeTokenizer& tokenizer, Device device);
  // [N, C, H, W] f32 in [0, 1]. Errors name an empty prompt, and one longer
  // than the context (model.context_length tokens, end-of-text included)
  // unless `truncated` is given: then such prompts are cut as training cuts
  // its captions, and counted there.
  Tensor generate(const std::vector<std::string>& prompts, const GenerateOptions& o,
                  int64_t* truncated = nullptr) const;
  const train::Config& config() const { return config_; }

 private:
  const train::Config& config_;
  const TextToImage& model_;
  const CLIP* frozen_;
  const Autoencoder* autoencoder_;
  double latent_scale_ = 1;
  const text::BpeTokenizer& tokenizer_;
  Device device_;
  int64_t context_length_ = 0;
};

// A prompt as a caption model reads it (tokenize_caption: ids [L] and the
// end-of-text position). Errors name an empty prompt, and one longer than
// context_length tokens with end-of-text unless `truncated` is given: then it
// is cut as training cuts captions, and counted there.
std::pair<Tensor, int64_t> tokenize_prompt(const text::BpeTokenizer& tokenizer, const std::string& prompt,
                                           int64_t context_length, int64_t* truncated);

// A trained run: config, weights (EMA ones when saved), the frozen CLIP text
// tower when the run used one, and a pipeline over them.
struct TextToImageRun {
  train::Config config;
  std::unique_ptr<TextToImage> model;
  std::unique_ptr<CLIP> frozen_text;
  std::unique_ptr<Autoencoder> autoencoder;  // latent models only
  std::unique_ptr<text::BpeTokenizer> tokenizer;
  std::unique_ptr<TextToImagePipeline> pipeline;
  int64_t step = 0;
};
// Errors name the run when it is not a diffusion run or has no checkpoint.
std::unique_ptr<TextToImageRun> load_text2image_run(const std::string& run_dir, Device device = Device::cpu());

// Images [N, C, H, W] in [0, 1] -> one grid [C, rows * (H + pad) + pad, ...]
// with `columns` images a row (torchvision's make_grid, padding value 0).
Tensor image_grid(const Tensor& images, int64_t columns, int64_t padding = 2);

// How often generated images depict their captions, by a checker
// independent of the model: "shapes" (section 11 of the captioned-shapes
// spec: fm/data/shapes_checker.h). Generates for the first `limit` captions
// of `source` (0: all), `batch` at a time, seeds from o.seed. Returns
// "adherence" over all, "adherence_heldout" over captions naming a held-out
// colour-type pair, and their counts ("adherence_n", "adherence_heldout_n",
// "adherence_truncated": captions longer than the context, cut as in training);
// "adherence_colour": images where every captioned colour is detected (the
// first thing a model learns; a coarse check for short runs).
// `failures` (optional) collects "caption: reason" of the first misses.
std::map<std::string, double> adherence(const TextToImagePipeline& p, const data::ImageTextSource& source,
                                        const std::string& checker, int64_t limit, int64_t batch,
                                        const GenerateOptions& o, std::vector<std::string>* failures = nullptr);
// The same for any generator of images in [0, 1] from prompts (a mixed run's).
using ImageGenerator =
    std::function<Tensor(const std::vector<std::string>& prompts, const GenerateOptions& o, int64_t* truncated)>;
std::map<std::string, double> adherence(const ImageGenerator& generate, const data::ImageTextSource& source,
                                        const std::string& checker, int64_t limit, int64_t batch,
                                        const GenerateOptions& o, std::vector<std::string>* failures = nullptr);

struct ClassJudgeOptions {
  int64_t hidden = 512, epochs = 2, batch_size = 128;
  int64_t limit = 0;  // training samples (0: all)
  double lr = 1e-3;
  uint64_t seed = 7;
};

// The judge of class-conditional generations: an MLP classifier trained on
// a labelled source (Fashion-MNIST's training set) through `transform`
// (images in the data range [-1, 1]). It shares nothing with the generator.
class ClassJudge {
 public:
  ClassJudge(const data::ImageTextSource& train, const data::Transform& transform, int64_t num_classes,
             const ClassJudgeOptions& o = {});
  // images [N, C, H, W] in [-1, 1] -> class per image.
  std::vector<int64_t> classify(const Tensor& images) const;
  // How often it names the labelled class of the first `limit` samples (0:
  // all); with shift k, how often it names class (label + k) mod K instead,
  // i.e. accepts a wrong caption.
  double accuracy(const data::ImageTextSource& source, const data::Transform& transform, int64_t limit,
                  int64_t shift = 0) const;

 private:
  struct Net;
  std::shared_ptr<Net> net_;
};

// Generates `per_class` images of each class name and returns "adherence",
// how often the judge names the prompted class, and "adherence_n".
std::map<std::string, double> class_adherence(const TextToImagePipeline& p, const ClassJudge& judge,
                                              const std::vector<std::string>& classes, int64_t per_class,
                                              int64_t batch, const GenerateOptions& o);

}  // namespace fm::tasks
