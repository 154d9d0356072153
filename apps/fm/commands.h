#pragma once
// The subcommands of `fm`. Each takes the arguments after its name and
// returns the exit code; errors are thrown as fm::Error.
#include <string>
#include <vector>

namespace fm::app {

int cmd_train(const std::vector<std::string>& args);
int cmd_finetune(const std::vector<std::string>& args);
int cmd_generate(const std::vector<std::string>& args);
int cmd_prepare(const std::vector<std::string>& args);
int cmd_tokenizer(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);
int cmd_eval(const std::vector<std::string>& args);
int cmd_sweep(const std::vector<std::string>& args);
int cmd_scaling(const std::vector<std::string>& args);  // fit
int cmd_export(const std::vector<std::string>& args);
int cmd_import(const std::vector<std::string>& args);  // hf-gpt2
int cmd_generate_image(const std::vector<std::string>& args);  // LIBFM_MEDIA
int cmd_generate_music(const std::vector<std::string>& args);  // LIBFM_MEDIA
int cmd_caption(const std::vector<std::string>& args);         // LIBFM_MEDIA
int cmd_prepare_media(const std::vector<std::string>& args);  // shapes, images (LIBFM_MEDIA)
int cmd_prepare_melodies(const std::vector<std::string>& args);  // after "melodies" (LIBFM_MEDIA)
int cmd_prepare_midi(const std::vector<std::string>& args);      // after "midi" (LIBFM_MEDIA)
int cmd_codec(const std::vector<std::string>& args);           // encode, decode (LIBFM_MEDIA)
int cmd_check(const std::vector<std::string>& args);           // melodies (LIBFM_MEDIA)
int cmd_serve(const std::vector<std::string>& args);           // cpp-httplib (FM_HAVE_HTTPLIB)

}  // namespace fm::app
