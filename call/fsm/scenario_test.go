package fsm_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/duetcall/duet/call/fsm"
)

var update = flag.Bool("update", false, "rewrite the expected actions of testdata/scenarios from this implementation")

// scenarioFile is one file of testdata/scenarios (PROTOCOL §10.7).
type scenarioFile struct {
	Scenarios []scenario `json:"scenarios"`
}

type scenario struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Device      string `json:"device"`
	Steps       []step `json:"steps"`
}

type step struct {
	Event   fsm.Event    `json:"event"`
	Actions []fsm.Action `json:"actions"`
	State   fsm.State    `json:"state"`
}

func scenarioFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../testdata/scenarios/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files in testdata/scenarios (%v)", err)
	}
	return files
}

// TestScenarios runs every scenario of testdata/scenarios against the
// machine: each step's actions and resulting state must be exactly the
// expected ones. The browser SDK's machine runs the same files in Chromium
// (web package tests).
func TestScenarios(t *testing.T) {
	total := 0
	for _, file := range scenarioFiles(t) {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var f scenarioFile
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for si := range f.Scenarios {
			sc := &f.Scenarios[si]
			total++
			t.Run(filepath.Base(file)+"/"+sc.Name, func(t *testing.T) {
				m := fsm.New(sc.Device, fsm.Defaults())
				for i := range sc.Steps {
					st := &sc.Steps[i]
					got := m.Handle(st.Event)
					state, _ := m.State()
					if *update {
						st.Actions, st.State = got, state
						continue
					}
					if len(got) == 0 {
						got = nil
					}
					want := st.Actions
					if len(want) == 0 {
						want = nil
					}
					if !reflect.DeepEqual(got, want) {
						g, _ := json.Marshal(got)
						w, _ := json.Marshal(want)
						t.Fatalf("step %d (%s): actions\n got  %s\n want %s", i, st.Event.Kind, g, w)
					}
					if state != st.State {
						t.Fatalf("step %d (%s): state %s, want %s", i, st.Event.Kind, state, st.State)
					}
				}
			})
		}
		if *update {
			if err := os.WriteFile(file, format(t, f), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if total < 30 {
		t.Errorf("%d scenarios; PROTOCOL §10.7 promises at least 30", total)
	}
}

// format writes a scenario file with one event or action per line.
func format(t *testing.T, f scenarioFile) []byte {
	t.Helper()
	j := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var b bytes.Buffer
	b.WriteString("{\"scenarios\": [\n")
	for si, sc := range f.Scenarios {
		fmt.Fprintf(&b, "  {\"name\": %s,\n   \"description\": %s,\n   \"device\": %s,\n   \"steps\": [\n", j(sc.Name), j(sc.Description), j(sc.Device))
		for i, st := range sc.Steps {
			fmt.Fprintf(&b, "    {\"event\": %s,\n     \"actions\": [", j(st.Event))
			for k, a := range st.Actions {
				if k > 0 {
					b.WriteString(",")
				}
				b.WriteString("\n       " + j(a))
			}
			fmt.Fprintf(&b, "],\n     \"state\": %s}", j(st.State))
			if i < len(sc.Steps)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString("   ]}")
		if si < len(f.Scenarios)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("]}\n")
	return b.Bytes()
}
