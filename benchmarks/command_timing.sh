# Shell functions shared by the whole-command timing scripts (sourced, not run).

# timed CMD...: runs CMD, prints "rc R wall W s peak RSS G GiB" (the child's peak resident set)
# and then CMD's output.
timed() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
wall = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
print(f"rc {p.returncode} wall {wall:.2f} s peak RSS {rss:.2f} GiB")
print(p.stdout)
PY
}

# compare_outputs DIR_A DIR_B: for every .nii.gz in DIR_B, whether its decompressed bytes equal
# DIR_A's, and both compressed sizes.
compare_outputs() {
  python3 - "$1" "$2" <<'PY'
import gzip, os, sys
a, b = sys.argv[1:]
for name in sorted(os.listdir(b)):
    if not name.endswith(".nii.gz"): continue
    da = gzip.open(os.path.join(a, name)).read(); db = gzip.open(os.path.join(b, name)).read()
    print(f"{name}: {'identical' if da == db else 'DIFFER'} decompressed ({len(db)} bytes); "
          f"{os.path.getsize(os.path.join(a, name))} -> {os.path.getsize(os.path.join(b, name))} compressed")
PY
}
