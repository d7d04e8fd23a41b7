package web_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// scenarioFile is one file of testdata/scenarios (PROTOCOL §10.7), kept as
// raw JSON values so that the comparison is of exactly what the file lists
// (no field the Go types would drop or default).
type scenarioFile struct {
	Scenarios []struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Device      string `json:"device"`
		Steps       []struct {
			Event   map[string]any   `json:"event"`
			Actions []map[string]any `json:"actions"`
			State   string           `json:"state"`
		} `json:"steps"`
	} `json:"scenarios"`
}

// jsScenarioRun is what sdktest/scenarios.js returns for one file.
type jsScenarioRun struct {
	File      string `json:"file"`
	Scenarios []struct {
		Name  string `json:"name"`
		Steps []struct {
			Actions []map[string]any `json:"actions"`
			State   string           `json:"state"`
		} `json:"steps"`
	} `json:"scenarios"`
}

// TestScenariosInChromium runs every scenario of testdata/scenarios through
// the browser SDK's call state machine (sdk/call-fsm.js) in Chromium: each
// step must return exactly the actions the file lists, in order, and leave
// the listed state, as the Go machine does (call/fsm TestScenarios). A
// missing or empty scenario directory or file fails; nothing is skipped.
func TestScenariosInChromium(t *testing.T) {
	paths, err := filepath.Glob("../testdata/scenarios/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("testdata/scenarios holds no .json file")
	}
	want := map[string]scenarioFile{}
	var names []string
	total := 0
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var f scenarioFile
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(f.Scenarios) == 0 {
			t.Errorf("%s holds no scenario", p)
		}
		for _, sc := range f.Scenarios {
			if len(sc.Steps) == 0 {
				t.Errorf("%s: scenario %q has no step", p, sc.Name)
			}
		}
		total += len(f.Scenarios)
		name := filepath.Base(p)
		names = append(names, name)
		want[name] = f
	}
	if total < 30 {
		t.Errorf("%d scenarios in testdata/scenarios; PROTOCOL §10.7 promises at least 30", total)
	}

	srv := startServer(t, sdkMux())
	ctx := newBrowser(t)
	navigate(t, ctx, srv.URL+"/sdktest/index.html")
	arg, _ := json.Marshal(names)
	got, err := evalJS[[]jsScenarioRun](ctx, 60*time.Second, `import('/sdktest/scenarios.js').then(m => m.run('/scenarios/', `+string(arg)+`))`)
	if err != nil {
		t.Fatalf("running sdktest/scenarios.js in Chromium: %v", err)
	}
	if len(got) != len(names) {
		t.Fatalf("Chromium ran %d scenario files, want %d", len(got), len(names))
	}
	ran := 0
	for i, run := range got {
		if run.File != names[i] {
			t.Fatalf("Chromium's result %d is for %s, want %s", i, run.File, names[i])
		}
		f := want[run.File]
		if len(run.Scenarios) != len(f.Scenarios) {
			t.Errorf("%s: Chromium ran %d scenarios, want %d", run.File, len(run.Scenarios), len(f.Scenarios))
			continue
		}
		for si, sc := range f.Scenarios {
			js := run.Scenarios[si]
			ran++
			t.Run(strings.TrimSuffix(run.File, ".json")+"/"+sc.Name, func(t *testing.T) {
				if js.Name != sc.Name || len(js.Steps) != len(sc.Steps) {
					t.Fatalf("Chromium ran %q with %d steps, want %q with %d", js.Name, len(js.Steps), sc.Name, len(sc.Steps))
				}
				for k, st := range sc.Steps {
					g, w := js.Steps[k].Actions, st.Actions
					if len(g) == 0 {
						g = nil
					}
					if len(w) == 0 {
						w = nil
					}
					if !reflect.DeepEqual(g, w) {
						ev, _ := json.Marshal(st.Event)
						gj, _ := json.Marshal(g)
						wj, _ := json.Marshal(w)
						t.Fatalf("step %d %s: actions\n got  %s\n want %s", k, ev, gj, wj)
					}
					if js.Steps[k].State != st.State {
						t.Fatalf("step %d (%v): state %s, want %s", k, st.Event["kind"], js.Steps[k].State, st.State)
					}
				}
			})
		}
	}
	if ran != total {
		t.Errorf("compared %d scenarios, the files hold %d", ran, total)
	}
}
