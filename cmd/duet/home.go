package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
)

const defaultRelay = "http://127.0.0.1:8080"

// clientFlags are the flags every client command takes.
type clientFlags struct {
	relay string
	home  string
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.relay, "relay", relayDefault(), "relay URL, or several nodes separated by commas (default from $DUET_RELAY)")
	fs.StringVar(&f.home, "home", defaultHome(), "directory of the keystore and pinned peer keys")
}

// relayDefault is $DUET_RELAY, else defaultRelay.
func relayDefault() string {
	if r := os.Getenv("DUET_RELAY"); r != "" {
		return r
	}
	return defaultRelay
}

// clientFlagsHelp describes --relay and --home with their defaults here
// (which depend on the environment), for the usage texts.
func clientFlagsHelp() string {
	return fmt.Sprintf(`  --relay URL[,URL]    relay URL, or several nodes of one deployment separated by
                       commas: any that answers, the next at once on its loss
                       [DUET_RELAY] (default %s)
  --home DIR           directory of the keystore and pinned peer keys
                       (default $XDG_CONFIG_HOME/duet, else ~/.config/duet: %s)
`, relayDefault(), defaultHome())
}

// parseFlags parses args with fs, allowing flags after positional
// arguments, and returns the positionals. When it returns done, the command
// exits with code: 0 after -h/--help (usage printed on stdout), 2 after a
// bad flag (the flag package's error, then usage, on stderr).
func parseFlags(fs *flag.FlagSet, args []string, usage string, stdout, stderr io.Writer) (pos []string, code int, done bool) {
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed here, on the right stream
	pos, err := parseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return nil, 0, true
	case err != nil:
		fmt.Fprint(stderr, "\n"+usage)
		return nil, 2, true
	}
	return pos, 0, false
}

// defaultHome is $XDG_CONFIG_HOME/duet, else ~/.config/duet.
func defaultHome() string {
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "duet")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".config", "duet")
	}
	return ".duet"
}

func (f *clientFlags) keystorePath() string { return filepath.Join(f.home, "keystore.json") }
func (f *clientFlags) pinsPath() string     { return filepath.Join(f.home, "peers.json") }

// errNoIdentity says how to create an identity.
var errNoIdentity = errors.New("no identity yet: create one with `duet id new` or restore one with `duet id restore`")

// loadIdentity reads the keystore and, when the alias is not known yet,
// registers with the relay and saves the alias.
func (f *clientFlags) loadIdentity(ctx context.Context) (*identity.Identity, identity.Alias, error) {
	ks, err := identity.LoadKeystore(f.keystorePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", errNoIdentity
	}
	if err != nil {
		return nil, "", err
	}
	id, err := identity.FromMnemonic(ks.Mnemonic)
	if err != nil {
		return nil, "", err
	}
	if ks.Alias == "" {
		alias, err := f.registerAndSave(ctx, id)
		return id, alias, err
	}
	return id, ks.Alias, nil
}

// registerAndSave registers id with the relay and saves the keystore with
// the alias the relay assigned.
func (f *clientFlags) registerAndSave(ctx context.Context, id *identity.Identity) (identity.Alias, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	alias, _, err := client.Register(ctx, nil, f.relay, id)
	if err != nil {
		return "", fmt.Errorf("registering with the relay at %s: %w", f.relay, err)
	}
	ks := identity.Keystore{Version: identity.KeystoreVersion, Mnemonic: id.Mnemonic, Alias: alias}
	if err := identity.SaveKeystore(f.keystorePath(), ks); err != nil {
		return "", err
	}
	return alias, nil
}

// parseInterspersed parses args with fs, allowing flags after positional
// arguments (duet id show u12345678 --home DIR), and returns the positionals.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
