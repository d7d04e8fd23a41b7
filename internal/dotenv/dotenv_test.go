package dotenv

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	in := `# comment
CF_TURN_KEY_ID=abc123
export TURN_HOST = turn.example.com
EMPTY=
SPACED=  a b  # trailing comment
HASH=a#b
SINGLE='raw \n $x # kept'
DOUBLE="line\nnext \"q\" \\ # kept" # comment
DUP=1
DUP=2
 INDENTED=yes
`
	m, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"CF_TURN_KEY_ID": "abc123", "TURN_HOST": "turn.example.com", "EMPTY": "", "SPACED": "a b",
		"HASH": "a#b", "SINGLE": `raw \n $x # kept`, "DOUBLE": "line\nnext \"q\" \\ # kept", "DUP": "2", "INDENTED": "yes",
	}
	if len(m) != len(want) {
		t.Errorf("got %d keys %v, want %d", len(m), m, len(want))
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"NOEQUALS", "=v", "1KEY=v", "K-Y=v", `K="open`, `K='open`, `K="a" b`} {
		if _, err := Parse(strings.NewReader(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, want ErrSyntax", in, err)
		}
	}
	if _, err := Parse(strings.NewReader("OK=1\nbad line\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error %v does not name line 2", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	m, err := Load(filepath.Join(dir, "missing"))
	if err != nil || len(m) != 0 {
		t.Fatalf("missing file: %v %v", m, err)
	}
	p := filepath.Join(dir, ".env")
	os.WriteFile(p, []byte("A=1\n"), 0o600)
	if m, err := Load(p); err != nil || m["A"] != "1" {
		t.Fatalf("Load: %v %v", m, err)
	}
	os.WriteFile(p, []byte("oops\n"), 0o600)
	if _, err := Load(p); !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), p) {
		t.Fatalf("Load(bad) = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("A=1\nB='x'\nC=\"y\\n\"\n# c\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(strings.NewReader(s))
		if err == nil {
			for k := range m {
				if !validKey(k) {
					t.Fatalf("invalid key %q", k)
				}
			}
		}
	})
}
