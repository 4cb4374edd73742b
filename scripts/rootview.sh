# Sourced by demo.sh and test.sh. runc (and `ip -n`) need / to be a mount point; in a
# chroot it is not (a fresh machine set up with debootstrap + chroot, say), so re-run the
# calling script in a private mount namespace whose root is a bind mount of / -- the same
# files, seen through a mount point. Nothing changes where / already is one (as on any normal host).
# One thing does not work in that view: `runc exec` does not see into the container, so
# the health-probe tests skip there (SWARMLET_ROOTVIEW is set), naming this reason.
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
