#pragma once
// Subcommands of the gigareg tool. Each `add_*` registers its options on the app and returns the
// function to run once parsing succeeded; the functions return the process exit code.
#include <CLI/CLI.hpp>

#include <functional>
#include <string>

#include "gigareg/log.hpp"
#include "gigareg/registration_params.hpp"
#include "gigareg/partition.hpp"
#include "gigareg/volume.hpp"

namespace gigareg::cli {

using Command = std::function<int()>;

Command add_info_command(CLI::App& app);
Command add_demo_command(CLI::App& app);
/// Where `gigareg register` reports, for a program that runs the tool's commands inside itself (the
/// Python package): each hook that is set replaces what the tool does on its terminal.
struct RegisterHooks {
  /// Every iteration's report, instead of the progress display on stderr (-v 2's lines too).
  std::function<void(const IterationReport&)> progress;
  /// The library's messages at the level -v selects, instead of stderr.
  LogSink log;
  /// The summary of the run (stages, levels, outputs), instead of stdout.
  std::function<void(const std::string&)> summary;
};
Command add_register_command(CLI::App& app, RegisterHooks hooks = {});
Command add_apply_command(CLI::App& app);
Command add_jacobian_command(CLI::App& app);
Command add_invert_command(CLI::App& app);
Command add_phantom_command(CLI::App& app);
Command add_convert_command(CLI::App& app);

/// The number of voxels where det(I + du/dx) <= 0 (or is NaN) of a displacement field that covers
/// its whole grid, computed in the field's memory (host: CPU, device: CUDA); `det` (optional)
/// receives the determinants there. Shared by `gigareg jacobian` and register's check of the warp
/// it wrote.
double count_nonpositive_jacobian(const Volume<float>& field, Volume<float>* det = nullptr);
/// The same count for a field held in z-slabs by the processes of `partition` (each passes its
/// part, as register_files returns it): collective; every process gets the whole grid's count.
/// The halo of one voxel that the determinant reads is filled in `local` when its box has room.
double count_nonpositive_jacobian(Volume<float>& local, const Partition& partition);

}  // namespace gigareg::cli
