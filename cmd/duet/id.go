package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/duetcall/duet/client"
	"github.com/duetcall/duet/identity"
	"golang.org/x/term"
)

// idUsage is the help of duet id, with the flags' defaults here.
func idUsage() string {
	return `Usage:
  duet id new [--words 12|24] [--relay URL] [--home DIR]
      Create an identity, register it with the relay and print its mnemonic
      once. Write the mnemonic down: it is the only way to restore the
      identity on another device.
  duet id show [PEER] [--relay URL] [--home DIR]
      Show your alias and key fingerprint; with PEER, the safety number to
      compare with them out of band (after you have called them once), and
      whether the relay now serves a different key for them.
  duet id accept PEER [--yes] [--relay URL] [--home DIR]
      After PEER's key changed: fetch the key the relay serves for them now,
      show its safety number and, once you confirm (or with --yes), pin it so
      that calls with them go through again. Compare the new safety number
      with PEER out of band (in person, or over a channel you already trust)
      before you accept it.
  duet id restore [--relay URL] [--home DIR] [< mnemonic.txt]
      Restore an identity from its mnemonic and get its alias back from the
      relay. On a terminal it asks for the mnemonic without echoing it;
      otherwise it reads standard input (words separated by spaces or line
      breaks, e.g. one word per line).

Flags:
  --words N            duet id new: mnemonic length, 12 or 24 (default 12)
  --yes                duet id accept: accept without asking
` + clientFlagsHelp() + `
Examples:
  duet id new
  duet id show u12345678
  duet id accept u12345678
  echo "word1 word2 ... word12" | duet id restore --home /tmp/other
`
}

func runID(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, idUsage())
		return 2
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, idUsage())
		return 0
	}
	sub := args[0]
	switch sub {
	case "new", "show", "accept", "restore":
	default:
		fmt.Fprintf(stderr, "duet id: unknown subcommand %q\n\n%s", sub, idUsage())
		return 2
	}
	fset := flag.NewFlagSet("duet id "+sub, flag.ContinueOnError)
	var cf clientFlags
	cf.register(fset)
	words := 0
	if sub == "new" {
		fset.IntVar(&words, "words", identity.DefaultWords, "mnemonic length: 12 or 24 words")
	}
	yes := false
	if sub == "accept" {
		fset.BoolVar(&yes, "yes", false, "accept the new key without asking")
	}
	pos, code, done := parseFlags(fset, args[1:], idUsage(), stdout, stderr)
	if done {
		return code
	}
	var err error
	switch sub {
	case "new":
		err = idNew(ctx, &cf, words, stdout)
	case "show":
		err = idShow(ctx, &cf, pos, stdout, stderr)
	case "accept":
		err = idAccept(ctx, &cf, pos, yes, stdin, stdout)
	case "restore":
		err = idRestore(ctx, &cf, stdin, stderr, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "duet id %s: %v\n", sub, err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
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
		return fmt.Errorf("%w\nThe identity is saved in %s (the mnemonic above restores it); `duet id show` registers it once the relay is reachable", err, cf.keystorePath())
	}
	fmt.Fprintf(stdout, "Your alias: %s\n", alias)
	return nil
}

