// Command dfmount mounts remote content with FUSE; reads fault in pieces
// through the Damselfly P2P network.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "dfmount: error:", err)
		os.Exit(1)
	}
}
