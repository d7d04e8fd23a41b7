// Runs the call state machine scenarios of testdata/scenarios (PROTOCOL
// §10.7) through the browser SDK's machine (call-fsm.js). web_test.go's
// TestScenariosInChromium names the files, and compares every step's
// actions and state this returns with the ones the file lists.

import { CallMachine, DEFAULT_TIMINGS } from '/sdk/call-fsm.js';

/**
 * @param {string} base where the scenario files are served
 * @param {string[]} files their names
 * @returns {Promise<object[]>} per file {file, scenarios: [{name, steps: [{actions, state}]}]}
 */
export async function run(base, files) {
  const out = [];
  for (const file of files) {
    const r = await fetch(base + file);
    if (!r.ok) throw new Error(`fetching ${base + file}: ${r.status}`);
    const f = await r.json();
    const scenarios = [];
    for (const sc of f.scenarios ?? []) {
      const m = new CallMachine(sc.device, DEFAULT_TIMINGS);
      const steps = [];
      for (const st of sc.steps ?? []) {
        let actions;
        try {
          actions = m.handle(st.event);
        } catch (e) {
          actions = [{ kind: 'exception', error: `${e?.name}: ${e?.message}` }];
        }
        steps.push({ actions, state: m.state });
      }
      scenarios.push({ name: sc.name, steps });
    }
    out.push({ file, scenarios });
  }
  return out;
}
