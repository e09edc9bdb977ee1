// Package config owns the daemons' configuration sources other than the
// command line: a YAML file named by --config and DAMSELFLY_* environment
// variables, both mapped onto a cobra command's registered flags, and the
// printing of the effective configuration (--print-config, "X config
// print") with secrets masked.
//
// Every flag is a key, spelled as the flag's name ("data-dir",
// "cluster-token-file"). A YAML mapping may also nest a key's dash-separated
// parts: "tls: {cert: a.pem}" is the key "tls-cert". Each key's environment
// variable is DAMSELFLY_ followed by the name in upper case with dashes as
// underscores (DAMSELFLY_DATA_DIR for data-dir); DAMSELFLY_CONFIG names the
// file when --config is not given. Precedence: flags, then the environment,
// then the file, then the flags' defaults. A value goes through the flag's
// own parser, so a file or a variable accepts what the flag accepts ("50M",
// "30s"); a YAML list gives a repeatable flag all its values. An unknown key
// is an error that names it (with the closest key when one is near), and so
// is a value the flag refuses.
//
// The file and the printed configuration are read and written with koanf
// (github.com/knadh/koanf/v2, its YAML parser and its pflag provider) rather
// than viper: the flags stay the only place where options are declared and
// typed, and koanf only parses, flattens and marshals, with a small
// dependency set; viper would add a second registry of keys with its own
// case folding and type coercion that the flags' parsers would have to be
// kept in line with.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/agnivade/levenshtein"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

const (
	// EnvPrefix starts every key's environment variable.
	EnvPrefix = "DAMSELFLY_"
	// FileFlag names the configuration file; PrintFlag prints the effective
	// configuration instead of running.
	FileFlag  = "config"
	PrintFlag = "print-config"
	// Masked replaces the value of a secret key when printing.
	Masked = "<masked>"
)

// notKeys are flags that are not configuration keys.
var notKeys = map[string]bool{FileFlag: true, PrintFlag: true, "help": true}

// IsKey reports whether the flag name is a configuration key.
func IsKey(name string) bool { return !notKeys[name] }

// EnvName is the environment variable of a key: DAMSELFLY_DATA_DIR for
// data-dir.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// IsSecret reports whether a key holds a secret itself (its value is
// masked when printed). Keys ending in -file (token files, TLS keys) hold
// paths and are shown.
func IsSecret(key string) bool {
	for _, s := range []string{"-token", "-password", "-secret", "-credentials"} {
		if strings.HasSuffix(key, s) {
			return true
		}
	}
	// dfmount's -H headers carry origin credentials (Authorization: ...).
	return key == "token" || key == "password" || key == "secret" || key == "header"
}

// Bind makes cmd configurable: it adds --config and --print-config to its
// flags, a "config print" subcommand, and has cmd's RunE apply the file
// and the environment (Apply) before it runs. Call it after every flag of
// cmd is registered.
func Bind(cmd *cobra.Command) {
	f := cmd.Flags()
	var printConfig bool
	f.String(FileFlag, "", "YAML configuration file: every flag is a key (flags and "+EnvPrefix+"* environment variables override it; env "+EnvName(FileFlag)+" when unset)")
	f.BoolVar(&printConfig, PrintFlag, false, "print the effective configuration (flags, environment, file, defaults) as YAML, secrets masked, and exit")
	// The configuration is applied before the arguments are checked, so a
	// bad file is the first error reported.
	var applied bool
	apply := func(c *cobra.Command) error {
		if applied {
			return nil
		}
		applied = true
		return Apply(c.Flags())
	}
	validate := cmd.Args
	cmd.Args = func(c *cobra.Command, args []string) error {
		if err := apply(c); err != nil {
			return err
		}
		if printConfig || validate == nil {
			return nil
		}
		return validate(c, args)
	}
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if err := apply(c); err != nil {
			return err
		}
		if printConfig {
			return Print(c.OutOrStdout(), c.Flags())
		}
		return run(c, args)
	}
	cmd.AddCommand(printCommand(cmd))
}

// printCommand is "config print": the parent's flags (shared, so the same
// values) and the configuration printed.
func printCommand(parent *cobra.Command) *cobra.Command {
	p := &cobra.Command{
		Use:   "print [flags]",
		Short: "Print the effective configuration (flags, environment, file, defaults) as YAML, secrets masked",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := Apply(c.Flags()); err != nil {
				return err
			}
			return Print(c.OutOrStdout(), c.Flags())
		},
	}
	parent.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name != PrintFlag {
			p.Flags().AddFlag(f)
		}
	})
	c := &cobra.Command{Use: "config", Short: "Configuration file tools", Args: cobra.NoArgs}
	c.AddCommand(p)
	return c
}

