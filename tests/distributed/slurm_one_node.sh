#!/usr/bin/env bash
# The README's srun line under a real Slurm: a one-node cluster (this host, CPUs=2) started here
# by its own slurmctld and slurmd, `srun -n 2 --mpi=pmix gigareg register ...` on the CPU, and
# the same command under `mpirun -np 2`: the same file names, every file byte for byte the same,
# and both runs report "distributed run: 2 processes over mpi" (two MPI ranks, not two lone
# processes). The daemons are this script's children and are killed when it exits, whatever the
# outcome. Exit 77 (skipped, with the reason) where Slurm is not installed, the script is not
# root, Slurm's PMIx plugin is missing or the data is not there.
#   slurm_one_node.sh GIGAREG DATA WORK MPIEXEC [MPI_FLAGS...]
# Slurm (Debian 12's slurm-wlm 22.05) runs with AuthType=auth/none and CredType=cred/none, so no
# munged is needed (a Slurm without those plugins fails here, its log shown); the ports are free
# ones picked at start; Slurm's config, state, spool and logs are under WORK.
# GIGAREG_SRUN_MPI=pmi2 (or none) runs srun with that plugin instead of pmix: it fails with
# Debian's Open MPI (docs/distributed.md, "Under Slurm").
set -uo pipefail

if (($# < 4)); then
  echo "usage: $0 GIGAREG DATA WORK MPIEXEC [MPI_FLAGS...]" >&2
  exit 2
fi
cli=$1 data=$2 work=$3 mpiexec=$4
shift 4
mpi_flags=("$@")

skip() { echo "slurm_one_node: skipped: $*"; exit 77; }
fail() { echo "slurm_one_node: FAILED: $*" >&2; exit 1; }

for tool in slurmctld slurmd srun sinfo squeue scancel; do
  command -v "$tool" >/dev/null || skip "$tool not installed (Debian: slurmctld slurmd slurm-client, scripts/install-deps.sh)"
done
[[ $(id -u) -eq 0 ]] || skip "slurmd must run as root to start the job's tasks"
fixed=$data/templates/fsl_MNI152_T1_2mm.nii.gz
moving=$data/templates/icbm2009_asym_t1_1mm_cropped.nii.gz
[[ -f $fixed && -f $moving ]] || skip "real data not found under $data/templates"
[[ -x $cli ]] || fail "no gigareg at $cli"

# A Slurm job around this test (CI under Slurm) must not leak into the cluster started here.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(SLURM_|SALLOC_|SBATCH_|SRUN_)')

work=$(realpath -m "$work")
rm -rf "$work"
mkdir -p "$work"/{state,spool,log} || fail "cannot create $work"
conf=$work/slurm.conf
export SLURM_CONF=$conf

host=$(hostname -s)
# Two free TCP ports (the kernel's choice), so that several copies of the test can run at once.
read -r ctld_port d_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))') || fail "no free ports"

cat >"$conf" <<EOF
ClusterName=gigaregtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host CPUs=2 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=30 State=UP
EOF

ctld_pid='' d_pid='' child=''
stop_daemons() {
  [[ -n $child ]] && kill -TERM "$child" 2>/dev/null
  # Jobs first (their slurmstepd outlive slurmd otherwise), then the daemons; SIGKILL after 10 s.
  if [[ -n $ctld_pid ]]; then
    timeout 10 scancel --quiet --partition=test >/dev/null 2>&1
    for _ in $(seq 20); do
      [[ -z $(timeout 5 squeue -h -o %i 2>/dev/null) ]] && break
      sleep 0.5
    done
  fi
  local p
  for p in $d_pid $ctld_pid; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 20); do
    local alive=0
    for p in $d_pid $ctld_pid; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.5
  done
  for p in $d_pid $ctld_pid; do kill -KILL "$p" 2>/dev/null; done
  for p in $d_pid $ctld_pid; do wait "$p" 2>/dev/null; done
  ctld_pid='' d_pid=''
  # slurmstepd detaches from slurmd; this cluster's are those with its SLURM_CONF (slurmd's
  # environment, which they inherit).
  local left=''
  for _ in $(seq 20); do
    left=''
    for p in $(pgrep -x slurmstepd); do
      grep -qsxF -z "SLURM_CONF=$conf" "/proc/$p/environ" && left+=" $p"
    done
    [[ -z $left ]] && break
    sleep 0.5
  done
  if [[ -n $left ]]; then
    echo "slurm_one_node: killing this cluster's slurmstepd:$left" >&2
    kill -KILL $left 2>/dev/null
  fi
  return 0
}
trap stop_daemons EXIT
trap 'exit 143' TERM INT HUP

