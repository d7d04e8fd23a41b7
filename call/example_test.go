package call_test

import (
	"fmt"

	"github.com/duetcall/duet/call"
	"github.com/duetcall/duet/hot"
)

// An app keeps the module's observable state in a field of its own type:
// hot.Value is a public type.
type callScreen struct {
	state *hot.Value[call.Status]
}

// ExampleModule_State shows how an app follows the call's state: the
// subscription gets the current status at once, then every change.
func ExampleModule_State() {
	mod := call.New(call.Options{}) // with a Signaler in a real app
	defer mod.Close()
	screen := callScreen{state: mod.State()}
	sub := screen.state.Subscribe()
	defer sub.Unsubscribe()
	st := <-sub.C()
	fmt.Println(st.State, st.Err())
	// Output: idle <nil>
}
