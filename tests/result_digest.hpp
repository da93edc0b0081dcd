#pragma once
// A fingerprint of a registration result, for checking that a refactoring leaves the CPU outputs
// byte-identical (scripts/registration_fingerprint.sh). When GIGAREG_RESULT_DIGESTS names a file,
// record_result_digest appends one line to it: the running test's name, a label, and a 64-bit
// FNV-1a hash of every byte the result holds (affine, centre, warp, inverse warp, warped image,
// and per level the iteration count, the convergence flag and the bits of the first and last
// loss). Without the variable it does nothing, so the tests run as before.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "gigareg/registration.hpp"

namespace gigareg::test {

class Fnv1a {
 public:
  void bytes(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h_ = (h_ ^ b[i]) * 1099511628211ull;
  }
  template <class T>
  void value(const T& v) {
    bytes(&v, sizeof v);
  }
  void volume(const Volume<float>& v) {
    value(std::uint64_t(v.bytes()));
    if (!v.empty()) bytes(v.data(), v.bytes());
  }
  std::uint64_t get() const { return h_; }

 private:
  std::uint64_t h_ = 14695981039346656037ull;
};

inline void record_result_digest(const RegistrationResult& r, const std::string& label = "") {
  const char* path = std::getenv("GIGAREG_RESULT_DIGESTS");
  if (path == nullptr || *path == '\0') return;
  Fnv1a h;
  h.value(r.affine.matrix.m);
  h.value(r.affine.offset);
  h.value(r.center);
  h.volume(r.warp);
  h.volume(r.inverse_warp);
  h.volume(r.warped);
  h.value(r.inverse_residual_mm);
  for (const LevelReport& l : r.levels) {
    h.value(l.stage);
    h.value(l.level);
    h.value(l.iterations);
    h.value(l.converged);
    h.value(l.initial_loss);
    h.value(l.final_loss);
  }
  const ::testing::TestInfo* t = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string name = t ? std::string(t->test_suite_name()) + "." + t->name() : "?";
  if (std::FILE* f = std::fopen(path, "a")) {
    std::fprintf(f, "%s%s%s %016llx\n", name.c_str(), label.empty() ? "" : ":", label.c_str(),
                 static_cast<unsigned long long>(h.get()));
    std::fclose(f);
  }
}

}  // namespace gigareg::test
