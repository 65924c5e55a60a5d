#!/usr/bin/env bash
# A one-node Slurm on loopback for the Slurm backend tests (marker `slurm`): munge, slurmctld, slurmd.
# This container has no systemd and no writable cgroup tree, so processes are tracked by
# proctrack/linuxproc and no cgroup plugin is used (memory is scheduled, not enforced, by Slurm; the
# container engine enforces a task's ram_gb). The node declares 4 CPUs whatever the machine has
# (SlurmdParameters=config_overrides) so a few tasks run at once. Finished jobs stay visible to
# squeue for MinJobAge seconds (no slurmdbd here, so no sacct). Idempotent: installs only what is
# missing, rewrites slurm.conf only when it changed, starts only daemons that are not running.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  apt-get install -y -qq --no-install-recommends slurm-wlm slurmctld slurmd slurm-client munge >/dev/null
fi
node=$(hostname -s)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
conf=$(cat <<CONF
ClusterName=tesk
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
MinJobAge=900
DefMemPerCPU=256
KillWait=10
InactiveLimit=0
NodeName=${node} NodeAddr=127.0.0.1 CPUs=4 RealMemory=8192 TmpDisk=20000 State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
CONF
)
if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$conf" ]; then
  printf '%s\n' "$conf" > /etc/slurm/slurm.conf
  changed=1
else
  changed=0
fi
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged
fi
if [ "$changed" = 1 ] && pgrep -x slurmctld >/dev/null; then scontrol reconfigure; fi
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then break; fi
  sleep 1
done
scontrol update NodeName="$node" State=RESUME 2>/dev/null || true
sinfo
timeout 60 srun -N1 -t 1 hostname
