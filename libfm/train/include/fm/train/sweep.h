#pragma once
// Sweeps (`fm sweep`): one recipe run at every point of a grid. A grid is
// space-separated axes, each `key=v1,v2,...`; keys joined by ':' vary
// together, their values joined the same way:
//   "model.n_layer:model.d_model=2:64,4:128 train.max_steps=200,400"
// The points are the Cartesian product of the axes, the first outermost.
#include <string>
#include <utility>
#include <vector>

namespace fm::train {

struct SweepPoint {
  // A directory name from the values, e.g. "n_layer2-d_model64-max_steps200"
  // (each key's last part; the whole key where two would read the same).
  std::string name;
  std::vector<std::pair<std::string, std::string>> values;  // key, value in the grid's order
  std::vector<std::string> overrides() const;                // "--key=value" each
};

// Errors name the axis at fault: no '=', an empty value, a value with the
// wrong number of ':' parts, a key on two axes, a value twice on an axis.
std::vector<SweepPoint> expand_grid(const std::string& grid);

}  // namespace fm::train
