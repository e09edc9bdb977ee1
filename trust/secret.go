package trust

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
)

// Names of the environment variables that name token files when the matching
// flag is not given. They hold a path, never the token itself.
const (
	EnvClusterTokenFile = "DAMSELFLY_CLUSTER_TOKEN_FILE"
	EnvAdminTokenFile   = "DAMSELFLY_ADMIN_TOKEN_FILE"
)

const (
	// MinSecretLen is the shortest token accepted, in bytes.
	MinSecretLen = 16
	// maxSecretFileSize bounds how much of a token file is read.
	maxSecretFileSize = 4096
	redacted          = "REDACTED"
)

var (
	// ErrNoSecret is returned by SecretFromFlagOrEnv when neither the flag nor
	// the environment variable names a token file.
	ErrNoSecret = errors.New("no token file configured")
	// ErrInsecurePermissions is returned by LoadSecretFile for a token file
	// that its group or other users may read or write.
	ErrInsecurePermissions = errors.New("token file is accessible by group or other users (chmod 600 it)")
	// ErrWeakSecret is returned for an empty, short or malformed token.
	ErrWeakSecret = errors.New("token is empty, shorter than 16 bytes, or contains whitespace or control characters")
)

// Secret is a shared token (cluster, admin or webhook). Its zero value is the
// absent secret. It never prints its value: every fmt verb, JSON, text and
// slog encoding shows "REDACTED", and since the bytes sit behind a pointer even
// reflection-based printing of a struct holding a Secret in an unexported
// field shows only an address.
type Secret struct {
	v *secretValue
}

type secretValue struct {
	b []byte
}

// NewSecret checks token (after trimming surrounding whitespace) like
// LoadSecretFile does and wraps it. Mostly useful for tests and for tokens
// that arrive by other means than a file.
func NewSecret(token string) (Secret, error) {
	t := strings.TrimSpace(token)
	if len(t) < MinSecretLen {
		return Secret{}, ErrWeakSecret
	}
	for i := 0; i < len(t); i++ {
		// Tokens travel in Authorization headers: printable ASCII without spaces.
		if c := t[i]; c <= ' ' || c >= 0x7f {
			return Secret{}, ErrWeakSecret
		}
	}
	return Secret{v: &secretValue{b: []byte(t)}}, nil
}

// LoadSecretFile reads a token from path, trims surrounding whitespace and
// refuses empty, short (< MinSecretLen bytes) or malformed tokens.
//
// It refuses (rather than warns about) a file whose permission bits grant any
// access to group or other users, returning an error wrapping
// ErrInsecurePermissions: a token that every local user can read authenticates
// every local user. The check follows symlinks (so Kubernetes secret volumes
// work when mounted with defaultMode 0400 or 0600) and is skipped on Windows,
// whose permission bits mean nothing here.
func LoadSecretFile(path string) (Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		return Secret{}, fmt.Errorf("load token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Secret{}, fmt.Errorf("load token file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Secret{}, fmt.Errorf("load token file %s: not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return Secret{}, fmt.Errorf("load token file %s (mode %04o): %w", path, fi.Mode().Perm(), ErrInsecurePermissions)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileSize+1))
	if err != nil {
		return Secret{}, fmt.Errorf("load token file %s: %w", path, err)
	}
	if len(b) > maxSecretFileSize {
		return Secret{}, fmt.Errorf("load token file %s: larger than %d bytes", path, maxSecretFileSize)
	}
	s, err := NewSecret(string(b))
	if err != nil {
		return Secret{}, fmt.Errorf("load token file %s: %w", path, err)
	}
	return s, nil
}

// SecretFromFlagOrEnv loads the token file named by flagValue or, when that is
// empty, by the environment variable envName (e.g. EnvClusterTokenFile). When
// neither names a file it returns an error wrapping ErrNoSecret, so a caller
// that treats the token as optional must say so explicitly.
func SecretFromFlagOrEnv(flagValue, envName string) (Secret, error) {
	path := flagValue
	if path == "" && envName != "" {
		path = os.Getenv(envName)
	}
	if path == "" {
		return Secret{}, fmt.Errorf("token: neither the flag nor %s is set: %w", envName, ErrNoSecret)
	}
	return LoadSecretFile(path)
}

// IsZero reports whether s is the absent secret.
func (s Secret) IsZero() bool { return s.v == nil }

// Equal reports, in constant time, whether s and o hold the same token. Two
// absent secrets are not equal: an unset token must never match.
func (s Secret) Equal(o Secret) bool {
	if s.v == nil || o.v == nil {
		return false
	}
	return equalHashed(s.v.b, o.v.b)
}

// Matches reports, in constant time (also with respect to the length of
// token), whether token is this secret, e.g. a bearer token presented by a
// client. The absent secret matches nothing.
func (s Secret) Matches(token string) bool {
	if s.v == nil {
		return false
	}
	return equalHashed(s.v.b, []byte(token))
}

func equalHashed(a, b []byte) bool {
	ha, hb := sha256.Sum256(a), sha256.Sum256(b)
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// Reveal returns the token itself, for the few places that must send it (an
// Authorization header). Never log or format its result.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return string(s.v.b)
}

func (s Secret) bytes() []byte {
	if s.v == nil {
		return nil
	}
	return s.v.b
}

// String returns "REDACTED".
func (Secret) String() string { return redacted }

// GoString returns "REDACTED".
func (Secret) GoString() string { return redacted }

// Format prints "REDACTED" for every verb and flag.
func (Secret) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// MarshalJSON encodes the secret as the JSON string "REDACTED".
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns "REDACTED".
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue makes log/slog print "REDACTED".
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }
