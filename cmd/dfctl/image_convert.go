package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/remotes"
	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/damselfly-p2p/damselfly/cmd/internal/cli"
	"github.com/damselfly-p2p/damselfly/manifest/oci"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/registry"
)

const (
	maxManifestSize = 8 << 20  // manifests and indexes
	maxConfigSize   = 32 << 20 // image configs
	maxIndexDepth   = 4        // nested indexes followed
)

type convertOptions struct {
	registryOptions
	platform         string
	prioritized      []string
	chunkSize        cli.Size
	minChunkSize     cli.Size
	compressionLevel int
	buildWorkers     int
	jobs             int
}

func newImageConvertCommand() *cobra.Command {
	o := &convertOptions{}
	cmd := &cobra.Command{
		Use:   "convert SRC DST",
		Short: "Convert an image in a registry to eStargz and push it",
		Long: `convert rebuilds every layer of the image SRC as eStargz (seekable gzip with a
table of contents, which df-snapshotter mounts lazily) and pushes the result
as DST, an OCI image. SRC may be a manifest or an index (multi-platform
image): the manifest for --platform is converted (default: this machine's
platform) and DST is a single-platform image.

For each layer the blob is fetched and checked against its digest,
decompressed (gzip, zstd or plain tar), rebuilt with estargz.Build and
pushed; its descriptor gets the annotations
  containerd.io/snapshot/stargz/toc.digest   (digest of the TOC JSON)
  io.containers.estargz.uncompressed-size    (size of the uncompressed layer)
and the media type application/vnd.oci.image.layer.v1.tar+gzip. The image
config's rootfs.diff_ids are replaced by the new layers' uncompressed
digests (everything else in the config is kept) and pushed, then the OCI
manifest is pushed under DST's tag. Blobs DST already has are not uploaded
again. Layers are built in temporary files (under $TMPDIR): expect about
three times the largest uncompressed layer of free space per --jobs.

--prioritized-files lists the files a container reads first (in order), e.g.
the entrypoint and its libraries; they are put at the front of the layer
that holds them, and a lazy mount prefetches them. A value "@FILE" reads
paths from FILE, one per line.

--min-chunk-size N puts small files that follow each other in one gzip
stream until it holds at least N bytes (as ctr-remote's
--estargz-min-chunk-size): fewer, larger streams, a smaller blob, and one
ranged read fetches several small files. The TOC then records each file's
offset inside its stream (innerOffset), which readers that predate
the option do not understand; df-snapshotter and stargz-snapshotter v0.15.1
mount such layers.

  dfctl image convert registry.example/app:1.0 registry.example/app:1.0-esgz
  dfctl image convert 127.0.0.1:5000/busybox:v1 127.0.0.1:5000/busybox:esgz \
      --prioritized-files /bin/sh,/bin/busybox --chunk-size 1M
  dfctl image convert 127.0.0.1:5000/app:v1 127.0.0.1:5000/app:esgz-min64k --min-chunk-size 64K`,
		Args: o.exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := runConvert(cmd.Context(), cmd.OutOrStdout(), args[0], args[1], o)
			return err
		},
	}
	fs := cmd.Flags()
	o.addFlags(fs)
	fs.StringVar(&o.platform, "platform", "", "platform to convert when SRC is a multi-platform index, OS/ARCH[/VARIANT] (default this machine's)")
	fs.StringSliceVar(&o.prioritized, "prioritized-files", nil, "files to put first and prefetch, in access order (comma-separated; @FILE reads one path per line)")
	fs.Var(&o.chunkSize, "chunk-size", "eStargz chunk size: large files are split into gzip streams of this size (e.g. 1M; 0 = estargz default, 4 MiB)")
	fs.Var(&o.minChunkSize, "min-chunk-size", "minimum bytes per gzip stream: small files share a stream until it holds this much (e.g. 64K; 0 = one stream per file)")
	fs.IntVar(&o.compressionLevel, "compression-level", gzip.BestCompression, "gzip level of the new layers (1 fastest ... 9 smallest)")
	fs.IntVar(&o.buildWorkers, "build-workers", 0, "parallel gzip workers per layer (0 = number of CPUs); pin it to get the same layer digests on every machine")
	fs.IntVar(&o.jobs, "jobs", 2, "layers converted at once")
	return cmd
}

// convertResult is what runConvert pushed.
type convertResult struct {
	Ref      string             // normalized DST
	Manifest ocispec.Descriptor // the new manifest
	Config   ocispec.Descriptor
	Layers   []ocispec.Descriptor
}

func (o *convertOptions) validate() error {
	if o.compressionLevel < gzip.HuffmanOnly || o.compressionLevel > gzip.BestCompression {
		return fmt.Errorf("--compression-level %d: want 1..9", o.compressionLevel)
	}
	if o.chunkSize < 0 || int64(o.chunkSize) > 1<<30 {
		return fmt.Errorf("--chunk-size %d: want 0..1G", int64(o.chunkSize))
	}
	if o.minChunkSize < 0 || int64(o.minChunkSize) > 1<<30 {
		return fmt.Errorf("--min-chunk-size %d: want 0..1G", int64(o.minChunkSize))
	}
	if o.buildWorkers < 0 {
		return errors.New("--build-workers must not be negative")
	}
	if o.jobs < 1 {
		return errors.New("--jobs must be at least 1")
	}
	return nil
}

// prioritizedFiles expands --prioritized-files (comma lists and @FILE).
func (o *convertOptions) prioritizedFiles() ([]string, error) {
	var out []string
	for _, v := range o.prioritized {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !strings.HasPrefix(v, "@") {
			out = append(out, v)
			continue
		}
		f, err := os.Open(v[1:])
		if err != nil {
			return nil, fmt.Errorf("--prioritized-files: %w", err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
				out = append(out, l)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("--prioritized-files %s: %w", v[1:], err)
		}
	}
	return out, nil
}

func runConvert(ctx context.Context, out io.Writer, src, dst string, o *convertOptions) (*convertResult, error) {
	start := time.Now()
	if err := o.validate(); err != nil {
		return nil, err
	}
	prio, err := o.prioritizedFiles()
	if err != nil {
		return nil, err
	}
	plat, err := oci.ParsePlatform(o.platform)
	if err != nil {
		return nil, fmt.Errorf("--platform: %w", err)
	}
	srcRef, err := normalizeRef(src)
	if err != nil {
		return nil, err
	}
	dstRef, err := normalizeRef(dst)
	if err != nil {
		return nil, err
	}
	if registry.IsDigested(dstRef) {
		return nil, fmt.Errorf("DST %q: want a tag, not a digest (the converted image has a new digest)", dst)
	}
	resolver, err := o.resolver()
	if err != nil {
		return nil, err
	}

	name, desc, err := resolver.Resolve(ctx, srcRef)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", src, err)
	}
	fetcher, err := resolver.Fetcher(ctx, name)
	if err != nil {
		return nil, err
	}
	mdesc, m, err := fetchImageManifest(ctx, fetcher, desc, plat)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	cfg, err := fetchBytes(ctx, fetcher, m.Config, maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("%s: image config: %w", src, err)
	}
	oldDiffIDs, err := oci.DiffIDs(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if len(oldDiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("%s: manifest has %d layers but config has %d diff_ids", src, len(m.Layers), len(oldDiffIDs))
	}
	for i, l := range m.Layers {
		switch {
		case oci.IsNonDistributable(l.MediaType):
			return nil, fmt.Errorf("%s: layer %d (%s) is non-distributable (%s); it cannot be converted", src, i+1, l.Digest, l.MediaType)
		case oci.IsEncrypted(l.MediaType):
			return nil, fmt.Errorf("%s: layer %d (%s) is encrypted (%s); it cannot be converted", src, i+1, l.Digest, l.MediaType)
		}
	}
	fmt.Fprintf(out, "%s: manifest %s, %d layers\n", name, mdesc.Digest, len(m.Layers))

	pusher, err := resolver.Pusher(ctx, dstRef)
	if err != nil {
		return nil, err
	}

	// Convert the layers, a few at a time.
	var (
		newLayers = make([]ocispec.Descriptor, len(m.Layers))
		diffIDs   = make([]digest.Digest, len(m.Layers))
		missed    = make([][]string, len(m.Layers))
		outMu     sync.Mutex
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.jobs)
	for i, l := range m.Layers {
		g.Go(func() error {
			t0 := time.Now()
			r, err := convertLayer(gctx, fetcher, pusher, l, prio, o)
			if err != nil {
				return fmt.Errorf("layer %d (%s): %w", i+1, l.Digest, err)
			}
			newLayers[i], diffIDs[i], missed[i] = r.desc, r.diffID, r.missed
			outMu.Lock()
			defer outMu.Unlock()
			note := "pushed"
			if r.existed {
				note = "already in registry"
			}
			fmt.Fprintf(out, "layer %d/%d %s (%s) -> %s (%s, toc %s): %s, %.1fs\n", i+1, len(m.Layers),
				shortDigest(l.Digest), ratelimit.HumanBytes(l.Size), shortDigest(r.desc.Digest), ratelimit.HumanBytes(r.desc.Size),
				shortDigest(r.toc), note, time.Since(t0).Seconds())
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if nf := notFoundInAny(prio, missed); len(nf) > 0 {
		fmt.Fprintf(out, "warning: prioritized files found in no layer: %s\n", strings.Join(nf, ", "))
	}

	newCfg, err := oci.SetDiffIDs(cfg, diffIDs)
	if err != nil {
		return nil, err
	}
	cfgDesc := oci.Descriptor(oci.MediaTypeOCIConfig, newCfg)
	if _, err := pushBlob(ctx, pusher, cfgDesc, bytes.NewReader(newCfg)); err != nil {
		return nil, fmt.Errorf("push config: %w", err)
	}
	nm, err := oci.Rewrite(m, cfgDesc, newLayers)
	if err != nil {
		return nil, err
	}
	mdata, err := json.Marshal(nm)
	if err != nil {
		return nil, err
	}
	manDesc := oci.Descriptor(oci.MediaTypeOCIManifest, mdata)
	if _, err := pushBlob(ctx, pusher, manDesc, bytes.NewReader(mdata)); err != nil {
		return nil, fmt.Errorf("push manifest: %w", err)
	}
	fmt.Fprintf(out, "pushed %s@%s (%d eStargz layers) in %.1fs\n", dstRef, manDesc.Digest, len(newLayers), time.Since(start).Seconds())
	return &convertResult{Ref: dstRef, Manifest: manDesc, Config: cfgDesc, Layers: newLayers}, nil
}

// fetchImageManifest fetches desc and, while it is an index, the entry for
// platform p, and returns the image manifest it ends at.
func fetchImageManifest(ctx context.Context, f remotes.Fetcher, desc ocispec.Descriptor, p ocispec.Platform) (ocispec.Descriptor, ocispec.Manifest, error) {
	for depth := 0; ; depth++ {
		data, err := fetchBytes(ctx, f, desc, maxManifestSize)
		if err != nil {
			return desc, ocispec.Manifest{}, err
		}
		mt := oci.DetectMediaType(desc.MediaType, data)
		if !oci.IsIndex(mt) {
			m, err := oci.ParseManifest(mt, data)
			return desc, m, err
		}
		if depth >= maxIndexDepth {
			return desc, ocispec.Manifest{}, fmt.Errorf("indexes nested more than %d deep", maxIndexDepth)
		}
		idx, err := oci.ParseIndex(mt, data)
		if err != nil {
			return desc, ocispec.Manifest{}, err
		}
		next, err := oci.SelectManifest(idx, p)
		if err != nil {
			return desc, ocispec.Manifest{}, err
		}
		desc = next
	}
}

// fetchBytes fetches a small blob or manifest and checks its digest.
func fetchBytes(ctx context.Context, f remotes.Fetcher, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d allowed", desc.Digest, desc.Size, limit)
	}
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", desc.Digest, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is more than %d bytes", desc.Digest, limit)
	}
	if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
		return nil, fmt.Errorf("fetch %s: content has digest %s", desc.Digest, got)
	}
	if desc.Size > 0 && int64(len(data)) != desc.Size {
		return nil, fmt.Errorf("fetch %s: got %d bytes, want %d", desc.Digest, len(data), desc.Size)
	}
	return data, nil
}

