// gigareg register's command line in the library (register_command.hpp): parse -> print -> parse
// gives the same parameters and files for every preset, for the README's examples and for values
// that print awkwardly; errors name the option; register_files logs the command.

#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/io.hpp"
#include "gigareg/log.hpp"
#include "gigareg/register_command.hpp"
#include "test_util.hpp"

namespace gigareg {
namespace {

/// parse(print(c)) == c, and the printed command is stable (printing the re-parsed command gives
/// the same line).
void expect_round_trip(const RegisterCommand& c, const std::string& origin) {
  const std::string line = format_register_command(c.params, c.files);
  SCOPED_TRACE(origin + "\n  printed: " + line);
  const RegisterCommand again = parse_register_command(line);
  EXPECT_TRUE(again.params == c.params);
  EXPECT_TRUE(again.files == c.files);
  EXPECT_EQ(format_register_command(again.params, again.files), line);
  EXPECT_TRUE(register_command_reproduces(c.params, c.files));
}

TEST(RegisterCommand, PresetsRoundTrip) {
  for (const char* name : {"rigid", "affine", "greedy", "syn"}) {
    const std::string line = std::string("--preset ") + name + " -f fixed.nii.gz -m moving.nii.gz -o out/";
    const RegisterCommand c = parse_register_command(split_command_line(line));
    EXPECT_TRUE(c.params.stages == registration_preset(name).stages) << name;
    EXPECT_EQ(c.params.initial.type, InitialTransformType::CenterOfMass) << name;
    EXPECT_EQ(c.files.fixed, "fixed.nii.gz");
    EXPECT_EQ(c.files.moving, "moving.nii.gz");
    EXPECT_EQ(c.files.warped, "out/Warped.nii.gz");
    // Written as a person would write it: whole numbers plain, brackets quoted for the shell.
    EXPECT_NE(format_register_command(c.params, c.files).find("-c '[200x100x50,1e-06,10]' -f 4x2x1 -s 2x1x0vox"),
              std::string::npos) << format_register_command(c.params, c.files);
    expect_round_trip(c, line);
  }
}

/// The `gigareg register` commands of the README's code blocks (continuation lines joined; a
/// word "a|b|c" stands for each of a, b and c; commands with "..." are sketches and skipped).
std::vector<std::string> readme_register_commands() {
  std::ifstream in(std::string(GIGAREG_SOURCE_DIR) + "/README.md");
  std::vector<std::string> out;
  std::string line, command;
  bool in_code = false;
  while (std::getline(in, line)) {
    if (line.rfind("```", 0) == 0) {
      in_code = !in_code;
      continue;
    }
    if (!in_code) continue;
    const bool continued = !line.empty() && line.back() == '\\';
    command += continued ? line.substr(0, line.size() - 1) : line;
    if (continued) continue;
    const std::size_t at = command.find("gigareg register ");
    const std::size_t comment = command.find(" #");
    if (at != std::string::npos && command.find("...") == std::string::npos && (comment == std::string::npos || comment > at))
      out.push_back(command.substr(at, comment == std::string::npos ? std::string::npos : comment - at));
    command.clear();
  }
  // Expand the alternatives.
  std::vector<std::string> expanded;
  for (const std::string& c : out) {
    std::vector<std::string> words = split_command_line(c), variants = {""};
    for (const std::string& w : words) {
      std::vector<std::string> choices;
      std::stringstream ss(w);
      for (std::string part; std::getline(ss, part, '|');) choices.push_back(part);
      std::vector<std::string> next;
      for (const std::string& v : variants)
        for (const std::string& choice : choices) next.push_back(v + (v.empty() ? "" : " ") + choice);
      variants = next;
    }
    expanded.insert(expanded.end(), variants.begin(), variants.end());
  }
  return expanded;
}

TEST(RegisterCommand, ReadmeExamplesRoundTrip) {
  const std::vector<std::string> commands = readme_register_commands();
  // The short form's three presets, the stage form, and the multi-GPU stage form.
  ASSERT_GE(commands.size(), 5u) << "the README's examples were not found";
  for (const std::string& c : commands) expect_round_trip(parse_register_command(c), c);
}

TEST(RegisterCommand, StageFormSetsEveryField) {
  const RegisterCommand c = parse_register_command(
      "gigareg register -d 3 -o [out/r_,out/w.nii.gz,out/i.nii.gz] -r [init.mat,1] "
      "-t Rigid[0.3] -m MeanSquares[f.nii,m.nii,2] -c [10x5,1e-7,4] -f 2x1 -s 1x0mm "
      "-t SyN[0.2,3,0.5] -m CC[f.nii,m.nii,1,3] -c 7 -f 1 -s 0vox -x [fm.nii,NULL] "
      "--field-optimizer adam --adam-moments float32 --device cpu --inverse-iterations 12 "
      "--warp-extension .nii --float 1 --collapse-output-transforms 1");
  ASSERT_EQ(c.params.stages.size(), 2u);
  const StageParams& rigid = c.params.stages[0];
  EXPECT_EQ(rigid.transform, TransformType::Rigid);
  EXPECT_EQ(rigid.step, 0.3);
  EXPECT_EQ(rigid.metric.type, MetricType::MeanSquares);
  EXPECT_EQ(rigid.metric.weight, 2.0);
  EXPECT_EQ(rigid.convergence.iterations, (std::vector<int>{10, 5}));
  EXPECT_EQ(rigid.convergence.threshold, 1e-7);
  EXPECT_EQ(rigid.convergence.window, 4);
  EXPECT_TRUE(rigid.sigmas_in_mm);
  EXPECT_EQ(rigid.optimizer, FieldOptimizer::Auto);  // linear stages have no field optimiser
  EXPECT_TRUE(rigid.adam_bfloat16_moments);
  const StageParams& syn = c.params.stages[1];
  EXPECT_EQ(syn.transform, TransformType::SyN);
  EXPECT_EQ(syn.gradient_sigma, std::sqrt(3.0));
  EXPECT_EQ(syn.field_sigma, std::sqrt(0.5));
  EXPECT_EQ(syn.metric.radius, 3);
  EXPECT_EQ(syn.optimizer, FieldOptimizer::Adam);
  EXPECT_FALSE(syn.adam_bfloat16_moments);
  EXPECT_FALSE(syn.sigmas_in_mm);
  EXPECT_EQ(c.params.device, DeviceChoice::Cpu);
  EXPECT_EQ(c.params.inverse_iterations, 12);
  EXPECT_EQ(c.params.initial.type, InitialTransformType::Identity);
  EXPECT_EQ(c.files.initial_transform, "init.mat");
  EXPECT_TRUE(c.files.invert_initial_transform);
  EXPECT_EQ(c.files.output_prefix, "out/r_");
  EXPECT_EQ(c.files.warped, "out/w.nii.gz");
  EXPECT_EQ(c.files.inverse_warped, "out/i.nii.gz");
  EXPECT_EQ(c.files.fixed_mask, "fm.nii");
  EXPECT_EQ(c.files.moving_mask, "");
  EXPECT_EQ(c.files.warp_extension, ".nii");
  expect_round_trip(c, "stage form");
}

TEST(RegisterCommand, AwkwardNumbersAndNamesPrintExactly) {
  RegisterCommand c = parse_register_command(
      "--preset syn --fixed 'my fixed.nii.gz' --moving \"it's moving.nii\" -o 'out dir/'");
  EXPECT_EQ(c.files.fixed, "my fixed.nii.gz");
  EXPECT_EQ(c.files.moving, "it's moving.nii");
  StageParams& s = c.params.stages.back();
  s.step = 0.1 + 0.2;  // 0.30000000000000004
  s.gradient_sigma = 1.0 / 3.0;
  s.field_sigma = 0.95;  // SyN prints variances: sqrt(0.95 * 0.95) must give 0.95 back
  s.smoothing_sigmas = {2.0 / 3.0, 1e-300, 0};
  s.convergence.threshold = -1e-9;
  c.params.stages[0].step = 1e7 + 0.5;
  for (DeviceChoice d : {DeviceChoice::Cpu, DeviceChoice::Cuda, DeviceChoice::Auto}) {
    c.params.device = d;
    expect_round_trip(c, "awkward values");
  }
  for (InitialTransformType t : {InitialTransformType::Identity, InitialTransformType::GeometricCenter,
                                 InitialTransformType::CenterOfMass, InitialTransformType::Origins,
                                 InitialTransformType::Moments}) {
    c.params.initial.type = t;
    expect_round_trip(c, "initial transform " + std::to_string(int(t)));
  }
  c.params.compute_inverse = false;
  c.files.inverse_warped.clear();
  expect_round_trip(c, "no inverse");
}

TEST(RegisterCommand, SettingsWithoutAnOptionAreReportedAsLeftOut) {
  RegisterCommand c = parse_register_command("--preset greedy -f a.nii -m b.nii -o out/");
  ASSERT_TRUE(register_command_reproduces(c.params, c.files));
  RegisterCommand changed = c;
  changed.params.stages.back().metric.cc_min_std = 0.02;
  EXPECT_FALSE(register_command_reproduces(changed.params, changed.files));
  changed = c;
  changed.params.inverse_tolerance_mm = 1e-2;
  EXPECT_FALSE(register_command_reproduces(changed.params, changed.files));
  changed = c;
  changed.params.initial.type = InitialTransformType::Given;  // an affine given as numbers
  EXPECT_FALSE(register_command_reproduces(changed.params, changed.files));
  changed = c;
  changed.files.fixed = "a,b.nii";  // the grammar splits it
  EXPECT_FALSE(register_command_reproduces(changed.params, changed.files));
}

TEST(RegisterCommand, ErrorsNameTheOptionAndTheProblem) {
  struct Case {
    const char* line;
    const char* where;
    const char* what;
  };
  const std::string stage = " -t Affine[0.1] -m CC[a,b,1,2] -c 10 -f 1 -s 0";
  const Case cases[] = {
      {"-o out/ --bogus", "--bogus", "unknown option"},
      {"-t Affine[0.1]", "-o/--output", "an output prefix is required"},
      {"-o out/", "-t/--transform", "no stage given"},
      {"-o out/ -t Affine[0.1] extra -m CC[a,b,1,2] -c 10 -f 1 -s 0", "'extra'", "unexpected argument"},
      {"-o out/ -t Affine[0.1] -t Rigid[0.1] -m CC[a,b,1,2] -c 10 -f 1 -s 0", "-m/--metric",
       "given 1 times for 2 stage(s)"},
      {"-o out/ -o again/ -t Affine[0.1] -m CC[a,b,1,2] -c 10 -f 1 -s 0", "-o/--output", "more than once"},
      {"-o out/ -t Affine[0.1] -m CC[a,b,1,2] -c 10 -f 1 -s", "-s/--smoothing-sigmas", "needs a value"},
      {"-d 2 -o out/ -t Affine[0.1] -m CC[a,b,1,2] -c 10 -f 1 -s 0", "-d/--dimensionality", "only 3-D"},
      {"-d two -o out/", "-d/--dimensionality", "expected an integer"},
      {"--inverse-iterations 2000 -o out/ -t Affine[0.1] -m CC[a,b,1,2] -c 10 -f 1 -s 0",
       "--inverse-iterations", "0..1000"},
      {"--warp-extension .mha -o out/ -t Affine[0.1] -m CC[a,b,1,2] -c 10 -f 1 -s 0", "--warp-extension",
       ".nii.gz, .nii or .zarr"},
      {"--field-optimizer sgd -o out/ -t Greedy[0.1] -m CC[a,b,1,2] -c 10 -f 1 -s 0", "--field-optimizer",
       "adam, gd or auto"},
      {"--no-inverse-warp=1 -o out/", "--no-inverse-warp", "takes no value"},
      {"--preset greedy -o out/ -f a.nii", "--preset", "needs -f fixed.nii.gz -m moving.nii.gz"},
      {"--preset greedy -o out/ -f a.nii -m b.nii -t Rigid[0.1]", "--preset", "replaces -t/-c/-s"},
      {"-o out/ --fixed a.nii -t Affine[0.1] -m CC[a,b,1,2] -c 10 -f 1 -s 0", "--fixed/--moving",
       "are for --preset"},
      {"-o out/ --use-histogram-matching 1 -t Affine[0.1] -m CC[a,b,1,2] -c 10 -f 1 -s 0",
       "--use-histogram-matching", "not supported"},
  };
  for (const Case& k : cases) {
    try {
      parse_register_command(k.line);
      ADD_FAILURE() << k.line << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << k.line;
      EXPECT_EQ(e.where(), k.where) << k.line << "\n" << e.what();
      EXPECT_NE(std::string(e.what()).find(k.what), std::string::npos) << k.line << "\n" << e.what();
    }
  }
  EXPECT_THROW(split_command_line("-o 'out/"), Error);
  EXPECT_THROW(split_command_line("-o \"out/"), Error);
}

TEST(RegisterCommand, SplitFollowsTheShell) {
  EXPECT_EQ(split_command_line("  a  'b c' \"d \\\" e\" f\\ g ''  "),
            (std::vector<std::string>{"a", "b c", "d \" e", "f g", ""}));
}

TEST(RegisterCommand, HelpListsEveryOption) {
  const std::string help = register_command_help();
  for (const char* opt : {"-d,--dimensionality", "-o,--output", "-r,--initial-moving-transform",
                          "-t,--transform", "-m,--metric", "-c,--convergence", "-f,--shrink-factors",
                          "-s,--smoothing-sigmas", "-x,--masks", "--preset", "--device",
                          "--field-optimizer", "--adam-moments", "--warp-extension",
                          "--no-inverse-warp", "--inverse-iterations"})
    EXPECT_NE(help.find(opt), std::string::npos) << opt;
}

TEST(RegisterCommand, RegisterFilesLogsTheCommand) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("gigareg_register_command_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const Geometry g = test::make_geometry({12, 12, 10}, {2, 2, 2});
  write_image((dir / "f.nii").string(), test::random_smooth_volume(g, 1, 1.0, 1.0));
  write_image((dir / "m.nii").string(), test::random_smooth_volume(g, 2, 1.0, 1.0));
  const RegisterCommand c = parse_register_command(
      "-o " + (dir / "r_").string() + " -t Affine[0.1] -m MeanSquares[" + (dir / "f.nii").string() + "," +
      (dir / "m.nii").string() + ",1] -c 2 -f 1 -s 0 --device cpu");
  std::mutex mu;
  std::vector<std::string> messages;
  const LogSink previous = set_log_sink([&](LogLevel level, std::string_view m) {
    std::lock_guard<std::mutex> lock(mu);
    if (level == LogLevel::Info) messages.emplace_back(m);
  });
  const LogLevel previous_level = log_level();
  set_log_level(LogLevel::Info);
  register_files(c.params, c.files);
  set_log_level(previous_level);
  set_log_sink(previous);
  fs::remove_all(dir);
  const std::string expected = "command: " + format_register_command(c.params, c.files);
  bool found = false;
  for (const std::string& m : messages) found = found || m == expected;
  EXPECT_TRUE(found) << "no info message '" << expected << "'";
}

}  // namespace
}  // namespace gigareg
