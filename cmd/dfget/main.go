// Command dfget downloads a URL through Damselfly's P2P network, like wget
// but served by other peers.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	cmd := newCommand()
	if err := cmd.Execute(); err != nil && !errors.Is(err, errSeeded) {
		fmt.Fprintln(os.Stderr, "dfget: error:", err)
		os.Exit(1)
	}
}
