package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/damselfly-p2p/damselfly/cmd/internal/peerflags"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/registry"
	"github.com/damselfly-p2p/damselfly/wire"
)

type preheatOptions struct {
	typ, platform, digest string
	headers               []string
	wait, plainHTTP, json bool
	timeout, interval     time.Duration
	s3                    peerflags.S3
}

func newPreheatCommand(g *globalOptions) *cobra.Command {
	var o preheatOptions
	cmd := &cobra.Command{
		Use:   "preheat URL|IMAGE|s3://BUCKET/KEY",
		Short: "Fetch a file, an s3 object, or every blob of an image, into the supernode's cache",
		Long: `preheat asks the supernode to fetch content from its origin now, so that the
first download (or image pull through dfdaemon's registry mirror) is served
from the supernode's cache instead of the origin.

  dfctl preheat https://files.example/big.iso
  dfctl preheat registry.example:5000/team/app:1.2 --platform linux/arm64 --wait
  dfctl preheat https://registry.example/v2/team/app/manifests/1.2
  dfctl preheat s3://datasets/train.bin --s3-endpoint http://minio:9000 --s3-path-style

An IMAGE is a reference as docker takes it (busybox, host:port/name:tag,
name@sha256:...); its manifest or index is resolved for --platform and its
config and layers are fetched. Registries on loopback are reached over
plain HTTP, others over HTTPS unless --plain-http.

--header values (e.g. "Authorization: Basic ...") go to the origin or
registry only; a registry asking for a bearer token gets one exchanged for
Basic credentials.

s3://BUCKET/KEY preheats one object of an S3-compatible store (--s3-endpoint,
--s3-region, --s3-path-style, --s3-profile; credentials from the standard AWS
chain): dfctl looks it up and presigns a GET of that version, valid for an
hour, with your credentials, which never leave dfctl. The supernode (started
with --s3-endpoint allowing the store) checks the presigned URL as it checks
a peer's, and its seed fetches the object with it; the presigned URL is
never printed, logged or shown. The task is the one every dfget, dfmount or
dataset entry reading that object version registers (bucket, key, ETag).
Prefixes (s3://BUCKET/PREFIX/) are not preheated.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var req *wire.PreheatRequest
			if objstore.IsURL(args[0]) {
				u, err := o.s3URL(args[0])
				if err != nil {
					return err
				}
				store, err := o.s3.Client(ctx)
				if err != nil {
					return err
				}
				if req, err = o.s3Request(ctx, u, store); err != nil {
					return err
				}
			} else {
				var err error
				if req, err = o.request(args[0]); err != nil {
					return err
				}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var st wire.PreheatStatus
			if err := c.callOwner(ctx, preheatKey(req), http.MethodPost, "/api/v1/preheats", req, &st); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !o.wait {
				if o.json {
					return printJSON(out, &st)
				}
				fmt.Fprintf(out, "preheat %s %s: %s %s\n", st.ID, st.State, st.Type, st.URL)
				fmt.Fprintf(out, "follow it with: curl %s/api/v1/preheats/%s (or dfctl preheat --wait)\n", c.baseURL(), st.ID)
				return nil
			}
			final, err := o.follow(ctx, c, st, out)
			if err != nil {
				return err
			}
			if o.json {
				printJSON(out, final)
			}
			if final.State != wire.PreheatSuccess {
				return fmt.Errorf("preheat %s %w: %s", final.ID, errFailed, final.Error)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.typ, "type", "", "image or file (default: image for an image reference or a manifest URL, else file)")
	f.StringVar(&o.platform, "platform", "linux/amd64", "image to pick from a multi-platform index, os/arch[/variant]")
	f.StringVar(&o.digest, "digest", "", "expected sha256:... of a file (checked; the task is keyed by it)")
	f.StringArrayVarP(&o.headers, "header", "H", nil, "\"Name: value\" header for the origin or registry (repeatable)")
	f.BoolVar(&o.plainHTTP, "plain-http", false, "reach the image's registry over plain HTTP")
	f.BoolVar(&o.wait, "wait", false, "wait until the content is in the cache (non-zero exit if it fails)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Minute, "with --wait: give up after this long")
	f.DurationVar(&o.interval, "poll", 500*time.Millisecond, "with --wait: how often to ask for progress")
	f.BoolVar(&o.json, "json", false, "print the preheat's status as JSON")
	o.s3.Register(f)
	return cmd
}

// request turns the argument and flags into a PreheatRequest.
func (o *preheatOptions) request(arg string) (*wire.PreheatRequest, error) {
	req := &wire.PreheatRequest{Type: o.typ, Digest: o.digest}
	switch o.typ {
	case "", wire.PreheatImage, wire.PreheatFile:
	default:
		return nil, fmt.Errorf("--type %q: want image or file", o.typ)
	}
	if strings.Contains(arg, "://") {
		req.URL = arg
	} else {
		ref, err := registry.ParseReference(arg, o.plainHTTP)
		if err != nil {
			return nil, fmt.Errorf("%w (give an image reference such as host:5000/name:tag, or an http(s) URL)", err)
		}
		if o.typ == wire.PreheatFile {
			return nil, fmt.Errorf("--type file needs a URL, not the image reference %s", arg)
		}
		req.URL, req.Type = ref.ManifestURL(), wire.PreheatImage
	}
	if req.Type == wire.PreheatImage || (req.Type == "" && registry.IsManifestURL(req.URL)) {
		if _, err := registry.ParsePlatform(o.platform); err != nil {
			return nil, fmt.Errorf("--platform: %w", err)
		}
		req.Platform = o.platform
	}
	for _, h := range o.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--header %q: want \"Name: value\"", redactHeader(h))
		}
		if req.Headers == nil {
			req.Headers = http.Header{}
		}
		req.Headers.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return req, nil
}

// preheatKey is the task ID the preheat warms (a file's, as its
// downloaders derive it), whose owner gets the request. An image's blobs
// are only known once the supernode resolved its manifest: the request
// goes to the owner of the manifest URL.
func preheatKey(req *wire.PreheatRequest) string {
	if req.TaskID != "" {
		return req.TaskID // an s3 object's, from its ETag
	}
	if req.Digest != "" {
		if d, err := manifest.ParseDigest(req.Digest); err == nil {
			return manifest.DigestTaskID(d)
		}
	}
	if d, ok := manifest.BlobDigest(req.URL); ok {
		return manifest.DigestTaskID(d)
	}
	if id, err := manifest.TaskID(req.URL, req.Tag, req.Filters); err == nil {
		return id
	}
	return req.URL
}

// redactHeader shows a header's name only: values are often credentials.
func redactHeader(h string) string {
	if k, _, ok := strings.Cut(h, ":"); ok {
		return k + ": ..."
	}
	if len(h) > 8 {
		return h[:4] + "..."
	}
	return h
}

// follow polls the preheat until it finishes, printing progress.
func (o *preheatOptions) follow(ctx context.Context, c *apiClient, st wire.PreheatStatus, out io.Writer) (*wire.PreheatStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	start := time.Now()
	last := ""
	lastPrint := time.Time{}
	for {
		line := progressLine(&st)
		if !o.json && (line != last && time.Since(lastPrint) > 2*time.Second || st.State != wire.PreheatRunning && line != last) {
			fmt.Fprintln(out, line)
			last, lastPrint = line, time.Now()
		}
		switch st.State {
		case wire.PreheatSuccess:
			if !o.json {
				fmt.Fprintf(out, "preheat %s done: %d blob(s), %s in the supernode cache (%s)\n", st.ID, len(st.Blobs),
					ratelimit.HumanBytes(st.Length), time.Since(start).Round(100*time.Millisecond))
			}
			return &st, nil
		case wire.PreheatFailed:
			return &st, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("preheat %s still %s after %v (it goes on in the supernode)", st.ID, st.State, o.timeout)
		case <-time.After(o.interval):
		}
		if err := c.call(ctx, http.MethodGet, "/api/v1/preheats/"+st.ID, nil, &st); err != nil {
			return nil, err
		}
	}
}

func progressLine(st *wire.PreheatStatus) string {
	done := 0
	for _, b := range st.Blobs {
		if b.State == wire.PreheatSuccess {
			done++
		}
	}
	s := fmt.Sprintf("preheat %s %s: %d/%d blobs, %s of %s", st.ID, st.State, done, len(st.Blobs),
		ratelimit.HumanBytes(st.Present), ratelimit.HumanBytes(st.Length))
	if st.Error != "" {
		s += ": " + st.Error
	}
	return s
}

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
