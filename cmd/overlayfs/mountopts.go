package main

import (
	"fmt"
	"strings"

	"overlayfs/internal/fusekit"
)

// mountOptions is `overlayfs mount -o OPTS`: the generic mount options
// (ro, nosuid, nodev, noexec, noatime, ...) in mount(8)'s form, applied in
// order. The options fstab tools pass along are accepted and ignored;
// anything else is an error naming it.
type mountOptions struct {
	flags fusekit.VFSFlags
	given []string // as accepted, for String
}

// Set applies a comma-separated option list; a repeated -o adds to it.
func (m *mountOptions) Set(s string) error {
	for _, opt := range strings.Split(s, ",") {
		switch {
		case ignoredMountOption(opt):
			continue
		case m.flags.Apply(opt):
			m.given = append(m.given, opt)
		default:
			return fmt.Errorf("unknown mount option %q (known: %s)", opt, knownMountOptions)
		}
	}
	return nil
}

func (m *mountOptions) String() string { return strings.Join(m.given, ",") }
func (m *mountOptions) Type() string   { return "OPTS" }

// knownMountOptions is the list an unknown option's error shows.
const knownMountOptions = "ro, rw, nosuid, suid, nodev, dev, noexec, exec, noatime, atime, relatime, norelatime, strictatime, nostrictatime, nodiratime, diratime, sync, async, dirsync, nosymfollow, symfollow; ignored: defaults, auto, noauto, user, nouser, users, owner, group, nofail, _netdev, comment=..., x-..."

// ignoredMountOption reports whether opt is one mount(8) and fstab tools
// consume themselves (or an empty one from a stray comma): accepted and
// without effect on the mount.
func ignoredMountOption(opt string) bool {
	switch opt {
	case "", "defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group", "nofail", "_netdev":
		return true
	}
	return strings.HasPrefix(opt, "x-") || strings.HasPrefix(opt, "X-") || strings.HasPrefix(opt, "comment=")
}
