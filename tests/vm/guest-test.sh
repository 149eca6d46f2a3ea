#!/bin/sh
# The VM boot test, inside the guest (run by vmtest.service once the boot is done, output on
# the serial console). run-vm-test.sh seeded the image before boot: kubeharden was SIGKILLed at
# replace.dir_synced during a `set` of kube-scheduler.yaml, so the manifest on disk held the
# unverified after content at power-on. Every result is a line "VMTEST: ..." that the host
# parses; the last one is "VMTEST: RESULT PASS" or "VMTEST: RESULT FAIL".
set -u
M=/etc/kubernetes/manifests
SCHED=$M/kube-scheduler.yaml
CM=$M/kube-controller-manager.yaml
SEED=/var/lib/vmtest
EV=/var/log/kubelet-sim/events.log
READS=/var/log/kubelet-sim/reads
FAILED=0

say() { echo "VMTEST: $*"; }
bad() { say "FAIL $*"; FAILED=1; }
ok() { say "ok $*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

finish() {
  say "--- diagnostics"
  journalctl -b --no-pager -o short-monotonic -u kubeharden-recover.service \
    -u kubeharden-snapshot.service -u kubeharden-snapshot.path -u kubelet.service | tail -n 80
  kubeharden log 2>&1 | tail -n 20 || true
  cat /tmp/set.out 2>/dev/null
  tail -n 40 "$EV"
  if [ "$FAILED" -eq 0 ]; then say "RESULT PASS"; else say "RESULT FAIL"; fi
  journalctl --sync
  sync
  systemctl poweroff --force --force
}

# wait_for SECONDS COMMAND...: poll every 0.2 s; 0 when COMMAND succeeded in time.
wait_for() {
  limit=$(($(now_ms) + $1 * 1000))
  shift
  while ! "$@" >/dev/null 2>&1; do
    [ "$(now_ms)" -lt "$limit" ] || return 1
    sleep 0.2
  done
}

# Journal time (CLOCK_MONOTONIC, µs) of the first line of unit $1 matching $2.
journal_mono_us() {
  journalctl -b --no-pager -o short-monotonic -u "$1" | grep -m1 -e "$2" |
    sed -n 's/^\[ *\([0-9]*\)\.\([0-9]*\)\].*/\1\2/p'
}

# Saved reads (kubelet_sim --record-reads) of the file named $1, oldest first.
reads_of() { ls "$READS" 2>/dev/null | grep -e "-$1\$" | sort | sed "s|^|$READS/|"; }

has_read_of() { [ -n "$(reads_of "$1")" ]; }

say "guest up: $(uname -r), $(systemctl --version | head -n1)"
say "METRIC boot_userspace_done_s=$(awk '{print $1}' /proc/uptime)"

# 1. The boot: recovery finished before the kubelet read any manifest.
wait_for 180 has_read_of kube-scheduler.yaml || bad "the kubelet never read kube-scheduler.yaml"
first_read_us=$(grep -m1 ' read-recorded ' "$EV" | sed -n 's/.*mono_us=\([0-9]*\).*/\1/p')
reverted_us=$(journal_mono_us kubeharden-recover.service 'transaction .*reverted')
finished_us=$(journal_mono_us kubeharden-recover.service 'Finished kubeharden')
kubelet_us=$(journal_mono_us kubelet.service 'Started ')
say "boot: reverted at ${reverted_us:-?} us, recover unit finished at ${finished_us:-?} us, kubelet started at ${kubelet_us:-?} us, first manifest read at ${first_read_us:-?} us (CLOCK_MONOTONIC)"
if [ -n "$reverted_us" ] && [ -n "$finished_us" ] && [ -n "$first_read_us" ] &&
  [ "$finished_us" -lt "$first_read_us" ] && [ "$reverted_us" -le "$finished_us" ]; then
  ok "recover finished before the kubelet read any manifest"
  say "METRIC poweron_to_recovered_ms=$((reverted_us / 1000))"
  say "METRIC recovered_to_first_kubelet_read_ms=$(((first_read_us - finished_us) / 1000))"
else
  bad "boot ordering: recovery must finish before the first manifest read"
fi
systemctl show -p After --value kubelet.service | grep -q kubeharden-recover.service &&
  systemctl show -p Wants --value kubelet.service | grep -q kubeharden-recover.service &&
  ! systemctl show -p Requires --value kubelet.service | grep -q kubeharden &&
  ok "kubelet.service: Wants= and After= kubeharden-recover.service, no Requires=" ||
  bad "kubelet.service dependencies on kubeharden-recover.service"

# 2. The kubelet read the before content, never the unverified after content.
n=0
for f in $(reads_of kube-scheduler.yaml); do
  n=$((n + 1))
  cmp -s "$f" "$SEED/scheduler.before" || bad "kubelet read $f, which is not the before content"
done
[ "$n" -gt 0 ] && ok "all $n reads of kube-scheduler.yaml were the before content"
cmp -s "$SCHED" "$SEED/scheduler.before" && ok "kube-scheduler.yaml is the before content" ||
  bad "kube-scheduler.yaml is not the before content after boot"

# 3. The store is clean; the units are installed, valid and enabled.
if kubeharden verify; then ok "kubeharden verify exits 0"; else bad "kubeharden verify exit $?"; fi
kubeharden status | grep -q '^incomplete transactions: 0' && ok "no incomplete transaction" ||
  bad "status lists an incomplete transaction"
for u in kubeharden-recover.service kubeharden-recover.timer kubeharden-snapshot.path; do
  [ "$(systemctl is-enabled "$u")" = enabled ] && ok "$u enabled by the package" || bad "$u not enabled"
done
if systemd-analyze verify --man=no /usr/lib/systemd/system/kubeharden-*; then
  ok "systemd-analyze verify of the installed units"
else
  bad "systemd-analyze verify of the installed units"
fi
stat -c '%a' /var/lib/kubeharden | grep -qx 700 && ok "/var/lib/kubeharden is 0700" ||
  bad "/var/lib/kubeharden mode $(stat -c %a /var/lib/kubeharden)"

# 4. A gated set SIGKILLed mid-gate is reverted by the timer within its period. The
# kube-scheduler the kubelet starts from the changed manifest fails its probes (fake_component's
# behavior file, read at its start-up), so the set sits in its gate until the kill. Its own write
# triggers the snapshot unit, which must find the lock busy (exit 5) before the kill, so the
# revert is the timer's.
mkdir -p /run/fake-behavior
echo fail-probes >/run/fake-behavior/kube-scheduler.behavior
set_start=$(date +%s)
kubeharden set kube-scheduler.yaml --flag profiling=false --restart-check proc \
  --health-timeout 900 --reason "vm test: killed mid-gate" >/tmp/set.out 2>&1 &
setpid=$!
changed() { ! cmp -s "$SCHED" "$SEED/scheduler.before"; }
snapshot_ran() {
  journalctl -b --no-pager --since "@$set_start" -u kubeharden-snapshot.service |
    grep -q -e 'Deactivated' -e 'Finished' -e 'lock'
}
before_again() { cmp -s "$SCHED" "$SEED/scheduler.before"; }
kubelet_back() {
  f=$(reads_of kube-scheduler.yaml | tail -n1)
  [ -n "$f" ] && cmp -s "$f" "$SEED/scheduler.before" &&
    [ "$(reads_of kube-scheduler.yaml | wc -l)" -ge 3 ]
}
if ! wait_for 180 changed; then
  bad "the gated set never wrote its after content: $(cat /tmp/set.out)"
elif ! kill -0 "$setpid" 2>/dev/null; then
  bad "the set ended by itself before the kill: $(cat /tmp/set.out)"
else
  wait_for 60 snapshot_ran || say "note: no snapshot run seen after the set's write"
  # Still in its gate: the after content is on disk, the transaction open.
  kill -0 "$setpid" 2>/dev/null || bad "the set ended before the kill: $(cat /tmp/set.out)"
  kill -9 "$setpid"
  kill_ms=$(now_ms)
  rm -f /run/fake-behavior/kube-scheduler.behavior
  if wait_for 120 before_again; then
    lat=$(($(now_ms) - kill_ms))
    say "METRIC kill_to_reverted_ms=$lat"
    # One period (30 s) plus the run itself, slow under TCG emulation on a busy host.
    [ "$lat" -le 60000 ] && ok "killed set reverted in $lat ms (timer period 30 s)" ||
      bad "killed set reverted only after $lat ms"
  else
    bad "killed set not reverted within 120 s"
  fi
  sleep 1
  n=$(journalctl -b --no-pager -u kubeharden-recover.service | grep -c 'transaction [0-9]*: reverted')
  [ "$n" -ge 2 ] && ok "the recover unit logged both reverts (boot and timer)" ||
    bad "recover unit logged $n reverts, want 2"
  wait_for 60 kubelet_back && ok "the kubelet read the before content again after the revert" ||
    bad "the kubelet's last read is not the before content"
fi
if kubeharden verify >/dev/null; then ok "verify clean after the timer's revert"; else bad "verify after revert"; fi

# 5. A hand edit is recorded by the path unit within seconds, with its time; kubeharden's
# own writes (the reverts) recorded nothing.
printf '# edited by hand on the node\n' >>"$CM"
edit_ms=$(now_ms)
recorded() { kubeharden history kube-controller-manager.yaml -o json | grep -q '"origin": *"external"'; }
if wait_for 60 recorded; then
  lat=$(($(now_ms) - edit_ms))
  say "METRIC edit_to_recorded_ms=$lat"
  [ "$lat" -le 30000 ] && ok "hand edit recorded as external in $lat ms" ||
    bad "hand edit recorded only after $lat ms"
else
  bad "hand edit not recorded within 60 s"
fi
kubeharden history kube-controller-manager.yaml
if kubeharden history kube-scheduler.yaml -o json | grep -q '"origin": *"external"'; then
  bad "kubeharden's own writes were recorded as external versions"
else
  ok "kubeharden's own writes recorded no external version"
fi
kubeharden history kube-scheduler.yaml

# 6. A failed recovery is logged at priority crit and does not keep the kubelet from starting:
# damage a record before the journal's tail (integrity error, exit 6), restart the kubelet
# (which pulls the recover unit in first), then put the state back.
cp -a /var/lib/kubeharden /tmp/state-backup
seg=$(ls /var/lib/kubeharden/journal/*.wal | head -n1)
printf '\377' | dd of="$seg" bs=1 seek=40 conv=notrunc 2>/dev/null
systemctl restart kubelet.service
kubelet_active() { [ "$(systemctl is-active kubelet.service)" = active ]; }
wait_for 120 kubelet_active && ok "the kubelet started after a failed recovery" ||
  bad "the kubelet did not start after a failed recovery"
crit_logged() {
  journalctl -b --no-pager -p crit -u kubeharden-recover.service | grep -q 'kubeharden recover FAILED (exit 6'
}
wait_for 30 crit_logged && ok "the failed recovery was logged at priority crit" ||
  bad "no crit line for the failed recovery"
journalctl -b --no-pager -p crit -u kubeharden-recover.service | tail -n 2
rm -rf /var/lib/kubeharden
cp -a /tmp/state-backup /var/lib/kubeharden
if kubeharden verify >/dev/null; then ok "state restored"; else bad "state not restored"; fi

finish
