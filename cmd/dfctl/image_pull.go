package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/platforms"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/damselfly-p2p/damselfly/manifest/oci"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/snapshotter/labels"
)

type pullOptions struct {
	registryOptions
	address     string
	namespace   string
	snapshotter string
	platform    string
	downloads   int
	dialTimeout time.Duration
}

func newImagePullCommand() *cobra.Command {
	o := &pullOptions{}
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image with containerd into df-snapshotter, lazily",
		Long: `pull fetches the image REF with containerd and unpacks it into --snapshotter
(df-snapshotter, registered in containerd's config as a proxy plugin). Every
layer descriptor is annotated with
  ` + labels.ImageRef + `  (REF, normalized)
  ` + labels.LayerDigest + `  (the layer's digest)
and with the CRI plugin's equivalents
  ` + labels.CRIImageRef + `
  ` + labels.CRILayerDigest + `
(so that stargz-snapshotter, which reads those, can use the pull too),
which containerd passes to the snapshotter's Prepare as labels, next to the
eStargz TOC digest annotation the layer already carries. df-snapshotter
mounts eStargz layers remotely and answers "already exists", so containerd
does not download them; other layers are downloaded and unpacked as usual.
Convert an image with "dfctl image convert" first to make its layers lazy.

The registry is contacted from this process (manifests and config; layers
only when they are not mounted remotely); df-snapshotter fetches layer
contents itself, through the P2P network.

  dfctl image pull 127.0.0.1:5000/app:esgz
  ctr run --snapshotter damselfly --rm -t 127.0.0.1:5000/app:esgz demo sh`,
		Args: o.exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPull(cmd.Context(), cmd.OutOrStdout(), args[0], o)
		},
	}
	fs := cmd.Flags()
	o.addFlags(fs)
	fs.StringVar(&o.address, "address", "/run/containerd/containerd.sock", "containerd's gRPC socket")
	fs.StringVar(&o.namespace, "namespace", "default", "containerd namespace")
	fs.StringVar(&o.snapshotter, "snapshotter", labels.DefaultName, "snapshotter to unpack into (as named in containerd's config)")
	fs.StringVar(&o.platform, "platform", "", "platform to pull from a multi-platform image, OS/ARCH[/VARIANT] (default this machine's)")
	fs.IntVar(&o.downloads, "max-concurrent-downloads", 3, "layers downloaded at once (those not mounted remotely)")
	fs.DurationVar(&o.dialTimeout, "connect-timeout", 10*time.Second, "how long to wait for containerd's socket")
	return cmd
}

// remoteLabelsWrapper wraps an image handler so that the layer
// descriptors a manifest yields carry the annotations df-snapshotter needs
// to mount them remotely: the image reference (where the blob lives) and
// the layer digest (its P2P task ID). containerd's unpacker hands
// annotations with the "containerd.io/snapshot/" prefix to Prepare.
func remoteLabelsWrapper(ref string) func(images.Handler) images.Handler {
	return func(h images.Handler) images.Handler {
		return images.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			children, err := h.Handle(ctx, desc)
			if err != nil {
				return children, err
			}
			if oci.IsManifest(desc.MediaType) {
				children = withRemoteLabels(ref, children)
			}
			return children, nil
		})
	}
}

// withRemoteLabels annotates the layers among a manifest's children
// with Damselfly's labels and the CRI plugin's (copying their annotation
// maps; other children are untouched).
func withRemoteLabels(ref string, children []ocispec.Descriptor) []ocispec.Descriptor {
	for i, c := range children {
		if !images.IsLayerType(c.MediaType) {
			continue
		}
		ann := make(map[string]string, len(c.Annotations)+4)
		for k, v := range c.Annotations {
			ann[k] = v
		}
		ann[labels.ImageRef] = ref
		ann[labels.LayerDigest] = c.Digest.String()
		ann[labels.CRIImageRef] = ref
		ann[labels.CRILayerDigest] = c.Digest.String()
		children[i].Annotations = ann
	}
	return children
}

