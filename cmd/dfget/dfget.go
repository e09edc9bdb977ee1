package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/damselfly-p2p/damselfly/cmd/internal/cli"
	"github.com/damselfly-p2p/damselfly/cmd/internal/peerflags"
	"github.com/damselfly-p2p/damselfly/cmd/internal/version"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
)

type options struct {
	peerflags.Options
	s3                                      peerflags.S3
	url, output, digest, md5, tag, logLevel string
	logFormat                               string
	headers, filters                        []string
	limit                                   cli.Rate
	timeout, keepSeeding                    cli.Duration
	noSource, noProgress, showBar           bool
}

func newCommand() *cobra.Command {
	var o options
	home, _ := os.UserHomeDir()
	cmd := &cobra.Command{
		Use:   "dfget URL -o FILE [flags]",
		Short: "Download a file through the Damselfly P2P network",
		Long: `dfget downloads URL to FILE. Pieces come from other peers where possible, from
the supernode's seed otherwise; the supernode alone talks to the origin.

If a dfdaemon answers on --daemon-sock, dfget asks it to download (the host's
store and limits are shared). Otherwise dfget runs an embedded peer for this
download that also uploads to others while it runs (and for --keep-seeding
afterwards). With no supernode reachable it downloads straight from the origin,
unless --no-source.

s3://BUCKET/KEY downloads one object of an S3-compatible store (--s3-endpoint,
--s3-region, --s3-path-style) with the standard AWS credential chain
(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, shared files, web identity). The
embedded peer reads it with ranged GETs pinned to the object's ETag, keeps
the pieces in --data-dir (a rerun resumes) and names the task by bucket, key
and ETag; in this version s3 objects are not shared through a supernode.

FILE appears only when it is complete and verified: every piece is checked
against the seed's sha256, and the whole file against --digest/--md5 if given.
Exit status 0 means the file is complete and verified. Without a dfdaemon and
without --keep-seeding, the embedded peer moves its finished copy to FILE
rather than copying it (one write, one copy on disk); a rerun then downloads
again, from peers.

The classic dfget spellings work too: -u URL, --node, -s/--locallimit,
--totallimit, -m/--md5, --notbs, -b/--showbar, -i/--identifier, -f/--filter,
-e/--timeout (seconds or a duration).`,
		Example: `  dfget https://example.com/big.iso -o /tmp/big.iso --supernode sn1:8002,sn2:8002
  dfget -u https://example.com/model.bin -o model.bin --node sn1:8002 -s 50M --md5 0123...
  dfget https://registry/v2/lib/blobs/sha256:... -o layer.tgz --header 'Authorization: Bearer ...'
  dfget s3://datasets/train/shard-0.tar -o shard-0.tar --s3-endpoint http://minio:9000 --s3-path-style`,
		Args:          cobra.MaximumNArgs(1),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if o.url != "" && o.url != args[0] {
					return errors.New("URL given twice (argument and -u/--url)")
				}
				o.url = args[0]
			}
			return run(&o)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVarP(&o.url, "url", "u", "", "URL to download (or give it as the argument)")
	f.StringVarP(&o.output, "output", "o", "", "where to write the file (required); written atomically")
	o.Register(f, peerflags.Spec{Role: peerflags.Client, Classic: true, Tuning: true,
		DataDir: filepath.Join(home, ".damselfly", "dfget"), DataDirHelp: "piece store of the embedded peer (a rerun resumes from it)"})
	f.StringArrayVarP(&o.headers, "header", "H", nil, "'Key: Value' header sent to the origin only (repeatable); never stored, logged or shared with peers")
	f.StringVar(&o.digest, "digest", "", "expected sha256 of the whole file, as sha256:HEX")
	f.StringVarP(&o.md5, "md5", "m", "", "expected MD5 of the whole file, in hex")
	f.VarP(&o.limit, "limit", "s", "rate limit of this download, e.g. 20M (bytes/s); classic spelling -s/--locallimit")
	f.Var(&o.limit, "locallimit", "classic spelling of --limit")
	f.VarP(&o.timeout, "timeout", "e", "give up after this long, e.g. 10m or a number of seconds (0: no limit)")
	f.BoolVar(&o.noSource, "no-source", false, "fail rather than download from the origin when P2P fails")
	f.BoolVar(&o.noSource, "notbs", false, "classic spelling of --no-source")
	f.StringVarP(&o.tag, "tag", "i", "", "tag that separates tasks of the same URL (classic spelling -i/--identifier)")
	f.StringVar(&o.tag, "identifier", "", "classic spelling of --tag")
	f.StringSliceVarP(&o.filters, "filter", "f", nil, "query parameters left out of the task identity, e.g. 'Signature&Expires' or 'Signature,Expires'")
	f.Var(&o.keepSeeding, "keep-seeding", "after the download, keep uploading to other peers for this long (embedded peer only)")
	o.s3.Register(f)
	f.BoolVar(&o.noProgress, "no-progress", false, "no progress bar")
	f.BoolVarP(&o.showBar, "showbar", "b", false, "show the progress bar even when stderr is not a terminal")
	f.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error (logs go to stderr)")
	cli.AddLogFormat(f, &o.logFormat)
	cmd.AddCommand(version.Command("dfget"))
	return cmd
}

