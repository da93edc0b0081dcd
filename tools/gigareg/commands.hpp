#pragma once
// Subcommands of the gigareg tool. Each `add_*` registers its options on the app and returns the
// function to run once parsing succeeded; the functions return the process exit code.
#include <CLI/CLI.hpp>

#include <functional>

namespace gigareg::cli {

using Command = std::function<int()>;

Command add_info_command(CLI::App& app);
Command add_demo_command(CLI::App& app);
Command add_register_command(CLI::App& app);
Command add_apply_command(CLI::App& app);
Command add_jacobian_command(CLI::App& app);
Command add_invert_command(CLI::App& app);
Command add_phantom_command(CLI::App& app);

}  // namespace gigareg::cli