func runPull(ctx context.Context, out io.Writer, ref string, o *pullOptions) error {
	start := time.Now()
	full, err := normalizeRef(ref)
	if err != nil {
		return err
	}
	plat, err := oci.ParsePlatform(o.platform)
	if err != nil {
		return fmt.Errorf("--platform: %w", err)
	}
	if o.downloads < 1 {
		return errors.New("--max-concurrent-downloads must be at least 1")
	}
	resolver, err := o.resolver()
	if err != nil {
		return err
	}
	client, err := containerd.New(o.address, containerd.WithDefaultNamespace(o.namespace), containerd.WithTimeout(o.dialTimeout))
	if err != nil {
		return fmt.Errorf("connect to containerd at %s: %w", o.address, err)
	}
	defer client.Close()
	ctx = namespaces.WithNamespace(ctx, o.namespace)
	if err := checkSnapshotter(ctx, client, o.snapshotter); err != nil {
		return err
	}

	matcher := platforms.Only(plat)
	img, err := client.Pull(ctx, full,
		containerd.WithResolver(resolver),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(o.snapshotter),
		containerd.WithPlatformMatcher(matcher),
		containerd.WithMaxConcurrentDownloads(o.downloads),
		containerd.WithImageHandlerWrapper(remoteLabelsWrapper(full)),
	)
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	elapsed := time.Since(start)
	return reportPull(ctx, out, client, img, matcher, o.snapshotter, elapsed)
}

// checkSnapshotter fails early, with the list of loaded snapshotters, when
// containerd has no snapshotter called name.
func checkSnapshotter(ctx context.Context, client *containerd.Client, name string) error {
	resp, err := client.IntrospectionService().Plugins(ctx, []string{`type=="io.containerd.snapshotter.v1"`})
	if err != nil {
		return nil // let the pull report it
	}
	var loaded []string
	for _, p := range resp.Plugins {
		if p.InitErr != nil {
			continue
		}
		if p.ID == name {
			return nil
		}
		loaded = append(loaded, p.ID)
	}
	return fmt.Errorf("containerd has no snapshotter %q (loaded: %s); df-snapshotter is registered in containerd's config.toml as [proxy_plugins.%s] type = \"snapshot\", address = its socket",
		name, strings.Join(loaded, ", "), name)
}

// reportPull prints what the pull did with each layer.
func reportPull(ctx context.Context, out io.Writer, client *containerd.Client, img containerd.Image, m platforms.MatchComparer, sn string, elapsed time.Duration) error {
	cs := client.ContentStore()
	man, err := images.Manifest(ctx, cs, img.Target(), m)
	if err != nil {
		return fmt.Errorf("pulled, but reading its manifest failed: %w", err)
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return fmt.Errorf("pulled, but reading its config failed: %w", err)
	}
	chain := identity.ChainIDs(append(diffIDs[:0:0], diffIDs...))
	snaps := client.SnapshotService(sn)
	var remote, fetched int
	var fetchedBytes int64
	for i, l := range man.Layers {
		how := "downloaded"
		if _, err := cs.Info(ctx, l.Digest); errdefs.IsNotFound(err) {
			how = "mounted remotely (not downloaded)"
			remote++
		} else {
			fetched++
			fetchedBytes += l.Size
			if l.Annotations[estargz.TOCJSONDigestAnnotation] == "" {
				how += " (not eStargz)"
			}
		}
		if i < len(chain) {
			if _, err := snaps.Stat(ctx, chain[i].String()); err != nil {
				how += ", snapshot missing: " + err.Error()
			}
		}
		fmt.Fprintf(out, "layer %d/%d %s %s: %s\n", i+1, len(man.Layers), shortDigest(l.Digest), ratelimit.HumanBytes(l.Size), how)
	}
	unpacked, err := img.IsUnpacked(ctx, sn)
	if err != nil {
		return fmt.Errorf("pulled, but checking its snapshots failed: %w", err)
	}
	if !unpacked {
		return fmt.Errorf("pulled %s but it is not unpacked in snapshotter %s", img.Name(), sn)
	}
	fmt.Fprintf(out, "pulled %s@%s into snapshotter %s in %.2fs: %d layers, %d mounted remotely, %d downloaded (%s)\n",
		img.Name(), img.Target().Digest, sn, elapsed.Seconds(), len(man.Layers), remote, fetched, ratelimit.HumanBytes(fetchedBytes))
	return nil
}
