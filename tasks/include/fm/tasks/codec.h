#pragma once
// The codec kind (`[task] kind = codec`, tasks/audio/codec_task.cpp): the
// model options a run's config gives, and a trained run loaded for
// `fm codec encode|decode` and for the kinds that model its codes (music).
// Built with LIBFM_MEDIA.
#include <memory>
#include <string>

#include "fm/tasks/codec_model.h"
#include "fm/train/config.h"

namespace fm::tasks {

// The model.* and quantizer.* keys of a codec run's config.
CodecOptions codec_options(const train::Config& c);

struct CodecRun {
  train::Config config;
  std::unique_ptr<Codec> model;  // newest checkpoint (EMA weights when kept), eval mode
  int64_t step = 0;              // the checkpoint's step
};
// Errors name the run when it is another kind, has no config or no checkpoint.
CodecRun load_codec_run(const std::string& run_dir);

}  // namespace fm::tasks
