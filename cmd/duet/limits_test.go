package main

import (
	"errors"
	"testing"
)

func TestRelayLimitFlags(t *testing.T) {
	c, err := parseRelayConfig([]string{"--max-sessions-per-alias", "3", "--queue-budget", "64MiB"}, mapLookup(nil))
	if err != nil || c.maxSessions != 3 || c.queueBudget != 64<<20 {
		t.Fatalf("got %d, %d, %v; want 3, 64 MiB", c.maxSessions, c.queueBudget, err)
	}
	c, err = parseRelayConfig(nil, mapLookup(map[string]string{"DUET_QUEUE_BUDGET": "2G", "DUET_MAX_SESSIONS_PER_ALIAS": "1"}))
	if err != nil || c.maxSessions != 1 || c.queueBudget != 2<<30 {
		t.Fatalf("from the environment: %d, %d, %v", c.maxSessions, c.queueBudget, err)
	}
	for _, args := range [][]string{
		{"--max-sessions-per-alias", "0"}, {"--max-sessions-per-alias", "x"},
		{"--queue-budget", "100"}, {"--queue-budget", "1TiB"}, {"--queue-budget", "-5MiB"},
	} {
		if _, err := parseRelayConfig(args, mapLookup(nil)); !errors.Is(err, errUsage) {
			t.Errorf("%v: err %v, want a usage error", args, err)
		}
	}
}
