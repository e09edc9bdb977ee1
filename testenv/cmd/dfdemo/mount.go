package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// mountSeed is the seed of the mounted file's content (testenv.AddRandom).
const mountSeed = 1018

// mountPart mounts a large file of the demo origin with dfmount, through
// the supernode, reads a few scattered MiB and prints the time to the
// first byte and what the origin served against the file size.
func mountPart(e *env, c config) result {
	const part = partMount
	if why := fuseUnavailable(); why != "" {
		return skipped(part, "FUSE unavailable", "dfmount part skipped: FUSE unavailable: "+why)
	}
	mf := e.mountFile
	if mf == nil {
		panic(testenv.FatalError{Msg: "no file prepared for the mount"})
	}
	if mf.err != nil {
		panic(testenv.FatalError{Msg: "generating the mounted file: " + mf.err.Error()})
	}
	name, size, offsets, want := mf.name, c.mountSize, mf.offsets, mf.want
	printf("file %s, %s\n", e.origin.URL(name), ratelimit.HumanBytes(size))
	served0 := e.origin.BytesServed(name)

	mnt := e.tb.TempDir()
	m, err := startMount(e, e.origin.URL(name), mnt, "--supernode", e.sn.Addr, "--data-dir", e.tb.TempDir(),
		"--prefetch=false")
	if err != nil {
		if why := fuseFailure(err); why != "" {
			return skipped(part, "FUSE unavailable", "dfmount part skipped: FUSE unavailable: "+why)
		}
		panic(testenv.FatalError{Msg: err.Error()})
	}
	printf("dfmount %s %s --supernode %s --prefetch=false: mounted in %s\n",
		e.origin.URL(name), mnt, e.sn.Addr, m.took.Round(time.Millisecond))
	file := filepath.Join(mnt, name)
	fi, err := os.Stat(file)
	if err != nil {
		panic(testenv.FatalError{Msg: fmt.Sprintf("stat through the mount: %v", err)})
	}
	printf("ls -l: %s %d bytes, mode %s\n\n", name, fi.Size(), xattr(file, fusefs.XattrMode))

	f, err := os.Open(file)
	if err != nil {
		panic(testenv.FatalError{Msg: fmt.Sprintf("open through the mount: %v", err)})
	}
	defer f.Close()
	// The first read asks for 1 byte: the time it takes is the time to the
	// first byte of a cold mount (the kernel still reads a page or more).
	start := time.Now()
	one := make([]byte, 1)
	_, err = f.ReadAt(one, offsets[0])
	ttfb := time.Since(start)
	if err != nil {
		panic(testenv.FatalError{Msg: fmt.Sprintf("read through the mount at %d: %v", offsets[0], err)})
	}
	printf("first byte (offset %d) after %s\n", offsets[0], ttfb.Round(time.Millisecond))
	printf("%-14s %9s  %s\n", "offset", "time", "sha256 of 1 MiB")
	good := 0
	var read int64
	buf := make([]byte, 1<<20)
	for i, off := range offsets {
		start := time.Now()
		n, err := f.ReadAt(buf, off)
		took := time.Since(start)
		read += int64(n)
		got := sum(buf[:n])
		status := "match"
		switch {
		case err != nil && !(errors.Is(err, io.EOF) && n == want[i].n):
			status = fmt.Sprintf("READ FAILED: %v", err)
		case got != want[i].sum:
			status = fmt.Sprintf("MISMATCH: the file has %s there", want[i].sum[:16])
		default:
			good++
		}
		printf("%-14d %9s  %s  %s\n", off, took.Round(time.Millisecond), got[:16], status)
	}
	served := e.origin.BytesServed(name) - served0
	present := progress(file)
	f.Close()
	if err := m.stop(); err != nil {
		printf("unmount: %v\n", err)
	} else {
		printLine("unmounted")
	}
	share := 100 * float64(served) / float64(size)
	printf("\nread %s of %s: origin served %s (%.1f%% of the file), first byte after %s; %s\n",
		ratelimit.HumanBytes(read), ratelimit.HumanBytes(size), ratelimit.HumanBytes(served), share,
		ttfb.Round(time.Millisecond), present)
	r := result{part: part,
		read:   fmt.Sprintf("%s of %s", ratelimit.HumanBytes(read), ratelimit.HumanBytes(size)),
		served: fmt.Sprintf("%s (%.1f%% of the file)", ratelimit.HumanBytes(served), share),
		sha:    fmt.Sprintf("%d/%d match", good, len(offsets)),
		note:   fmt.Sprintf("first byte after %s; %d reads of 1 MiB", ttfb.Round(time.Millisecond), len(offsets))}
	r.failed = good != len(offsets)
	return r
}

// mountFile is the file the mount part reads, prepared in the background
// while the binaries build: its name at the origin, the offsets of the
// reads and their expected content.
type mountFile struct {
	name    string
	offsets []int64
	want    []wantRange
	took    time.Duration
	err     error
}

// prepareMountFile adds the mounted file to the origin (a 1 GiB file is
// written to disk and hashed: seconds) in the background and sends it on
// the returned channel.
func prepareMountFile(o *testenv.Origin, c config) <-chan mountFile {
	ch := make(chan mountFile, 1)
	go func() {
		start := time.Now()
		mf := mountFile{name: "mount.bin"}
		defer func() {
			if r := recover(); r != nil { // AddRandom's Fatalf
				mf.err = fmt.Errorf("%v", r)
			}
			mf.took = time.Since(start)
			ch <- mf
		}()
		o.AddRandom(mf.name, c.mountSize, mountSeed)
		mf.offsets = spreadOffsets(c.mountSize, c.mountReads)
		mf.want = expectedRanges(c.mountSize, mountSeed, mf.offsets, 1<<20)
	}()
	return ch
}

