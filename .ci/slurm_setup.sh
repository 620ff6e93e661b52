#!/usr/bin/env bash
# Install Debian's SLURM daemons and munge so tests/test_slurm.py runs against a real one-node cluster.
# Idempotent: does nothing when the binaries are already there. Needs root (CI containers run as root).
# The daemons are NOT started here: tests/slurm_cluster.py starts them per test session with a
# throw-away config under a temporary directory, and stops them by PID afterwards.
set -euo pipefail

have_all() {
  for b in sbatch squeue scancel slurmctld slurmd munged mungekey; do
    command -v "$b" >/dev/null 2>&1 || return 1
  done
}

if have_all; then
  echo "slurm_setup: slurm-wlm and munge already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "slurm_setup: need root or sudo to apt-get install slurm-wlm munge" >&2; exit 2; }
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
# A fresh container has empty package lists; refresh only when apt cannot see the package.
if ! apt-cache show slurm-wlm >/dev/null 2>&1; then
  $SUDO apt-get update -qq
fi
$SUDO apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
have_all || { echo "slurm_setup: slurm-wlm installed but binaries missing from PATH" >&2; exit 2; }
echo "slurm_setup: installed $(dpkg-query -W -f='${Package} ${Version}' slurm-wlm)"
