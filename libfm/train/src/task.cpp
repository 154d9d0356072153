#include "fm/train/task.h"

#include <filesystem>

#include "fm/io/atomic_file.h"
#include "fm/io/event_writer.h"

namespace fm::train {
namespace {

std::map<std::string, TaskKind>& registry() {
  static std::map<std::string, TaskKind> kinds;  // filled by static registrars at load time
  return kinds;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  io::AtomicFile f(path, "samples");
  f.write(bytes.data(), bytes.size());
  f.commit();
}

// "sample/caption 2" -> "sample_caption_2": tags become file names.
std::string file_stem(const std::string& tag) {
  std::string s = tag;
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') c = '_';
  return s;
}

}  // namespace

void register_task(TaskKind kind) {
  if (kind.name.empty() || !kind.declare_keys || !kind.make) error("register_task: a kind needs a name, keys and make");
  if (registry().count(kind.name)) error("register_task: kind '", kind.name, "' is registered twice");
  registry().emplace(kind.name, std::move(kind));
}

const TaskKind& find_task(const std::string& name) {
  auto it = registry().find(name);
  if (it == registry().end()) {
    std::string known;
    for (const auto& n : task_names()) known += (known.empty() ? "" : ", ") + n;
    error("task.kind: unknown kind '", name, "' (known: ", known.empty() ? "none" : known, ")");
  }
  return it->second;
}

std::vector<std::string> task_names() {
  std::vector<std::string> names;
  for (const auto& [name, kind] : registry()) names.push_back(name);
  return names;
}

SampleSink::SampleSink(std::string samples_dir, io::EventWriter* events, int64_t step)
    : dir_(std::move(samples_dir)), events_(events), step_(step) {
  std::filesystem::create_directories(dir_);
}

void SampleSink::text(const std::string& tag, const std::string& text) {
  if (events_) events_->add_text(tag, text, step_);
  write_file_atomic(dir_ + "/step_" + std::to_string(step_) + (tag == "sample" ? "" : "_" + file_stem(tag)) + ".txt",
                    text);
}

void SampleSink::image_png(const std::string& tag, const std::string& png, int height, int width) {
  if (events_)
    events_->add_image_png(tag, {reinterpret_cast<const uint8_t*>(png.data()), png.size()}, height, width, step_);
  write_file_atomic(dir_ + "/step_" + std::to_string(step_) + "_" + file_stem(tag) + ".png", png);
}

void SampleSink::audio_wav(const std::string& tag, const std::string& wav, double sample_rate, int channels,
                           int64_t frames) {
  if (events_)
    events_->add_audio_wav(tag, {reinterpret_cast<const uint8_t*>(wav.data()), wav.size()}, sample_rate, channels,
                           frames, step_);
  write_file_atomic(dir_ + "/step_" + std::to_string(step_) + "_" + file_stem(tag) + ".wav", wav);
}

}  // namespace fm::train
