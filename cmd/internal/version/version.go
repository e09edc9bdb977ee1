// Package version owns what a binary says about its build: the version and
// commit the Makefile sets with -ldflags -X (falling back to the module
// version and VCS stamp Go records in the binary), the Go version and the
// platform, and the "version" subcommand every command-line main adds.
package version

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version and Commit are set at build time:
//
//	go build -ldflags "-X github.com/damselfly-p2p/damselfly/cmd/internal/version.Version=v1.2.3 \
//	  -X github.com/damselfly-p2p/damselfly/cmd/internal/version.Commit=abc1234"
//
// Empty, they come from the build information Go embeds.
var (
	Version string
	Commit  string
)

// Info describes the running binary.
type Info struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// Get is this binary's Info: the -X values, else the module version and
// vcs.revision (with "-dirty" when vcs.modified) from the build info, else
// "devel" and "unknown".
func Get() Info {
	return get(Version, Commit, readBuildInfo)
}

var readBuildInfo = debug.ReadBuildInfo

func get(v, c string, read func() (*debug.BuildInfo, bool)) Info {
	info := Info{Version: v, Commit: c, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := read(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		if info.Commit == "" {
			var rev, dirty string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					if s.Value == "true" {
						dirty = "-dirty"
					}
				}
			}
			if rev != "" {
				info.Commit = rev + dirty
			}
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// String is one line: "VERSION (commit COMMIT, GO, PLATFORM)".
func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, %s, %s)", i.Version, i.Commit, i.Go, i.Platform)
}

// Command is the "version" subcommand of the binary named name.
func Command(name string) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version of " + name,
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			i := Get()
			if asJSON {
				enc := json.NewEncoder(c.OutOrStdout())
				return enc.Encode(i)
			}
			_, err := fmt.Fprintf(c.OutOrStdout(), "%s %s\n", name, i)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}
