package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
)

const idUsage = `Usage:
  duet id new [--words 12|24] [--relay URL] [--home DIR]
      Create an identity, register it with the relay and print its mnemonic
      once. Write the mnemonic down: it is the only way to restore the
      identity on another device.
  duet id show [PEER] [--relay URL] [--home DIR]
      Show your alias and key fingerprint; with PEER, the safety number to
      compare with them out of band (after you have called them once).
  duet id restore [--relay URL] [--home DIR] < mnemonic.txt
      Restore an identity from its mnemonic (read from standard input) and
      get its alias back from the relay.

Examples:
  duet id new
  duet id show u12345678
  echo "word1 word2 ... word12" | duet id restore --home /tmp/other
`

func runID(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, idUsage)
		return boolCode(len(args) > 0)
	}
	sub := args[0]
	fset := flag.NewFlagSet("duet id "+sub, flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() { fmt.Fprint(stderr, idUsage) }
	var cf clientFlags
	cf.register(fset)
	words := 0
	if sub == "new" {
		fset.IntVar(&words, "words", identity.DefaultWords, "mnemonic length: 12 or 24 words")
	}
	pos, err := parseInterspersed(fset, args[1:])
	if err != nil {
		return 2
	}
	switch sub {
	case "new":
		err = idNew(ctx, &cf, words, stdout)
	case "show":
		err = idShow(ctx, &cf, pos, stdout)
	case "restore":
		err = idRestore(ctx, &cf, stdin, stdout)
	default:
		fmt.Fprintf(stderr, "duet id: unknown subcommand %q\n\n%s", sub, idUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "duet id %s: %v\n", sub, err)
		return 1
	}
	return 0
}

func boolCode(ok bool) int {
	if ok {
		return 0
	}
	return 2
}

func idNew(ctx context.Context, cf *clientFlags, words int, stdout io.Writer) error {
	if _, err := os.Stat(cf.keystorePath()); err == nil {
		return fmt.Errorf("an identity already exists in %s; use --home for another one (or remove it if you have its mnemonic)", cf.keystorePath())
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	m, err := identity.NewMnemonic(words)
	if err != nil {
		return err
	}
	id, err := identity.FromMnemonic(m)
	if err != nil {
		return err
	}
	// Save before registering so the mnemonic is never lost.
	if err := identity.SaveKeystore(cf.keystorePath(), identity.Keystore{Version: identity.KeystoreVersion, Mnemonic: m}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Your mnemonic (shown once; write it down and keep it secret, it restores this identity):\n\n  %s\n\n", m)
	alias, err := cf.registerAndSave(ctx, id)
	if err != nil {
		fmt.Fprintf(stdout, "Not registered yet (%v).\nThe identity is saved in %s; `duet id show` registers it once the relay is reachable.\n", err, cf.keystorePath())
		return nil
	}
	fmt.Fprintf(stdout, "Your alias: %s\n", alias)
	return nil
}

func idShow(ctx context.Context, cf *clientFlags, args []string, stdout io.Writer) error {
	id, alias, err := cf.loadIdentity(ctx)
	if err != nil {
		return err
	}
	pub := id.PublicKeys()
	fmt.Fprintf(stdout, "alias:       %s\nfingerprint: %x\nkeystore:    %s\n", alias, pub.Signing, cf.keystorePath())
	if len(args) == 0 {
		return nil
	}
	peer, err := identity.ParseAlias(args[0])
	if err != nil {
		return err
	}
	pins, err := client.OpenPinStore(cf.pinsPath())
	if err != nil {
		return err
	}
	keys, ok := pins.Pinned(peer)
	if !ok {
		return fmt.Errorf("no pinned keys for %s yet: call them once (or be called), then compare", peer)
	}
	fmt.Fprintf(stdout, "safety number with %s:\n  %s\n", peer, identity.SafetyNumber(pub, keys))
	return nil
}

func idRestore(ctx context.Context, cf *clientFlags, stdin io.Reader, stdout io.Writer) error {
	if _, err := os.Stat(cf.keystorePath()); err == nil {
		return fmt.Errorf("an identity already exists in %s; restore into another --home", cf.keystorePath())
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the mnemonic from standard input: %w", err)
	}
	m := identity.NormalizeMnemonic(strings.TrimSpace(line))
	id, err := identity.FromMnemonic(m)
	if err != nil {
		return err
	}
	if err := identity.SaveKeystore(cf.keystorePath(), identity.Keystore{Version: identity.KeystoreVersion, Mnemonic: m}); err != nil {
		return err
	}
	alias, err := cf.registerAndSave(ctx, id)
	if err != nil {
		return fmt.Errorf("%w (the identity is saved; `duet id show` retries)", err)
	}
	fmt.Fprintf(stdout, "Restored. Your alias: %s\n", alias)
	return nil
}
