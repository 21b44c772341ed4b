#!/usr/bin/env bash
# A manual check of what `musicgen train` does when its disk fails mid-run, on real
# filesystems (CI simulates the same failures by patching orbax, since it cannot mount):
#
#   full   a 2 MB tmpfs that a background `dd` fills once checkpoint 40 exists;
#   ro     a read-only bind mount over checkpoints/ once checkpoint 40 exists.
#
# Each run must exit 1 within the timeout, print exactly one stderr line, and leave
# checkpoint 40 intact. Needs root (mount) and Linux.
#
#   sudo bash scripts/check_disk_failures.sh [RUNS]     # default 10 runs of each
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${1:-10}
MNT=$(mktemp -d)
trap 'umount "$MNT/w/checkpoints" 2>/dev/null; umount "$MNT" 2>/dev/null; rmdir "$MNT"' EXIT

train() {  # one run in $MNT/w; prints "exit=N lines=L steps=[...]"
  local err
  err=$(mktemp)
  (cd "$ROOT" && PYTHONPATH="$ROOT" timeout 120 "$ROOT/.venv/bin/musicgen" train \
    --config tests/fixtures/experiments/regression.py --workdir "$MNT/w" --no-progress \
    --set train.steps=100000 --set train.save_every=20 --set train.wandb=disabled \
    >/dev/null 2>"$err")
  local code=$?
  echo "exit=$code lines=$(wc -l <"$err") checkpoints=$(ls "$MNT/w/checkpoints" | tr '\n' ' ')"
  [ "$(wc -l <"$err")" -eq 1 ] || sed 's/^/    /' "$err" | head -5
  rm -f "$err"
}

wait_for_40() {
  while [ ! -d "$MNT/w/checkpoints/40" ]; do sleep 0.05; done
}

echo "full disk:"
for _ in $(seq "$RUNS"); do
  mount -t tmpfs -o size=2m tmpfs "$MNT"
  (wait_for_40; dd if=/dev/zero of="$MNT/filler" bs=4k 2>/dev/null) &
  train
  wait
  umount "$MNT"
done

echo "read-only checkpoints/:"
for _ in $(seq "$RUNS"); do
  mount -t tmpfs -o size=50m tmpfs "$MNT"
  (wait_for_40; mount --bind "$MNT/w/checkpoints" "$MNT/w/checkpoints" &&
    mount -o remount,bind,ro "$MNT/w/checkpoints") &
  train
  wait
  umount "$MNT/w/checkpoints" 2>/dev/null
  umount "$MNT"
done
