#include "fm/data/image_text.h"

#include "fm/error.h"

namespace fm::data {

ImageTextSource::~ImageTextSource() = default;

// A few of OpenAI's CLIP ImageNet prompts (as open_clip ships them), the ones
// that suit any object class.
const std::vector<std::string>& default_caption_templates() {
  static const std::vector<std::string> templates = {
      "a photo of a {}.",           "a blurry photo of a {}.",  "a black and white photo of a {}.",
      "a low contrast photo of a {}.", "a close-up photo of a {}.", "a bright photo of a {}.",
      "a cropped photo of a {}.",   "a good photo of a {}.",    "a photo of the {}.",
      "a rendering of a {}.",       "a drawing of a {}.",       "a photo of one {}.",
  };
  return templates;
}

std::string apply_caption_template(const std::string& caption_template, const std::string& class_name) {
  const size_t at = caption_template.find("{}");
  if (at == std::string::npos) error("caption template '", caption_template, "' has no {} for the class name");
  std::string out = caption_template;
  return out.replace(at, 2, class_name);
}

std::string class_caption(const std::string& class_name, uint64_t seed, const std::vector<std::string>& templates) {
  FM_CHECK(!templates.empty(), "class_caption: no templates for class '", class_name, "'");
  return apply_caption_template(templates[size_t(seed % templates.size())], class_name);
}

}  // namespace fm::data
