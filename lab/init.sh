#!/bin/busybox sh
# /init of the lab's initramfs (PID 1). Mounts what the lab reads, loads
# qemu_fw_cfg so drgn finds VMCOREINFO, starts the command agent on ttyS1 and an
# interactive shell on the console; when that shell ends the guest powers off.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /root /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null ||
    mount -t debugfs debugfs /sys/kernel/debug
if [ -e /lib/modules/qemu_fw_cfg.ko ]; then
    insmod /lib/modules/qemu_fw_cfg.ko
fi
# The virtio and 9p modules of a guest that mounts the host's root, in
# modules.dep order (lab/hostroot.py names them).
for m in /lib/modules/share/*.ko; do
    [ -e "$m" ] && insmod "$m"
done
hostname lab
/bin/agent /dev/ttyS1 &
cd /root
setsid cttyhack sh -l
poweroff -f
