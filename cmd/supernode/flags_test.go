package main

import (
	"testing"

	"github.com/damselfly-p2p/damselfly/cmd/internal/clitest"
)

// TestFlags pins the flags users see (names, shorthands, defaults, help).
func TestFlags(t *testing.T) {
	clitest.Golden(t, newCommand().Flags(), "testdata/flags.golden")
}
