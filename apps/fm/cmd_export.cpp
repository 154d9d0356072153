// fm export RUN_DIR --out DIR [--format libfm|hf]
// fm import hf-gpt2 --from HF_DIR --out RUN_DIR
#include <cstdio>

#include "commands.h"
#include "fm/error.h"
#include "fm/tasks/run_export.h"
#include "options.h"

namespace fm::app {

int cmd_export(const std::vector<std::string>& args) {
  Flags f("usage: fm export RUN_DIR --out DIR [--format libfm|hf]\n\n"
          "Writes the newest weights of a run (its EMA weights when it keeps them) into DIR.\n"
          "libfm: model.safetensors under libfm's parameter names (what finetune.from reads) and\n"
          "config.json with the run's kind, step and config keys and every tensor's name, shape,\n"
          "dtype and description. hf (lm runs): Hugging Face's GPT-2 layout (config.json,\n"
          "model.safetensors, and vocab.json + merges.txt when the run has a tokenizer), which\n"
          "transformers.GPT2LMHeadModel.from_pretrained(DIR) loads.");
  f.option("out", "", "output directory").option("format", "libfm", "libfm or hf");
  if (!f.parse(args)) return 0;
  if (f.positional().size() != 1) error("export: expected one RUN_DIR (fm export RUN_DIR --out DIR)");
  if (f.get("out").empty()) error("export: --out DIR is required");
  const tasks::ExportResult r = tasks::export_run(f.positional()[0], f.get("out"), f.get("format"));
  std::printf("exported %s step %lld (%s weights, %lld tensors%s) as %s to %s\n", f.positional()[0].c_str(),
              (long long)r.step, r.ema ? "EMA" : "model", (long long)r.tensors, r.tokenizer ? ", tokenizer" : "",
              f.get("format").c_str(), f.get("out").c_str());
  return 0;
}

int cmd_import(const std::vector<std::string>& args) {
  Flags f("usage: fm import hf-gpt2 --from HF_DIR --out RUN_DIR\n\n"
          "Makes RUN_DIR an lm run of a Hugging Face GPT-2 directory (config.json,\n"
          "model.safetensors, and optionally vocab.json + merges.txt): config.ini and\n"
          "checkpoints/step_0, for fm generate text, fm eval (--data.val=...) and finetune.from.");
  f.option("from", "", "Hugging Face model directory").option("out", "", "run directory to create");
  if (!f.parse(args)) return 0;
  if (f.positional().size() != 1 || f.positional()[0] != "hf-gpt2")
    error("import: expected the format 'hf-gpt2' (fm import hf-gpt2 --from HF_DIR --out RUN_DIR)");
  if (f.get("from").empty() || f.get("out").empty()) error("import: --from HF_DIR and --out RUN_DIR are required");
  tasks::import_hf_gpt2_run(f.get("from"), f.get("out"));
  std::printf("imported %s as the lm run %s\n", f.get("from").c_str(), f.get("out").c_str());
  return 0;
}

}  // namespace fm::app
