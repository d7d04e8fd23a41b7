// Package dotenv reads .env files: KEY=VALUE lines as understood by most
// tools (docker compose, python-dotenv, Node's dotenv). It never modifies
// the process environment; callers decide the precedence.
//
// Syntax: blank lines and lines starting with # are ignored; an optional
// "export " prefix is allowed; keys are [A-Za-z_][A-Za-z0-9_.]*; values are
// unquoted (trimmed, and a " #" starts a comment), single-quoted (literal) or
// double-quoted (with \n, \r, \t, \", \\ escapes). Values are single-line.
package dotenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// ErrSyntax is returned (wrapped, with the line number) for a malformed line.
var ErrSyntax = errors.New("dotenv: syntax error")

// Load reads the file at path. A missing file is not an error: it returns an
// empty map.
func Load(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Parse reads .env content. Later assignments of a key win.
func Parse(r io.Reader) (map[string]string, error) {
	m := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(strings.TrimPrefix(sc.Text(), "\ufeff"))
		if line == "" || line[0] == '#' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, val, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || !validKey(key) {
			return nil, fmt.Errorf("%w on line %d: want KEY=VALUE", ErrSyntax, n)
		}
		v, err := value(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("%w on line %d: %v", ErrSyntax, n, err)
		}
		m[key] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
		case i > 0 && (c >= '0' && c <= '9' || c == '.'):
		default:
			return false
		}
	}
	return true
}

func value(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	switch q := v[0]; q {
	case '\'', '"':
		end := closingQuote(v, q)
		if end < 0 {
			return "", errors.New("unterminated quote")
		}
		if rest := strings.TrimSpace(v[end+1:]); rest != "" && rest[0] != '#' {
			return "", errors.New("text after the closing quote")
		}
		body := v[1:end]
		if q == '\'' {
			return body, nil
		}
		return unescape(body), nil
	}
	if i := strings.Index(v, " #"); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v), nil
}

// closingQuote returns the index of the quote closing v[0], or -1.
func closingQuote(v string, q byte) int {
	for i := 1; i < len(v); i++ {
		switch {
		case q == '"' && v[i] == '\\':
			i++
		case v[i] == q:
			return i
		}
	}
	return -1
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