// Apply sets every configuration key of fs that the command line did not
// set: from its environment variable when that is set, else from the
// configuration file (--config, else $DAMSELFLY_CONFIG) when it has the key.
// Keys it sets count as changed (fs.Changed), as if given as flags.
func Apply(fs *pflag.FlagSet) error {
	path, err := filePath(fs)
	if err != nil {
		return err
	}
	var file map[string]any
	if path != "" {
		if file, err = Load(path, fs); err != nil {
			return err
		}
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if !IsKey(f.Name) || f.Changed {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s (key %q): %w", EnvName(f.Name), f.Name, err))
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if err := set(fs, f, v); err != nil {
				errs = append(errs, fmt.Errorf("config %s: key %q: %w", path, f.Name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// filePath is --config, else $DAMSELFLY_CONFIG ("" for none).
func filePath(fs *pflag.FlagSet) (string, error) {
	f := fs.Lookup(FileFlag)
	if f == nil {
		return "", nil
	}
	if f.Changed {
		return f.Value.String(), nil
	}
	if v := os.Getenv(EnvName(FileFlag)); v != "" {
		if err := fs.Set(FileFlag, v); err != nil {
			return "", err
		}
		return v, nil
	}
	return f.Value.String(), nil
}

// bytesProvider hands koanf a file already read (the error then names the
// file as the user gave it).
type bytesProvider []byte

func (b bytesProvider) ReadBytes() ([]byte, error) { return b, nil }
func (b bytesProvider) Read() (map[string]any, error) {
	return nil, errors.New("bytesProvider: use ReadBytes")
}

// Load reads the YAML file at path and returns its values by key, refusing
// keys that are not flags of fs.
func Load(path string, fs *pflag.FlagSet) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	k := koanf.New(".")
	if err := k.Load(bytesProvider(data), yaml.Parser()); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	keys := Keys(fs)
	out := map[string]any{}
	var errs []error
	for _, raw := range k.Keys() {
		key := strings.ReplaceAll(raw, ".", "-")
		switch {
		case fs.Lookup(key) == nil || !IsKey(key):
			errs = append(errs, fmt.Errorf("config %s: unknown key %q%s", path, key, suggest(key, keys)))
		case out[key] != nil:
			errs = append(errs, fmt.Errorf("config %s: key %q given twice (flat and nested)", path, key))
		default:
			if v := k.Get(raw); v != nil { // "key:" with no value: the default
				out[key] = v
			}
		}
	}
	return out, errors.Join(errs...)
}

// suggest is ` (did you mean "KEY"?)` for the closest key within a small
// edit distance, else "".
func suggest(key string, keys []string) string {
	best, bestD := "", len(key)/3+2
	for _, k := range keys {
		if d := levenshtein.ComputeDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// set gives flag f the YAML value v through the flag's own parser; a list
// gives a repeatable flag all its values.
func set(fs *pflag.FlagSet, f *pflag.Flag, v any) error {
	if list, ok := v.([]any); ok {
		sv, ok := f.Value.(pflag.SliceValue)
		if !ok {
			return fmt.Errorf("a list, but the flag takes one value (%s)", f.Value.Type())
		}
		vals := make([]string, 0, len(list))
		for _, e := range list {
			s, err := scalar(e)
			if err != nil {
				return err
			}
			vals = append(vals, s)
		}
		if err := sv.Replace(vals); err != nil {
			return err
		}
		f.Changed = true
		return nil
	}
	s, err := scalar(v)
	if err != nil {
		return err
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok && f.Value.Type() == "stringArray" {
		// One value, as the flag given once (commas stay in it).
		if err := sv.Replace([]string{s}); err != nil {
			return err
		}
		f.Changed = true
		return nil
	}
	return fs.Set(f.Name, s)
}

// scalar renders a YAML scalar as the flag would be given it.
func scalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case nil:
		return "", nil
	default:
		return "", fmt.Errorf("want a single value or a list, got %T", v)
	}
}

// Print writes the effective configuration of fs's keys as YAML, keys
// sorted, values of secret keys masked. Token files are paths and are
// printed, never read.
func Print(w io.Writer, fs *pflag.FlagSet) error {
	k := koanf.New(".")
	p := posflag.ProviderWithFlag(fs, ".", k, func(f *pflag.Flag) (string, any) {
		if !IsKey(f.Name) {
			return "", nil
		}
		v := posflag.FlagVal(fs, f)
		if IsSecret(f.Name) {
			v = mask(f)
		}
		return f.Name, v
	})
	if err := k.Load(p, nil); err != nil {
		return fmt.Errorf("collect the configuration: %w", err)
	}
	out, err := k.Marshal(yaml.Parser())
	if err != nil {
		return fmt.Errorf("render the configuration: %w", err)
	}
	_, err = w.Write(out)
	return err
}

// mask is the printed value of a secret flag: Masked for each value given.
func mask(f *pflag.Flag) any {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		vals := sv.GetSlice()
		out := make([]string, len(vals))
		for i := range out {
			out[i] = Masked
		}
		return out
	}
	if f.Value.String() == "" {
		return ""
	}
	return Masked
}

// Keys lists fs's configuration keys, sorted.
func Keys(fs *pflag.FlagSet) []string {
	var keys []string
	fs.VisitAll(func(f *pflag.Flag) {
		if IsKey(f.Name) {
			keys = append(keys, f.Name)
		}
	})
	sort.Strings(keys)
	return keys
}
