package p2p

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
)

// checkWhole verifies the whole content of t against the expected digest
// ("sha256:<hex>") and/or MD5 (hex), when given, in one read.
func checkWhole(t *cache.Task, sha, md5hex string) error {
	if sha == "" && md5hex == "" {
		return nil
	}
	var ws []io.Writer
	var dv *manifest.DigestVerifier
	if sha != "" {
		var err error
		if dv, err = manifest.NewDigestVerifier(sha); err != nil {
			return fmt.Errorf("check the downloaded content: %w", err)
		}
		ws = append(ws, dv)
	}
	var mh hash.Hash
	if md5hex != "" {
		mh = md5.New()
		ws = append(ws, mh)
	}
	if _, err := io.Copy(io.MultiWriter(ws...), io.NewSectionReader(t, 0, t.Meta().Length)); err != nil {
		return fmt.Errorf("read downloaded content to check its digest: %w", err)
	}
	if dv != nil {
		if err := dv.Verify(); err != nil {
			return fmt.Errorf("verify the download: %w", err)
		}
	}
	if mh != nil {
		if got := hex.EncodeToString(mh.Sum(nil)); got != strings.ToLower(md5hex) {
			return fmt.Errorf("downloaded content has MD5 %s, expected %s", got, md5hex)
		}
	}
	return nil
}

// ErrRotten says stored pieces no longer matched their digests when the
// content was about to be handed out; they were dropped.
var ErrRotten = errors.New("stored pieces were corrupt on disk")

// checkForOutput re-hashes every piece not verified since the data file
// last changed (cache.Task.CheckPieces), so that rotten bytes never reach
// an output. The rotten pieces are dropped for the next download to fetch.
func checkForOutput(t *cache.Task) error {
	bad, err := t.CheckPieces()
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("pieces %v of task %s: %w (dropped; download again)", bad, t.ID(), ErrRotten)
	}
	if !t.Complete() {
		return fmt.Errorf("task %s lacks %d of %d pieces: %w", t.ID(), t.NumPieces()-t.Count(), t.NumPieces(), ErrRotten)
	}
	return nil
}

// writeOutput copies the task's content to path atomically: into a
// temporary file beside it, then renamed over path, so a reader never sees
// a partial file at path. Like curl and wget it does not fsync the output
// (that doubled the cost of a 1 GiB download here); the store's copy is
// what survives a crash and makes a rerun instant.
func writeOutput(t *cache.Task, path string) (err error) {
	if err := checkForOutput(t); err != nil {
		return fmt.Errorf("output %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("output %s: %w", path, err)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return fmt.Errorf("output %s is a directory", path)
	}
	dir := filepath.Dir(abs)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("output directory %s does not exist", dir)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(abs)+".damselfly-*")
	if err != nil {
		return fmt.Errorf("create temporary output file in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	src, err := os.Open(t.DataPath())
	if err != nil {
		return fmt.Errorf("open downloaded data: %w", err)
	}
	defer src.Close()
	// io.Copy between files uses copy_file_range: the bytes stay in the kernel.
	n, err := io.Copy(tmp, io.LimitReader(src, t.Meta().Length))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if n != t.Meta().Length {
		return fmt.Errorf("write %s: copied %d of %d bytes", path, n, t.Meta().Length)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), abs); err != nil {
		return fmt.Errorf("move output into place at %s: %w", path, err)
	}
	return nil
}

// exportOutput moves the finished task's data file to path and drops the
// task from the peer and the store; it reports false (and changes nothing)
// when it cannot, e.g. across file systems or while another download of
// the task runs here.
func (p *Peer) exportOutput(taskID, path string) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return false // writeOutput reports it
	}
	p.mu.Lock()
	ot := p.open[taskID]
	if ot == nil || ot.active > 0 {
		p.mu.Unlock()
		return false
	}
	delete(p.open, taskID) // no more uploads of it
	p.relays.Forget(taskID)
	p.mu.Unlock()
	err = checkForOutput(ot.t)
	if err == nil {
		err = p.store.Export(ot.t, abs)
	}
	if err != nil {
		p.mu.Lock()
		p.open[taskID] = ot
		p.mu.Unlock()
		if !errors.Is(err, cache.ErrInUse) {
			p.log.WithError(err).Debug("could not move the download into place; copying it")
		}
		return false
	}
	os.Chmod(abs, 0o644)
	return true
}
