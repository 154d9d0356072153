#pragma once
// Image-text data for the tasks that read it (clip; captioning and
// text-to-image later): opening a source from a recipe's data key, and the
// transform from a sample to model inputs.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fm/data/loader.h"
#include "fm/text/bpe.h"
#include "fm/train/config.h"
#include "fm/train/task.h"

namespace fm::tasks {

// A source from a data key's value:
//   idx:IMAGES,LABELS        IDX files (Fashion-MNIST), captions from `classes`
//   *.tar, {..} patterns     WebDataset shards (several separated by spaces)
//   a folder, .jsonl/.csv/.tsv  a caption folder (open_clip's columns)
std::shared_ptr<const data::ImageTextSource> open_image_text(const std::string& spec,
                                                             const std::vector<std::string>& classes);

// The data.* keys every kind that reads images declares: data.train,
// data.val (val_help: what the kind does with it), data.classes,
// data.workers and the transform's (random_crop, crop_scale_min, hflip,
// mean, std).
void declare_image_data_keys(train::Config& c, const std::string& val_help);

// An image kind's training stream: a DataLoader over data.train with
// train.batch_size, data.workers and train.seed, whose next() prints each
// skipped sample's message once to stderr (the count is in the batch).
class TrainImages {
 public:
  // Sharded by ctx.rank over ctx.world_size.
  TrainImages(const train::Config& c, const train::RunContext& ctx, const std::vector<std::string>& classes,
              data::Transform transform);
  data::LoaderBatch next();
  int64_t position() const { return loader_.position(); }  // for the train state
  void set_position(int64_t position) { loader_.set_position(position); }

 private:
  data::DataLoader loader_;
  size_t reported_ = 0;  // skip messages printed so far
};

// "a,b , c" -> {"a", "b", "c"}; "fashion-mnist" -> Fashion-MNIST's classes.
std::vector<std::string> parse_class_list(const std::string& value);
// "2,4, 5" -> {2, 4, 5}: the value of config key `key` (named in the errors:
// an item that is not an integer, an empty list).
std::vector<int64_t> parse_int_list(const std::string& key, const std::string& value);

struct ImageTransformOptions {
  int64_t size = 32;         // output side
  int64_t channels = 3;      // 1: luminance, 3: RGB
  bool random_crop = false;  // torchvision RandomResizedCrop; else resize shorter side + centre crop
  double crop_scale_min = 0.08;
  bool hflip = false;        // random horizontal flips (not for captions that say left and right)
  std::vector<float> mean{0.5f}, std{0.5f};  // per channel, or one value for all
};

// From a recipe's data.* keys (model.image_size, model.channels too).
ImageTransformOptions image_transform_options(const train::Config& c);
// data.templates: the prompt templates for class-name captions, or none.
std::vector<std::string> caption_templates(const train::Config& c);

// Sample -> {"image": [C, S, S] f32, "text": [L] i64, "eot": [] i64}.
// With templates, the sample's caption is a class name (IDX) put into one
// of them, chosen by the sample seed.
// Errors (undecodable images) name the sample's origin; the loader skips it.
data::Transform image_text_transform(const ImageTransformOptions& image, const text::BpeTokenizer& tokenizer,
                                     int64_t context_length, std::vector<std::string> templates);

// Sample -> {"image": [C, S, S] f32} alone, for kinds that ignore captions
// (the autoencoder): the same image, crop and flip as image_text_transform.
data::Transform image_transform(const ImageTransformOptions& image);

// Caption -> ids [L] (end-of-text after at most L - 1 tokens, zero padding)
// and the end-of-text position.
std::pair<Tensor, int64_t> tokenize_caption(const text::BpeTokenizer& tokenizer, const std::string& caption,
                                            int64_t context_length);
// Captions cut short by tokenize_caption so far in this process (a context
// too short for the data): kinds log it so the cut is never silent.
int64_t captions_truncated();

// Runs f on consecutive batches of the first `limit` samples of source (0:
// all), in order, transformed in the calling thread.
void for_each_batch(const data::ImageTextSource& source, const data::Transform& transform, int64_t batch_size,
                    int64_t limit, const std::function<void(const data::LoaderBatch&)>& f);

// The tokenizer file, or bytes + <|endoftext|> when path is empty.
text::BpeTokenizer caption_tokenizer(const std::string& path);
int32_t end_of_text_id(const text::BpeTokenizer& tokenizer);

}  // namespace fm::tasks