type layerResult struct {
	desc    ocispec.Descriptor
	diffID  digest.Digest
	toc     digest.Digest
	missed  []string
	existed bool
}

// convertLayer fetches one layer blob, rebuilds it as eStargz and pushes it.
func convertLayer(ctx context.Context, f remotes.Fetcher, p remotes.Pusher, l ocispec.Descriptor, prio []string, o *convertOptions) (*layerResult, error) {
	in, err := os.CreateTemp("", "dfctl-layer-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(in.Name())
	defer in.Close()
	if err := fetchToFile(ctx, f, l, in); err != nil {
		return nil, err
	}

	opts := []estargz.Option{
		estargz.WithContext(ctx),
		estargz.WithCompressionLevel(o.compressionLevel),
	}
	if o.chunkSize > 0 {
		opts = append(opts, estargz.WithChunkSize(int(o.chunkSize)))
	}
	if o.minChunkSize > 0 {
		opts = append(opts, estargz.WithMinChunkSize(int(o.minChunkSize)))
	}
	if o.buildWorkers > 0 {
		opts = append(opts, estargz.WithParallelism(o.buildWorkers))
	}
	res := &layerResult{}
	if len(prio) > 0 {
		opts = append(opts, estargz.WithPrioritizedFiles(prio), estargz.WithAllowPrioritizeNotFound(&res.missed))
	}
	// Build detects gzip, zstd or plain tar by the blob's magic bytes.
	blob, err := estargz.Build(io.NewSectionReader(in, 0, l.Size), opts...)
	if err != nil {
		return nil, fmt.Errorf("build eStargz: %w", err)
	}
	outF, err := os.CreateTemp("", "dfctl-esgz-*")
	if err != nil {
		blob.Close()
		return nil, err
	}
	defer os.Remove(outF.Name())
	defer outF.Close()
	dg := digest.Canonical.Digester()
	size, err := io.Copy(io.MultiWriter(outF, dg.Hash()), blob)
	if cerr := blob.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("build eStargz: %w", err)
	}
	usize, err := blob.UncompressedSize()
	if err != nil {
		return nil, err
	}
	res.diffID, res.toc = blob.DiffID(), blob.TOCDigest()
	res.desc = esgzLayerDescriptor(l, dg.Digest(), size, res.toc, usize)
	if _, err := outF.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if res.existed, err = pushBlob(ctx, p, res.desc, outF); err != nil {
		return nil, fmt.Errorf("push %s: %w", res.desc.Digest, err)
	}
	return res, nil
}

