// Command duet is the single binary of duet: the relay server, the identity
// tool and the call CLI.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `duet: end-to-end-encrypted 1:1 audio/video calls

Usage:
  duet relay          run the relay server (duet relay --help)
  duet id             create, show, restore your identity, accept a peer's new key (duet id help)
  duet call ALIAS     call someone (duet call --help)
  duet answer         wait for calls and answer them (duet answer --help)
  duet doctor         check the relay, this network, STUN and TURN, with a fix per problem (duet doctor --help)
  duet loadtest       load-test a relay: sessions, envelopes, calls (duet loadtest --help)
  duet version        print the version
  duet help [COMMAND] this text, or the help of COMMAND (relay, id, call, answer, doctor, loadtest)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// commandHelp returns the help text of a command, as its --help prints it.
func commandHelp(name string) (string, bool) {
	switch name {
	case "relay":
		return relayUsage, true
	case "id":
		return idUsage(), true
	case "call":
		return callUsage(), true
	case "answer":
		return answerUsage(), true
	case "doctor":
		return doctorUsage(), true
	case "loadtest":
		return loadtestUsage(), true
	case "version":
		return "Usage: duet version\n\nPrints the version.\n", true
	case "help":
		return usage, true
	}
	return "", false
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "relay":
		return cmdRelay(args[1:], stdout, stderr)
	case "id", "call", "answer", "doctor", "loadtest":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		switch args[0] {
		case "id":
			return runID(ctx, args[1:], stdin, stdout, stderr)
		case "call":
			return runCall(ctx, args[1:], stdout, stderr)
		case "doctor":
			return runDoctor(ctx, args[1:], stdout, stderr)
		case "loadtest":
			return runLoadtest(ctx, args[1:], stdout, stderr)
		default:
			return runAnswer(ctx, args[1:], stdin, stdout, stderr)
		}
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "duet %s\n", version)
		return 0
	case "help", "--help", "-h":
		if len(args) > 2 {
			fmt.Fprintf(stderr, "duet help: one COMMAND at most, got %q\n", args[1:])
			return 2
		}
		if len(args) == 2 {
			text, ok := commandHelp(args[1])
			if !ok {
				fmt.Fprintf(stderr, "duet help: unknown command %q\n\n%s", args[1], usage)
				return 2
			}
			fmt.Fprint(stdout, text)
			return 0
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "duet: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
