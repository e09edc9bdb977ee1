package fusefs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FSName is the file system type suffix of Damselfly mounts (fuse.damselfly).
const FSName = "damselfly"

// MountOptions tunes a mount.
type MountOptions struct {
	// AllowOther lets users other than the mounting one read the mount.
	AllowOther bool
	// Debug logs every FUSE request.
	Debug bool
}

// Mount mounts root (a *Root, an *S3Root) read-only at mountpoint, replacing a stale Damselfly
// mount left there by a crashed dfmount. Serve the returned server's Wait;
// Unmount it to stop.
func Mount(mountpoint string, root fs.InodeEmbedder, opt MountOptions) (*fuse.Server, error) {
	mnt, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, err
	}
	if err := PrepareMountpoint(mnt); err != nil {
		return nil, err
	}
	timeout := time.Hour // content is immutable
	server, err := fs.Mount(mnt, root, &fs.Options{
		MountOptions: fuse.MountOptions{
			DirectMount:  true,
			FsName:       FSName,
			Name:         FSName,
			AllowOther:   opt.AllowOther,
			Debug:        opt.Debug,
			Options:      []string{"ro"},
			MaxReadAhead: 1 << 20,
		},
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mnt, err)
	}
	return server, nil
}

// PrepareMountpoint checks that mnt is a directory ready to mount on. A
// stale FUSE mount (its server gone: "transport endpoint is not
// connected") is detached; a live Damselfly mount is an error.
func PrepareMountpoint(mnt string) error {
	if fstype, ok := MountedType(mnt); ok && strings.HasPrefix(fstype, "fuse") {
		if Alive(mnt) {
			if fstype == "fuse."+FSName {
				return fmt.Errorf("%s is already a live Damselfly mount; unmount it first (dfmount -u %s)", mnt, mnt)
			}
		} else {
			Log.Warnf("replacing stale mount at %s (its FUSE server is gone)", mnt)
			if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
				return fmt.Errorf("detach stale mount at %s: %w", mnt, err)
			}
		}
	}
	fi, err := os.Stat(mnt)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", mnt)
	}
	return nil
}

// Alive reports whether the FUSE server behind the mount at mnt answers.
// statfs always reaches the server, unlike stat, which the kernel may
// answer from cached attributes after the server died.
func Alive(mnt string) bool {
	var st syscall.Statfs_t
	err := syscall.Statfs(mnt, &st)
	return !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, syscall.ECONNABORTED)
}

// MountedType returns the file system type mounted at mnt, if any, from
// /proc/self/mountinfo.
func MountedType(mnt string) (string, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	fstype, found := "", false
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || unescape(fields[4]) != mnt {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				fstype, found = fields[i+1], true // the last mount on mnt wins
			}
		}
	}
	return fstype, found
}

func unescape(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// Unmount unmounts a Damselfly mount; a stale one (server gone) is
// detached.
func Unmount(mountpoint string) error {
	mnt, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	fstype, ok := MountedType(mnt)
	if !ok {
		return fmt.Errorf("%s is not mounted", mnt)
	}
	if fstype != "fuse."+FSName {
		return fmt.Errorf("%s is a %s mount, not a Damselfly one", mnt, fstype)
	}
	err = syscall.Unmount(mnt, 0)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EBUSY):
		return fmt.Errorf("unmount %s: in use (close files and leave the directory, then retry): %w", mnt, err)
	default:
		if derr := syscall.Unmount(mnt, syscall.MNT_DETACH); derr == nil {
			return nil
		}
		return fmt.Errorf("unmount %s: %w", mnt, err)
	}
}
