package identity

import (
	"errors"
	"testing"
)

func TestParseAlias(t *testing.T) {
	for _, s := range []string{"u12345678", "u00000000", "u99999999"} {
		a, err := ParseAlias(s)
		if err != nil || string(a) != s || !a.Valid() {
			t.Errorf("ParseAlias(%q) = %q, %v; want valid", s, a, err)
		}
	}
	for _, s := range []string{"", "u1234567", "u123456789", "U12345678", "x12345678", "u1234567a", "u１2345678", "u-1234567"} {
		if _, err := ParseAlias(s); !errors.Is(err, ErrInvalidAlias) {
			t.Errorf("ParseAlias(%q) err = %v; want ErrInvalidAlias", s, err)
		}
		if Alias(s).Valid() {
			t.Errorf("Alias(%q).Valid() = true", s)
		}
	}
}
