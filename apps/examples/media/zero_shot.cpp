// Zero-shot image classification with a trained CLIP run, using libfm as a
// library: the image and "a photo of a {label}." prompts go through the two
// towers, and the labels are ranked by the model's scaled cosine similarity.
//
//   build/bin/zero_shot --run runs/clip_fmnist IMAGE --labels "sneaker,coat,bag"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fm/data/image_text.h"
#include "fm/fm.h"
#include "fm/tasks/clip.h"
#include "fm/tasks/image_text_data.h"

int main(int argc, char** argv) {
  std::string run, image_path, labels;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--run" || a == "--labels") && i + 1 < argc) (a == "--run" ? run : labels) = argv[++i];
    else if (a == "--help" || a == "-h") {
      std::printf("usage: zero_shot --run RUN_DIR IMAGE --labels \"label1,label2,...\"\n");
      return 0;
    } else image_path = a;
  }
  try {
    if (run.empty() || image_path.empty() || labels.empty()) fm::error("need --run, an image and --labels (try --help)");
    fm::tasks::ClipRun clip = fm::tasks::load_clip_run(run);
    const std::vector<std::string> classes = fm::tasks::parse_class_list(labels);
    fm::data::ImageTextSample sample;
    sample.origin = image_path;
    std::ifstream in(image_path, std::ios::binary);
    if (!in) fm::error("cannot read '", image_path, "'");
    sample.image.assign(std::istreambuf_iterator<char>(in), {});
    fm::NoGradGuard ng;
    const fm::Tensor chw = clip.transform(sample, 0).at("image");  // decodes; errors name the file
    const fm::Tensor image = chw.reshape({1, chw.size(0), chw.size(1), chw.size(2)});
    const fm::Tensor texts = fm::tasks::class_text_features(*clip.model, classes, fm::data::default_caption_templates(),
                                                            clip.tokenizer, fm::Device::cpu());
    const double scale = std::exp(clip.model->logit_scale.item());
    const fm::Tensor probs = fm::softmax(fm::matmul(clip.model->encode_image(image), texts.t()) * scale, -1);
    const std::vector<float> p = probs.to_vector<float>();
    std::vector<size_t> order(p.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
    for (size_t i : order) std::printf("%6.2f%%  %s\n", 100.0 * p[i], classes[i].c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zero_shot: %s\n", e.what());
    return 1;
  }
}
