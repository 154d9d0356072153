// [task] kind = lm: GPT language models (DESIGN.md, next_token objective).
#include <optional>

#include "fm/data/token_windows.h"
#include "fm/factory.h"
#include "fm/objectives/next_token.h"
#include "fm/tasks/lm.h"
#include "fm/tasks/sampling.h"
#include "fm/text/bpe.h"
#include "fm/train/task.h"

namespace fm::tasks {

nn::GPTOptions gpt_options(const train::Config& c) {
  nn::GPTOptions o;
  o.vocab_size = c.get_int("model.vocab_size");
  o.block_size = c.get_int("model.block_size");
  o.n_layer = c.get_int("model.n_layer");
  o.n_head = c.get_int("model.n_head");
  o.d_model = c.get_int("model.d_model");
  o.dropout = c.get_double("model.dropout");
  o.activation = c.get_string("model.activation");
  o.norm_eps = c.get_double("model.norm_eps");
  if (o.activation != "gelu" && o.activation != "gelu_tanh")
    error("config: key 'model.activation' must be gelu or gelu_tanh, got '", o.activation, "'");
  return o;
}

double gpt_flops_per_token(double params, int64_t n_layer, int64_t block_size, int64_t d_model) {
  return 6.0 * params + 12.0 * double(n_layer * block_size * d_model);
}

namespace {

void declare_lm_keys(train::Config& c) {
  c.add_int("model.vocab_size", 0, "vocabulary size (0: the tokenizer's)")
      .add_int("model.block_size", 256, "context length T")
      .add_int("model.n_layer", 6, "transformer blocks")
      .add_int("model.n_head", 6, "attention heads")
      .add_int("model.d_model", 384, "model width")
      .add_double("model.dropout", 0.0, "dropout probability")
      .add_string("model.activation", "gelu", "MLP activation: gelu (exact) or gelu_tanh (GPT-2's, Hugging Face's gelu_new)")
      .add_double("model.norm_eps", 1e-5, "LayerNorm epsilon")
      .add_int("train.eval_steps", 20, "batches per validation loss")
      .add_int("train.sample_tokens", 64, "tokens per logged sample")
      .add_string("data.train", "", "training shards (glob pattern)")
      .add_string("data.val", "", "validation shards (glob pattern)")
      .add_string("data.tokenizer", "", "tokenizer file (for samples and fm generate)");
}

void resolve_vocab_size(train::Config& c) {
  if (c.get_int("model.vocab_size") != 0) return;
  const std::string tok = c.get_string("data.tokenizer");
  if (tok.empty()) error("config: model.vocab_size is 0 and no data.tokenizer is given to take it from");
  c.set("model.vocab_size", std::to_string(text::BpeTokenizer::load(tok).vocab_size()), "data.tokenizer");
}

class LmTask : public train::Task {
 public:
  explicit LmTask(const train::Config& c) : cfg_(c) {}

  void build(const train::RunContext& ctx) override {
    device_ = ctx.device;
    rank_ = ctx.rank, world_size_ = ctx.world_size;
    B_ = cfg_.get_int("train.batch_size");
    T_ = cfg_.get_int("model.block_size");
    const int64_t V = cfg_.get_int("model.vocab_size");
    const uint64_t seed = uint64_t(cfg_.get_int("train.seed"));
    manual_seed(seed);  // initialisation and dropout draw from the default generator
    model_ = std::make_unique<nn::GPT>(gpt_options(cfg_));
    if (!ctx.open_data) {
      bench_ids_ = randint(0, V, {B_, T_}).to(device_);
      bench_targets_ = randint(0, V, {B_, T_}).to(device_);
      return;
    }
    if (const std::string tok = cfg_.get_string("data.tokenizer"); !tok.empty())
      tokenizer_ = text::BpeTokenizer::load(tok);
    data::TokenWindowsOptions wo;
    wo.batch_size = B_;
    wo.seq_len = T_;
    wo.seed = seed;
    wo.vocab_size = V;
    wo.rank = ctx.rank;
    wo.world_size = ctx.world_size;
    const std::string val = cfg_.get_string("data.val").empty() ? cfg_.get_string("data.train") : cfg_.get_string("data.val");
    train_.emplace(cfg_.get_string("data.train"), wo);
    val_.emplace(val, wo);
  }

  nn::Module& model() override { return *model_; }

  train::StepOutput train_step() override {
    const data::Batch b = train_->next();
    return {loss(b.inputs.to(device_), b.targets.to(device_)), {}};
  }
  train::StepOutput bench_step() override { return {loss(bench_ids_, bench_targets_), {}}; }

  std::map<std::string, double> evaluate() override {
    const int64_t batches = cfg_.get_int("train.eval_steps");
    double total = 0;
    for (int64_t i = 0; i < batches; ++i) {
      // Rank r reads block i * W + r: the world reads the blocks one rank with W x B rows would.
      const data::Batch b = val_->sequential(i * world_size_ + rank_);
      total += loss(b.inputs.to(device_), b.targets.to(device_)).item();
    }
    return {{"val_loss", total / double(batches)}};
  }

  void write_samples(int64_t step, train::SampleSink& sink) override {
    if (!tokenizer_) return;
    Generator gen(uint64_t(cfg_.get_int("train.seed")) + uint64_t(step));
    SamplingOptions o;
    o.max_new_tokens = cfg_.get_int("train.sample_tokens");
    o.temperature = 0.8;
    o.top_k = 40;
    sink.text("sample", tokenizer_->decode(sample(*model_, tokenizer_->encode("\n"), o, gen)));
  }

  int64_t batch_samples() const override { return B_; }
  int64_t tokens_per_sample() const override { return T_; }
  double flops_per_sample() const override {
    return double(T_) * gpt_flops_per_token(double(model_->num_parameters()), cfg_.get_int("model.n_layer"), T_,
                                            cfg_.get_int("model.d_model"));
  }

  train::TaskState state() const override { return {{{"train", train_ ? train_->position() : 0}}, {}, {}}; }
  void load_state(const train::TaskState& s) override {
    if (auto it = s.positions.find("train"); it != s.positions.end() && train_) train_->set_position(it->second);
  }

 private:
  Tensor loss(const Tensor& inputs, const Tensor& targets) const {
    return objectives::next_token_loss(model_->forward(inputs), targets);
  }

  const train::Config& cfg_;
  Device device_;
  int64_t B_ = 0, T_ = 0;
  int rank_ = 0, world_size_ = 1;
  std::unique_ptr<nn::GPT> model_;
  std::optional<text::BpeTokenizer> tokenizer_;
  std::optional<data::TokenWindows> train_, val_;
  Tensor bench_ids_, bench_targets_;
};

const train::TaskRegistrar registrar{{
    "lm",
    "GPT language model: next-token loss on token shards",
    declare_lm_keys,
    resolve_vocab_size,
    // activation and norm_eps change no shape, but weights trained with one are wrong under another
    {"model.vocab_size", "model.block_size", "model.n_layer", "model.n_head", "model.d_model", "model.activation",
     "model.norm_eps"},
    [](const train::Config& c) { return std::make_unique<LmTask>(c); },
}};

}  // namespace
}  // namespace fm::tasks
