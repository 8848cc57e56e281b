#!/usr/bin/env bash
# Installs the Debian packages pvkit's interop tests use, when they are missing:
#   libxen-dev  Xen's public headers in /usr/include/xen (conformance and ring interop tests)
#   gcc         to compile the C harnesses against them
#   xenstore-utils  Xen's real XenStore clients, for the xenstored interop test
#   tshark      a real packet reader, for the test of the pcap the network example writes
#   xen-utils-common  Xen's xl man pages and example configs (/etc/xen/xlexample.*), which the xl.cfg tests parse
# As root it uses apt-get; otherwise it says what to install. The C-backed
# tests are skipped without these on a developer's machine and fail under CI.
set -u
need=()
[ -f /usr/include/xen/xen.h ] || need+=(libxen-dev)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v xenstore-read >/dev/null 2>&1 || need+=(xenstore-utils)
command -v tshark >/dev/null 2>&1 || need+=(tshark)
[ -f /etc/xen/xlexample.pvlinux ] || need+=(xen-utils-common)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "host-deps: installing ${need[*]}"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "host-deps: not root (or no apt-get); install ${need[*]} to run the C interop tests" >&2
fi
