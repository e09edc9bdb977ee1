package cli

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// SocketMode is the mode of the daemons' unix sockets: owner and group
// only (the group is --socket-group when given).
const SocketMode os.FileMode = 0o660

// LookupGroup resolves a --socket-group value (a group name or a numeric
// GID); "" gives -1 (keep the creator's group).
func LookupGroup(s string) (int, error) {
	if s == "" {
		return -1, nil
	}
	if gid, err := strconv.Atoi(s); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return -1, fmt.Errorf("--socket-group %q: %w", s, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1, fmt.Errorf("--socket-group %q: GID %q is not a number", s, g.Gid)
	}
	return gid, nil
}

// SecureSocket gives the unix socket at path SocketMode and, when gid >= 0,
// that group.
func SecureSocket(path string, gid int) error {
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			return fmt.Errorf("set the group of socket %s: %w", path, err)
		}
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		return fmt.Errorf("set the mode of socket %s: %w", path, err)
	}
	return nil
}
