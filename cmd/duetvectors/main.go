// Command duetvectors writes duet's protocol test vectors (docs/PROTOCOL.md)
// from the Go implementation: go run ./cmd/duetvectors -out testdata/vectors.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/duetcall/duet/internal/vectors"
)

func main() {
	out := flag.String("out", "testdata/vectors", "directory to write the vector files to")
	flag.Parse()
	files, err := vectors.Generate()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := filepath.Join(*out, name)
		if err := os.WriteFile(path, files[name], 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("wrote %s (%d bytes)\n", path, len(files[name]))
	}
}