func run(o *options) error {
	log, err := cli.SetupLogging(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	if o.url == "" {
		return errors.New("no URL given (dfget URL -o FILE)")
	}
	isS3 := objstore.IsURL(o.url)
	if isS3 {
		if _, err := objstore.ParseURL(o.url); err != nil {
			return err
		}
		if len(o.headers) > 0 {
			return errors.New("--header is for HTTP origins; s3:// URLs sign with the AWS credentials")
		}
		// The store's credentials stay in this process: no dfdaemon.
		o.NoDaemon = true
	} else if _, err := manifest.ParseURL(o.url); err != nil {
		return err
	}
	if o.output == "" {
		return errors.New("no output file given (-o FILE)")
	}
	out, err := filepath.Abs(o.output)
	if err != nil {
		return err
	}
	header, err := parseHeaders(o.headers)
	if err != nil {
		return err
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(o.timeout))
		defer cancel()
	}
	req := p2p.Request{URL: o.url, Header: header, Tag: o.tag, Filters: cli.SplitList(o.filters, ",&"),
		Digest: o.digest, MD5: o.md5, Output: out, Limit: int64(o.limit), NoSource: o.noSource}
	bar := newBar(o)
	if bar != nil {
		req.Progress = func(done, total int64) {
			bar.ChangeMax64(total)
			bar.Set64(done)
		}
	}
	src, err := o.Open(ctx, log)
	if err != nil {
		return err
	}
	defer src.Close()
	var res *p2p.Result
	if isS3 {
		res, err = downloadS3(ctx, o, src, req)
	} else {
		res, err = download(ctx, o, src, req)
	}
	if bar != nil {
		bar.Finish()
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && o.timeout > 0 {
			return fmt.Errorf("timed out after %s: %w", time.Duration(o.timeout), err)
		}
		return err
	}
	report(res, out, src.String())
	return nil
}

// download runs req on src; an embedded peer then seeds for --keep-seeding.
func download(ctx context.Context, o *options, src *peerflags.Source, req p2p.Request) (*p2p.Result, error) {
	peer := src.Peer()
	// A peer that will not seed afterwards hands its copy over instead of
	// copying it: every byte is written once and one copy stays on disk.
	req.MoveOutput = peer != nil && o.keepSeeding == 0
	res, err := src.Download(ctx, req)
	if err != nil || peer == nil {
		return res, err
	}
	if o.keepSeeding > 0 {
		report(res, req.Output, src.String())
		fmt.Fprintf(os.Stderr, "dfget: seeding for %s from %s\n", time.Duration(o.keepSeeding), peer.UploadAddr())
		sctx, cancel := context.WithTimeout(ctx, time.Duration(o.keepSeeding))
		peer.Seed(sctx, 0)
		cancel()
		fmt.Fprintf(os.Stderr, "dfget: seeding done, uploaded %s\n", ratelimit.HumanBytes(peer.UploadedBytes()))
		return nil, errSeeded
	}
	return res, nil
}

// errSeeded marks a run whose report was already printed.
var errSeeded = errors.New("seeded")

func report(res *p2p.Result, out, via string) {
	if res == nil {
		return
	}
	mode := "p2p"
	if res.BackToSource {
		mode = "origin (no P2P)"
	}
	fmt.Fprintf(os.Stderr, "dfget: %s: %s in %s via %s, %s: from peers %s, from supernode %s, from origin %s, already present %s\n",
		out, ratelimit.HumanBytes(res.Length), res.Elapsed.Round(time.Millisecond), via, mode,
		ratelimit.HumanBytes(res.FromPeers), ratelimit.HumanBytes(res.FromSeed),
		ratelimit.HumanBytes(res.FromOrigin), ratelimit.HumanBytes(res.Reused))
	// One machine-readable line for scripts and tests.
	fmt.Fprintf(os.Stderr, "dfget-result length=%d peers=%d seed=%d origin=%d reused=%d elapsed_ms=%d back_to_source=%v\n",
		res.Length, res.FromPeers, res.FromSeed, res.FromOrigin, res.Reused, res.Elapsed.Milliseconds(), res.BackToSource)
}

func parseHeaders(hs []string) (http.Header, error) {
	h := http.Header{}
	for _, kv := range hs {
		k, v, ok := strings.Cut(kv, ":")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("invalid --header %q: want 'Key: Value'", redactHeader(kv))
		}
		h.Add(k, strings.TrimSpace(v))
	}
	return h, nil
}

// redactHeader keeps a header's name for error messages and drops its value.
func redactHeader(kv string) string {
	if k, _, ok := strings.Cut(kv, ":"); ok {
		return k + ": <redacted>"
	}
	return "<redacted>"
}

func newBar(o *options) *progressbar.ProgressBar {
	if o.noProgress || (!o.showBar && !term.IsTerminal(int(os.Stderr.Fd()))) {
		return nil
	}
	return progressbar.NewOptions64(-1, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription("dfget"), progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowCount(), progressbar.OptionFullWidth())
}
