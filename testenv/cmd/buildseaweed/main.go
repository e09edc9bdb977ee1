// Command buildseaweed builds (once, cached outside the clone) the SeaweedFS
// server the object-storage tests run, and prints the binary's path. It is
// what `make deps` runs, so that `make test` does not pay the build.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/damselfly-p2p/damselfly/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	bin, err := testenv.BuildSeaweed(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "buildseaweed:", err)
		os.Exit(1)
	}
	fmt.Println(bin)
}