func idShow(ctx context.Context, cf *clientFlags, args []string, stdout, stderr io.Writer) error {
	id, alias, err := cf.loadIdentity(ctx)
	if err != nil {
		return err
	}
	pub := id.PublicKeys()
	fmt.Fprintf(stdout, "alias:       %s\nfingerprint: %x\nkeystore:    %s\n", alias, pub.Signing, cf.keystorePath())
	if len(args) == 0 {
		return nil
	}
	if len(args) > 1 {
		return fmt.Errorf("%w: one PEER at most, got %q", errUsage, args)
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
	current, err := cf.relayKeys(ctx, id, alias, peer)
	if err != nil {
		fmt.Fprintf(stdout, "safety number with %s (pinned key):\n  %s\n", peer, identity.SafetyNumber(pub, keys))
		fmt.Fprintf(stderr, "duet id show: could not check whether the relay serves another key for %s: %v\n", peer, err)
		return nil
	}
	if current.Equal(keys) {
		fmt.Fprintf(stdout, "safety number with %s:\n  %s\n", peer, identity.SafetyNumber(pub, keys))
		return nil
	}
	printKeyChange(stdout, peer, identity.SafetyNumber(pub, keys), identity.SafetyNumber(pub, current))
	fmt.Fprintf(stdout, "Calls with %s are refused until you accept the new key. Compare the NEW safety number with %s out of band; if it matches, run:\n  duet id accept %s\n", peer, peer, peer)
	return nil
}

// printKeyChange tells the user that peer's key changed, with the safety
// numbers of the pinned (old) and the relay's (new) key.
func printKeyChange(w io.Writer, peer identity.Alias, oldSN, newSN string) {
	fmt.Fprintf(w, "WARNING: the key of %s CHANGED since you pinned it.\n", peer)
	fmt.Fprintf(w, "They may have restored their identity on a new device, or someone may be impersonating them.\n")
	fmt.Fprintf(w, "NEW safety number with %s (the key the relay serves now):\n  %s\n", peer, newSN)
	fmt.Fprintf(w, "old safety number (the pinned key, which the relay no longer serves):\n  %s\n", oldSN)
}

func idAccept(ctx context.Context, cf *clientFlags, args []string, yes bool, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: duet id accept takes one PEER, got %d arguments", errUsage, len(args))
	}
	peer, err := identity.ParseAlias(args[0])
	if err != nil {
		return err
	}
	id, alias, err := cf.loadIdentity(ctx)
	if err != nil {
		return err
	}
	pins, err := client.OpenPinStore(cf.pinsPath())
	if err != nil {
		return err
	}
	current, err := cf.relayKeys(ctx, id, alias, peer)
	if err != nil {
		return err
	}
	pub := id.PublicKeys()
	sn := identity.SafetyNumber(pub, current)
	pinned, had := pins.Pinned(peer)
	switch {
	case had && pinned.Equal(current):
		fmt.Fprintf(stdout, "The key the relay serves for %s is the one you pinned; nothing to accept.\nsafety number with %s:\n  %s\n", peer, peer, sn)
		return nil
	case had:
		printKeyChange(stdout, peer, identity.SafetyNumber(pub, pinned), sn)
	default:
		fmt.Fprintf(stdout, "No key is pinned for %s yet.\nsafety number with %s (the key the relay serves now):\n  %s\n", peer, peer, sn)
	}
	which := "this"
	if had {
		which = "the NEW"
	}
	fmt.Fprintf(stdout, "Compare %s safety number with %s out of band (in person, or over a channel you already trust) before you accept it.\n", which, peer)
	if !yes && !ask(bufio.NewReader(stdin), stdout, fmt.Sprintf("Accept the key of %s with this safety number? [y/N] ", peer)) {
		return fmt.Errorf("the key of %s was not accepted; nothing changed (calls with them stay refused)", peer)
	}
	// Pin exactly the keys shown, not whatever the relay serves by now.
	if err := pins.Accept(peer, current); err != nil {
		return err
	}
	if had {
		fmt.Fprintf(stdout, "Accepted: %s is pinned with the new key; calls with them go through again (a duet answer already running uses the new key from now on).\n", peer)
	} else {
		fmt.Fprintf(stdout, "Accepted: %s is pinned with this key.\n", peer)
	}
	return nil
}

// relayKeys connects to the relay as this identity and returns the keys it
// serves for peer now.
func (cf *clientFlags) relayKeys(ctx context.Context, id *identity.Identity, alias, peer identity.Alias) (identity.PublicKeys, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, client.Options{
		RelayURL: cf.relay, Identity: id, Alias: alias,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return identity.PublicKeys{}, fmt.Errorf("connecting to the relay at %s: %w", cf.relay, err)
	}
	defer c.Close()
	return c.RelayKeys(ctx, peer)
}

// maxMnemonicInput bounds what idRestore reads: 24 of the longest words
// with generous white space.
const maxMnemonicInput = 4096

// readMnemonic reads a mnemonic: on a terminal, one line typed without echo
// after a prompt on prompt; otherwise all of stdin (up to maxMnemonicInput
// bytes), so a file with one word per line works.
func readMnemonic(stdin io.Reader, prompt io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, "Mnemonic (12 or 24 words; not shown as you type): ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("reading the mnemonic from the terminal: %w", err)
		}
		return string(b), nil
	}
	b, err := io.ReadAll(io.LimitReader(stdin, maxMnemonicInput+1))
	if err != nil {
		return "", fmt.Errorf("reading the mnemonic from standard input: %w", err)
	}
	if len(b) > maxMnemonicInput {
		return "", fmt.Errorf("standard input holds more than %d bytes; want only the mnemonic", maxMnemonicInput)
	}
	return string(b), nil
}

func idRestore(ctx context.Context, cf *clientFlags, stdin io.Reader, prompt, stdout io.Writer) error {
	if _, err := os.Stat(cf.keystorePath()); err == nil {
		return fmt.Errorf("an identity already exists in %s; restore into another --home", cf.keystorePath())
	}
	text, err := readMnemonic(stdin, prompt)
	if err != nil {
		return err
	}
	m := identity.NormalizeMnemonic(text)
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