// spreadOffsets returns n offsets of 1 MiB reads spread over size bytes,
// none on a piece boundary, the last one ending at the end of the file.
func spreadOffsets(size int64, n int) []int64 {
	var offs []int64
	for i := 0; i < n; i++ {
		off := size / int64(n) * int64(i)
		if i == n-1 {
			off = size - 1<<20
		} else {
			off += int64(i+1) * 77777
		}
		offs = append(offs, off)
	}
	return offs
}

// wantRange is the expected content of one read: its length and SHA-256.
type wantRange struct {
	n   int
	sum string
}

// expectedRanges computes the SHA-256 of each [off, off+n) range (cut at
// size; offsets ascending, ranges not overlapping) of the content
// testenv.AddRandom stores for size and seed, from the generator itself in
// one pass (under a second per GiB), so the check depends on neither the
// origin nor the mount.
func expectedRanges(size, seed int64, offsets []int64, n int64) []wantRange {
	out := make([]wantRange, len(offsets))
	r := testenv.RandomReader(size, seed)
	var pos int64
	for i, off := range offsets {
		if off < pos {
			panic(testenv.FatalError{Msg: "expectedRanges: offsets must ascend without overlap"})
		}
		if _, err := io.CopyN(io.Discard, r, off-pos); err != nil {
			panic(testenv.FatalError{Msg: fmt.Sprintf("generator: %v", err)})
		}
		b := make([]byte, min(off+n, size)-off)
		if _, err := io.ReadFull(r, b); err != nil {
			panic(testenv.FatalError{Msg: fmt.Sprintf("generator: %v", err)})
		}
		pos = off + int64(len(b))
		out[i] = wantRange{n: len(b), sum: sum(b)}
	}
	return out
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func sha256Reader(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// progress describes the user.damselfly.progress xattr ("present/size")
// of path.
func progress(path string) string {
	v := xattr(path, fusefs.XattrProgress)
	a, b, ok := strings.Cut(v, "/")
	present, err1 := strconv.ParseInt(a, 10, 64)
	size, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return "progress xattr " + v
	}
	return fmt.Sprintf("%s of %s present in its data dir", ratelimit.HumanBytes(present), ratelimit.HumanBytes(size))
}

// xattr returns the extended attribute name of path, or "?" with the
// reason.
func xattr(path, name string) string {
	buf := make([]byte, 256)
	n, err := syscall.Getxattr(path, name, buf)
	if err != nil {
		return fmt.Sprintf("? (%v)", err)
	}
	return string(buf[:n])
}

// fuseUnavailable says why FUSE mounts cannot work here, or "".
func fuseUnavailable() string {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return err.Error()
	}
	f.Close()
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			if _, err := exec.LookPath("fusermount"); err != nil {
				return "not root and no fusermount in PATH"
			}
		}
	}
	return ""
}

// fuseFailure says whether a failed mount failed for want of FUSE (the
// reason), or for another reason ("").
func fuseFailure(err error) string {
	msg := err.Error()
	for _, s := range []string{"/dev/fuse", "fusermount", "operation not permitted"} {
		if strings.Contains(msg, s) {
			return firstLine(msg)
		}
	}
	return ""
}

// mount is a running dfmount process and its mountpoint.
type mount struct {
	proc *testenv.Proc
	mnt  string
	took time.Duration // from start to a live mount
}

// startMount runs `dfmount [args...] --no-daemon --upload-listen
// 127.0.0.1:0 --log-level info URL MNT` and waits until the mount answers.
// Cleanups stop it with SIGTERM (a clean unmount), and detach the mount
// even if it was killed, also on Ctrl-C and failures. A dfmount that exits
// first gives an error with its log's last lines.
func startMount(e *env, url, mnt string, args ...string) (*mount, error) {
	e.tb.Cleanup(func() { // runs after the kill below
		if _, ok := fusefs.MountedType(mnt); ok {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	args = append(append([]string{}, args...), "--no-daemon", "--upload-listen", "127.0.0.1:0",
		"--log-level", "info", url, mnt)
	start := time.Now()
	p := testenv.Start(e.tb, e.bin, "dfmount", args...)
	m := &mount{proc: p, mnt: mnt}
	e.tb.Cleanup(func() { m.stop() }) // runs before testenv's SIGKILL
	deadline := start.Add(time.Minute)
	for time.Now().Before(deadline) {
		if typ, ok := fusefs.MountedType(mnt); ok && typ == "fuse."+fusefs.FSName && fusefs.Alive(mnt) {
			m.took = time.Since(start)
			return m, nil
		}
		if p.Exited() {
			return nil, fmt.Errorf("dfmount exited before mounting: %s", lastLines(p.Tail(8)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("dfmount did not mount within a minute: %s", lastLines(p.Tail(8)))
}

// stop sends SIGTERM, waits for dfmount to unmount and exit, and detaches
// the mount if it is still there. It is harmless on a stopped mount.
func (m *mount) stop() error {
	var err error
	if !m.proc.Exited() {
		m.proc.Signal(syscall.SIGTERM)
		code, werr := m.proc.Wait(20 * time.Second)
		if werr != nil || code != 0 {
			err = fmt.Errorf("dfmount exit %d %v: %s", code, werr, lastLines(m.proc.Tail(5)))
		}
	}
	if _, ok := fusefs.MountedType(m.mnt); ok {
		syscall.Unmount(m.mnt, syscall.MNT_DETACH)
		if err == nil {
			err = errors.New("mount still there after dfmount exited; detached it")
		}
	}
	return err
}

// lastLines joins log lines into one, dropping the command line testenv
// writes first.
func lastLines(tail string) string {
	var keep []string
	for _, l := range strings.Split(tail, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "# ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, " | ")
}
