package fusefs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/damselfly-p2p/damselfly/objstore"
)

// maxListingFile bounds a kept listing read back from disk (a directory
// of about a million objects).
const maxListingFile = 256 << 20

// DirListings keeps the listings of one mounted prefix as JSON files in
// dir (created 0700 when first needed; each file 0600: listings name the
// objects of a possibly private bucket), one per directory.
type DirListings struct{ Dir string }

var _ Listings = DirListings{}

type keptListing struct {
	Prefix  string           `json:"prefix"`
	Listed  time.Time        `json:"listed"`
	Entries []objstore.Entry `json:"entries"`
}

func (l DirListings) file(prefix string) string {
	sum := sha256.Sum256([]byte(prefix))
	return filepath.Join(l.Dir, hex.EncodeToString(sum[:16])+".json")
}

// Load returns the listing kept for prefix, if any. A damaged file is
// treated as none (its entries are checked again by the tree anyway).
func (l DirListings) Load(prefix string) ([]objstore.Entry, time.Time, bool) {
	f, err := os.Open(l.file(prefix))
	if err != nil {
		return nil, time.Time{}, false
	}
	defer f.Close()
	var k keptListing
	if err := json.NewDecoder(io.LimitReader(f, maxListingFile)).Decode(&k); err != nil || k.Prefix != prefix {
		return nil, time.Time{}, false
	}
	return k.Entries, k.Listed, true
}

// Store writes the listing of prefix, atomically replacing the kept one.
func (l DirListings) Store(prefix string, entries []objstore.Entry, listed time.Time) error {
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(keptListing{Prefix: prefix, Listed: listed.UTC(), Entries: entries})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(l.Dir, ".listing-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), l.file(prefix)); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// ListingsDir is where dfmount keeps the listings of a prefix mount under
// its data dir: one directory per store endpoint, bucket and prefix (no
// credentials in the name).
func ListingsDir(dataDir, endpoint, bucket, prefix string) string {
	sum := sha256.Sum256([]byte(endpoint + "\x00" + bucket + "\x00" + prefix))
	return filepath.Join(dataDir, "s3-listings", hex.EncodeToString(sum[:16]))
}
