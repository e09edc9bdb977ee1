package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/damselfly-p2p/damselfly/trust/tlsconf"
)

func init() {
	extraCommands = append(extraCommands, func(*globalOptions) *cobra.Command { return newCertCommand() })
}

func newCertCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Make the cluster's TLS CA and certificates",
		Long: `cert makes the files for --tls-cert, --tls-key and --tls-ca: a cluster CA
once, then a certificate per host, signed by it.

  dfctl cert ca --out /etc/damselfly/pki
  dfctl cert issue --ca /etc/damselfly/pki/ca.crt --ca-key /etc/damselfly/pki/ca.key \
      --name node1 --host node1.example --host 10.0.0.5 --usage both --out /etc/damselfly/pki

Every Damselfly process serves and fetches (the supernode and dfdaemon serve
pieces and call each other), so "both" is the usual usage; dfctl itself
needs only "client". Keys are written 0600 and never overwritten.`,
	}
	cmd.AddCommand(newCertCACommand(), newCertIssueCommand())
	return cmd
}

func newCertCACommand() *cobra.Command {
	var out, name, commonName string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Make a cluster CA: OUT/ca.crt and OUT/ca.key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out DIR is required")
			}
			certPEM, keyPEM, err := tlsconf.GenerateCA(commonName, validity)
			if err != nil {
				return fmt.Errorf("generate CA: %w", err)
			}
			certPath, keyPath, err := tlsconf.WriteFiles(out, name, certPEM, keyPEM)
			if err != nil {
				return fmt.Errorf("write CA to %s: %w", out, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CA certificate %s (give it as --tls-ca everywhere)\nCA key %s (keep it off the cluster's hosts)\n", certPath, keyPath)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "directory to write NAME.crt and NAME.key into (created 0700)")
	f.StringVar(&name, "name", "ca", "file name of the CA's certificate and key, without extension")
	f.StringVar(&commonName, "common-name", "Damselfly cluster CA", "subject common name of the CA")
	f.DurationVar(&validity, "validity", 10*365*24*time.Hour, "how long the CA is valid")
	return cmd
}

func newCertIssueCommand() *cobra.Command {
	var caCert, caKey, out, name, usage string
	var hosts []string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Make a certificate signed by the cluster CA: OUT/NAME.crt and OUT/NAME.key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case caCert == "" || caKey == "":
				return errors.New("--ca and --ca-key are required")
			case name == "":
				return errors.New("--name is required")
			case out == "":
				return errors.New("--out DIR is required")
			}
			u, err := tlsconf.ParseUsage(usage)
			if err != nil {
				return fmt.Errorf("--usage: %w", err)
			}
			if u != tlsconf.UsageClient && len(hosts) == 0 {
				return fmt.Errorf("--usage %s: a server certificate needs at least one --host", u)
			}
			caCertPEM, err := os.ReadFile(caCert)
			if err != nil {
				return fmt.Errorf("read CA certificate: %w", err)
			}
			caKeyPEM, err := os.ReadFile(caKey)
			if err != nil {
				return fmt.Errorf("read CA key: %w", err)
			}
			certPEM, keyPEM, err := tlsconf.GenerateCert(caCertPEM, caKeyPEM, name, hosts, validity, u)
			if err != nil {
				return fmt.Errorf("issue certificate %s: %w", name, err)
			}
			certPath, keyPath, err := tlsconf.WriteFiles(out, name, certPEM, keyPEM)
			if err != nil {
				return fmt.Errorf("write certificate %s to %s: %w", name, out, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "certificate %s (--tls-cert), key %s (--tls-key), usage %s\n", certPath, keyPath, u)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&caCert, "ca", "", "the CA's certificate (from dfctl cert ca)")
	f.StringVar(&caKey, "ca-key", "", "the CA's private key")
	f.StringVar(&name, "name", "", "subject common name, also the file name of the certificate and key")
	f.StringArrayVar(&hosts, "host", nil, "DNS name or IP address the certificate is valid for (repeatable; needed for server use)")
	f.StringVar(&usage, "usage", "both", "server, client or both")
	f.StringVar(&out, "out", "", "directory to write NAME.crt and NAME.key into (created 0700)")
	f.DurationVar(&validity, "validity", 365*24*time.Hour, "how long the certificate is valid (cut at the CA's expiry)")
	return cmd
}
