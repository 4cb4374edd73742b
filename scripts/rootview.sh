# Sourced by demo.sh. runc needs / to be a mount point; in a chroot it is not (a fresh
# machine set up with debootstrap + chroot, say), so re-run the calling script in a
# private mount namespace whose root is a bind mount of / -- the same files, seen through
# a mount point. Nothing changes where / already is one (as on any normal host).
# test.sh does not use it: in such a view `runc exec` does not see into the container
# (health probes fail), so there the runc tests skip in a chroot, with that reason.
if [ "$(id -u)" = 0 ] && [ -z "${SWARMLET_ROOTVIEW:-}" ] && command -v unshare >/dev/null \
    && ! awk '$5 == "/" { found = 1 } END { exit !found }' /proc/self/mountinfo 2>/dev/null; then
  rootview=/run/swarmlet-rootview
  mkdir -p "$rootview"
  echo "==> / is not a mount point (a chroot?): running in a mount namespace rooted at a bind mount of /"
  exec unshare -m --propagation unchanged /bin/sh -c '
    view=$1; dir=$2; shift 2
    mount --rbind / "$view" && mount --make-rprivate "$view" &&
    exec chroot "$view" /usr/bin/env SWARMLET_ROOTVIEW=1 /bin/bash -c "cd \"\$0\" && exec \"\$@\"" "$dir" "$@"
  ' sh "$rootview" "$PWD" bash "$0" "$@"
fi
