// The diffusion kind's pieces for programs: options from a config, loading
// a run, prompts to images, grids and adherence.
#include <algorithm>
#include <filesystem>

#include "fm/autograd.h"
#include "fm/data/shapes.h"
#include "fm/data/shapes_checker.h"
#include "fm/factory.h"
#include "fm/image/transforms.h"
#include "fm/ops.h"
#include "fm/tasks/autoencoder.h"
#include "fm/tasks/clip.h"
#include "fm/tasks/diffusion.h"
#include "fm/tasks/image_text_data.h"
#include "fm/train/recipe.h"
#include "fm/train/trainer.h"

namespace fm::tasks {

DiTOptions dit_options(const train::Config& c) {
  DiTOptions o;
  o.image_size = c.get_int("model.image_size");
  o.channels = c.get_int("model.channels");
  o.patch_size = c.get_int("model.patch_size");
  o.width = c.get_int("model.width");
  o.layers = c.get_int("model.layers");
  o.heads = c.get_int("model.heads");
  o.mlp_hidden = c.get_int("model.mlp_hidden");
  o.cross_attention = c.get_bool("model.cross_attention");
  o.context_dim = c.get_int("model.text_width");
  o.cond_dim = c.get_bool("model.pooled") ? c.get_int("model.pooled_dim") : 0;
  if (c.get_int("model.latent_channels") > 0) {  // latent diffusion: the DiT sees the autoencoder's latents
    o.image_size = c.get_int("model.latent_size");
    o.channels = c.get_int("model.latent_channels");
  }
  return o;
}

void declare_diffusion_objective_keys(train::Config& c) {
  c.add_string("diffusion.process", "flow", "ddpm (discrete noise schedule) or flow (rectified flow)")
      .add_string("diffusion.schedule", "linear", "ddpm betas: linear, scaled_linear or cosine")
      .add_int("diffusion.timesteps", 1000, "ddpm: training timesteps (flow: the timestep scale)")
      .add_double("diffusion.beta_start", 1e-4, "ddpm: first beta")
      .add_double("diffusion.beta_end", 0.02, "ddpm: last beta")
      .add_string("diffusion.prediction", "", "epsilon, v_prediction, sample (x0) or velocity (empty: epsilon for ddpm, velocity for flow)")
      .add_string("diffusion.t_sampling", "logit_normal", "flow: training times uniform or logit_normal")
      .add_double("diffusion.logit_mean", 0.0, "flow: logit-normal mean")
      .add_double("diffusion.logit_std", 1.0, "flow: logit-normal std")
      .add_double("diffusion.shift", 1.0, "flow: timestep shift (SD3)")
      .add_double("diffusion.min_snr_gamma", 0.0, "Min-SNR loss weighting gamma (0: none)")
      .add_double("diffusion.cond_drop", 0.1, "probability a training caption is replaced by the empty one")
      .add_string("diffusion.sampler", "", "ddpm, ddim, euler, heun, dpmpp_2m, flow_euler, flow_heun (empty: ddim or flow_euler)")
      .add_int("diffusion.steps", 50, "sampling steps")
      .add_double("diffusion.cfg", 4.0, "classifier-free guidance scale (1: none)")
      .add_string("diffusion.timestep_spacing", "", "ddpm samplers: leading, linspace or trailing (empty: the sampler's diffusers default)")
      .add_bool("diffusion.clip_sample", false, "ddpm/ddim: clip predicted images to [-1, 1]")
      .add_double("diffusion.eta", 0.0, "ddim: noise (0: deterministic)")
      .add_bool("diffusion.karras", true, "euler, heun, dpmpp_2m: Karras sigmas");
}

void resolve_diffusion_objective(train::Config& c) {
  const bool flow = c.get_string("diffusion.process") == "flow";
  if (c.get_string("diffusion.prediction").empty()) c.set("diffusion.prediction", flow ? "velocity" : "epsilon", "diffusion.process");
  if (c.get_string("diffusion.sampler").empty()) c.set("diffusion.sampler", flow ? "flow_euler" : "ddim", "diffusion.process");
}

objectives::DiffusionOptions diffusion_options(const train::Config& c) {
  objectives::DiffusionOptions o;
  o.process = c.get_string("diffusion.process");
  o.beta_schedule = c.get_string("diffusion.schedule");
  o.num_train_timesteps = c.get_int("diffusion.timesteps");
  o.beta_start = c.get_double("diffusion.beta_start");
  o.beta_end = c.get_double("diffusion.beta_end");
  o.prediction = c.get_string("diffusion.prediction");
  o.t_sampling = c.get_string("diffusion.t_sampling");
  o.logit_mean = c.get_double("diffusion.logit_mean");
  o.logit_std = c.get_double("diffusion.logit_std");
  o.shift = c.get_double("diffusion.shift");
  o.min_snr_gamma = c.get_double("diffusion.min_snr_gamma");
  return o;
}

objectives::SamplerOptions sampler_options(const train::Config& c) {
  objectives::SamplerOptions o;
  o.prediction = c.get_string("diffusion.prediction");
  static_cast<objectives::ScheduleOptions&>(o) = diffusion_options(c);
  o.timestep_spacing = c.get_string("diffusion.timestep_spacing");
  o.clip_sample = c.get_bool("diffusion.clip_sample");
  o.eta = c.get_double("diffusion.eta");
  o.karras = c.get_bool("diffusion.karras");
  o.shift = c.get_double("diffusion.shift");
  return o;
}

GenerateOptions generate_defaults(const train::Config& c) {
  GenerateOptions o;
  o.sampler = c.get_string("diffusion.sampler");
  o.steps = c.get_int("diffusion.steps");
  o.cfg = c.get_double("diffusion.cfg");
  return o;
}

TextToImagePipeline::TextToImagePipeline(const train::Config& config, const TextToImage& model, const CLIP* frozen_text,
                                         const Autoencoder* autoencoder, const text::BpeTokenizer& tokenizer,
                                         Device device)
    : config_(config), model_(model), frozen_(frozen_text), autoencoder_(autoencoder),
      latent_scale_(config.get_double("model.latent_scale")), tokenizer_(tokenizer), device_(device),
      context_length_(config.get_int("model.context_length")) {}

std::pair<Tensor, int64_t> tokenize_prompt(const text::BpeTokenizer& tokenizer, const std::string& prompt,
                                           int64_t context_length, int64_t* truncated) {
  if (prompt.find_first_not_of(" \t\r\n") == std::string::npos) error("generate: the prompt is empty");
  const size_t n = tokenizer.encode(prompt).size();
  if (int64_t(n) + 1 > context_length && truncated) ++*truncated;
  else if (int64_t(n) + 1 > context_length)
    error("generate: the prompt '", prompt, "' is ", n, " tokens; the model reads at most ", context_length - 1,
          " (model.context_length ", context_length, " with end-of-text)");
  return tokenize_caption(tokenizer, prompt, context_length);
}

Tensor TextToImagePipeline::generate(const std::vector<std::string>& prompts, const GenerateOptions& o,
                                     int64_t* truncated) const {
  if (prompts.empty()) error("generate: no prompts");
  std::vector<Tensor> rows;
  std::vector<int64_t> eots;
  for (const auto& p : prompts) {
    auto [ids, eot] = tokenize_prompt(tokenizer_, p, context_length_, truncated);
    rows.push_back(ids);
    eots.push_back(eot);
  }
  auto [null_ids, null_eot] = tokenize_caption(tokenizer_, "", context_length_);
  CaptionEncoderFn encode = [&](const Tensor& ids, const Tensor& eot) {
    return frozen_ ? clip_caption_features(*frozen_, ids, eot) : model_.text->forward(ids, eot);
  };
  auto sampler = objectives::make_sampler(o.sampler, sampler_options(config_));
  Generator gen(o.seed);
  NoGradGuard ng;
  Tensor x = tasks::generate(model_, encode, stack(rows).to(device_), tensor(eots).to(device_),
                             null_ids.unsqueeze(0).to(device_), tensor(std::vector<int64_t>{null_eot}).to(device_),
                             *sampler, o, gen);
  if (autoencoder_) x = autoencoder_->decode(x / latent_scale_);
  return clamp((x.to(DType::f32) + 1.0) * 0.5, 0.0, 1.0);  // data range [-1, 1] (mean = std = 0.5)
}

std::unique_ptr<TextToImageRun> load_text2image_run(const std::string& run_dir, Device device) {
  auto r = std::make_unique<TextToImageRun>();
  r->config = train::load_run_config(run_dir);
  const std::string kind = r->config.get_string("task.kind");
  if (kind != "diffusion") error(run_dir, " is a '", kind, "' run, not a diffusion (text-to-image) run");
  r->tokenizer = std::make_unique<text::BpeTokenizer>(caption_tokenizer(r->config.get_string("data.tokenizer")));
  const std::string clip_dir = r->config.get_string("model.text_encoder");
  CaptionEncoderOptions text{r->config.get_int("model.vocab_size"), r->config.get_int("model.context_length"),
                             r->config.get_int("model.text_width"), r->config.get_int("model.text_layers"),
                             r->config.get_int("model.text_heads")};
  r->model = std::make_unique<TextToImage>(dit_options(r->config), clip_dir.empty() ? &text : nullptr);
  r->step = train::load_run_weights(run_dir, *r->model);
  r->model->to(device);
  r->model->eval();
  if (!clip_dir.empty()) {
    r->frozen_text = std::move(load_clip_run(clip_dir).model);
    r->frozen_text->to(device);
  }
  if (const std::string ae = r->config.get_string("model.autoencoder"); !ae.empty()) {
    r->autoencoder = load_autoencoder_run(ae);
    r->autoencoder->to(device);
  }
  r->pipeline = std::make_unique<TextToImagePipeline>(r->config, *r->model, r->frozen_text.get(), r->autoencoder.get(),
                                                      *r->tokenizer, device);
  return r;
}

Tensor image_grid(const Tensor& images, int64_t columns, int64_t padding) {
  if (images.dim() != 4) error("image_grid: images must be [N, C, H, W], got ", images.shape());
  const int64_t N = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  const int64_t cols = std::max<int64_t>(1, std::min(columns, N)), rows = (N + cols - 1) / cols;
  Tensor grid = zeros({C, rows * (H + padding) + padding, cols * (W + padding) + padding});
  const Tensor src = images.to(Device::cpu()).to(DType::f32);
  for (int64_t i = 0; i < N; ++i) {
    const int64_t y = padding + (i / cols) * (H + padding), x = padding + (i % cols) * (W + padding);
    grid.narrow(1, y, H).narrow(2, x, W).copy_(src.select(0, i));
  }
  return grid;
}

std::map<std::string, double> adherence(const TextToImagePipeline& p, const data::ImageTextSource& source,
                                        const std::string& checker, int64_t limit, int64_t batch,
                                        const GenerateOptions& o, std::vector<std::string>* failures) {
  const ImageGenerator generate = [&p](const std::vector<std::string>& prompts, const GenerateOptions& go,
                                       int64_t* truncated) { return p.generate(prompts, go, truncated); };
  return adherence(generate, source, checker, limit, batch, o, failures);
}

std::map<std::string, double> adherence(const ImageGenerator& generate, const data::ImageTextSource& source,
                                        const std::string& checker, int64_t limit, int64_t batch,
                                        const GenerateOptions& o, std::vector<std::string>* failures) {
  if (checker != "shapes") error("adherence: unknown checker '", checker, "' (known: shapes)");
  const int64_t n = limit > 0 ? std::min(limit, source.size()) : source.size();
  int64_t ok = 0, held = 0, held_ok = 0, colour_ok = 0, truncated = 0;
  for (int64_t start = 0; start < n; start += batch) {
    std::vector<std::string> captions;
    for (int64_t i = start; i < std::min(n, start + batch); ++i) captions.push_back(source.read(i).caption);
    GenerateOptions bo = o;
    bo.seed = o.seed + uint64_t(start);  // each batch its own noise, the same for every run
    const Tensor images = generate(captions, bo, &truncated).to(Device::cpu());
    for (size_t i = 0; i < captions.size(); ++i) {
      const image::Image img = image::from_tensor(images.select(0, int64_t(i)));
      if (img.channels != 3 || img.height != img.width) error("adherence: the shapes checker needs square RGB images");
      const data::ShapeCheck check = data::check_shapes_caption(img.data.data(), img.width, captions[i]);
      bool held_out = false, colours = true;
      const auto found = data::detect_shapes(img.data.data(), img.width);
      for (const auto& s : data::parse_shapes_caption(captions[i]).shapes) {
        held_out = held_out || data::is_held_out_pair(s.colour, s.type);
        colours = colours && std::any_of(found.begin(), found.end(), [&](const data::DetectedShape& d) { return d.colour == s.colour; });
      }
      colour_ok += colours;
      ok += check.ok;
      held += held_out;
      held_ok += held_out && check.ok;
      if (!check.ok && failures && failures->size() < 20) failures->push_back(captions[i] + ": " + check.reason);
    }
  }
  std::map<std::string, double> out{{"adherence", n ? double(ok) / double(n) : 0.0}, {"adherence_n", double(n)},
                                    {"adherence_colour", n ? double(colour_ok) / double(n) : 0.0},
                                    {"adherence_heldout_n", double(held)},
                                    {"adherence_truncated", double(truncated)}};
  if (held) out["adherence_heldout"] = double(held_ok) / double(held);
  return out;
}

}  // namespace fm::tasks
