#include "text_recipe.h"

namespace fm::app {

train::Config text_recipe_config() {
  train::Config c;
  c.add_int("model.vocab_size", 0, "vocabulary size (0: the tokenizer's)")
      .add_int("model.block_size", 256, "context length T")
      .add_int("model.n_layer", 6, "transformer blocks")
      .add_int("model.n_head", 6, "attention heads")
      .add_int("model.d_model", 384, "model width")
      .add_double("model.dropout", 0.0, "dropout probability")
      .add_int("train.batch_size", 8, "sequences per micro-batch")
      .add_int("train.grad_accum", 1, "micro-batches per optimizer step")
      .add_int("train.max_steps", 1000, "optimizer steps")
      .add_double("train.lr", 1e-3, "peak learning rate")
      .add_double("train.min_lr", 1e-4, "final learning rate")
      .add_int("train.warmup_steps", 100, "linear warmup steps")
      .add_string("train.schedule", "cosine", "cosine, linear or constant after warmup")
      .add_double("train.weight_decay", 0.1, "AdamW weight decay (not on norms, biases, embeddings)")
      .add_double("train.beta2", 0.99, "AdamW beta2")
      .add_double("train.grad_clip", 1.0, "clip the global gradient norm (0: off)")
      .add_int("train.eval_every", 250, "steps between validation losses (0: never)")
      .add_int("train.eval_steps", 20, "batches per validation loss")
      .add_int("train.save_every", 500, "steps between checkpoints (the last step is always saved)")
      .add_int("train.log_every", 10, "steps between progress lines")
      .add_int("train.sample_every", 0, "steps between text samples in the logs (0: at evaluations)")
      .add_int("train.sample_tokens", 64, "tokens per logged sample")
      .add_int("train.seed", 1337, "seed of initialisation, data order and dropout")
      .add_int("runtime.threads", 0, "CPU threads (0: all cores)")
      .add_string("runtime.device", "cpu", "cpu or cuda:N")
      .add_string("runtime.precision", "f32", "f32, or bf16 (bf16 matrix products, f32 master weights and optimizer)")
      .add_double("runtime.peak_gflops", 0, "peak for MFU (0: measure a GEMM at start)")
      .add_string("data.train", "", "training shards (glob pattern)")
      .add_string("data.val", "", "validation shards (glob pattern)")
      .add_string("data.tokenizer", "", "tokenizer file (for samples and fm generate)")
      .add_string("run.dir", "runs/default", "run directory")
      .add_int("run.stop_after", 0, "stop this invocation after N steps (0: run to max_steps); resume later");
  return c;
}

nn::GPTOptions gpt_options(const train::Config& c) {
  nn::GPTOptions o;
  o.vocab_size = c.get_int("model.vocab_size");
  o.block_size = c.get_int("model.block_size");
  o.n_layer = c.get_int("model.n_layer");
  o.n_head = c.get_int("model.n_head");
  o.d_model = c.get_int("model.d_model");
  o.dropout = c.get_double("model.dropout");
  return o;
}

optim::LRSchedule lr_schedule(const train::Config& c) {
  optim::LRSchedule s;
  s.kind = c.get_string("train.schedule");
  s.lr = c.get_double("train.lr");
  s.min_lr = c.get_double("train.min_lr");
  s.warmup_steps = c.get_int("train.warmup_steps");
  s.max_steps = c.get_int("train.max_steps");
  s.validate();
  return s;
}

const std::vector<std::string>& model_shape_keys() {
  static const std::vector<std::string> keys{"model.vocab_size", "model.block_size", "model.n_layer", "model.n_head",
                                             "model.d_model"};
  return keys;
}

}  // namespace fm::app