show_logs() {
  local f
  for f in "$work"/log/*; do echo "--- $f"; tail -n 30 "$f"; done >&2
}

# -D: in the foreground (children of this script, no systemd); -i: ignore any saved state.
slurmctld -D -i -f "$conf" >"$work/log/slurmctld.out" 2>&1 &
ctld_pid=$!
slurmd -D -f "$conf" -N "$host" >"$work/log/slurmd.out" 2>&1 &
d_pid=$!

state=''
for _ in $(seq 60); do
  state=$(timeout 5 sinfo -h -n "$host" -o %t 2>/dev/null)
  [[ $state == idle ]] && break
  kill -0 "$ctld_pid" 2>/dev/null || { show_logs; fail "slurmctld exited"; }
  kill -0 "$d_pid" 2>/dev/null || { show_logs; fail "slurmd exited"; }
  sleep 1
done
[[ $state == idle ]] || { show_logs; fail "node $host not idle after 60 s (state '$state')"; }
echo "slurm_one_node: slurmctld (port $ctld_port) and slurmd (port $d_port) up, node $host idle"

mpi_list=$(timeout 30 srun --mpi=list 2>&1)
grep -qw pmix <<<"$mpi_list" || skip "srun has no pmix plugin (srun --mpi=list: $mpi_list)"

# Plain tasks first: srun starts 2 of them on this node.
tasks=$(timeout 60 srun -n 2 -t 1 bash -c 'echo "task $SLURM_PROCID of $SLURM_NTASKS"' 2>&1) ||
  { show_logs; fail "srun -n 2 of a plain command failed: $tasks"; }
[[ $(sort <<<"$tasks") == $'task 0 of 2\ntask 1 of 2' ]] || fail "srun -n 2 ran: $tasks"

# Moments, affine (MI) and greedy (CC), two levels each: dist_cli_register_mpirun's command.
args=(register -d 3 -r "[$fixed,$moving,3]"
  -t 'Affine[0.1]' -m "MI[$fixed,$moving,1,32]" -c '[15x8,1e-6,10]' -f 2x1 -s 1x0vox
  -t 'Greedy[0.25,2,1]' -m "CC[$fixed,$moving,1,2]" -c '[8x4,1e-6,10]' -f 2x1 -s 1x0vox
  --device cpu -v 1)

run() {  # run NAME COMMAND...: outputs under $work/NAME, its log in $work/NAME.log
  local name=$1
  shift
  mkdir -p "$work/$name"
  local t0=$SECONDS
  # In the background and waited for, so that a SIGTERM to the script stops it at once.
  timeout 300 "$@" "$cli" "${args[@]}" -o "[$work/$name/,$work/$name/warped.nii.gz]" >"$work/$name.log" 2>&1 &
  child=$!
  wait "$child"
  local rc=$?
  child=''
  if ((rc != 0)); then
    tail -n 40 "$work/$name.log" >&2
    [[ $name == srun ]] && show_logs
    fail "$name: gigareg register failed"
  fi
  grep -q 'distributed run: 2 processes over mpi' "$work/$name.log" ||
    { tail -n 40 "$work/$name.log" >&2; fail "$name: not one job of 2 MPI ranks"; }
  echo "slurm_one_node: $name: $((SECONDS - t0)) s"
}

# Open MPI reads its PMIx wire-up from Slurm's mpi/pmix plugin (Debian's Open MPI has no PMI-2:
# --mpi=pmi2 and --mpi=none end in MPI_Init, docs/distributed.md; GIGAREG_SRUN_MPI=pmi2 shows it).
srun_mpi=${GIGAREG_SRUN_MPI:-pmix}
run srun srun -n 2 "--mpi=$srun_mpi" -t 10 --kill-on-bad-exit=1 --export=ALL,OMP_NUM_THREADS=1
run mpirun "$mpiexec" -np 2 "${mpi_flags[@]}" -x OMP_NUM_THREADS=1

srun_files=$(cd "$work/srun" && find . -type f | sort)
mpirun_files=$(cd "$work/mpirun" && find . -type f | sort)
[[ $srun_files == "$mpirun_files" ]] || fail "different files: srun: $srun_files; mpirun: $mpirun_files"
[[ -n $srun_files ]] || fail "no outputs"
while read -r f; do
  cmp "$work/srun/$f" "$work/mpirun/$f" || fail "${f#./} differs between srun and mpirun"
done <<<"$srun_files"
echo "slurm_one_node: srun -n 2 --mpi=$srun_mpi and mpirun -np 2: identical $(sed 's|^\./||' <<<"$srun_files" | paste -sd ' ')"
