package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/remotes"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/damselfly-p2p/damselfly/registry"
)

func init() {
	extraCommands = append(extraCommands, func(*globalOptions) *cobra.Command { return newImageCommand() })
}

// newImageCommand is "dfctl image": image tools for df-snapshotter (convert
// an image to eStargz, pull one with remote-snapshot labels).
func newImageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Image tools for df-snapshotter: convert to eStargz, pull lazily",
		Long: `Image tools for df-snapshotter's lazy pulls.

  dfctl image convert SRC DST   rebuild every layer of SRC as eStargz, push DST
  dfctl image pull REF          pull REF with containerd into df-snapshotter,
                                which mounts eStargz layers without downloading

Registry access (both commands): registries on loopback (localhost,
127.0.0.0/8, ::1) are reached over plain HTTP, others over HTTPS unless
listed in --plain-http. Credentials come from the docker config file
("auths" entries with basic credentials); a registry that answers 401 with a
Bearer challenge gets a token from its token server, fetched with those
credentials (anonymously when there are none).`,
		SilenceUsage: true,
	}
	cmd.AddCommand(newImageConvertCommand(), newImagePullCommand())
	return cmd
}

// registryOptions are the registry-access flags shared by image commands.
type registryOptions struct {
	plainHTTP    []string
	dockerConfig string
}

func (o *registryOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&o.plainHTTP, "plain-http", nil,
		"registry hosts (HOST or HOST:PORT, comma-separated) reached over plain HTTP instead of HTTPS; --plain-http alone means every registry; loopback hosts always are")
	fs.Lookup("plain-http").NoOptDefVal = "*"
	fs.StringVar(&o.dockerConfig, "docker-config", "",
		"docker config file with registry credentials (default $DOCKER_CONFIG/config.json, else ~/.docker/config.json; a missing default file means anonymous access)")
}

// exactArgs is cobra.ExactArgs(n) with a hint for the one easy mistake:
// "--plain-http HOST" (with a space) leaves HOST as an argument, because a
// bare --plain-http means every registry.
func (o *registryOptions) exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			if len(o.plainHTTP) == 1 && o.plainHTTP[0] == "*" && len(args) > n {
				return fmt.Errorf("%w (write --plain-http=HOST, with '=': a bare --plain-http means every registry)", err)
			}
			return err
		}
		return nil
	}
}

// dockerConfigPath returns the config file to read and whether the user
// named it (then it must exist).
func (o *registryOptions) dockerConfigPath() (string, bool) {
	if o.dockerConfig != "" {
		return o.dockerConfig, true
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json"), false
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", false
	}
	return filepath.Join(home, ".docker", "config.json"), false
}

// credentials returns the basic credentials lookup for registry hosts.
func (o *registryOptions) credentials() (registry.Credentials, error) {
	path, explicit := o.dockerConfigPath()
	if path == "" {
		return registry.NoCredentials, nil
	}
	if explicit {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("--docker-config: %w", err)
		}
	}
	return registry.DockerConfigCredentials(path)
}

// isPlainHTTP reports whether a registry host (HOST or HOST:PORT) is
// reached over plain HTTP.
func (o *registryOptions) isPlainHTTP(host string) (bool, error) {
	return registry.IsPlainHTTP(host, o.plainHTTP), nil
}

// resolver returns a containerd remotes.Resolver for registries: HTTPS or
// plain HTTP per isPlainHTTP, basic and bearer-token auth with the docker
// config's credentials (package registry; it never logs them).
func (o *registryOptions) resolver() (remotes.Resolver, error) {
	creds, err := o.credentials()
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	return registry.Resolver(client, o.plainHTTP, creds), nil
}

// normalizeRef turns a docker-style reference ("busybox",
// "host:5000/a/b:tag", "a@sha256:...") into its full form
// ("docker.io/library/busybox:latest").
func normalizeRef(ref string) (string, error) { return registry.Normalize(ref) }

// shortDigest abbreviates "sha256:0123456789ab..." for human output.
func shortDigest(d fmt.Stringer) string {
	s := d.String()
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+13 {
		return s[:i+13]
	}
	return s
}
