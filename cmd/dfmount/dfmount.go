package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/damselfly-p2p/damselfly/cmd/internal/cli"
	"github.com/damselfly-p2p/damselfly/cmd/internal/config"
	"github.com/damselfly-p2p/damselfly/cmd/internal/metricsserve"
	"github.com/damselfly-p2p/damselfly/cmd/internal/peerflags"
	"github.com/damselfly-p2p/damselfly/cmd/internal/peermetrics"
	"github.com/damselfly-p2p/damselfly/cmd/internal/version"
	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/trust/egress"
)

const (
	// childEnv marks the background child of --daemon; readyFD is the pipe
	// it reports readiness on.
	childEnv = "DAMSELFLY_DFMOUNT_CHILD"
	readyFD  = 3
)

type options struct {
	peerflags.Options
	s3                                                   peerflags.S3
	kind, logLevel, logFile, logFormat                   string
	digest, tocDigest, tag                               string
	headers, filters, headerHosts                        []string
	prefetch, background, allowOther, unmount, debugFUSE bool
	s3Pack                                               bool
	prefetchLimit                                        cli.Rate
	readTimeout                                          time.Duration
	metrics                                              metricsserve.Options
}

func newCommand() *cobra.Command {
	var o options
	home, _ := os.UserHomeDir()
	cmd := &cobra.Command{
		Use:   "dfmount URL MOUNTPOINT | dfmount -u MOUNTPOINT",
		Short: "Mount remote content read-only; reads fetch pieces on demand through P2P",
		Long: `dfmount makes remote content usable before it is downloaded. Reads fetch only
the pieces they touch, at top priority, through the P2P network; a background
prefetcher (on by default) completes the content behind them. Pieces and
metadata stay in --data-dir, so a remount resumes, and stat/ls/readlink work
from metadata even with the network gone.

With no supernode reachable, dfmount reads straight from the origin (direct
mode): Range requests for the pieces reads touch, prefetch behind them,
pieces kept in --data-dir; it keeps trying the supernode and joins the swarm
without remounting once one answers.

s3://BUCKET/KEY mounts one object of an S3-compatible store (--s3-endpoint,
--s3-region, --s3-path-style; credentials from the standard AWS chain),
read with ranged GETs pinned to its ETag by the embedded peer.
s3://BUCKET/PREFIX/ (ending in "/") mounts the prefix as a read-only tree:
the top level's first page is listed before mounting (wrong credentials
fail there), every other directory when first looked up or read, and each listing is
kept for the mount's life (remount to see new objects). stat and find
fetch no object contents; each file's object is opened at its first read.
Listings are also kept in --data-dir, so a remount with the store
unreachable shows the tree and reads what is stored. With --s3-pack (on),
the objects under 1 MiB of each directory are one task (a pack, fetched
with concurrent GETs) instead of one task each.

--type selects what URL holds:
  file     one file, named after the URL's last path element (default)
  dataset  a dataset manifest (JSON, see the README) listing paths, sizes,
           digests and URLs; the mount shows the tree. Entries may be
           s3://BUCKET/KEY: read as an s3 object given here would be, from
           the store --s3-* names (never one the manifest names)
  estargz  an eStargz layer blob; the mount shows the layer's tree, reading
           each file's chunks lazily and verifying their digests

A read whose pieces cannot be had within --read-timeout fails with EIO.
dfmount runs in the foreground and unmounts on SIGINT/SIGTERM; --daemon
backgrounds it once the mount is ready. A stale mount left by a crash is
replaced. Extended attributes: user.damselfly.progress ("present/size"),
user.damselfly.digest, user.damselfly.source, user.damselfly.mode (p2p or
direct).`,
		Example: `  dfmount https://example.com/data/train.bin /mnt/train --supernode sn1:8002
  dfmount --type dataset https://example.com/ds/manifest.json /mnt/ds --prefetch=false
  dfmount s3://datasets/train.bin /mnt/train --s3-endpoint http://minio:9000 --s3-path-style
  dfmount s3://datasets/train/ /mnt/train --s3-endpoint http://minio:9000 --s3-path-style
  dfmount -u /mnt/train`,
		Args:          cobra.RangeArgs(1, 2),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.unmount {
				if len(args) != 1 {
					return errors.New("usage: dfmount -u MOUNTPOINT")
				}
				return fusefs.Unmount(args[0])
			}
			if len(args) != 2 {
				return errors.New("usage: dfmount URL MOUNTPOINT")
			}
			if o.background && os.Getenv(childEnv) == "" {
				return daemonize(&o)
			}
			return run(&o, args[0], args[1])
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.BoolVarP(&o.unmount, "unmount", "u", false, "unmount MOUNTPOINT and exit")
	f.StringVar(&o.kind, "type", "file", "what URL holds: file, dataset or estargz")
	f.BoolVar(&o.prefetch, "prefetch", true, "fetch the whole content in the background, behind reads")
	f.Var(&o.prefetchLimit, "prefetch-limit", "rate limit of the background prefetch, e.g. 50M (bytes/s; 0: none)")
	f.DurationVar(&o.readTimeout, "read-timeout", 30*time.Second, "a read waits at most this long for its pieces, then fails with EIO")
	f.StringArrayVarP(&o.headers, "header", "H", nil, "'Key: Value' header sent to the origin only (repeatable); only to URL's own scheme://host:port and the --header-host ones, never to other hosts a dataset manifest names")
	f.StringArrayVar(&o.headerHosts, "header-host", nil, "HOST[:PORT] that also gets the -H headers (a dataset's files on another host); repeatable")
	f.StringVar(&o.digest, "digest", "", "expected digest of the file (--type file), shown as user.damselfly.digest")
	f.StringVar(&o.tocDigest, "toc-digest", "", "expected TOC digest of the eStargz blob (--type estargz): verifies the TOC and so every chunk")
	f.StringVar(&o.tag, "tag", "", "tag that separates tasks of the same URL")
	f.StringSliceVar(&o.filters, "filter", nil, "query parameters left out of the task identity")
	o.Register(f, peerflags.Spec{Role: peerflags.Client,
		DataDir: filepath.Join(home, ".damselfly", "dfmount"), DataDirHelp: "piece store of the embedded peer",
		Help: map[string]string{"no-daemon": "always use an embedded peer", "advertise-ip": "IP other peers use to reach the embedded peer"}})
	o.s3.Register(f)
	f.BoolVar(&o.s3Pack, "s3-pack", true, "s3 prefix mounts: read the objects under 1 MiB of each directory as one task (a pack), fetched with concurrent GETs")
	f.BoolVar(&o.background, "daemon", false, "run in the background once mounted")
	f.StringVar(&o.logFile, "log-file", "", "log file (default with --daemon: DATA_DIR/dfmount.log)")
	f.BoolVar(&o.allowOther, "allow-other", false, "let other users read the mount")
	f.BoolVar(&o.debugFUSE, "debug-fuse", false, "log every FUSE request")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	cli.AddLogFormat(f, &o.logFormat)
	o.metrics.Register(f)
	config.Bind(cmd)
	cmd.AddCommand(version.Command("dfmount"))
	return cmd
}

func run(o *options, rawURL, mnt string) (err error) {
	log, err := cli.SetupLogging(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	if o.logFile != "" {
		f, err := os.OpenFile(o.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("log file: %w", err)
		}
		log.SetOutput(f)
	}
	fusefs.Log = log
	defer func() { reportReady(err) }()
	isS3 := objstore.IsURL(rawURL)
	if isS3 {
		u, err := objstore.ParseURL(rawURL)
		if err != nil {
			return err
		}
		if u.IsPrefix() && o.kind != "file" {
			return fmt.Errorf("%s: --type %s does not apply to an s3 prefix (mounted as a tree)", u, o.kind)
		}
		// The store's credentials stay in this process: no dfdaemon.
		o.NoDaemon = true
	} else if _, err := manifest.ParseURL(rawURL); err != nil {
		return err
	}
	if o.kind != "file" && o.kind != "dataset" && o.kind != "estargz" {
		return fmt.Errorf("--type %q: want file, dataset or estargz", o.kind)
	}
	header := http.Header{}
	for _, kv := range o.headers {
		k, v, ok := strings.Cut(kv, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("invalid --header: want 'Key: Value'")
		}
		header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	src, err := o.Open(ctx, log)
	if err != nil {
		return err
	}
	defer src.Close()
	reg := metricsserve.NewRegistry()
	peermetrics.RegisterState(reg, src.Peer(), 0)
	fuseMetrics := peermetrics.NewFUSE(reg)
	ms, err := metricsserve.Start(o.metrics, reg, log)
	if err != nil {
		return err
	}
	defer ms.Close()
	lazy := p2p.LazyOptions{Prefetch: o.prefetch, PrefetchLimit: int64(o.prefetchLimit), ReadTimeout: o.readTimeout}
	if isS3 {
		if lazy.ObjectStore, err = o.s3.Client(ctx); err != nil {
			return err
		}
	}
	scope, err := newHeaderScope(rawURL, o.headerHosts)
	if err != nil {
		return err
	}
	policy, err := o.Egress()
	if err != nil {
		return err
	}
	modes := &modeWatch{s3: isS3}
	openers := treeOpeners{
		open: func(ctx context.Context, url string) (fusefs.Content, error) {
			c, _, err := src.OpenLazy(ctx, p2p.Request{URL: url, Header: scope.header(url, header), Tag: o.tag, Filters: o.filters}, lazy)
			if err == nil {
				modes.add(c)
			}
			return c, err
		},
		policy: policy,
		s3: func(octx context.Context) (fusefs.Opener, error) {
			// Dataset entries naming s3 objects: read like s3://BUCKET/KEY
			// given on the command line, from the store --s3-* names.
			if src.ViaDaemon() {
				return nil, errors.New("the dataset lists s3:// objects, which an embedded peer reads with this process's AWS credentials: run dfmount with --no-daemon")
			}
			l := lazy
			if l.ObjectStore == nil {
				var err error
				if l.ObjectStore, err = o.s3.Client(octx); err != nil {
					return nil, err
				}
			}
			s3modes := &modeWatch{s3: true}
			go s3modes.watch(ctx, os.Stderr)
			return func(ctx context.Context, url string) (fusefs.Content, error) {
				c, _, err := src.OpenLazy(ctx, p2p.Request{URL: url, Tag: o.tag}, l)
				if err == nil {
					s3modes.add(c)
				}
				return c, err
			}, nil
		},
	}

	openCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var root fs.InodeEmbedder
	var entries int
	kind := o.kind
	if u, _ := objstore.ParseURL(rawURL); isS3 && u.IsPrefix() {
		// Each object of the tree is a lazy task of its own, opened from
		// its listing entry (no HEAD) at its first read.
		openObject := func(ctx context.Context, obj objstore.ObjectInfo) (fusefs.Content, error) {
			l := lazy
			l.Object = &obj
			c, _, err := src.OpenLazy(ctx, p2p.Request{URL: obj.URL().String(), Tag: o.tag}, l)
			if err == nil {
				modes.add(c)
			}
			return c, err
		}
		opts := fusefs.S3TreeOptions{Bucket: u.Bucket, Prefix: u.Key,
			Lister: lazy.ObjectStore, Open: openObject, ReadTimeout: o.readTimeout,
			Listings: fusefs.DirListings{Dir: fusefs.ListingsDir(o.DataDir, o.s3.Endpoint, u.Bucket, u.Key)}}
		if o.s3Pack {
			store := lazy.ObjectStore
			opts.OpenPack = func(ctx context.Context, dir objstore.URL, pack *objstore.Pack) (fusefs.Content, error) {
				l := lazy
				l.Range = pack.WithClient(store)
				// A read of one small file of a directory predicts reads of
				// its neighbours (a data loader reads them all): the
				// prefetch of the pack starts at once, keeping a slot free
				// for reads, instead of waiting for the reads to pause.
				l.PrefetchDelay = time.Millisecond
				c, _, err := src.OpenLazy(ctx, p2p.Request{URL: dir.String(), Tag: o.tag}, l)
				if err == nil {
					modes.add(c)
				}
				return c, err
			}
		}
		tree, err := fusefs.NewS3Tree(openCtx, opts)
		if err != nil {
			return err
		}
		tree.Observe(fuseMetrics)
		root, entries, kind = tree, tree.Len(), "s3 prefix" // entries: 0 while the top level lists on
	} else {
		list, err := buildTree(openCtx, o, openers, rawURL)
		if err != nil {
			return err
		}
		tree, err := fusefs.NewTree(list, o.readTimeout)
		if err != nil {
			return err
		}
		tree.Observe(fuseMetrics)
		root, entries = tree, len(list)
	}
	server, err := fusefs.Mount(mnt, root, fusefs.MountOptions{AllowOther: o.allowOther, Debug: o.debugFUSE})
	if err != nil {
		return err
	}
	log.WithFields(logrus.Fields{"mountpoint": mnt, "url": manifest.RedactURL(rawURL), "type": kind,
		"entries": entries, "prefetch": o.prefetch}).Info("mounted")
	reportReady(nil)
	go modes.watch(ctx, os.Stderr)
	go func() {
		<-ctx.Done()
		log.Info("unmounting")
		for i := 0; i < 50; i++ {
			if err := server.Unmount(); err == nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		log.Error("mount busy; detaching it")
		syscall.Unmount(mnt, syscall.MNT_DETACH)
	}()
	server.Wait()
	log.Info("unmounted")
	return nil
}

// treeOpeners open the mount's contents: open for the URL the user gave
// (and, restricted, for dataset entries); policy is the origin policy a
// dataset manifest's entries must pass (nil: egress's strict default); s3
// returns the opener of a dataset's s3:// entries (called once, when the
// manifest lists some).
type treeOpeners struct {
	open   fusefs.Opener
	policy *egress.Policy
	s3     func(ctx context.Context) (fusefs.Opener, error)
}

// remote is the opener of URLs a remote manifest names: each must pass the
// origin policy first (the supernode's seed applies its own at dial time).
// s3:// entries go to openS3 (nil: refused): they name a bucket and key,
// read from the store dfmount's own flags name, never a host.
func (t treeOpeners) remote(openS3 fusefs.Opener) fusefs.Opener {
	return func(ctx context.Context, rawURL string) (fusefs.Content, error) {
		if objstore.IsURL(rawURL) {
			if openS3 == nil {
				return nil, fmt.Errorf("dataset entry %s: s3 objects are not read by this mount", rawURL)
			}
			return openS3(ctx, rawURL)
		}
		u, err := url.Parse(rawURL)
		if err != nil {
			return nil, fmt.Errorf("dataset entry: %w", err)
		}
		if err := t.policy.CheckURL(u); err != nil {
			return nil, fmt.Errorf("dataset entry %s: %w", manifest.RedactURL(rawURL), err)
		}
		return t.open(ctx, rawURL)
	}
}

// buildTree opens the content behind rawURL and returns the mount's tree.
func buildTree(ctx context.Context, o *options, openers treeOpeners, rawURL string) ([]fusefs.Entry, error) {
	now := time.Now()
	open := openers.open
	c, err := open(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	switch o.kind {
	case "dataset":
		if c.Size() > 64<<20 {
			return nil, fmt.Errorf("dataset manifest is %d bytes; refusing more than 64 MiB", c.Size())
		}
		buf := make([]byte, c.Size())
		if _, err := c.ReadAtContext(ctx, buf, 0); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read dataset manifest: %w", err)
		}
		ds, err := fusefs.ParseDataset(buf, rawURL)
		if err != nil {
			return nil, err
		}
		var openS3 fusefs.Opener
		for _, f := range ds.Files {
			if objstore.IsURL(f.URL) && openers.s3 != nil {
				if openS3, err = openers.s3(ctx); err != nil {
					return nil, fmt.Errorf("dataset entry %s: %w", f.URL, err)
				}
				break
			}
		}
		return ds.Entries(openers.remote(openS3), now), nil
	case "estargz":
		var td digest.Digest
		if o.tocDigest != "" {
			if td, err = digest.Parse(o.tocDigest); err != nil {
				return nil, fmt.Errorf("--toc-digest: %w", err)
			}
		}
		sg, err := fusefs.OpenStargz(ctx, c, manifest.RedactURL(rawURL), td)
		if err != nil {
			return nil, err
		}
		return sg.Entries(fusefs.EntriesOptions{})
	default:
		return fusefs.SingleFile(rawURL, c, o.digest, now), nil
	}
}

// daemonize re-runs dfmount in the background and waits until the child
// says the mount is ready (or failed).
func daemonize(o *options) error {
	if o.logFile == "" {
		os.MkdirAll(o.DataDir, 0o755)
		o.logFile = filepath.Join(o.DataDir, "dfmount.log")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	args := append([]string{}, os.Args[1:]...)
	args = append(args, "--log-file", o.logFile)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start background dfmount: %w", err)
	}
	w.Close()
	msg, _ := io.ReadAll(r)
	if s := strings.TrimSpace(string(msg)); s != "ok" {
		if s == "" {
			s = "background dfmount exited before mounting; see " + o.logFile
		}
		return errors.New(s)
	}
	fmt.Fprintf(os.Stderr, "dfmount: mounted in the background (pid %d), log %s\n", cmd.Process.Pid, o.logFile)
	return nil
}

// reportReady tells a waiting parent (--daemon) how mounting went; only
// the first report counts.
func reportReady(err error) {
	if os.Getenv(childEnv) == "" {
		return
	}
	f := os.NewFile(readyFD, "ready")
	if f == nil {
		return
	}
	msg := "ok\n"
	if err != nil {
		msg = err.Error() + "\n"
	}
	f.Write([]byte(msg))
	f.Close()
	os.Unsetenv(childEnv)
}

// modeWatch tells the user on stderr when content is read straight from
// the origin (no supernode reachable) and when it joins the swarm later.
type modeWatch struct {
	s3     bool // objects of a store: through the swarm only with a supernode that allows the store
	mu     sync.Mutex
	direct map[fusefs.Moder]bool
	p2p    bool // an object was said to be read through the swarm
}

// add notes c (content without a mode, e.g. through dfdaemon, is skipped)
// and says so at once when it is read directly.
func (m *modeWatch) add(c any) {
	mc, ok := c.(fusefs.Moder)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.direct == nil {
		m.direct = map[fusefs.Moder]bool{}
	}
	if mc.Mode() == "direct" {
		m.direct[mc] = true
		if len(m.direct) == 1 && m.s3 {
			fmt.Fprintln(os.Stderr, "dfmount: reading objects straight from the store (mode direct, xattr user.damselfly.mode)")
		} else if len(m.direct) == 1 {
			fmt.Fprintln(os.Stderr, "dfmount: no supernode reachable: reading straight from the origin (mode direct, xattr user.damselfly.mode); the mount joins the swarm once a supernode answers")
		}
	} else if m.s3 && !m.p2p {
		m.p2p = true
		fmt.Fprintln(os.Stderr, "dfmount: reading objects through the swarm: the supernode's seed fetches each from the store once (mode p2p, xattr user.damselfly.mode)")
	}
}

// watch reports to w each content that moved from direct to p2p, until ctx
// ends.
func (m *modeWatch) watch(ctx context.Context, w io.Writer) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		m.mu.Lock()
		for c := range m.direct {
			if c.Mode() == "p2p" {
				delete(m.direct, c)
				fmt.Fprintln(w, "dfmount: supernode reachable: joined the swarm (mode p2p)")
			}
		}
		m.mu.Unlock()
	}
}
