package identity

import (
	"errors"
	"fmt"
)

// Alias is a user's public address on a relay: "u" followed by exactly 8
// ASCII digits, e.g. u12345678 (docs/PROTOCOL.md §1.3). The relay assigns it.
type Alias string

// ErrInvalidAlias is returned (wrapped) for a string that is not an alias.
var ErrInvalidAlias = errors.New("identity: invalid alias")

// ParseAlias validates s as an alias.
func ParseAlias(s string) (Alias, error) {
	if !validAlias(s) {
		return "", fmt.Errorf("%w %q: want u followed by 8 digits, e.g. u12345678", ErrInvalidAlias, truncate(s, 32))
	}
	return Alias(s), nil
}

// Valid reports whether a is a well-formed alias.
func (a Alias) Valid() bool { return validAlias(string(a)) }

func (a Alias) String() string { return string(a) }

func validAlias(s string) bool {
	if len(s) != 9 || s[0] != 'u' {
		return false
	}
	for i := 1; i < 9; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