// esgzLayerDescriptor is the descriptor of a converted layer: the old
// layer's other annotations plus the eStargz ones.
func esgzLayerDescriptor(old ocispec.Descriptor, dgst digest.Digest, size int64, toc digest.Digest, uncompressed int64) ocispec.Descriptor {
	ann := map[string]string{}
	for k, v := range old.Annotations {
		if strings.HasPrefix(k, "containerd.io/snapshot/") || k == "containerd.io/uncompressed" {
			continue // described the old blob
		}
		ann[k] = v
	}
	ann[estargz.TOCJSONDigestAnnotation] = toc.String()
	ann[estargz.StoreUncompressedSizeAnnotation] = strconv.FormatInt(uncompressed, 10)
	return ocispec.Descriptor{
		MediaType:   oci.MediaTypeOCILayerGzip,
		Digest:      dgst,
		Size:        size,
		Annotations: ann,
	}
}

// fetchToFile downloads a blob into w, checking its size and digest.
func fetchToFile(ctx context.Context, f remotes.Fetcher, desc ocispec.Descriptor, w io.Writer) error {
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	defer rc.Close()
	v := desc.Digest.Verifier()
	n, err := io.Copy(io.MultiWriter(w, v), io.LimitReader(rc, desc.Size+1))
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if n != desc.Size {
		return fmt.Errorf("fetch: got %d bytes, want %d", n, desc.Size)
	}
	if !v.Verified() {
		return errors.New("fetch: content does not match its digest")
	}
	return nil
}

// pushBlob uploads r as desc (a blob, or a manifest under the pusher's
// tag); existed reports that the registry already had it.
func pushBlob(ctx context.Context, p remotes.Pusher, desc ocispec.Descriptor, r io.Reader) (existed bool, err error) {
	w, err := p.Push(ctx, desc)
	if errdefs.IsAlreadyExists(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer w.Close()
	if err := content.Copy(ctx, w, r, desc.Size, desc.Digest); err != nil {
		if errdefs.IsAlreadyExists(err) {
			return true, nil
		}
		return false, err
	}
	return false, nil
}

// notFoundInAny returns the prioritized files every layer missed.
func notFoundInAny(prio []string, missed [][]string) []string {
	count := map[string]int{}
	for _, ms := range missed {
		for _, m := range ms {
			count[m]++
		}
	}
	var out []string
	for _, p := range prio {
		if count[p] == len(missed) && len(missed) > 0 {
			out = append(out, p)
		}
	}
	return out
}
