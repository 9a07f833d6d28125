#!/usr/bin/env bash
# Concurrency through one mount: parallel writers on their own files, parallel readers and
# listers of lower dirs, and several processes racing to copy up the same lower files.
# Afterwards every file must hold exactly what was written and the lowers must be unchanged.
source "$(dirname "$0")/lib.sh" "$@"

WRITERS=${WRITERS:-6}
ROUNDS=${ROUNDS:-200}

new_stack stress 2
mkdir -p "${L[0]}/shared_dir" "${L[1]}/shared_dir"
for i in $(seq 1 50); do echo "lower $i" >"${L[$((i % 2))]}/shared_dir/f$i"; done
for w in $(seq 1 "$WRITERS"); do
  mkdir -p "${L[0]}/w$w/deep/er"
  printf 'base %s\n' "$w" >"${L[0]}/w$w/deep/er/log"
done
for r in $(seq 1 8); do head -c 1000000 /dev/urandom >"${L[0]}/race$r"; done
save_lowers
mount_union "$(stack_spec)" "$M"

check "$WRITERS writers append $ROUNDS lines each to their own lower file while readers list and read"
pids=()
for w in $(seq 1 "$WRITERS"); do
  (
    f="$M/w$w/deep/er/log"
    for i in $(seq 1 "$ROUNDS"); do echo "w$w line $i" >>"$f"; done
    for i in $(seq 1 20); do echo "new $i" >"$M/w$w/new$i"; done
  ) &
  pids+=($!); track_pid $!
done
for r in 1 2 3; do
  (
    for i in $(seq 1 60); do
      ls -la "$M/shared_dir" >/dev/null
      cat "$M/shared_dir/f$(((i % 50) + 1))" >/dev/null
      find "$M" -maxdepth 3 >/dev/null
    done
  ) &
  pids+=($!); track_pid $!
done

check "8 processes race to copy up the same lower files (open for write, chmod, touch)"
for p in $(seq 1 8); do
  (
    for r in $(seq 1 8); do
      case $((p % 3)) in
        0) "$PYTHON" -c "import os; os.close(os.open('$M/race$r', os.O_WRONLY))" ;;
        1) chmod 0644 "$M/race$r" ;;
        2) touch -m -d '2022-02-02' "$M/race$r" ;;
      esac
    done
  ) &
  pids+=($!); track_pid $!
done

for pid in "${pids[@]}"; do
  wait "$pid" || fail "background job $pid exited with status $?"
done

check "every writer's file holds its base line and all its lines in order"
for w in $(seq 1 "$WRITERS"); do
  expected=$( (printf 'base %s\n' "$w"; for i in $(seq 1 "$ROUNDS"); do echo "w$w line $i"; done) | sha256sum)
  got=$(sha256sum <"$M/w$w/deep/er/log")
  [[ $got == "$expected" ]] || fail "w$w/deep/er/log has wrong content ($(wc -l <"$M/w$w/deep/er/log") lines)"
  for i in $(seq 1 20); do
    [[ $(cat "$M/w$w/new$i") == "new $i" ]] || fail "w$w/new$i wrong"
  done
done

check "racing copy-ups left whole files identical to the lower originals"
for r in $(seq 1 8); do
  cmp -s "$M/race$r" "${L[0]}/race$r" || fail "race$r differs from its lower original after concurrent copy-up"
  [[ -f $U/race$r ]] || fail "race$r was not copied up"
done

check "merged listing of shared_dir is still complete"
expect_eq "$(ls "$M/shared_dir" | wc -l)" 50 "entries in shared_dir"

unmount_union "$M"
check_lowers

# A long request must not hold the others up: the loop answers quick requests on the thread
# that reads them, and hands the reading over before a copy-up (fuse/session_loop.h).
new_stack slowop 1
mkdir -p "${L[0]}/names"
dd if=/dev/zero of="${L[0]}/big" bs=1M count=512 status=none
for i in $(seq 1 40); do : >"${L[0]}/names/n$i"; done
save_lowers
mount_union "$(stack_spec)" "$M"
threads() { ls "/proc/${_MPIDS[-1]}/task" | wc -l; }
check "one follower thread waits from the start, so a first hand-over starts no thread"
for i in $(seq 1 40); do [[ $(threads) -ge 2 ]] && break; sleep 0.05; done
expect_eq "$(threads)" 2 "daemon threads before any request"
check "lookups are answered while a 512 MiB copy-up runs"
started=$(date +%s%N)
(echo tail >>"$M/big"; date +%s%N >"$T/copyup.end") &
cp_pid=$!
track_pid "$cp_pid"
sleep 0.05
for i in $(seq 1 40); do [[ -e $M/names/n$i ]] || fail "names/n$i missing"; done  # no fork
stats_end=$(date +%s%N)
wait "$cp_pid" || fail "append (copy-up) to big failed"
copy_end=$(cat "$T/copyup.end")
echo "(copy-up $(((copy_end - started) / 1000000)) ms; 40 lookups done after $(((stats_end - started) / 1000000)) ms)"
((stats_end < copy_end)) || fail "the 40 lookups ended after the copy-up: they waited for it"
expect_eq "$(stat -c %s "$M/big")" $((512 * 1048576 + 5)) "size of big after the append"
expect_eq "$(threads)" 2 "daemon threads after the copy-up handed the reading over"
unmount_union "$M"
check_lowers
finish
